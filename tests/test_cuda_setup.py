"""Starting CUDA, and falling back from it, exercised on the CPU through ONNX Runtime itself.

The one seam is ONNX Runtime's provider list: `onnxruntime.get_available_providers` is
made to list CUDA, as onnxruntime-gpu does. Everything after it is real: the runtime
asks ORT for a CUDA session, this CPU-only ORT creates a CPU session instead (as
onnxruntime-gpu does when the CUDA provider cannot load: no GPU, no libraries), and the
runtime must notice, say so in one line, and for provider="auto" sample on the CPU.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from spritegen.contract import GRAPHS
from spritegen.errors import InputError
from spritegen.runtime import Sampler, cuda

REPO = Path(__file__).resolve().parent.parent
_LISTS_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def cuda_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT says it has a CUDA provider (onnxruntime-gpu on a machine where CUDA cannot start)."""
    assert "CUDAExecutionProvider" not in ort.get_available_providers(), "this test needs the CPU build"
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(_LISTS_CUDA))


def test_auto_falls_back_to_the_cpu_with_one_warning(export_dir: Path, cuda_listed: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = Sampler.load(export_dir, provider="auto")
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert "\n" not in message and "CUDA" in message and "CPU" in message
    assert not [w for w in caught if "CUDAExecutionProvider" in str(w.message)], "ORT's own warning leaked"
    assert sampler.provider == "cpu"
    expected = Sampler.load(export_dir, provider="cpu").ddim("hero", n=5, seed=3)
    assert sampler.ddim("hero", n=5, seed=3).tobytes() == expected.tobytes()


def test_cuda_that_cannot_start_is_one_error(export_dir: Path, cuda_listed: None) -> None:
    with pytest.raises(InputError) as raised:
        Sampler.load(export_dir, provider="cuda")
    message = str(raised.value)
    assert "\n" not in message and "could not start CUDA" in message and "provider='cpu'" in message


def test_cuda_without_onnxruntime_gpu_is_one_error_in_the_cli(export_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "spritegen.cli", "sample", "--export-dir", str(export_dir),
                           "--provider", "cuda", "--out", "unused.png"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "onnxruntime-gpu" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("name", list(GRAPHS))
def test_the_load_time_warm_up_call_is_valid_for_every_graph(export_dir: Path, name: str) -> None:
    """On CUDA every session runs once at load on these inputs; a bad feed would fail every load."""
    session = ort.InferenceSession(str(export_dir / GRAPHS[name].file), providers=["CPUExecutionProvider"])
    outputs = cuda.warm_up(session, cuda.skip_capture())
    assert len(outputs) == len(GRAPHS[name].outputs)
    assert all(out.shape[0] == 1 and np.isfinite(out).all() for out in outputs)


def test_preload_is_safe_without_a_cuda_build() -> None:
    first = cuda.preload()
    assert cuda.preload() == first and "\n" not in first
