"""One thread that does all the device work of CUDA-graph sessions, in the order it is handed.

Why a thread and not a lock: with CUDA graphs on, ONNX Runtime's CUDA provider
(`enable_cuda_graph`) does not allow `Run()` on one session from several threads, keeps
what it captured per thread, and captures in CUDA's global stream-capture mode, in
which an allocation or a copy made by *any* other thread of the process while a capture
is under way invalidates that capture. A lock around `run` orders the runs, but not the
buffer allocations and input uploads that the other threads make meanwhile. So every
graph-enabled session of a device hands all of its device work (building the session,
allocating bound buffers, uploading inputs in place, capturing, replaying, downloading
outputs) to one `DeviceThread`; callers wait for their job's result. Jobs run one at a
time in the order they arrive, and a job may hand further work to the same thread (it
then runs inline, without deadlock).

The class knows nothing about ONNX Runtime, so it is tested on the CPU with real threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class DeviceThread:
    """A serialising executor: `call(fn, *args)` runs fn on this object's one thread."""

    def __init__(self, name: str = "spritegen-device") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident: int | None = None
        self.jobs = 0  # jobs handed over so far (inline calls from the thread itself not counted)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) on the device thread; its result, or its exception re-raised here."""
        if threading.get_ident() == self._ident:
            return fn(*args)  # already on the device thread (a job handing on work)
        return self._executor.submit(self._run, fn, args).result()

    def _run(self, fn: Callable[..., T], args: tuple) -> T:
        self._ident = threading.get_ident()
        self.jobs += 1
        return fn(*args)

    @property
    def is_current(self) -> bool:
        """Whether the calling thread is the device thread."""
        return threading.get_ident() == self._ident

    def close(self) -> None:
        """Finish the queued jobs, then stop the thread; later calls raise RuntimeError."""
        self._executor.shutdown(wait=True)


_SHARED: dict[int, DeviceThread] = {}
_SHARED_LOCK = threading.Lock()


def device_thread(device_id: int) -> DeviceThread:
    """The process's one DeviceThread for GPU `device_id`, shared by every graph-enabled
    session on it: a capture in one session is then never raced by another's allocation."""
    with _SHARED_LOCK:
        thread = _SHARED.get(device_id)
        if thread is None:
            thread = _SHARED[device_id] = DeviceThread(f"spritegen-cuda{device_id}")
        return thread
