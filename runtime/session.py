"""ONNX Runtime sessions built once, and graph inputs/outputs bound once per batch shape.

Why it looks like this (speed is the product):
- One `InferenceSession` per graph file, built once with full graph optimisation and an
  intra-op thread pool sized to the cores this process may use. ORT's `run` is
  thread-safe, so one session serves every thread.
- A `Binding` is one graph call with every input and output bound to a preallocated
  `Buffer`; a sampling loop writes the few values that change (t, the step index, the
  step's noise) in place and calls `run()`: no per-step allocation, no rebinding.
- CPU: each Buffer's OrtValue wraps the memory of a numpy array, so numpy reads and
  writes what ORT sees with no copy (measured: the output lands in the bound array).
- CUDA: Buffers live on the GPU; `push` uploads with `OrtValue.update_inplace` (same
  address, as CUDA graphs need) and `pull` downloads. The step graphs keep x and eps on
  the GPU for the whole loop; only the step's fresh noise (B*C*H*W floats) and the
  8-byte step index go up per step. The uploads run on the default stream and ORT
  computes on its own, so every run is bracketed by `synchronize_inputs()` and
  `synchronize_outputs()`, as ORT's own CUDA-graph tests do.
- CUDA graphs (`enable_cuda_graph`): ORT captures a graph per `gpu_graph_id` after a
  few warm-up runs and then replays it, which requires fixed shapes and addresses (one
  Binding = one id, from 1: ORT reserves 0), every compute node on the CUDA provider (no
  copy nodes: spritegen.export.shape_flow), no Loop/If/Scan, and no `run` of the session
  from several threads. All device work of such a session (building it, allocating and
  uploading its buffers, capturing, replaying, downloading) therefore runs on one
  `DeviceThread` per GPU (runtime/device_thread.py says why a lock is not enough);
  callers hand it their work and wait. Without CUDA graphs, runs stay on the callers'
  threads (ORT's `run` is thread-safe then).
- Load-time checks on CUDA: CUDA/cuDNN are preloaded from the nvidia-* wheels, and each
  session runs once at load (runtime/cuda.py), so missing libraries are one error at
  load, not a raw ORT error at the first convolution.
  This path is written to ORT's documented rules but has not run on a GPU yet (see
  docs/runtime.md, "CUDA").
"""

from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import onnxruntime as ort

from spritegen.errors import ExportDirError, InputError, first_line, shown
from spritegen.runtime import cuda as cuda_setup
from spritegen.runtime.device_thread import DeviceThread, device_thread

PROVIDERS = ("auto", "cuda", "cpu")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
T = TypeVar("T")


def default_threads() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def want_cuda(provider: str) -> bool:
    """Whether `provider` asks for CUDA; InputError for an unknown name or a missing CUDA build."""
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider {shown(provider)}; choose one of {', '.join(PROVIDERS)}")
    has_cuda = _CUDA in ort.get_available_providers()
    if provider == "cuda" and not has_cuda:
        raise InputError("provider 'cuda' needs onnxruntime-gpu (pip install 'spritegen[runtime-gpu]' "
                         "instead of 'spritegen[runtime]'); use provider='cpu' or 'auto'")
    wanted = provider == "cuda" or (provider == "auto" and has_cuda)
    if wanted:
        cuda_setup.preload()  # the nvidia-* wheels' CUDA/cuDNN, before any CUDA session exists
    return wanted


# The automatic spin rule (docs/runtime.md, "Spin-waiting"; measured by benchmarks/spin.py).
SPIN_MIN_CORES = 2  # one core: the spinning pool thread and the caller share it, spinning only steals
SPIN_MAX_LOAD_PER_CORE = 0.5  # the 1-minute load average per core above which the cores count as shared


def auto_spin(threads: int | None = None) -> bool:
    """Whether ORT's threads should spin-wait: only when this process has SPIN_MIN_CORES or
    more and the machine is quiet (1-minute load average below SPIN_MAX_LOAD_PER_CORE per
    core). Spinning saves a thread wake-up per node on free cores, and steals a core from
    other work on busy ones (the measured trade in docs/runtime.md). Decided when a sampler
    loads: ORT fixes spinning per session."""
    cores = default_threads()
    if cores < SPIN_MIN_CORES or (threads is not None and threads < 2):
        return False
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): keep ORT's default
        return True
    return load < SPIN_MAX_LOAD_PER_CORE * (os.cpu_count() or cores)


