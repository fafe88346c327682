"""Every malformed request and every broken export is refused with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from spritegen.contract import MANIFEST_FILE
from spritegen.errors import ExportDirError, InputError
from spritegen.runtime import Sampler
from tests.runtime_support import copy_export


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------ requests
@pytest.mark.parametrize("context, expected", [
    (["hero", "wizard"], "unknown class 'wizard'; valid classes: hero, non-hero, food, spell, side-facing"),
    ([{"hero": 1, "dragon": 0.5}], "unknown class 'dragon'; valid classes: hero"),
    ([{"hero": -0.5}], "must be a finite number in 0..100"),
    ([{"hero": float("nan")}], "must be a finite number in 0..100"),
    ([{"hero": 1e20}], "must be a finite number in 0..100"),
    (np.array([[1e20, 0, 0, 0, 0]], np.float32), "must be <= 100"),
    ([{"hero": 1, "Hero": 0.5}], "blend names class 'hero' twice"),
    (np.array([[1, 0, 0, 0, np.nan]], np.float32), "finite"),
    (np.array([[1, 0, 0, 0, -1]], np.float32), ">= 0"),
    (np.ones((2, 4), np.float32), "shape (B, 5)"),
    ([], "batch 0"),
    (np.zeros((0, 5), np.float32), "batch 0"),
    ([3], "neither a class name"),
    ([{"hero": "1"}], "weight '1' for 'hero' is not a number"),
    ([{"hero": True}], "weight True for 'hero' is not a number"),
    ([np.zeros((40, 40))], "neither a class name"),
])
@pytest.mark.fast
def test_bad_context(sampler: Sampler, context, expected: str) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddim(context, n=2, seed=0)
    assert expected in _one_line(error)


@pytest.mark.parametrize("n", [0, 501, -3, 2.5, True])
@pytest.mark.fast
def test_steps_outside_range(sampler: Sampler, n) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddim("hero", n=n)
    assert "integer in 1..500" in _one_line(error)


@pytest.mark.parametrize("noise, expected", [
    (np.zeros((1, 3, 16, 16), np.float64), "noise must be float32, got float64"),
    (np.zeros((1, 3, 8, 8), np.float32), "noise must have shape (B, 3, 16, 16), got (1, 3, 8, 8)"),
    (np.zeros((3, 16, 16), np.float32), "noise must have shape (B, 3, 16, 16)"),
    (np.zeros((0, 3, 16, 16), np.float32), "batch 0"),
    (np.full((1, 3, 16, 16), np.inf, np.float32), "NaN or Inf"),
    ([[0.0]], "numpy float32 array"),
    (np.zeros((2, 3, 16, 16), np.float32), "context has 1 rows but the noise has batch 2"),
])
def test_bad_noise(sampler: Sampler, noise, expected: str) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddpm("hero", noise=noise)
    assert expected in _one_line(error)


def test_bad_step_noise(sampler: Sampler) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddpm("hero", step_noise=np.zeros((499, 1, 3, 16, 16), np.float32))
    assert "step_noise must have shape (500, 1, 3, 16, 16)" in _one_line(error)


@pytest.mark.parametrize("kwargs, expected", [
    ({"eta": -0.1}, "eta must be a finite number in 0..1"),
    ({"eta": 1.5}, "eta must be a finite number in 0..1"),
    ({"guidance": float("nan")}, "guidance must be a finite number in 0..100"),
    ({"guidance": -1}, "guidance must be a finite number in 0..100"),
    ({"guidance": 3.5e38}, "guidance must be a finite number in 0..100"),
    ({"save_rate": 0}, "save_rate must be a positive integer"),
    ({"seed": -1}, "seed must be an integer in [0, 2^64)"),
    ({"seed": 2**64}, "seed must be an integer in [0, 2^64)"),
    ({"seed": np.arange(400).reshape(20, 20)}, "seed must be an integer in [0, 2^64)"),
    ({"eta": "0.1"}, "eta must be a number, got '0.1'"),
    ({"guidance": "1"}, "guidance must be a number, got '1'"),
    ({"guidance": b"1"}, "guidance must be a number"),
    ({"n": np.zeros((30, 30))}, "DDIM steps n must be an integer"),
    ({"impl": "fast"}, "unknown step implementation 'fast'; choose one of unet, step, loop"),
    ({"impl": "loop", "n": 10}, "n=25 only"),
    ({"impl": "loop", "eta": 0.5}, "deterministic DDIM"),
    ({"impl": "loop", "save_rate": 1}, "no intermediates"),
])
def test_bad_ddim_options(sampler: Sampler, kwargs: dict, expected: str) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddim("hero", **kwargs)
    assert expected in _one_line(error)


def test_loop_is_ddim_only(sampler: Sampler) -> None:
    with pytest.raises(InputError) as error:
        sampler.ddpm("hero", impl="loop")
    assert "deterministic DDIM only" in _one_line(error)


# ------------------------------------------------------------------ bounds
_HUGE = 10**6


@pytest.mark.parametrize("call", ["ddim", "ddpm", "noise", "context", "unconditional", "noise-array"])
def test_batch_over_the_limit_is_refused_before_allocating(sampler: Sampler, call: str) -> None:
    """A million sprites would need tens of GB: refused with one line before anything of that
    size is allocated (tracemalloc sees numpy's allocations)."""
    many = ["hero"] * _HUGE  # the caller's own list: allocated before tracing starts
    big_noise = np.zeros((sampler.max_batch + 1, *sampler.image_shape), np.float32)
    calls = {"ddim": lambda: sampler.ddim(many, n=1), "ddpm": lambda: sampler.ddpm(many),
             "noise": lambda: sampler.noise(_HUGE, 0), "context": lambda: sampler.context(many),
             "unconditional": lambda: sampler.context(None, batch=_HUGE),
             "noise-array": lambda: sampler.ddim(None, noise=big_noise, n=1)}
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as error:
            calls[call]()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"max_batch={sampler.max_batch}" in _one_line(error)
    assert peak < 2**20, f"{peak} bytes allocated before refusing"


def test_max_batch_is_configurable_per_sampler(export_dir: Path) -> None:
    small = Sampler.load(export_dir, provider="cpu", max_batch=2)
    assert small.ddim(["hero", "food"], n=1, seed=0).shape[0] == 2
    with pytest.raises(InputError) as error:
        small.ddim(["hero"] * 3, n=1, seed=0)
    assert "batch 3 is more than this sampler's max_batch=2" in _one_line(error)


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_batch": 0}, "max_batch must be a positive integer"),
    ({"max_batch": True}, "max_batch must be a positive integer"),
    ({"threads": 0}, "threads must be an integer in 1.."),
    ({"threads": 100_000}, "threads must be an integer in 1.."),
    ({"threads": 2.0}, "threads must be an integer in 1.."),
    ({"spin": "yes"}, "spin must be True, False or None"),
    ({"threads": np.ones((20, 20))}, "threads must be an integer in 1.."),
    ({"cuda_graph": "x"}, "cuda_graph must be True or False"),
    ({"open_all": "x"}, "open_all must be True or False"),
])
def test_bad_load_options(export_dir: Path, kwargs: dict, expected: str) -> None:
    with pytest.raises(InputError) as error:
        Sampler.load(export_dir, provider="cpu", **kwargs)
    assert expected in _one_line(error)


