"""Carrying a wheel to the GPU machine in parts (benchmarks/gpu_pack.py), every step on the CPU.

A small wheel is built here (offline, milliseconds) with the same layout as
onnxruntime-gpu's (a package, dist-info with Requires-Dist lines for the cuda/cudnn
extras), split into parts smaller than one call may carry, and each planned call is
replayed as the machine sees it: a fresh folder holding pack.json and only that call's
parts, `stash` keeping them outside, until `install` reassembles the wheel, checks its
sha256 and pip-installs it into a target folder, where it must import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import gpu_pack

REPO = Path(__file__).resolve().parent.parent
PART = 100_000
BUDGET = 250_000  # two parts per call


def make_wheel(directory: Path, payload: int = 420_000) -> Path:
    """sgfake_ort-1.0: a module with VALUE = 42 and `payload` incompressible bytes."""
    name = "sgfake_ort-1.0.dist-info"
    files = {
        "sgfake_ort/__init__.py": b"VALUE = 42\n",
        "sgfake_ort/blob.bin": os.urandom(payload),
        f"{name}/METADATA": (b"Metadata-Version: 2.1\nName: sgfake-ort\nVersion: 1.0\n"
                             b"Requires-Dist: numpy>=1.21\n"
                             b"Requires-Dist: sgfake-cuda-runtime~=13.0; extra == \"cuda\"\n"
                             b"Requires-Dist: sgfake-cudnn-cu13~=9.0; extra == \"cudnn\"\n"
                             b"Requires-Dist: sympy; extra == \"symbolic\"\n"),
        f"{name}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n" for path, data in files.items())
    files[f"{name}/RECORD"] = (record + f"{name}/RECORD,,\n").encode()
    wheel = directory / "sgfake_ort-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def _pack(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/gpu_pack.py", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, **(env or {})})


def _carried(record_dir: Path, call: list[str], into: Path) -> Path:
    """What one device call finds in the repository: pack.json and this call's parts only."""
    pack = into / ".gpu-pack"
    (pack / "parts").mkdir(parents=True)
    shutil.copy(record_dir / "pack.json", pack)
    for name in call:
        shutil.copy(record_dir / "parts" / name, pack / "parts")
    return pack


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, dict, Path]:
    wheel = make_wheel(tmp_path)
    out = tmp_path / "pack"
    return out, gpu_pack.split([wheel], out, PART, BUDGET), wheel


@pytest.mark.fast
def test_split_plans_calls_within_the_budget(packed: tuple[Path, dict, Path]) -> None:
    out, record, wheel = packed
    entry = record["wheels"][0]
    assert entry["sha256"] == gpu_pack.sha256(wheel) and entry["size"] == wheel.stat().st_size
    assert entry["requires"] == ["sgfake-cuda-runtime~=13.0", "sgfake-cudnn-cu13~=9.0"]
    sizes = {p["file"]: p["size"] for p in entry["parts"]}
    assert max(sizes.values()) <= PART and sum(sizes.values()) == entry["size"]
    assert [name for call in record["calls"] for name in call] == [p["file"] for p in entry["parts"]]
    assert all(sum(sizes[n] for n in call) <= BUDGET for call in record["calls"]) and len(record["calls"]) == 2
    assert json.loads((out / "pack.json").read_text()) == record


def test_every_call_stashes_then_the_last_installs(packed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, record, _ = packed
    store, target = tmp_path / "store", tmp_path / "site"
    for k, call in enumerate(record["calls"]):
        carried = _carried(out, call, tmp_path / f"call{k}")
        proc = _pack("stash", "--pack", str(carried), "--store", str(store))
        last = k == len(record["calls"]) - 1
        assert proc.returncode == (0 if last else 3), proc.stderr
        assert ("complete" if last else "still to carry") in proc.stdout
    proc = _pack("install", "--store", str(store), "--target", str(target))
    assert proc.returncode == 0 and "sgfake_ort-1.0-py3-none-any.whl" in proc.stdout, proc.stderr
    imported = subprocess.run([sys.executable, "-c", "import sgfake_ort; print(sgfake_ort.VALUE)"],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert imported.stdout.strip() == "42"
    again = _pack("install", "--store", str(store), "--target", str(target))
    assert again.returncode == 0 and "already there" in again.stdout
    libs = json.loads(_pack("check-libs", "--store", str(store)).stdout)
    assert libs["missing"] == ["sgfake-cuda-runtime~=13.0", "sgfake-cudnn-cu13~=9.0"]


def test_a_corrupted_part_is_refused_in_one_line(packed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, record, _ = packed
    carried = _carried(out, record["calls"][0], tmp_path / "call")
    part = carried / "parts" / record["calls"][0][0]
    data = bytearray(part.read_bytes())
    data[1000] ^= 1
    part.write_bytes(bytes(data))
    proc = _pack("stash", "--pack", str(carried), "--store", str(tmp_path / "store"))
    assert proc.returncode == 1 and "sha256" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_install_with_parts_missing_names_them(packed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, record, _ = packed
    store = tmp_path / "store"
    _pack("stash", "--pack", str(_carried(out, record["calls"][0], tmp_path / "call")), "--store", str(store))
    proc = _pack("install", "--store", str(store), "--target", str(tmp_path / "site"))
    assert proc.returncode == 1 and "not carried yet" in proc.stderr and record["calls"][-1][-1] in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "site").exists()


def test_reassembly_checks_the_whole_wheel(packed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """Parts that each match their own hash but come in the wrong order do not make the wheel."""
    out, record, _ = packed
    wheel = dict(record["wheels"][0])
    wheel["parts"] = list(reversed(wheel["parts"]))
    into = tmp_path / "assembled"
    into.mkdir()
    with pytest.raises(gpu_pack.PackError, match="sha256"):
        gpu_pack.assemble(out / "parts", wheel, into)
    assert not list(into.iterdir())


def test_library_path_lists_the_nvidia_lib_folders(tmp_path: Path) -> None:
    for lib, name in (("nvidia/cu13/lib", "libcudart.so.13"), ("nvidia/cudnn/lib", "libcudnn.so.9"),
                      ("nvidia/empty/lib", "README")):
        (tmp_path / lib).mkdir(parents=True)
        (tmp_path / lib / name).write_text("")
    proc = _pack("libpath", str(tmp_path))
    assert proc.stdout.strip().split(os.pathsep) == [str(tmp_path / "nvidia/cu13/lib"),
                                                     str(tmp_path / "nvidia/cudnn/lib")]


def test_junit_summary_counts_pytest_outcomes(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text("import pytest\ndef test_a(): pass\ndef test_b(): assert 0, 'no'\n"
                                            "@pytest.mark.skip(reason='later')\ndef test_c(): pass\n")
    xml = tmp_path / "junit.xml"
    rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                         "--junitxml", str(xml)], capture_output=True, timeout=120, cwd=tmp_path).returncode
    summary = gpu_pack.junit_summary(xml, rc)
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["returncode"]) == (1, 1, 1, 1)
    assert {case["outcome"] for case in summary["not_passed"]} == {"failed", "skipped"}
    assert "error" in gpu_pack.junit_summary(tmp_path / "none.xml", 2)
