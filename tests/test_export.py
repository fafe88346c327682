"""spritegen-export on a course-format checkpoint: every file vs eager PyTorch, the manifest, metadata.

The suite's shared course export (conftest's course_export: random weights, no shortcut key,
hyperparameters in the run's config.json, with --fp16) is checked here; the error paths live
in test_export_errors.py on a tiny model, and a bare .pth's provenance in test_export_inputs.py.
Whole chains through every graph (ddim_loop.onnx at batch 30 included) are the parity
matrix's (tests/parity_matrix.py), so they are not run again here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spritegen.contract import (CHECKPOINT_FILE, CLASS_NAMES, FP16_UNET_FILE, GRAPHS, MANIFEST_FILE, MANIFEST_FORMAT,
                                TORCHSCRIPT_FILE, GraphMeta, ModelConfig, ddim_pairs)
from spritegen.export.checkpoint import load_checkpoint
from spritegen.export.exporter import ExportResult
from spritegen.export.fp16 import check_norms_fp32
from spritegen.export.probes import contexts
from spritegen.export.schedule import make_schedule
from spritegen.export.validate import torch_threads
from tests.tolerances import EPS_ATOL, FP16_EPS_ATOL

MODEL_FILES = ("unet.onnx", TORCHSCRIPT_FILE, "ddpm_step.onnx", "ddim_step.onnx", "solver_step.onnx", "ddim_loop.onnx",
               FP16_UNET_FILE)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Eager references on one thread: torch's spinning pool collapses on shared 2-core CI."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def exported(course_export: Path) -> ExportResult:
    return ExportResult(course_export, json.loads((course_export / MANIFEST_FILE).read_text()), seconds=0.0)


@pytest.fixture(scope="session")
def checkpoint(course_run_dir: Path) -> Path:
    """The weights file the export read."""
    return course_run_dir / CHECKPOINT_FILE


@pytest.fixture(scope="session")
def model(course_run_dir: Path) -> torch.nn.Module:
    return load_checkpoint(course_run_dir).model


def _session(result: ExportResult, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(result.directory / name), providers=["CPUExecutionProvider"])


def _inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, 3, 16, 16), generator=generator)
    t = torch.randint(1, 501, (batch,), generator=generator) / 500
    return x, t.float(), contexts(ModelConfig(), batch)


def test_directory_holds_exactly_the_contract_files(exported: ExportResult) -> None:
    names = sorted(p.name for p in exported.directory.iterdir())
    assert names == sorted(MODEL_FILES + (MANIFEST_FILE,))
    assert not list(exported.directory.parent.glob(".*partial*")), "staging directory left behind"


def test_manifest_hashes_verify(exported: ExportResult) -> None:
    manifest = json.loads((exported.directory / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == set(MODEL_FILES)
    for name, entry in manifest["files"].items():
        data = (exported.directory / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"]


def test_manifest_is_complete(exported: ExportResult, checkpoint: Path, course_run_dir: Path) -> None:
    m = json.loads((exported.directory / MANIFEST_FILE).read_text())
    assert m["format"] == MANIFEST_FORMAT
    assert m["model"]["hyperparameters"] == {"in_channels": 3, "n_feat": 64, "n_cfeat": 5, "height": 16}
    assert m["class_names"] == list(CLASS_NAMES)
    assert m["dims"] == {"C": 3, "H": 16, "W": 16, "K": 5}
    schedule = make_schedule()
    for key in ("b_t", "a_t", "ab_t"):  # float32 arrays restored bit for bit
        assert np.array_equal(np.asarray(m["schedule"][key], np.float32), getattr(schedule, key).numpy()), key
    assert (m["schedule"]["timesteps"], m["schedule"]["beta1"], m["schedule"]["beta2"]) == (500, 1e-4, 0.02)
    assert m["ddim_loop_steps"] == 25 and m["graphs"]["ddim_loop"]["steps"] == 25
    assert m["graphs"]["ddim_loop"]["pairs"] == [list(p) for p in ddim_pairs(500, 25)]
    assert m["opset"] == 20
    assert m["shortcut"] == {"seed": 0, "from_checkpoint": False}  # course format: pinned from the seed
    assert m["provenance"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert m["provenance"]["checkpoint_sha256_of"] == "the checkpoint file's bytes"
    assert m["provenance"]["config"]["origin"] == f"config.json of artifact directory {course_run_dir}"
    assert {"torch", "onnx", "onnxruntime", "spritegen", "python"} <= set(m["tools"])
    unet_x = m["graphs"]["unet"]["inputs"][0]
    assert unet_x == {**GRAPHS["unet"].inputs[0].to_dict(), "shape": ["B", 3, 16, 16]}
    assert m["graphs"]["ddpm_step"]["inputs"][1]["shape"] == ["GB", 5]
    checks = m["validation"]["files"]
    assert set(checks) == set(MODEL_FILES)
    for name, c in checks.items():  # every file here is bounded in max abs error (int8's rel RMS is not exported)
        assert c["bound"] == "max_abs" and c["passed"] and c["max_abs"] <= c["tolerance"], name


def test_onnx_files_follow_the_contract(exported: ExportResult) -> None:
    dtypes = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    for key, spec in list(GRAPHS.items()) + [("unet_fp16", GRAPHS["unet"])]:
        file = FP16_UNET_FILE if key == "unet_fp16" else spec.file
        graph = onnx.load(str(exported.directory / file)).graph
        for values, specs in ((graph.input, spec.inputs), (graph.output, spec.outputs)):
            assert [v.name for v in values] == [s.name for s in specs], file
            for value, s in zip(values, specs):
                assert value.type.tensor_type.elem_type == dtypes[s.dtype], (file, s.name)
                dims = value.type.tensor_type.shape.dim
                assert len(dims) == len(s.shape)
                for dim, symbol in zip(dims, s.shape):
                    if symbol in ("B", "GB"):
                        assert dim.dim_param == symbol, (file, s.name)  # dynamic batch axis, by its name
                    else:  # C, H, W, K, 1: the number, never a made-up name such as Addx_prev_dim_2
                        assert dim.WhichOneof("value") == "dim_value", (file, s.name, dim)
                        assert dim.dim_value == {"C": 3, "H": 16, "W": 16, "K": 5, "1": 1}[symbol], (file, s.name)
        assert not [n for n in graph.node if n.op_type in ("If", "Loop", "Scan")], f"{file}: control flow"


def test_onnx_metadata_props(exported: ExportResult, checkpoint: Path) -> None:
    checkpoint_sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for name in MODEL_FILES:
        if not name.endswith(".onnx"):
            continue
        props = {p.key: p.value for p in onnx.load(str(exported.directory / name)).metadata_props}
        assert props[GraphMeta.FORMAT] == MANIFEST_FORMAT
        assert json.loads(props[GraphMeta.HYPERPARAMETERS])["n_feat"] == 64
        assert json.loads(props[GraphMeta.CLASS_NAMES]) == list(CLASS_NAMES)
        assert json.loads(props[GraphMeta.SCHEDULE]) == {"timesteps": 500, "beta1": 1e-4, "beta2": 0.02}
        assert json.loads(props[GraphMeta.SOURCE])["kind"] == "directory"  # a run directory: weights + config.json
        assert json.loads(props[GraphMeta.SHORTCUT_FROM_CHECKPOINT]) is False
        assert props[GraphMeta.CHECKPOINT_SHA256] == checkpoint_sha, name  # one export, one checkpoint
        assert set(props) <= {v for k, v in vars(GraphMeta).items() if k.isupper()}, name  # no stray keys
    loop = {p.key: p.value for p in onnx.load(str(exported.directory / "ddim_loop.onnx")).metadata_props}
    assert json.loads(loop[GraphMeta.LOOP_STEPS]) == 25


@pytest.mark.parametrize("batch", [1, 7, 30])
def test_network_files_match_eager(exported: ExportResult, model: torch.nn.Module, batch: int) -> None:
    x, t, c = _inputs(batch, seed=batch)
    with torch.no_grad():
        ref = model(x, t, c).numpy()
        ts = torch.jit.load(str(exported.directory / TORCHSCRIPT_FILE))(x, t, c).numpy()
    feed = {"x": x.numpy(), "t": t.numpy(), "c": c.numpy()}
    onnx_out = _session(exported, "unet.onnx").run(None, feed)[0]
    fp16_out = _session(exported, FP16_UNET_FILE).run(None, feed)[0]
    assert onnx_out.shape == ref.shape == (batch, 3, 16, 16)
    assert np.abs(onnx_out - ref).max() <= EPS_ATOL
    assert np.abs(ts - ref).max() <= EPS_ATOL
    assert fp16_out.dtype == np.float32 and np.abs(fp16_out - ref).max() <= FP16_EPS_ATOL


def test_fp16_keeps_normalisation_in_fp32(exported: ExportResult) -> None:
    model = onnx.load(str(exported.directory / FP16_UNET_FILE))
    check_norms_fp32(model)  # raises if a norm reads or writes fp16
    initializers = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}  # conv weights
    assert initializers == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("batch, w", [(1, 0.0), (30, 0.0), (30, 2.0)])
def test_step_graphs_one_step_dynamic_batch(exported: ExportResult, model: torch.nn.Module, batch: int,
                                            w: float) -> None:
    """One step at i = T from the graphs vs the course's update written against the manifest's arrays."""
    m = exported.manifest["schedule"]
    b_t, a_t, ab_t = (torch.tensor(m[k], dtype=torch.float32) for k in ("b_t", "a_t", "ab_t"))
    x, _, c = _inputs(batch, seed=100 + batch)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    i, i_prev, t = 500, 480, torch.tensor([1.0])
    with torch.no_grad():
        eps = model(x, t, c)
        if w:  # classifier-free guidance: GB = 2B rows, the last B unconditional
            eps = (1 + w) * eps - w * model(x, t, torch.zeros_like(c))
    ddpm_ref = (x - eps * ((1 - a_t[i]) / (1 - ab_t[i]).sqrt())) / a_t[i].sqrt() + b_t.sqrt()[i] * z
    ab, ab_prev = ab_t[i], ab_t[i_prev]
    ddim_ref = ab_prev.sqrt() / ab.sqrt() * (x - (1 - ab).sqrt() * eps) + (1 - ab_prev).sqrt() * eps
    rows = torch.cat([c, torch.zeros_like(c)]) if w else c
    common = {"x": x.numpy(), "c": rows.numpy(), "i": np.array([i]), "z": z.numpy(),
              "w": np.array([w], np.float32)}
    ddpm = _session(exported, "ddpm_step.onnx").run(None, common)[0]
    ddim = _session(exported, "ddim_step.onnx").run(
        None, {**common, "i_prev": np.array([i_prev]), "eta": np.zeros(1, np.float32)})[0]
    # eps's 1e-4 scaled by 1/sqrt(a_t) ~ 1.01 (DDPM) and sqrt(1-ab_prev) + ratio ~ 2 (DDIM), times (1 + 2w)
    assert np.abs(ddpm - ddpm_ref.numpy()).max() <= EPS_ATOL * 2 * (1 + 2 * w)
    assert np.abs(ddim - ddim_ref.numpy()).max() <= EPS_ATOL * 2 * (1 + 2 * w)
