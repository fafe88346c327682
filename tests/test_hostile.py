"""Hostile input: drawn contexts, batches and seeds, and corrupted export directories.

Property: for any finite, valid request the runtime returns float32 sprites of the
right shape, finite and in [-1, 1], that agree with the eager reference sampler fed
the same noise. Corruption: a truncated ONNX file, a hand-edited manifest and a model
file swapped in from another export are each refused with one clear ExportDirError
line before anything is sampled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spritegen.contract import CLASS_NAMES, GRAPHS, MANIFEST_FILE, MODEL_LIMITS
from spritegen.errors import ExportDirError
from spritegen.export.checkpoint import load_model
from spritegen.files import sha256_file
from spritegen.export.reference import sample_ddim
from spritegen.runtime import Sampler
from tests.runtime_support import ended_within, link_export

# 1e-3: the fp32 bound on final sprites (issue 5), times (1 + 2w) with guidance w as in
# tests/test_parity.py (guidance scales float32 rounding); a convention slip moves sprites by >= 1e-2.
AGREEMENT = 1e-3


@pytest.fixture(scope="module")
def course(course_export: Path, course_run_dir: Path) -> tuple[Sampler, torch.nn.Module]:
    return Sampler.load(course_export, provider="cpu"), load_model(course_run_dir)


# ------------------------------------------------------------------ strategies
weights = st.floats(min_value=0.0, max_value=8.0, allow_nan=False, allow_subnormal=True)
one_hot = st.sampled_from(CLASS_NAMES)
blend = st.dictionaries(st.sampled_from(CLASS_NAMES), weights, min_size=1, max_size=len(CLASS_NAMES))
row_item = st.one_of(one_hot, blend, st.none(), st.lists(weights, min_size=5, max_size=5))


def _row(item: Any) -> list[float]:
    """The context row a request item means, written here independently of the runtime."""
    if item is None:
        return [0.0] * len(CLASS_NAMES)
    if isinstance(item, str):
        return [float(name == item) for name in CLASS_NAMES]
    if isinstance(item, dict):
        return [float(item.get(name, 0.0)) for name in CLASS_NAMES]
    return [float(w) for w in item]


def _request(items: list[Any], as_array: bool) -> Any:
    """The runtime's form: an array (B, K), or a list of names / blend dicts / None."""
    if as_array or any(isinstance(item, list) for item in items):
        return np.array([_row(item) for item in items], np.float32)
    return items


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(row_item, min_size=1, max_size=9), as_array=st.booleans(),
       seed=st.integers(0, 2**64 - 1), n=st.sampled_from([1, 2, 3, 7]),
       impl=st.sampled_from(["unet", "step", "loop"]),
       guidance=st.one_of(st.none(), st.floats(0.0, 6.0)), eta=st.sampled_from([0.0, 0.3, 1.0]))
def test_runtime_agrees_with_reference_on_drawn_requests(course, items, as_array, seed, n, impl, guidance,
                                                         eta) -> None:
    sampler, model = course
    batch = len(items)
    if impl == "loop":  # the loop graph is deterministic DDIM with its baked-in n
        n, eta = sampler.manifest.ddim_loop_steps, 0.0
    noise = sampler.noise(batch, seed)  # the x_T the runtime draws from `seed`
    step_noise = None
    kwargs: dict[str, Any] = dict(n=n, eta=eta, guidance=guidance, impl=impl)
    if eta > 0:  # stochastic DDIM: inject the step noise so the reference sees the same draws
        step_noise = np.random.default_rng(seed).standard_normal((sampler.timesteps, *noise.shape), np.float32)
        kwargs.update(noise=noise, step_noise=step_noise)
    else:
        kwargs.update(seed=seed)
    got = sampler.ddim(_request(items, as_array), **kwargs)

    assert got.dtype == np.float32 and got.shape == (batch, *sampler.image_shape)
    assert np.isfinite(got).all() and np.abs(got).max() <= 1.0
    rows = torch.tensor([_row(item) for item in items])
    want, _ = sample_ddim(model, torch.from_numpy(noise), rows, n=n, eta=eta, guidance=guidance or 0.0,
                          step_noise=None if step_noise is None else torch.from_numpy(step_noise))
    error = float(np.abs(got.astype(np.float64) - want.numpy()).max())
    limit = AGREEMENT * (1 + 2 * (guidance or 0.0))
    assert error <= limit, f"runtime vs reference: max abs error {error:.3g} > {limit:g}"


