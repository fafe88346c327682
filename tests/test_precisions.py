"""The opt-in reduced-precision networks: int8 (spritegen-export --int8,
Sampler.load(precision="int8")) and fp16 through the runtime (precision="fp16").

int8 is approximate by design, so it is held to three things that can each fail:
1. the file is really int8 (int8 weight initializers, QDQ nodes) with unet.onnx's contract;
2. its eps stays within this test's relative RMS tolerance (INT8_REL_RMS_TOL, with its reason)
   of eager PyTorch on sampling states it was neither calibrated nor validated on;
3. the runtime's int8 sampler is the reference sampler driven by the int8 network, to the
   fp32 sampler's tolerance (so every difference from fp32 sprites is the network's,
   none the loop's).
Sprite quality (class accuracy, int8 vs fp32) is measured in benchmarks/int8.py.
fp16's file is held to per-call and chain parity in the parity suite; here only the
runtime's precision="fp16" route to it is tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spritegen.contract import CLASS_NAMES, GRAPHS, INT8_UNET_FILE, MANIFEST_FILE, ScheduleConfig
from spritegen.errors import ExportDirError, InputError
from spritegen.export import load_model
from spritegen.export.int8 import calibration_feeds, int8_weight_count
from spritegen.export.reference import sample_ddim
from spritegen.runtime import Sampler
from tests.tolerances import FP16_SAMPLE_ATOL, INT8_REL_RMS_TOL, SAMPLE_ATOL

# Runtime vs reference loop, both on the int8 network: SAMPLE_ATOL, float32 rounding of the
# update as for fp32; the network itself is the same file and session.
# int8 eps vs eager on unseen states: tests/tolerances.py's INT8_REL_RMS_TOL, with its reason.
TEST_SEED = 777  # trajectories for the tolerance test: neither calibration's (123) nor validation's (321)


@pytest.fixture(scope="session")
def sampler(bundled_sampler: Sampler) -> Sampler:
    """The demo's export (not conftest's tiny one): compared here with the demo's eager model."""
    return bundled_sampler


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model(None)


@pytest.fixture(scope="module")
def int8_session(bundled_export: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundled_export / INT8_UNET_FILE), providers=["CPUExecutionProvider"])


class Int8Network(torch.nn.Module):
    """unet_int8.onnx as a torch module, to drive the reference sampler with it."""

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        rows = x.shape[0]
        c = torch.zeros(rows, 5) if c is None else c
        feed = {"x": x.numpy(), "t": t.reshape(-1).expand(rows).numpy().astype(np.float32), "c": c.numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])


def test_int8_file_is_int8_with_the_unet_contract(bundled_export: Path) -> None:
    proto = onnx.load(str(bundled_export / INT8_UNET_FILE))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8_weight_count(proto) >= 20  # every Conv, ConvTranspose and Gemm weight
    spec = GRAPHS["unet"]
    assert [i.name for i in proto.graph.input] == [s.name for s in spec.inputs]
    assert [o.name for o in proto.graph.output] == [s.name for s in spec.outputs]
    manifest = json.loads((bundled_export / MANIFEST_FILE).read_text())
    assert INT8_UNET_FILE in manifest["files"] and manifest["graphs"]["unet_int8"]["file"] == INT8_UNET_FILE
    check = manifest["validation"]["files"][INT8_UNET_FILE]
    assert check["bound"] == "rel_rms" and check["passed"] and check["rel_rms"] <= check["tolerance"]
    sizes = {name: (bundled_export / name).stat().st_size for name in (INT8_UNET_FILE, spec.file)}
    assert sizes[INT8_UNET_FILE] < sizes[spec.file] / 3  # int8 weights: a quarter of the bytes, plus scales


