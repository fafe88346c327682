"""The C++ example (examples/cpp) against the Python runtime, fed identical noise.

The session fixture builds spritegen_cpp with .ci/setup_cpp.sh (incremental: a no-op
when CI has already run it). If the build cannot happen, for instance because Debian's
ONNX Runtime headers cannot be fetched, every test here FAILS with the setup script's
message: a C++ example that silently stops being checked is worse than a red CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spritegen.contract import CLASS_NAMES, ScheduleConfig
from spritegen.runtime import Sampler
from tests.runtime_support import copy_export

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / ".ci" / "setup_cpp.sh"
BUILD = Path(os.environ.get("SPRITEGEN_CPP_BUILD", REPO / "build" / "cpp"))
T = ScheduleConfig().timesteps

# C++ and Python run the same ONNX graphs on the same ORT build with the same inputs;
# only kernel scheduling/threading may reorder float sums, so 1e-4 on [-1, 1] is ample.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="session")
def cpp_binary() -> Path:
    """spritegen_cpp, built (or brought up to date) by the setup script CI runs."""
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "SPRITEGEN_CPP_BUILD": str(BUILD), "PYTHON": sys.executable})
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"cannot build the C++ example with {SETUP.name}: {reason}\n{proc.stderr[-2000:]}",
                    pytrace=False)
    binary = BUILD / "spritegen_cpp"
    assert binary.is_file(), f"{SETUP.name} succeeded but {binary} is missing"
    return binary


@pytest.fixture(scope="session")
def runtime(export_dir: Path) -> Sampler:
    return Sampler.load(export_dir, provider="cpu", threads=1)  # the machine is shared


@pytest.fixture(scope="session")
def noise_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """x_T [2,3,16,16] and step noise [T,2,3,16,16], float32, as the Python side writes them."""
    rng = np.random.default_rng(8)
    folder = tmp_path_factory.mktemp("noise")
    arrays = {"x": rng.standard_normal((2, 3, 16, 16), dtype=np.float32),
              "z": rng.standard_normal((T, 2, 3, 16, 16), dtype=np.float32)}
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return {name: folder / f"{name}.npy" for name in arrays}


def context(*rows: dict[str, float]) -> np.ndarray:
    """[B, K] context rows from class weights, in the contract's class order."""
    out = np.zeros((len(rows), len(CLASS_NAMES)), np.float32)
    for b, row in enumerate(rows):
        for name, weight in row.items():
            out[b, CLASS_NAMES.index(name)] = weight
    return out


def run_cpp(binary: Path, export: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "--export-dir", str(export), "--threads", "1", *args],
                          capture_output=True, text=True, timeout=300)


