"""`spritegen sample | compare | mix`: the files they write, and one-line failures that write nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spritegen.cli import app
from spritegen.wandb_env import resolve_mode
from spritegen.runtime.images import to_pixels
from tests.runtime_support import copy_export

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def _fails(result, expected: str, out_dir: Path) -> None:
    """Exit 1, exactly `error: ...` on one stderr line, and no file left in `out_dir`."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == []


def test_sample_writes_grid_gif_and_arrays(export_dir: Path, tmp_path: Path) -> None:
    out, gif, npy = tmp_path / "grid.png", tmp_path / "t.gif", tmp_path / "s.npy"
    result = _run("sample", "-e", export_dir, "--sampler", "ddim", "--classes", "hero,food", "--num", "3", "--n", "5",
                  "--seed", "4", "--scale", "4", "--out", out, "--gif", gif, "--npy", npy)
    assert result.exit_code == 0, result.output
    sprites = np.load(npy)
    assert sprites.shape == (6, 3, 16, 16) and sprites.dtype == np.float32
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.height == 2 * (16 * 4 + 4) + 4  # 2 class rows of 64-pixel sprites, 4-pixel gaps
        assert png.width > 3 * 16 * 4
        # The last sprite of the last row, nearest-neighbour scaled: every 4x4 block is one pixel.
        cell = np.asarray(png.convert("RGB"))[-4 - 64:-4, -4 - 64:-4]
    assert np.array_equal(cell, np.kron(to_pixels(sprites[-1]), np.ones((4, 4, 1), np.uint8)))
    with Image.open(gif) as animation:
        assert animation.n_frames == 1 + 5  # x_T, then the state after every DDIM step
    assert "seed 4" in result.stdout
    umask = os.umask(0)
    os.umask(umask)
    for path in (out, gif, npy):  # as a plain open() would make them, not mkstemp's owner-only 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.fast
