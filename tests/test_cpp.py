"""The C++ example (examples/cpp) against the Python runtime: fed identical noise, and from
the same seeds (the portable generator, docs/noise.md), bit for bit where the arrays are the
same computation. Also the engine API: loading from memory, warm-up, RGBA8 output, the
-fno-exceptions build, and a build folder that runs without the Python environment.

The session fixture builds spritegen_cpp (and build/cpp/noexcept/spritegen_cpp) with
.ci/setup_cpp.sh (incremental: a no-op when CI has already run it). If the build cannot
happen, for instance because Debian's ONNX Runtime headers cannot be fetched, every test
here FAILS with the setup script's message: a C++ example that silently stops being
checked is worse than a red CI.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spritegen.contract import CLASS_NAMES, MANIFEST_NOISE_KEY, ScheduleConfig
from spritegen.runtime import Sampler
from spritegen.runtime.noise import draw
from tests.cpp_support import BUILD, SETUP, cpp_binary, run_cpp, sample_cpp  # noqa: F401 (cpp_binary: a fixture)
from tests.runtime_support import copy_export
from tests.tolerances import CROSS_RUNTIME_ATOL

T = ScheduleConfig().timesteps


@pytest.fixture(scope="session")
def export_dir(bundled_export: Path) -> Path:
    """The demo's export, not conftest's tiny one: a random tiny model's DDPM sprites end almost
    all at the clip bounds, which would hide C++ - Python differences."""
    return bundled_export


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


# Each case: C++ arguments, the equivalent Python runtime call: noise injected by the test
# ({x}, {z}: the noise files) or drawn from the same seeds on both sides.
CLASS_ARGS = ("--class", "hero,food", "--blend", "spell=0.6")
CTX = context({"hero": 1, "spell": 0.6}, {"food": 1, "spell": 0.6})
BIG_SEED = 2**64 - 1
CASES = {
    "ddim25-loop": (("--graph", "loop", "--noise", "{x}"), lambda s, x, z: s.ddim(CTX, n=25, noise=x)),
    "ddim25-step-row-seeds": (("--graph", "step", "--seed", f"3,{BIG_SEED}"),
                              lambda s, x, z: s.ddim(CTX, n=25, seed=[3, BIG_SEED])),
    # C++ auto runs ddim_loop.onnx: compared with Python on the same graph (the loop and step
    # graphs differ by fused-chain rounding, up to 7e-5 for this seed: test_runtime bounds that)
    "ddim25-seed-loop": (("--seed", "12345"), lambda s, x, z: s.ddim(CTX, n=25, seed=12345, impl="loop")),
    "ddim7-guided-seed": (("--n", "7", "--guidance", "2", "--seed", str(2**32)),
                          lambda s, x, z: s.ddim(CTX, n=7, seed=2**32, guidance=2.0)),
    "ddim10-eta": (("--n", "10", "--eta", "0.7", "--noise", "{x}", "--step-noise", "{z}"),
                   lambda s, x, z: s.ddim(CTX, n=10, eta=0.7, noise=x, step_noise=z)),
    "ddpm500-seed": (("--sampler", "ddpm", "--seed", "7"), lambda s, x, z: s.ddpm(CTX, seed=7)),
    # DPM-Solver++ (solver_step.onnx): its default n, the SDE form (eta 1) with a seed per row,
    # guided with injected noise at a mixed eta, and the export's fitted fast sampler
    "dpmpp10-seed": (("--sampler", "dpmpp", "--seed", "11"), lambda s, x, z: s.dpmpp(CTX, seed=11)),
    "dpmpp8-eta1-row-seeds": (("--sampler", "dpmpp", "--n", "8", "--eta", "1", "--seed", f"3,{BIG_SEED}"),
                              lambda s, x, z: s.dpmpp(CTX, n=8, eta=1.0, seed=[3, BIG_SEED])),
    "dpmpp6-guided-eta-noise": (("--sampler", "dpmpp", "--n", "6", "--eta", "0.5", "--guidance", "2", "--noise", "{x}",
                                 "--step-noise", "{z}"),
                                lambda s, x, z: s.dpmpp(CTX, n=6, eta=0.5, guidance=2.0, noise=x, step_noise=z)),
    "fast-seed": (("--sampler", "fast", "--seed", "21"), lambda s, x, z: s.fast(CTX, seed=21)),
    "fast4-guided-noise": (("--sampler", "fast", "--n", "4", "--guidance", "1.5", "--noise", "{x}", "--step-noise",
                            "{z}"), lambda s, x, z: s.fast(CTX, n=4, guidance=1.5, noise=x, step_noise=z)),
}


@pytest.mark.parametrize("case", CASES)
def test_cpp_matches_python_runtime(case: str, cpp_binary: Path, export_dir: Path, runtime: Sampler,
                                    noise_files: dict[str, Path], tmp_path: Path) -> None:
    args, python_call = CASES[case]
    args = tuple(a.format(x=noise_files["x"], z=noise_files["z"]) for a in args)
    got = sample_cpp(cpp_binary, export_dir, tmp_path / "out.npy", *CLASS_ARGS, *args)
    want = python_call(runtime, np.load(noise_files["x"]), np.load(noise_files["z"]))
    assert got.shape == want.shape == (2, 3, 16, 16) and got.dtype == np.float32
    # Pixels at the clip bounds hide differences; enough must stay inside for the comparison
    # to see the arithmetic (a wrong step index or noise slice moves all of them).
    assert (np.abs(want) < 0.99).mean() > 0.05, "too few unclipped values for the comparison to mean anything"
    err = float(np.abs(got - want).max())
    print(f"{case}: max |C++ - Python| = {err:.3g}, {(np.abs(want) < 0.99).mean():.0%} unclipped")
    assert err <= CROSS_RUNTIME_ATOL, f"{case}: max |C++ - Python| = {err:.3g} > {CROSS_RUNTIME_ATOL}"


def test_seeded_run_is_deterministic_and_writes_images(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    args = ("--class", "hero,non-hero,food", "--n", "5", "--scale", "3")
    first = sample_cpp(cpp_binary, export_dir, tmp_path / "a.npy", *args, "--seed", "5",
                       "--out", str(tmp_path / "a.png"), "--out-rgba", str(tmp_path / "a.rgba"))
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
    rgba = np.fromfile(tmp_path / "a.rgba", np.uint8).reshape(3, 16, 16, 4)  # the texture layout [B, H, W, 4]
    assert (rgba[..., 3] == 255).all()
    assert np.abs(rgba[..., :3].astype(int) - expected.transpose(0, 2, 3, 1)).max() <= 1  # rounding of .5 only


@pytest.mark.fast
def test_noise_equals_numpy_bit_for_bit(cpp_binary: Path, tmp_path: Path) -> None:
    """spritegen_cpp noise == runtime.noise.draw for edge and random seeds and streams."""
    seeds = [0, 1, 2**32 - 1, 2**32, 2**64 - 1, *np.random.default_rng(3).integers(0, 2**63, 5).tolist()]
    streams = [0, 1, 2, 499, 500, 2**32 - 1]
    proc = subprocess.run([str(cpp_binary), "noise", "--seed", ",".join(map(str, seeds)), "--stream",
                           ",".join(map(str, streams)), "--count", "1001", "--out", str(tmp_path / "n.npy")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "n.npy")
    want = draw(seeds, streams, 1001)
    assert got.shape == want.shape == (len(streams), len(seeds), 1001)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes(), f"{int((got != want).sum())} values differ"


def test_latency_record_first_call_and_steady_state(cpp_binary: Path, export_dir: Path) -> None:
    """--repeat reports load, the first call and the steady state; --warm-up times warm_up()."""
    for extra in ((), ("--warm-up",)):
        proc = run_cpp(cpp_binary, export_dir, "--class", "hero", "--n", "5", "--repeat", "3", *extra)
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        assert record["graph"] == "ddim_step" and record["n"] == 5 and record["batch"] == 1 and record["repeat"] == 3
        assert 0 < record["min_ms"] <= record["median_ms"] <= record["p90_ms"]
        assert record["load_ms"] > 0 and record["first_ms"] > 0
        assert (record["warm_up_ms"] is None) == (not extra) and (not extra or record["warm_up_ms"] > 0)


def test_engine_paths_give_the_same_sprites(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """Loading from memory, warm-up first, and the -fno-exceptions build all give the default
    build's sprites byte for byte; the -fno-exceptions build reports errors as one line."""
    noexcept = cpp_binary.parent / "noexcept" / "spritegen_cpp"
    assert noexcept.is_file(), f"{SETUP.name} did not build {noexcept}"
    args = ("--class", "spell,food", "--n", "5", "--eta", "0.5", "--seed", "99")
    want = sample_cpp(cpp_binary, export_dir, tmp_path / "want.npy", *args)
    for binary, extra in ((cpp_binary, ("--from-memory",)), (cpp_binary, ("--warm-up",)),
                          (noexcept, ("--from-memory", "--warm-up"))):
        got = sample_cpp(binary, export_dir, tmp_path / "got.npy", *args, *extra)
        assert got.tobytes() == want.tobytes(), (binary, extra)
    proc = run_cpp(noexcept, export_dir, "--class", "dragon", "--out", str(tmp_path / "x.ppm"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown class 'dragon'"), proc.stderr


def test_build_folder_runs_without_the_python_environment(cpp_binary: Path, export_dir: Path,
                                                          tmp_path: Path) -> None:
    """The program finds libonnxruntime in its own lib/ (RPATH $ORIGIN/lib), not where the
    wheel installed it: a copy of the folder resolves the library beside itself and samples
    in a clean environment; where mount namespaces are allowed, with the wheel's directory
    hidden under an empty tmpfs."""
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy2(cpp_binary, moved / "spritegen_cpp")
    shutil.copytree(cpp_binary.parent / "lib", moved / "lib")
    runpath = subprocess.run(["readelf", "-d", str(moved / "spritegen_cpp")], capture_output=True, text=True).stdout
    assert "$ORIGIN/lib" in runpath and "site-packages" not in runpath, runpath
    ldd = subprocess.run(["ldd", str(moved / "spritegen_cpp")], capture_output=True, text=True).stdout
    assert f"libonnxruntime.so.1 => {moved / 'lib'}" in ldd, ldd
    command = [str(moved / "spritegen_cpp"), "--export-dir", str(export_dir), "--threads", "1", "--class", "hero",
               "--n", "3", "--out-npy", str(tmp_path / "moved.npy")]
    clean = {"PATH": "/usr/bin:/bin"}
    wheel_dir = Path(os.path.realpath(BUILD / "ort" / "lib" / "libonnxruntime.so")).parent
    hide = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{wheel_dir}" && exec "$@"', "sh"]
    hidden = subprocess.run(hide + command if shutil.which("unshare") else command, capture_output=True, text=True,
                            timeout=120, env=clean)
    if hidden.returncode != 0 and ("unshare" in hidden.stderr or "mount" in hidden.stderr):
        print(f"no mount namespace here ({hidden.stderr.strip()}); ran in a clean environment only")
        hidden = subprocess.run(command, capture_output=True, text=True, timeout=120, env=clean)
    assert hidden.returncode == 0, hidden.stderr
    assert np.array_equal(np.load(tmp_path / "moved.npy"),
                          sample_cpp(cpp_binary, export_dir, tmp_path / "here.npy", "--class", "hero", "--n", "3"))


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
        "eta above 1": ["--eta", "1.5", *out],
        "seed above 2^64": ["--seed", str(2**64), *out],
        "negative seed": ["--seed", "-1", *out],
        "seeds vs batch": ["--class", "hero,food", "--seed", "1,2,3", *out],
        "noise float64": ["--noise", str(tmp / "f64.npy"), *out],
        "noise wrong shape": ["--noise", str(tmp / "wrong.npy"), *out],
        "noise missing": ["--noise", str(tmp / "missing.npy"), *out],
        "ddpm noise without step noise": ["--sampler", "ddpm", "--noise", str(noise["x"]), *out],
        "step noise wrong shape": ["--sampler", "ddpm", "--noise", str(noise["x"]), "--step-noise",
                                   str(noise["x"]), *out],
        "seed and noise": ["--seed", "1", "--noise", str(noise["x"]), *out],
        "class count vs batch": ["--class", "hero,food,spell", "--noise", str(noise["x"]), *out],
        "bad extension": ["--out", str(tmp / "never.jpg")],
        "no output": ["--class", "hero"],
        "unknown option": ["--colour", "red", *out],
        "loop with n=7": ["--graph", "loop", "--n", "7", *out],
        "loop with dpmpp": ["--sampler", "dpmpp", "--graph", "loop", *out],
        "dpmpp n above T": ["--sampler", "dpmpp", "--n", str(T + 1), *out],
        "dpmpp eta above 1": ["--sampler", "dpmpp", "--eta", "1.5", *out],
        "dpmpp eta noise without step noise": ["--sampler", "dpmpp", "--eta", "1", "--noise", str(noise["x"]), *out],
        "fast with eta": ["--sampler", "fast", "--eta", "0", *out],
        "fast n without a table": ["--sampler", "fast", "--n", "7", *out],
        "num zero": ["--num", "0", *out],  # 0 read as "not given" before
        "threads zero": ["--threads", "0", *out],
        "threads beyond 4 per core": ["--threads", str(4 * (os.cpu_count() or 1) + 1), *out],
        "class blended twice": ["--class", "hero", "--blend", "food=1,food=2", *out],
        "noise from a FIFO": ["--noise", str(_fifo(tmp / "fifo.npy")), *out],  # blocked forever before
        "noise from a device": ["--noise", "/dev/zero", *out],  # read without end before
    }


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_outputs_replace_regular_files_only(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """A symlink or FIFO at an output path is refused and left alone, not renamed over
    (as root, `--out-rgba /dev/null` used to turn /dev/null into a regular file)."""
    target = tmp_path / "target.png"
    target.write_bytes(b"keep")
    (tmp_path / "link.png").symlink_to(target)
    os.mkfifo(tmp_path / "fifo.rgba")
    for flag, path in (("--out", tmp_path / "link.png"), ("--out-rgba", tmp_path / "fifo.rgba")):
        proc = run_cpp(cpp_binary, export_dir, "--class", "hero", "--n", "2", flag, str(path))
        assert proc.returncode != 0 and proc.stderr.startswith("error: ") and "not a regular file" in proc.stderr
    assert (tmp_path / "link.png").is_symlink() and target.read_bytes() == b"keep"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.rgba").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.rgba", "link.png", "target.png"]  # no temp left


def test_bad_input_is_one_line_and_nonzero(cpp_binary: Path, export_dir: Path, noise_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    for name, args in _bad_inputs(tmp_path, noise_files).items():
        proc = run_cpp(cpp_binary, export_dir, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, f"{name}: exit 0"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: stderr {proc.stderr!r}"
    assert not list(tmp_path.glob("never*")), "a failed run left an output file"
    bad_noise = subprocess.run([str(cpp_binary), "noise", "--seed", "1", "--stream", str(2**32), "--count", "4",
                                "--out", str(tmp_path / "never.npy")], capture_output=True, text=True, timeout=60)
    assert bad_noise.returncode == 2 and bad_noise.stderr.startswith("error: --stream"), bad_noise.stderr


@pytest.mark.parametrize("memory", [False, True], ids=["directory", "from-memory"])
def test_missing_foreign_or_tampered_export(cpp_binary: Path, export_dir: Path, tmp_path: Path, memory: bool) -> None:
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((export_dir / "manifest.json").read_text())  # graphs absent
    tampered = copy_export(export_dir, tmp_path / "tampered")
    graph = bytearray((tampered / "ddim_loop.onnx").read_bytes())
    graph[-10] ^= 1
    (tampered / "ddim_loop.onnx").write_bytes(bytes(graph))
    foreign_noise = copy_export(export_dir, tmp_path / "noise_v2")
    manifest = json.loads((foreign_noise / "manifest.json").read_text())
    manifest[MANIFEST_NOISE_KEY]["version"] = 2
    (foreign_noise / "manifest.json").write_text(json.dumps(manifest))
    cases = ((tmp_path / "nope", "missing" if memory else "does not exist"),
             (tmp_path / "empty", "manifest.json"), (broken, "missing"),
             (tampered, "sha256"), (foreign_noise, "noise generator"))
    for folder, expected in cases:
        proc = subprocess.run([str(cpp_binary), "--export-dir", str(folder), "--out", str(tmp_path / "x.ppm"),
                               *(["--from-memory"] if memory else [])], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and proc.stderr.startswith("error: ") and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
