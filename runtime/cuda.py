"""Starting ONNX Runtime's CUDA provider so that failures surface at load, as one line.

- Libraries: onnxruntime-gpu >= 1.21 finds CUDA and cuDNN in the `nvidia-*` wheels that
  its `[cuda,cudnn]` extras install only if `onnxruntime.preload_dlls()` loads them
  first (or torch of the same CUDA major was imported before). `preload()` calls it
  once per process when CUDA is wanted; it prints its own complaints, which are kept
  and quoted in the error if CUDA then fails to start.
- Lazy failures: ORT creates a CUDA session without touching cuDNN, so a missing cuDNN
  passes session creation and fails at the first convolution. `warm_up()` runs every
  CUDA session once at load on a batch of 1 (zeros; index inputs 1), so such a failure
  is an error at `Sampler.load`, where provider="auto" can still fall back to the CPU.
"""

from __future__ import annotations

import contextlib
import io
import threading

import numpy as np
import onnxruntime as ort

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}
_preloaded: str | None = None
_preload_lock = threading.Lock()


def preload() -> str:
    """Load CUDA/cuDNN from the nvidia-* wheels once (onnxruntime.preload_dlls, where this
    onnxruntime has it); returns what it printed (its warnings), "" when silent."""
    global _preloaded
    with _preload_lock:
        if _preloaded is None:
            printed = io.StringIO()
            loader = getattr(ort, "preload_dlls", None)
            if loader is not None:
                with contextlib.redirect_stdout(printed):
                    try:
                        loader(cuda=True, cudnn=True)
                    except Exception as exc:  # an OSError from ctypes, or its own checks
                        print(f"preload_dlls failed: {exc}")
            _preloaded = " ".join(printed.getvalue().split())
        return _preloaded


def zero_feeds(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Inputs for one call at batch 1: zeros, and 1 for integer (step index) inputs."""
    feeds = {}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = _ORT_DTYPES.get(spec.type, np.float32)
        feeds[spec.name] = np.ones(shape, dtype) if dtype == np.int64 else np.zeros(shape, dtype)
    return feeds


def warm_up(session: ort.InferenceSession, options: ort.RunOptions | None = None) -> list[np.ndarray]:
    """One real call of `session` (see module doc); ORT's exception propagates."""
    return session.run(None, zero_feeds(session), options)


def skip_capture() -> ort.RunOptions:
    """Run options for a call that a CUDA-graph session must not capture (gpu_graph_id -1,
    ORT's documented "no capture, no replay" value)."""
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", "-1")
    return options