def test_int8_eps_within_stated_tolerance_on_unseen_states(model: torch.nn.Module,
                                                           int8_session: ort.InferenceSession) -> None:
    feeds = calibration_feeds(model, model.config, ScheduleConfig(), seed=TEST_SEED)
    num = den = 0.0
    for feed in feeds:
        with torch.no_grad():
            ref = model(*(torch.from_numpy(feed[k]) for k in ("x", "t", "c"))).numpy().astype(np.float64)
        out = int8_session.run(None, feed)[0].astype(np.float64)
        num += float(((out - ref) ** 2).sum())
        den += float((ref ** 2).sum())
    rel_rms = (num / den) ** 0.5
    print(f"int8 eps relative RMS error on {len(feeds)} unseen DDIM states: {rel_rms:.4f}")
    assert 0 < rel_rms <= INT8_REL_RMS_TOL  # 0 would mean the file is not quantized at all


def test_runtime_int8_sampler_is_the_reference_sampler_with_the_int8_network(
        bundled_export: Path, int8_session: ort.InferenceSession) -> None:
    sampler = Sampler.load(bundled_export, provider="cpu", precision="int8")
    context = np.eye(5, dtype=np.float32)[[0, 2, 4]]
    noise = np.random.default_rng(5).standard_normal((3, 3, 16, 16), dtype=np.float32)
    sprites, kept = sampler.ddim(context, n=25, noise=noise, save_rate=1)
    expected, expected_kept = sample_ddim(Int8Network(int8_session), torch.from_numpy(noise),
                                          torch.from_numpy(context), n=25)
    errors = {"trajectory": float(np.abs(kept - expected_kept.numpy()).max()),
              "final": float(np.abs(sprites - expected.numpy()).max())}
    print(f"int8 runtime vs reference sampler on the int8 network: {errors}")
    assert max(errors.values()) <= SAMPLE_ATOL
    assert sprites.dtype == np.float32 and sprites.shape == (3, 3, 16, 16)


def test_int8_sprites_differ_from_fp32_but_stay_sprites(bundled_export: Path) -> None:
    """Same noise, both precisions: different numbers (int8 is really used), same range."""
    noise = np.random.default_rng(9).standard_normal((5, 3, 16, 16), dtype=np.float32)
    fp32 = Sampler.load(bundled_export, provider="cpu").ddim(list(CLASS_NAMES), n=25, noise=noise)
    int8 = Sampler.load(bundled_export, provider="cpu", precision="int8").ddim(list(CLASS_NAMES), n=25, noise=noise)
    assert int8.shape == fp32.shape and np.isfinite(int8).all() and np.abs(int8).max() <= 1
    assert np.abs(int8 - fp32).max() > 1e-3


def test_runtime_fp16_samples_with_unet_fp16(bundled_export: Path) -> None:
    """precision="fp16" runs unet_fp16.onnx: close to fp32 (DDIM-25, the parity suite's fp16
    chain tolerance) but not equal, so the fp16 file is what ran."""
    noise = np.random.default_rng(4).standard_normal((5, 3, 16, 16), dtype=np.float32)
    fp32 = Sampler.load(bundled_export, provider="cpu").ddim(list(CLASS_NAMES), n=25, noise=noise)
    fp16 = Sampler.load(bundled_export, provider="cpu", precision="fp16")
    assert fp16.open_graphs == ("unet",) and fp16.impl == "unet"
    error = float(np.abs(fp16.ddim(list(CLASS_NAMES), n=25, noise=noise) - fp32).max())
    print(f"DDIM-25 fp16 vs fp32 runtime: max abs {error:.2e}")
    assert 0 < error <= FP16_SAMPLE_ATOL


def test_int8_refuses_fused_graphs_and_exports_without_the_file(bundled_export: Path, course_export: Path) -> None:
    with pytest.raises(InputError, match="impl='unet' only"):
        Sampler.load(bundled_export, provider="cpu", precision="int8", impl="step")
    sampler = Sampler.load(bundled_export, provider="cpu", precision="int8")
    with pytest.raises(InputError, match="impl='unet' only"):
        sampler.ddim("hero", impl="loop")
    with pytest.raises(InputError, match="unknown precision"):
        Sampler.load(bundled_export, provider="cpu", precision="int4")
    assert not (course_export / INT8_UNET_FILE).exists()  # the suite's course export is made without --int8
    with pytest.raises(ExportDirError, match="spritegen-export --int8"):
        Sampler.load(course_export, provider="cpu", precision="int8")