def test_intermediates_over_the_limit_are_refused_before_sampling(sampler: Sampler) -> None:
    """DDPM-500 keeping every state of 1000 sprites is 1.5 GB: refused, not sampled."""
    with pytest.raises(InputError) as error:
        sampler.ddpm(["hero"] * 1000, save_rate=1, seed=0)
    assert "intermediate states" in _one_line(error) and "save_rate" in _one_line(error)


def test_non_finite_results_are_refused(sampler: Sampler) -> None:
    """Finite inputs can still overflow float32 (here: step noise of 3e38 with eta = 1): an
    error, never NaN sprites handed back."""
    step_noise = np.full((sampler.timesteps, 1, *sampler.image_shape), 3e38, np.float32)
    for impl in ("step", "unet"):
        with pytest.raises(InputError) as error:
            sampler.ddim("hero", n=2, eta=1.0, step_noise=step_noise, seed=0, impl=impl)
        assert "NaN or Inf" in _one_line(error)


# ------------------------------------------------------------------ exports
@pytest.mark.fast
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ExportDirError) as error:
        Sampler.load(tmp_path / "nowhere")
    assert "does not exist" in _one_line(error)


@pytest.mark.parametrize("where", [None, 5, b"/tmp", ""])
def test_export_dir_that_is_not_a_path(where: object) -> None:
    with pytest.raises(ExportDirError) as error:
        Sampler.load(where)
    assert "export_dir must be a directory path" in _one_line(error)


def test_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not ours")
    with pytest.raises(ExportDirError) as error:
        Sampler.load(tmp_path)
    assert "is not a spritegen export (no manifest.json)" in _one_line(error)