def session_options(threads: int | None, spin: bool = True) -> ort.SessionOptions:
    """Full graph optimisation, `threads` intra-op threads, spin-waiting as `spin` says.

    Spinning is ORT's default and the fastest on cores this process has to itself: idle
    pool threads busy-wait instead of sleeping, so each of the ~100 nodes of a batch-1
    call skips a thread wake-up (measured on 2 free cores: 0.77-0.85 ms per call spinning,
    1.13-1.24 ms not). On cores shared with other busy work the spinning thread steals
    the working thread's core (measured under load ~13: DDIM-25 at batch 2 took 2.9 s
    spinning, 1.6 s not): spin=False there (docs/runtime.md).

    Spinning stops when a run returns (`session.force_spinning_stop`): otherwise the pool
    of the graph that ran last keeps spinning while the next graph runs (measured: DDIM-25
    at batch 1 alternating between three graphs took 53 ms instead of 25 ms), and an idle
    sampler burns a core between calls.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # our graphs are chains: no inter-op gain
    options.log_severity_level = 3  # errors only: keep users' terminals clean
    options.intra_op_num_threads = default_threads() if threads is None else int(threads)
    options.inter_op_num_threads = 1
    spinning = "1" if spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


@dataclass
class Buffer:
    """One bound tensor: an OrtValue and a host array of the same shape.

    CPU: `host` is the OrtValue's own memory, so numpy reads and writes what ORT sees
    and `push`/`pull` do nothing. CUDA: `host` is a staging copy; `push` uploads it in
    place (same device address, as CUDA graphs need) and `pull` downloads into it.
    """

    value: ort.OrtValue
    host: np.ndarray
    on_device: bool
    device: DeviceThread | None = None  # where a CUDA-graph session's device work runs

    def push(self) -> None:
        if self.on_device:
            _on(self.device, self.value.update_inplace, self.host)

    def pull(self) -> np.ndarray:
        if self.on_device:
            _on(self.device, lambda: np.copyto(self.host, self.value.numpy()))
        return self.host


class Graph:
    """One graph file's session and the device its buffers live on."""

    def __init__(self, name: str, model: bytes, *, cuda: bool, threads: int | None,
                 cuda_graph: bool = False, device_id: int = 0, spin: bool = True, file: str | None = None) -> None:
        self.name, self.spin = name, spin
        self.file = file or f"{name}.onnx"  # the file read, named in errors (unet_int8.onnx for "unet")
        self.cuda, self.cuda_graph, self.device_id = cuda, cuda and cuda_graph, device_id
        self.device = device_thread(device_id) if self.cuda_graph else None
        self.capture_refused: str | None = None  # ORT's reason, when it refused CUDA graphs for this file
        self.session = self.on_device(self._open, model, threads)
        if self.capture_refused:  # warned here, on the caller's thread, not on the device thread
            warnings.warn(f"CUDA graphs unavailable for {self.file} ({self.capture_refused}); running without",
                          RuntimeWarning, stacklevel=4)
        self._graph_ids = itertools.count(1)  # gpu_graph_id 0 is reserved by ORT, -1 means "no capture"

    def on_device(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) where this graph's device work runs: its DeviceThread with CUDA graphs
        on (module doc), else right here."""
        return _on(self.device, fn, *args)

    def _open(self, model: bytes, threads: int | None) -> ort.InferenceSession:
        """The session, and on CUDA proof that it runs (one warm-up call, runtime/cuda.py)."""
        try:
            session = self._session(model, threads)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            session = self._without_cuda_graph(model, threads, exc)
        if self.cuda and _CUDA not in session.get_providers():
            raise InputError(f"ONNX Runtime could not start CUDA for {self.file} ({_cuda_hint()}); "
                             "use provider='cpu'")
        if self.cuda:
            try:
                cuda_setup.warm_up(session, cuda_setup.skip_capture() if self.cuda_graph else None)
            except Exception as exc:
                raise InputError(f"ONNX Runtime started CUDA but could not run {self.file} on it "
                                 f"({first_line(exc)}; {_cuda_hint()}); use provider='cpu'") from None
        return session

    def _session(self, model: bytes, threads: int | None) -> ort.InferenceSession:
        providers: list = [_CPU]
        if self.cuda:
            # use_tf32=0: fp32 convolutions stay fp32, so GPU sprites equal the reference's to
            # float32 rounding (TF32 would trade that parity for speed).
            cuda_options = {"device_id": str(self.device_id), "use_tf32": "0",
                            "enable_cuda_graph": "1" if self.cuda_graph else "0"}
            providers = [(_CUDA, cuda_options), _CPU]
        with warnings.catch_warnings():  # a CPU-only onnxruntime warns that CUDA is unknown: we say it once
            warnings.simplefilter("ignore", UserWarning)
            return ort.InferenceSession(model, session_options(threads, self.spin), providers=providers)

    def _without_cuda_graph(self, model: bytes, threads: int | None, first: Exception) -> ort.InferenceSession:
        """CUDA graphs refuse graphs with nodes outside the CUDA provider: retry without them,
        else turn ORT's failure into one line (CUDA setup on a GPU, the file on a CPU)."""
        if self.cuda_graph:
            self.cuda_graph = False
            try:
                session = self._session(model, threads)
            except Exception:
                session = None  # not CUDA graphs' fault: report the first failure below
            if session is not None:
                self.capture_refused = first_line(first)
                return session
        if self.cuda:
            raise InputError(f"ONNX Runtime could not load {self.file} on CUDA ({first_line(first)}); "
                             "check the GPU and CUDA/cuDNN libraries, or use provider='cpu'") from None
        raise ExportDirError(f"ONNX Runtime cannot load {self.file} ({first_line(first)}); "
                             "re-export with spritegen-export") from None

    def buffer(self, shape: tuple[int, ...], dtype: type = np.float32) -> Buffer:
        """A new zero-filled buffer on this graph's device."""
        host = np.zeros(shape, dtype)
        if not self.cuda:
            return Buffer(ort.OrtValue.ortvalue_from_numpy(host), host, on_device=False)
        value = self.on_device(ort.OrtValue.ortvalue_from_shape_and_type, list(shape), dtype, "cuda",
                               self.device_id)
        buffer = Buffer(value, host, on_device=True, device=self.device)
        buffer.push()
        return buffer

    def bind(self, buffers: dict[str, Buffer]) -> "Binding":
        """A Binding of every graph input and output to `buffers` (names as in contract.GRAPHS)."""
        graph_id = next(self._graph_ids) if self.cuda_graph else None
        return self.on_device(Binding, self, buffers, graph_id)