def sample_cpp(binary: Path, export: Path, out: Path, *args: str) -> np.ndarray:
    proc = run_cpp(binary, export, "--out-npy", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    return np.load(out)


# Each case: C++ arguments, the equivalent Python runtime call (noise injected by the test).
CLASS_ARGS = ("--class", "hero,food", "--blend", "spell=0.6")
CTX = context({"hero": 1, "spell": 0.6}, {"food": 1, "spell": 0.6})
CASES = {
    "ddim25-loop": (("--graph", "loop"), lambda s, x, z: s.ddim(CTX, n=25, noise=x)),
    "ddim25-step": (("--graph", "step"), lambda s, x, z: s.ddim(CTX, n=25, noise=x)),
    "ddim7-guided": (("--n", "7", "--guidance", "2"), lambda s, x, z: s.ddim(CTX, n=7, noise=x, guidance=2.0)),
    "ddim10-eta": (("--n", "10", "--eta", "0.7", "--step-noise", "{z}"),
                   lambda s, x, z: s.ddim(CTX, n=10, eta=0.7, noise=x, step_noise=z)),
    "ddpm500": (("--sampler", "ddpm", "--step-noise", "{z}"),
                lambda s, x, z: s.ddpm(CTX, noise=x, step_noise=z)),
}


@pytest.mark.parametrize("case", CASES)
def test_cpp_matches_python_runtime(case: str, cpp_binary: Path, export_dir: Path, runtime: Sampler,
                                    noise_files: dict[str, Path], tmp_path: Path) -> None:
    args, python_call = CASES[case]
    args = tuple(a.format(z=noise_files["z"]) for a in args)
    got = sample_cpp(cpp_binary, export_dir, tmp_path / "out.npy", *CLASS_ARGS, "--noise",
                     str(noise_files["x"]), *args)
    want = python_call(runtime, np.load(noise_files["x"]), np.load(noise_files["z"]))
    assert got.shape == want.shape == (2, 3, 16, 16) and got.dtype == np.float32
    # Pixels at the clip bounds hide differences; enough must stay inside for the comparison
    # to see the arithmetic (a wrong step index or noise slice moves all of them).
    assert (np.abs(want) < 0.99).mean() > 0.05, "too few unclipped values for the comparison to mean anything"
    err = float(np.abs(got - want).max())
    print(f"{case}: max |C++ - Python| = {err:.3g}, {(np.abs(want) < 0.99).mean():.0%} unclipped")
    assert err <= PARITY_ATOL, f"{case}: max |C++ - Python| = {err:.3g} > {PARITY_ATOL}"


def test_seeded_run_is_deterministic_and_writes_images(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    args = ("--class", "hero,non-hero,food", "--n", "5", "--scale", "3")
    first = sample_cpp(cpp_binary, export_dir, tmp_path / "a.npy", *args, "--seed", "5",
                       "--out", str(tmp_path / "a.png"))
    second = sample_cpp(cpp_binary, export_dir, tmp_path / "b.npy", *args, "--seed", "5",
                        "--out", str(tmp_path / "b.ppm"))
    assert np.array_equal(first, second) and first.shape == (3, 3, 16, 16)
    other = sample_cpp(cpp_binary, export_dir, tmp_path / "c.npy", *args, "--seed", "6")
    assert not np.array_equal(first, other), "--seed 6 gave the same sprites as --seed 5"
    png, ppm = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.ppm")
    assert png.size == ppm.size == (3 * 16 * 3, 16 * 3)
    expected = np.rint((first.clip(-1, 1) + 1) * 127.5).astype(np.uint8)  # [B, 3, H, W]
    grid = np.asarray(png)[::3, ::3].reshape(16, 3, 16, 3).transpose(1, 3, 0, 2)  # [B, 3, H, W]
    assert np.abs(grid.astype(int) - expected).max() <= 1
    assert np.array_equal(np.asarray(png), np.asarray(ppm))


def test_repeat_prints_latency(cpp_binary: Path, export_dir: Path) -> None:
    proc = run_cpp(cpp_binary, export_dir, "--class", "hero", "--n", "5", "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["graph"] == "ddim_step" and record["n"] == 5 and record["batch"] == 1 and record["repeat"] == 3
    assert 0 < record["min_ms"] <= record["median_ms"] <= record["p90_ms"]


def _bad_inputs(tmp: Path, noise: dict[str, Path]) -> dict[str, list[str]]:
    np.save(tmp / "f64.npy", np.zeros((1, 3, 16, 16)))
    np.save(tmp / "wrong.npy", np.zeros((1, 3, 8, 8), np.float32))
    out = ["--out", str(tmp / "never.ppm")]
    return {
        "unknown class": ["--class", "dragon", *out],
        "negative blend": ["--class", "hero", "--blend", "food=-1", *out],
        "bad sampler": ["--sampler", "euler", *out],
        "n zero": ["--n", "0", *out],
        "n above T": ["--n", str(T + 1), *out],
        "n not a number": ["--n", "many", *out],
        "noise float64": ["--noise", str(tmp / "f64.npy"), *out],
        "noise wrong shape": ["--noise", str(tmp / "wrong.npy"), *out],
        "noise missing": ["--noise", str(tmp / "missing.npy"), *out],
        "step noise wrong shape": ["--sampler", "ddpm", "--noise", str(noise["x"]), "--step-noise",
                                   str(noise["x"]), *out],
        "seed and noise": ["--seed", "1", "--noise", str(noise["x"]), *out],
        "class count vs batch": ["--class", "hero,food,spell", "--noise", str(noise["x"]), *out],
        "bad extension": ["--out", str(tmp / "never.jpg")],
        "no output": ["--class", "hero"],
        "unknown option": ["--colour", "red", *out],
        "loop with n=7": ["--graph", "loop", "--n", "7", *out],
    }


def test_bad_input_is_one_line_and_nonzero(cpp_binary: Path, export_dir: Path, noise_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    for name, args in _bad_inputs(tmp_path, noise_files).items():
        proc = run_cpp(cpp_binary, export_dir, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, f"{name}: exit 0"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: stderr {proc.stderr!r}"
    assert not list(tmp_path.glob("never*")), "a failed run left an output file"


def test_missing_foreign_or_tampered_export_dir(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((export_dir / "manifest.json").read_text())  # graphs absent
    tampered = copy_export(export_dir, tmp_path / "tampered")
    graph = bytearray((tampered / "ddim_loop.onnx").read_bytes())
    graph[-10] ^= 1
    (tampered / "ddim_loop.onnx").write_bytes(bytes(graph))
    for folder, expected in ((tmp_path / "nope", "does not exist"), (tmp_path / "empty", "manifest.json"),
                             (broken, "missing"), (tampered, "sha256")):
        proc = subprocess.run([str(cpp_binary), "--export-dir", str(folder), "--out", str(tmp_path / "x.ppm")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and proc.stderr.startswith("error: ") and expected in proc.stderr, proc.stderr