def test_sample_is_reproducible_by_seed(export_dir: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert _run("sample", "-e", export_dir, "-c", "spell", "--num", "2", "--sampler", "dpmpp", "--n", "6", "--eta",
                    "1", "--seed", "9",
                    "-o", tmp_path / f"{name}.png", "--npy", tmp_path / f"{name}.npy").exit_code == 0
    assert np.load(tmp_path / "a.npy").tobytes() == np.load(tmp_path / "b.npy").tobytes()


def test_default_sampler_is_the_fitted_one_when_the_export_has_it(bundled_export: Path, tmp_path: Path) -> None:
    """No --sampler: the export's fitted few-step sampler (the bundled export ships one), else DDIM."""
    export_dir = bundled_export
    from spritegen.contract import FAST_KEY, MANIFEST_FILE
    from spritegen.runtime import Sampler
    from tests.runtime_support import link_export

    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    plain = manifest.copy()
    plain.pop(FAST_KEY)
    for name, directory, method in (("fast", export_dir, "fast"),
                                    ("plain", link_export(export_dir, tmp_path / "plain", plain), "ddim")):
        npy = tmp_path / f"{name}.npy"
        result = _run("sample", "-e", directory, "-c", "hero,food", "--num", "1", "--seed", "8", "-o", npy)
        assert result.exit_code == 0, result.output
        assert f"2 sprites, {method}, seed 8" in result.stdout
        sampler = Sampler.load(directory)
        assert np.array_equal(np.load(npy), getattr(sampler, method)(["hero", "food"], seed=8))


def test_sample_precision_and_spin_options_reach_the_sampler(export_dir: Path, tmp_path: Path) -> None:
    """--precision int8 samples with unet_int8.onnx (different numbers from fp32, same noise);
    --no-spin changes scheduling only, so its sprites equal the default's byte for byte."""
    arrays = {}
    for name, extra in {"fp32": [], "no-spin": ["--no-spin"], "int8": ["--precision", "int8"]}.items():
        result = _run("sample", "-e", export_dir, "-c", "food", "--num", "2", "--seed", "3", "--scale", "1",
                      "-o", tmp_path / f"{name}.png", "--npy", tmp_path / f"{name}.npy", *extra)
        assert result.exit_code == 0, result.output
        arrays[name] = np.load(tmp_path / f"{name}.npy")
    assert arrays["no-spin"].tobytes() == arrays["fp32"].tobytes()
    assert np.abs(arrays["int8"] - arrays["fp32"]).max() > 1e-3


@pytest.mark.parametrize("args, expected", [
    (["--classes", "hero,wizard"], "unknown class 'wizard'; valid classes: hero, non-hero"),
    (["--precision", "int8", "--impl", "step"], "impl='unet' only"),
    (["--sampler", "ddim", "--n", "0"], "DDIM steps n must be an integer in 1..500"),
    (["--sampler", "ddim", "--n", "501"], "DDIM steps n must be an integer in 1..500"),
    (["--sampler", "dpmpp", "--n", "501"], "DPM-Solver++ steps n must be an integer in 1..500"),
    (["--sampler", "ddim", "--impl", "loop", "--n", "10"], "n=25 only"),
    (["--sampler", "dpmpp", "--impl", "loop"], "impl='loop' exists for deterministic DDIM only"),
    (["--out", "missing/dir/grid.png"], "does not exist"),
])
def test_sample_bad_input(export_dir: Path, tmp_path: Path, args: list[str], expected: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _fails(_run("sample", "-e", export_dir, "--num", "1", *args), expected, tmp_path)


@pytest.mark.parametrize("args", [
    ["sample", "--bogus"],
    ["sample", "--guidance", "3.5e38"],
    ["sample", "--threads", "100000"],
    ["sample", "--scale", "0"],
    ["sample", "--sampler", "ddpn"],
    ["compare", "--num", "0"],
    ["mix", "--steps", "-1"],
])
@pytest.mark.fast
def test_usage_errors_exit_2_with_the_usage_message(args: list[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert "Usage: " in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, args, expected", [
    ("sample", ["--sampler", "fast", "--n", "7"], "the fast sampler of this export is fitted for n in 4, 5, 6, 8, 10"),
    ("sample", ["--sampler", "fast", "--eta", "1"], "--sampler fast takes no --eta"),
    ("sample", ["--sampler", "ddpm", "--n", "5"], "--sampler ddpm takes no --n"),
    ("mix", ["--sampler", "ddpm", "--n", "5"], "--sampler ddpm takes no --n"),
    ("mix", ["--sampler", "fast", "--n", "3"], "fitted for n in 4, 5, 6, 8, 10 network calls, got 3"),
])
def test_sampler_options_it_does_not_take_exit_2_naming_what_is_allowed(bundled_export: Path, tmp_path: Path,
                                                                        command: str, args: list[str], expected: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run(command, "-e", bundled_export, "--num", "1", *args)  # the demo's export ships its fitted sampler
    assert result.exit_code == 2, result.output
    assert "Usage: " in result.output and expected in " ".join(result.output.replace("│", " ").split())  # rich's box
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, expected", [
    (["--sampler", "ddpm", "--eta", "0.5"], "--sampler ddpm takes no --eta"),
    (["--sampler", "ddpm", "--n", "5", "--eta", "0.5"], "--sampler ddpm takes no --n or --eta"),
])
def test_sampler_options_are_refused_before_the_export_is_opened(tmp_path: Path, args: list[str], expected: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run("sample", "-e", tmp_path / "no-export", "--num", "1", *args)
    assert result.exit_code == 2 and expected in " ".join(result.output.replace("│", " ").split()), result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fast
def test_version_and_flag_help() -> None:
    from spritegen import __version__

    result = _run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"spritegen {__version__}"
    for command in ("sample", "compare"):
        text = _run(command, "--help").stdout
        flags = [line for line in text.splitlines() if "--no-spin" in line or "--no-wandb" in line]
        assert flags and not any("<bool>" in line for line in flags), flags  # shown as flags, not values


@pytest.mark.parametrize("args, expected", [
    (["--out", "s.jpg"], "--out s.jpg: unsupported extension '.jpg'; --out writes .png, .gif, .npy"),
    (["--out", "s"], "unsupported extension '(none)'"),
    (["--out", "a.npy", "--npy", "a.npy"], "--npy and --out both name a.npy"),
    (["--out", "a.npy", "--npy", "./sub/../a.npy"], "--npy and --out both name"),
    (["--gif", "t.png"], "--gif writes .gif"),
    (["--out", "/proc/x.png"], "--out: cannot create files in /proc"),
    (["--out", "missing/dir/grid.png"], "does not exist"),
    (["--out", "x" * 300 + ".png"], "cannot write"),
    (["--out", "link.png"], "refusing to write link.png: it is a symlink"),
])
@pytest.mark.fast
def test_outputs_and_options_are_refused_before_the_export_is_opened(tmp_path: Path, args: list[str],
                                                                      expected: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked before anything else: even a missing export directory is not reached."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.png").symlink_to("/proc/self/fd/1")
    result = _run("sample", "-e", tmp_path / "no-export", "--num", "1", *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png"] and (tmp_path / "link.png").is_symlink()


@pytest.mark.parametrize("command, args, expected", [
    ("sample", ["--num", "1000000"], "--num 1000000 x 5 classes = 5000000 sprites, more than --max-batch 1024"),
    ("sample", ["--num", "3", "--max-batch", "2", "-c", "hero"], "more than --max-batch 2"),
    ("sample", ["--num", "200", "--scale", "64"], "pixels, more than the"),
    ("compare", ["--n", "0", "--no-wandb"], "DDIM steps n must be an integer in 1..500"),
    ("compare", ["--impl", "loop", "--n", "7", "--no-wandb"], "n=25 only"),
    ("mix", ["--steps", "100000"], "more than --max-batch"),
    ("mix", ["--sampler", "ddpm", "--steps", "1", "--num", "1000", "--scale", "64"], "pixels, more than the"),
])
def test_requests_are_refused_before_sampling(export_dir: Path, tmp_path: Path, command: str, args: list[str],
                                              expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before the first sampler call (the DDPM half of compare takes T steps)."""
    from spritegen.runtime import Sampler

    calls = []
    for name in ("ddpm", "ddim", "dpmpp", "fast"):
        real = getattr(Sampler, name)
        monkeypatch.setattr(Sampler, name, lambda self, *a, _real=real, _name=name, **k: calls.append(_name)
                            or _real(self, *a, **k))
    monkeypatch.chdir(tmp_path)
    _fails(_run(command, "-e", export_dir, *args), expected, tmp_path)
    assert calls == []


def test_sample_out_extension_decides_the_format(export_dir: Path, tmp_path: Path) -> None:
    gif, npy = tmp_path / "grid.gif", tmp_path / "grid.npy"
    for out in (gif, npy):
        result = _run("sample", "-e", export_dir, "-c", "hero", "--num", "2", "--sampler", "ddim", "--n", "2", "--seed",
                      "1", "-o", out)
        assert result.exit_code == 0, result.output
    with Image.open(gif) as picture:
        assert picture.format == "GIF"
    assert np.load(npy).shape == (2, 3, 16, 16)


def test_sample_bad_export_dirs(export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _fails(_run("sample", "-e", tmp_path / "nowhere"), "does not exist", work)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    _fails(_run("sample", "-e", foreign), "not a spritegen export", work)
    tampered = copy_export(export_dir, tmp_path / "tampered")
    with open(tampered / "unet.onnx", "ab") as f:
        f.write(b"\0")
    _fails(_run("sample", "-e", tampered), "unet.onnx does not match its manifest", work)


def test_compare_writes_png_and_offline_wandb_table(export_dir: Path, tmp_path: Path) -> None:
    from spritegen.contract import FAST_KEY, MANIFEST_FILE
    from tests.runtime_support import link_export

    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())  # a fitted sampler for the tiny export
    manifest[FAST_KEY] = {"solver": "dpmpp", "eta": 1.0, "default_n": 3, "indices": {"3": [500, 300, 100, 0]}}
    export_dir = link_export(export_dir, tmp_path / "export", manifest)
    out = tmp_path / "battle.png"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    result = _run("compare", "-e", export_dir, "--classes", "hero,food", "--num", "1", "--n", "5", "--seed", "1",
                  "--scale", "2", "--out", out, env=env)
    assert result.exit_code == 0, result.output
    with Image.open(out) as png:
        assert png.format == "PNG" and png.height > 2 * 16 * 2
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/samplers_table_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    samplers = ["ddpm", "ddim", "dpmpp", "fast"]  # fast: the export has a fitted sampler
    assert table["columns"] == ["input_noise", *samplers, "class", *(f"{name}_seconds" for name in samplers)]
    assert len(table["data"]) == 2
    assert [row[5] for row in table["data"]] == ["hero", "food"]
    assert all(all(seconds > 0 for seconds in row[6:]) for row in table["data"])
    run_log = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))  # the run's binary record log
    for _ in range(300):  # wandb's service may still be writing it after the run closed: wait until it has
        if b"samplers_battle" in run_log.read_bytes():  # the job type (bounded: 30 s)
            break
        time.sleep(0.1)
    assert b"dlai_sprite_diffusion" in run_log.read_bytes() and b"samplers_battle" in run_log.read_bytes()


def test_compare_no_wandb_writes_only_the_png(export_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run("compare", "-e", export_dir, "-c", "spell", "--num", "1", "--n", "3", "--no-wandb", "-o", "b.png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]


def test_wandb_mode_is_offline_unless_logged_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    (tmp_path / "netrc").chmod(0o600)
    assert resolve_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode() == "disabled"  # the user's WANDB_MODE decides


def test_mix_rows_are_blends_and_columns_share_noise(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.png"
    result = _run("mix", "-e", export_dir, "--from", "hero", "--to", "food", "--steps", "3", "--blend",
                  "hero=1,food=0.6", "--blend", "spell=1", "--num", "2", "--sampler", "ddim", "--n", "4", "--seed", "3",
                  "--scale", "2", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as png:
        rows = np.asarray(png.convert("RGB"))
    assert rows.shape[0] == 5 * (32 + 4) + 4  # 3 ramp rows + 2 blends
    top = rows[4:36, -36:-4]  # hero, last column
    assert not np.array_equal(top, rows[4 + 36:36 + 36, -36:-4])  # hero 0.5 + food 0.5 differs


def test_mix_bad_blend(export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _fails(_run("mix", "-e", export_dir, "--blend", "hero=-1"), "must be a finite number in 0..100", tmp_path)
    _fails(_run("mix", "-e", export_dir, "--blend", "hero=1e20"), "must be a finite number in 0..100", tmp_path)
    _fails(_run("mix", "-e", export_dir, "--blend", "hero=1,Hero=2"), "names 'Hero' twice", tmp_path)
    _fails(_run("mix", "-e", export_dir, "--from", "hero", "--to", "HERO"), "two different classes", tmp_path)
    _fails(_run("mix", "-e", export_dir, "--blend", "hero=1,orc=2"), "unknown class 'orc'", tmp_path)
    _fails(_run("mix", "-e", export_dir, "--steps", "0"), "nothing to mix", tmp_path)


# ------------------------------------------- no --export-dir: the bundled model's cache
@pytest.fixture()
def bundled_key() -> str:
    """The cache key of the bundled checkpoint: the sha256 (16 hex) of it and its shipped fit, and the version."""
    from spritegen import __version__
    from spritegen.cache import bundled_checkpoint, cache_key
    from spritegen.errors import ExportDirError

    try:
        path = bundled_checkpoint()
    except ExportDirError:
        pytest.skip("the bundled demo checkpoint (export/demo/context_model.pth) is not built yet")
    key = cache_key(path)
    fit = path.parent / "fast.json"  # the shipped few-step fit, which the cached export's manifest carries
    assert key == f"{hashlib.sha256(path.read_bytes() + fit.read_bytes()).hexdigest()[:16]}-v{__version__}"
    return key


def test_sample_without_export_dir_uses_the_cached_export(export_dir: Path, tmp_path: Path, bundled_key: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    copy_export(export_dir, cache / "exports" / bundled_key)
    monkeypatch.delenv("SPRITEGEN_EXPORT_DIR", raising=False)
    result = _run("sample", "-c", "hero", "--num", "1", "--sampler", "ddim", "--n", "3", "-o", tmp_path / "s.png",
                  env={"SPRITEGEN_CACHE_DIR": str(cache)})
    assert result.exit_code == 0, result.output
    assert "creating" not in result.stderr  # found in the cache: no export run
    assert (tmp_path / "s.png").is_file()


def test_cache_dir_that_is_a_file_is_one_line(tmp_path: Path, bundled_key: str) -> None:
    (tmp_path / "cache").write_text("not a directory")
    result = _run("sample", "-o", tmp_path / "s.png", env={"SPRITEGEN_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "is not a directory; point SPRITEGEN_CACHE_DIR at a directory" in result.stderr


def test_damaged_cached_export_is_rebuilt(export_dir: Path, tmp_path: Path, bundled_key: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged cache is detected by the export's own checks and rebuilt once; the exporter
    (torch, ~20 s) is replaced by a copy of the session's export of the same checkpoint."""
    import spritegen.export.exporter as exporter

    cache = tmp_path / "cache"
    target = copy_export(export_dir, cache / "exports" / bundled_key)
    (target / "ddpm_step.onnx").write_bytes(b"damaged")
    rebuilt = []

    def fake_export(source, out, **kwargs):
        rebuilt.append(Path(out))
        shutil.rmtree(out)
        copy_export(export_dir, Path(out))

    monkeypatch.setattr(exporter, "export", fake_export)
    monkeypatch.delenv("SPRITEGEN_EXPORT_DIR", raising=False)
    result = _run("sample", "-c", "hero", "--num", "1", "--sampler", "ddim", "--n", "2", "-o", tmp_path / "s.png",
                  env={"SPRITEGEN_CACHE_DIR": str(cache)})
    assert result.exit_code == 0, result.output
    assert rebuilt == [target] and "is damaged" in result.stderr
    assert (target / "ddpm_step.onnx").read_bytes() == (export_dir / "ddpm_step.onnx").read_bytes()


def _sample_without_torch(tmp_path: Path) -> subprocess.CompletedProcess:
    """`spritegen sample` in a fresh process where importing torch fails, caching in tmp_path/cache."""
    from tests.test_runtime_inputs import _NO_TORCH

    (tmp_path / "sitecustomize.py").write_text(_NO_TORCH)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "SPRITEGEN_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "spritegen.cli", "sample", "-o", str(tmp_path / "s.png")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


def test_damaged_cached_export_without_torch_says_what_to_delete(export_dir: Path, tmp_path: Path,
                                                                 bundled_key: str) -> None:
    target = copy_export(export_dir, tmp_path / "cache" / "exports" / bundled_key)
    (target / "unet.onnx").write_bytes(b"damaged")
    done = _sample_without_torch(tmp_path)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the cached export") and f"{target} is damaged" in last
    assert "delete that directory" in last and "Traceback" not in done.stderr


def test_missing_cached_export_without_torch_is_one_clear_line(tmp_path: Path, bundled_key: str) -> None:
    """Creating the cache needs torch; without it: one line that says what to install, exit 1."""
    done = _sample_without_torch(tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: ") and "pip install 'spritegen[export]'" in done.stderr
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "cache" / "exports" / bundled_key).exists()