class Binding:
    """One graph call with fixed buffers; `run()` is the whole per-call cost."""

    def __init__(self, graph: Graph, buffers: dict[str, Buffer], graph_id: int | None) -> None:
        session = graph.session
        self._session, self._device, self._sync = session, graph.device, graph.cuda
        self._io = session.io_binding()
        for spec in session.get_inputs():
            self._io.bind_ortvalue_input(spec.name, buffers[spec.name].value)
        for spec in session.get_outputs():
            self._io.bind_ortvalue_output(spec.name, buffers[spec.name].value)
        self._options = ort.RunOptions()
        if graph_id is not None:
            self._options.add_run_config_entry("gpu_graph_id", str(graph_id))

    def run(self) -> None:
        _on(self._device, self._run)

    def _run(self) -> None:
        if self._sync:
            self._io.synchronize_inputs()  # uploads on the default stream land before ORT's stream reads
        self._session.run_with_iobinding(self._io, self._options)
        if self._sync:
            self._io.synchronize_outputs()  # ORT's stream is done before anyone downloads


def _on(device: DeviceThread | None, fn: Callable[..., T], *args: object) -> T:
    """fn(*args) on `device`'s thread, or on this thread when there is none."""
    return fn(*args) if device is None else device.call(fn, *args)


def _cuda_hint() -> str:
    """Why CUDA may not start, with what onnxruntime.preload_dlls printed, if anything."""
    printed = cuda_setup.preload()
    hint = "no visible GPU, or CUDA/cuDNN libraries missing: pip install 'spritegen[runtime-gpu]'"
    return f"{hint}; preload_dlls said: {printed[:200]}" if printed else hint
