"""What the C++ tests share: the built program (through the setup script CI runs) and how to run it.

Kept apart so tests/test_cpp.py (parity with the Python runtime, the engine paths) and
tests/test_cpp_checks.py (the export, file and request checks) stay small modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / ".ci" / "setup_cpp.sh"
BUILD = Path(os.environ.get("SPRITEGEN_CPP_BUILD", REPO / "build" / "cpp"))


@pytest.fixture(scope="session")
def cpp_binary() -> Path:
    """spritegen_cpp, built (or brought up to date) by the setup script CI runs; one process
    at a time (pytest-xdist's workers would otherwise configure the same build folder at once)."""
    from filelock import FileLock

    BUILD.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILD.parent / f"{BUILD.name}.lock")):
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "SPRITEGEN_CPP_BUILD": str(BUILD), "PYTHON": sys.executable})
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"cannot build the C++ example with {SETUP.name}: {reason}\n{proc.stderr[-2000:]}",
                    pytrace=False)
    binary = BUILD / "spritegen_cpp"
    assert binary.is_file(), f"{SETUP.name} succeeded but {binary} is missing"
    return binary


def run_cpp(binary: Path, export: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "--export-dir", str(export), "--threads", "1", *args],
                          capture_output=True, text=True, timeout=300)


def sample_cpp(binary: Path, export: Path, out: Path, *args: str) -> np.ndarray:
    proc = run_cpp(binary, export, "--out-npy", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    return np.load(out)