@pytest.mark.parametrize("edit, expected", [
    (lambda m: {**m, "format": "someone-else/3"}, "is not a spritegen-export/1 manifest"),
    (lambda m: {k: v for k, v in m.items() if k != "schedule"}, "incomplete or malformed"),
    (lambda m: {**m, "schedule": {**m["schedule"], "ab_t": m["schedule"]["ab_t"][:-1]}}, "schedule array ab_t"),
    (lambda m: {**m, "schedule": {**m["schedule"], "ab_t": [v * 0.99 for v in m["schedule"]["ab_t"]]}},
     "schedule array ab_t does not follow from"),
    (lambda m: {**m, "class_names": list(reversed(m["class_names"]))}, "class_names = ['side-facing'"),
    (lambda m: {**m, "ddim_loop_steps": 50}, "ddim_loop_steps = 50 but ddim_loop.onnx was exported with 25"),
])
@pytest.mark.fast
def test_edited_manifest(export_dir: Path, tmp_path: Path, edit, expected: str) -> None:
    broken = copy_export(export_dir, tmp_path / "export")
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    (broken / MANIFEST_FILE).write_text(json.dumps(edit(manifest)))
    with pytest.raises(ExportDirError) as error:
        Sampler.load(broken, open_all=True)  # every graph checked now (the loop's steps live in its graph)
    assert expected in _one_line(error)


def test_manifest_not_json(export_dir: Path, tmp_path: Path) -> None:
    broken = copy_export(export_dir, tmp_path / "export")
    (broken / MANIFEST_FILE).write_text("{ truncated")
    with pytest.raises(ExportDirError) as error:
        Sampler.load(broken)
    assert "is not valid JSON" in _one_line(error)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_graph_file_that_does_not_match_its_hash(export_dir: Path, tmp_path: Path, damage: str) -> None:
    """Refused at load, before any session or sampling: for the graph a call may use later too."""
    broken = copy_export(export_dir, tmp_path / "export")
    path = broken / "ddpm_step.onnx"  # not the default implementation's graph
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    with pytest.raises(ExportDirError) as error:
        Sampler.load(broken)
    message = _one_line(error)
    assert "ddpm_step.onnx" in message
    assert ("does not match its manifest" in message) if damage != "delete" else ("is missing" in message)


def test_swapped_graph_file(export_dir: Path, tmp_path: Path) -> None:
    broken = copy_export(export_dir, tmp_path / "export")
    (broken / "unet.onnx").write_bytes((broken / "ddim_step.onnx").read_bytes())
    with pytest.raises(ExportDirError) as error:
        Sampler.load(broken)
    message = _one_line(error)  # refused by its size (before reading) or, same size, by its hash
    assert "unet.onnx" in message and ("does not match its manifest" in message or "more than the" in message)


@pytest.mark.parametrize("provider, expected", [("gpu", "unknown provider 'gpu'"), ("cuda", "onnxruntime-gpu")])
def test_bad_provider(export_dir: Path, provider: str, expected: str) -> None:
    import onnxruntime

    if provider == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: asking for it is not an error here")
    with pytest.raises(InputError) as error:
        Sampler.load(export_dir, provider=provider)
    assert expected in _one_line(error)


# ------------------------------------------------------------------ no torch
_NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this interpreter")
            return None

    sys.meta_path.insert(0, _NoTorch())
""")


def test_runtime_samples_where_torch_cannot_be_imported(export_dir: Path, tmp_path: Path) -> None:
    """A sitecustomize blocks torch for the whole interpreter; import, load, sample one sprite."""
    (tmp_path / "sitecustomize.py").write_text(_NO_TORCH)
    script = textwrap.dedent(f"""
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the torch blocker is not active")
        from spritegen.runtime import Sampler
        sprite = Sampler.load({str(export_dir)!r}, provider="cpu").ddim("hero", seed=0)
        assert sprite.shape == (1, 3, 16, 16), sprite.shape
        assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
        print("sampled", float(sprite.mean()))
    """)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sampled")


def test_picture_bounds_and_targets(tmp_path: Path) -> None:
    """runtime.images refuses sizes beyond its bounds before allocating a canvas, and writes
    regular files only (a symlink at the target is refused, not replaced)."""
    from spritegen.errors import OutputError
    from spritegen.runtime import images

    sprite = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(InputError, match="scale must be an integer in 1..64"):
        images.grid([[sprite]], scale=0)
    with pytest.raises(InputError, match="pixels, more than the"):
        images.grid([[sprite] * 100] * 100, scale=64)
    images.check_grid(5, 6, 8, (16, 16), frames=501)  # the CLI's default grid, DDIM-500's trajectory: allowed
    with pytest.raises(InputError, match="animation of 1001 frames would have"):
        images.check_grid(5, 6, 8, (16, 16), frames=1001)
    frame = images.grid([[sprite]], scale=1)
    with pytest.raises(InputError, match="frame_ms must be an integer in 10..655350"):
        images.save_gif([frame], tmp_path / "a.gif", frame_ms=0)
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(OutputError, match="it is a symlink"):
        images.save_png(frame, tmp_path / "link.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png"]