# --------------------------------------------------------------- corrupted files
def _copy(export: Path, tmp_path: Path) -> Path:
    """A private copy to damage: the session's shared export stays intact."""
    return Path(shutil.copytree(export, tmp_path / "export"))


def _manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / MANIFEST_FILE).read_text())


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def _rehash(directory: Path, file: str) -> None:
    """Update the manifest's sha256 of `file` as a hand edit would (so the hash check passes)."""
    manifest = _manifest(directory)
    entry = manifest["files"][file]
    if isinstance(entry, dict):
        entry["sha256"] = sha256_file(directory / file)
    else:
        manifest["files"][file] = sha256_file(directory / file)
    _write_manifest(directory, manifest)


def _refused(directory: Path, *words: str, open_all: bool = False) -> str:
    """Sampler.load (open_all: with every session built now) must raise ExportDirError
    with one line naming what is wrong."""
    with pytest.raises(ExportDirError) as caught:
        Sampler.load(directory, provider="cpu", open_all=open_all)
    message = str(caught.value)
    assert "\n" not in message and message.strip()
    for word in words:
        assert word in message, f"message lacks {word!r}: {message}"
    return message


GRAPH_FILES = [spec.file for spec in GRAPHS.values()]


@pytest.mark.parametrize("file", GRAPH_FILES)
def test_truncated_onnx_file_is_refused(course_export: Path, tmp_path: Path, file: str) -> None:
    directory = _copy(course_export, tmp_path)
    data = (directory / file).read_bytes()
    (directory / file).write_bytes(data[: len(data) // 2])
    _refused(directory, file)


def _use(sampler: Sampler, file: str) -> object:
    """A call that needs `file` (sessions other than the default one open on first use)."""
    calls = {
        "unet.onnx": lambda: sampler.ddim("hero", n=2, seed=0, impl="unet"),
        "ddpm_step.onnx": lambda: sampler.ddpm("hero", seed=0, impl="step"),
        "ddim_step.onnx": lambda: sampler.ddim("hero", n=2, seed=0, impl="step"),
        "ddim_loop.onnx": lambda: sampler.ddim("hero", n=sampler.manifest.ddim_loop_steps, seed=0, impl="loop"),
    }
    return calls[file]()


@pytest.mark.parametrize("file", GRAPH_FILES)
def test_truncated_onnx_file_with_rehashed_manifest_is_refused(course_export: Path, tmp_path: Path,
                                                               file: str) -> None:
    """Truncated and the manifest's hash edited to match: ONNX Runtime's parse error must
    surface as one ExportDirError line naming the graph, at load or at the first call that
    needs the file, never as a raw error and never with sprites."""
    directory = _copy(course_export, tmp_path)
    data = (directory / file).read_bytes()
    (directory / file).write_bytes(data[: len(data) // 2])
    _rehash(directory, file)
    with pytest.raises(ExportDirError) as caught:
        _use(Sampler.load(directory, provider="cpu"), file)
    message = str(caught.value)
    assert "\n" not in message and file.removesuffix(".onnx") in message, message


def test_loop_steps_edit_is_refused_at_load(course_export: Path, tmp_path: Path) -> None:
    """Only ddim_loop.onnx knows its own step count: its metadata is read from the file's bytes
    at load (no session built), so the default load refuses the edit before anything runs."""
    directory = _copy(course_export, tmp_path)
    manifest = _manifest(directory)
    _edit_loop_steps(manifest)
    _write_manifest(directory, manifest)
    message = _refused(directory, MANIFEST_FILE, "ddim_loop_steps")
    assert "ddim_loop.onnx" in message


def _edit_schedule(manifest: dict[str, Any]) -> None:
    manifest["schedule"]["ab_t"][250] *= 1.01


def _edit_beta2(manifest: dict[str, Any]) -> None:
    manifest["schedule"]["beta2"] = 0.03


def _swap_classes(manifest: dict[str, Any]) -> None:
    names = manifest["class_names"]
    names[0], names[2] = names[2], names[0]


_HEIGHT_RANGE = "height must be an integer in {}..{}".format(*MODEL_LIMITS["height"])


def _edit_height(manifest: dict[str, Any]) -> None:
    manifest["model"]["hyperparameters"]["height"] = 20  # within MODEL_LIMITS: only the graphs disagree


def _edit_loop_steps(manifest: dict[str, Any]) -> None:
    manifest["ddim_loop_steps"] = 50


def _edit_hash(manifest: dict[str, Any]) -> None:
    entry = manifest["files"]["unet.onnx"]
    entry["sha256"] = "0" * 64


MANIFEST_EDITS = {
    "schedule-array": _edit_schedule,  # the numpy update would silently use a wrong alpha-bar
    "schedule-beta2": _edit_beta2,  # parameters no longer match the arrays or the step graphs
    "class-order": _swap_classes,  # "hero" would silently sample food
    "height": _edit_height,  # buffers of the wrong shape
    "loop-steps": _edit_loop_steps,  # impl="loop" would accept n=50 and run the 25-step graph
    "file-hash": _edit_hash,
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_hand_edited_manifest_is_refused(course_export: Path, tmp_path: Path, edit: str) -> None:
    directory = _copy(course_export, tmp_path)
    manifest = _manifest(directory)
    MANIFEST_EDITS[edit](manifest)
    _write_manifest(directory, manifest)
    # open_all: the loop's step count is checked when its session is built (below for the default load)
    _refused(directory, MANIFEST_FILE if edit != "file-hash" else "unet.onnx", open_all=True)


def test_manifest_with_broken_json_is_refused(course_export: Path, tmp_path: Path) -> None:
    directory = _copy(course_export, tmp_path)
    text = (directory / MANIFEST_FILE).read_text()
    (directory / MANIFEST_FILE).write_text(text[: len(text) // 2])
    _refused(directory, MANIFEST_FILE)


@pytest.mark.parametrize("file", GRAPH_FILES)
def test_model_file_swapped_from_another_export_is_refused(course_export: Path, bundled_export: Path,
                                                           tmp_path: Path, file: str) -> None:
    directory = _copy(course_export, tmp_path)
    shutil.copy(bundled_export / file, directory / file)
    _refused(directory, file)


# ------------------------------------------------- hostile manifests and files
def _farm(export: Path, tmp_path: Path, manifest: dict[str, Any] | bytes | None = None) -> Path:
    return link_export(export, tmp_path / "farm", manifest)


def _set(path: str, value: Any) -> Any:
    """An edit setting manifest[path] ('a/b/c'; _DELETE deletes the key)."""
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = manifest
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return edit


_DELETE = object()
HOSTILE_MANIFESTS = {
    "model-string": (_set("model", "big"), "model must be an object"),
    "height-string": (_set("model/hyperparameters/height", "16"), _HEIGHT_RANGE),
    "height-huge": (_set("model/hyperparameters/height", 10**6), _HEIGHT_RANGE),
    "n_feat-bool": (_set("model/hyperparameters/n_feat", True), "n_feat must be an integer"),
    "n_feat-null": (_set("model/hyperparameters/n_feat", None), "n_feat must be an integer"),
    "channels-2": (_set("model/hyperparameters/in_channels", 2), "in_channels must be one of"),
    "classes-string": (_set("class_names", "hero"), "class_names must be a list of n_cfeat=5"),
    "classes-numbers": (_set("class_names", [1, 2, 3, 4, 5]), "class name 1 must be"),
    "classes-twice": (_set("class_names", ["hero", "Hero", "food", "spell", "x"]), "'Hero' is used twice"),
    "classes-comma": (_set("class_names", ["a,b", "c", "d", "e", "f"]), "without ','"),
    "timesteps-huge": (_set("schedule/timesteps", 10**7), "schedule.timesteps must be an integer in 1..10000"),
    "timesteps-zero": (_set("schedule/timesteps", 0), "schedule.timesteps must be an integer in 1..10000"),
    "timesteps-negative": (_set("schedule/timesteps", -5), "schedule.timesteps must be an integer in 1..10000"),
    "timesteps-many": (_set("schedule/timesteps", "many"), "schedule.timesteps must be an integer"),
    "beta1-negative": (_set("schedule/beta1", -1), "schedule.beta1 must be a finite number"),
    "beta2-huge": (_set("schedule/beta2", 1e300), "schedule.beta2 must be a finite number"),
    "array-string": (_set("schedule/ab_t", "x"), "schedule array ab_t must hold 501"),
    "array-nested": (_set("schedule/b_t", [[0.1]] * 501), "schedule array b_t must hold 501"),
    "files-list": (_set("files", []), "files must be an object"),
    "hash-number": (_set("files/unet.onnx", 5), "files['unet.onnx'].sha256 must be 64"),
    "bytes-negative": (_set("files/unet.onnx/bytes", -1), "files['unet.onnx'].bytes must be an integer"),
    "loop-zero": (_set("ddim_loop_steps", 0), "ddim_loop_steps must be an integer in 1..500"),
    "loop-string": (_set("ddim_loop_steps", "25"), "ddim_loop_steps must be an integer in 1..500"),
    "loop-missing": (_set("ddim_loop_steps", _DELETE), "ddim_loop_steps must be an integer in 1..500"),
    "provenance-string": (_set("provenance", "x"), "provenance must be an object"),
    "provenance-hash": (_set("provenance/checkpoint_sha256", "zz"), "provenance.checkpoint_sha256 must be 64"),
    "provenance-two": (_set("provenance/sha256", "0" * 64), "name different checkpoints"),
}


@pytest.mark.parametrize("case", list(HOSTILE_MANIFESTS))
def test_hostile_manifest_field_is_one_line(export_dir: Path, tmp_path: Path, case: str) -> None:
    """Every field the runtime reads is checked for type and range: one ExportDirError line
    naming the field, never AttributeError, RecursionError or a huge allocation."""
    edit, expected = HOSTILE_MANIFESTS[case]
    manifest = _manifest(export_dir)
    edit(manifest)
    message = _refused(_farm(export_dir, tmp_path, manifest), MANIFEST_FILE)
    assert expected in message, message


HOSTILE_MANIFEST_BYTES = {
    "nested-200000": (b'{"format": "spritegen-export/1", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
                      "nested more than 32 levels deep"),
    "not-utf8": (b'{"format": "\xff\xfe"}', "is not UTF-8 text"),
    "nan": (b'{"format": "spritegen-export/1", "x": NaN}', "NaN is not a JSON number"),
    "list": (b"[1, 2]", "is not a spritegen-export/1 manifest"),
    "oversize": (b" " * (5 << 20), "more than the 4194304 allowed"),
}


@pytest.mark.parametrize("case", list(HOSTILE_MANIFEST_BYTES))
def test_hostile_manifest_bytes_are_one_line(export_dir: Path, tmp_path: Path, case: str) -> None:
    data, expected = HOSTILE_MANIFEST_BYTES[case]
    assert expected in _refused(_farm(export_dir, tmp_path, data))


def _special(kind: str, path: Path, recorded: int) -> None:
    """Put a non-regular or oversized file at `path` (a link to the shared export before)."""
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "sparse-20GiB":
        with open(path, "wb") as f:
            f.truncate(20 << 30)
    else:  # one byte more than the manifest records
        with open(path, "wb") as f:
            f.truncate(recorded + 1)


@pytest.mark.parametrize("kind, file, expected", [
    ("fifo", "ddpm_step.onnx", "not a regular file"),
    ("fifo", MANIFEST_FILE, "not a regular file"),
    ("dev-zero", "unet.onnx", "not a regular file"),
    ("dev-zero", MANIFEST_FILE, "not a regular file"),
    ("directory", "ddim_step.onnx", "not a regular file"),
    ("sparse-20GiB", "ddim_loop.onnx", "does not match its manifest (21474836480 bytes"),
    ("one-byte-more", "unet_int8.onnx", "does not match its manifest"),
])
def test_non_regular_or_oversized_files_are_refused_before_reading(export_dir: Path, tmp_path: Path, kind: str,
                                                                   file: str, expected: str) -> None:
    directory = _farm(export_dir, tmp_path)
    recorded = _manifest(export_dir)["files"].get(file, {}).get("bytes", 0)
    _special(kind, directory / file, recorded)
    error = ended_within(lambda: Sampler.load(directory, provider="cpu"), 60.0)
    assert isinstance(error, ExportDirError), error
    message = str(error)
    assert "\n" not in message and file in message and expected in message, message


# ----------------------------------------------------- one export, one checkpoint
def test_graph_copied_from_another_export_is_refused_even_rehashed(bundled_export: Path, course_export: Path,
                                                                   tmp_path: Path) -> None:
    """Same architecture, same schedule, other checkpoint: rehashed, it passes every other check
    and would sample different sprites; the checkpoint each file records refuses it at load.
    (The demo's export: the course model's architecture, which the tiny export_dir's is not.)"""
    manifest = _manifest(bundled_export)
    directory = _farm(bundled_export, tmp_path, manifest)
    (directory / "unet.onnx").unlink()
    shutil.copy(course_export / "unet.onnx", directory / "unet.onnx")
    manifest["files"]["unet.onnx"] = {"sha256": sha256_file(directory / "unet.onnx"),
                                      "bytes": (directory / "unet.onnx").stat().st_size}
    _write_manifest(directory, manifest)
    for impl in ("step", "unet"):  # refused whichever graph the load opens
        with pytest.raises(ExportDirError) as caught:
            Sampler.load(directory, provider="cpu", impl=impl)
        assert "files of different exports were mixed" in str(caught.value) and "unet.onnx" in str(caught.value)


def _strip_checkpoint(directory: Path, files: list[str]) -> None:
    """Rewrite `files` without the checkpoint they record (as an export from before it was
    recorded would be) and rehash them in the manifest."""
    import onnx

    from spritegen.contract import GraphMeta

    manifest = _manifest(directory)
    for file in files:
        path = directory / file
        model = onnx.load_model(str(path))
        kept = [(p.key, p.value) for p in model.metadata_props
                if p.key not in (GraphMeta.SOURCE, GraphMeta.CHECKPOINT_SHA256)]
        del model.metadata_props[:]
        for key, value in kept:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        path.unlink()  # a link into the shared export: replace it, never write through it
        onnx.save_model(model, str(path))
        manifest["files"][file] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest.get("provenance", {}).pop("sha256", None)
    manifest.get("provenance", {}).pop("checkpoint_sha256", None)
    _write_manifest(directory, manifest)


def test_exports_that_record_no_checkpoint_still_load(course_export: Path, tmp_path: Path) -> None:
    directory = _farm(course_export, tmp_path)
    graphs = sorted(name for name in _manifest(directory)["files"] if name.endswith(".onnx"))
    _strip_checkpoint(directory, graphs)
    sampler = Sampler.load(directory, provider="cpu", open_all=True)
    assert sampler.ddim("hero", n=2, seed=0).shape == (1, *sampler.image_shape)


def test_one_graph_silent_about_its_checkpoint_is_refused(course_export: Path, tmp_path: Path) -> None:
    directory = _farm(course_export, tmp_path)
    _strip_checkpoint(directory, ["ddim_loop.onnx"])  # the manifest's record goes too: the other graphs disagree
    message = _refused(directory, "different checkpoints")
    assert "ddim_loop.onnx: None" in message


def test_broken_int8_network_is_named_by_its_own_file(export_dir: Path, tmp_path: Path) -> None:
    """A well-formed protobuf with intact metadata whose graph ONNX Runtime cannot load (a node
    removed): the error names unet_int8.onnx, the file read, not unet.onnx."""
    import onnx

    manifest = _manifest(export_dir)
    directory = _farm(export_dir, tmp_path, manifest)
    path = directory / "unet_int8.onnx"
    model = onnx.load_model(str(path))
    del model.graph.node[len(model.graph.node) // 2]
    path.unlink()  # a link into the shared export
    onnx.save_model(model, str(path))
    manifest["files"]["unet_int8.onnx"] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    _write_manifest(directory, manifest)
    with pytest.raises(ExportDirError) as caught:
        Sampler.load(directory, provider="cpu", precision="int8")
    message = str(caught.value)
    assert "\n" not in message and "cannot load unet_int8.onnx" in message and "unet.onnx" not in message
