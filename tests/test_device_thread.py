"""The device thread that CUDA-graph sessions hand all their device work to (runtime/device_thread.py).

It knows nothing of CUDA, so it is tested here with real threads: jobs never overlap,
all run on one thread, results and exceptions reach the right caller, a job may hand on
work without deadlock. Then the runtime's own Graph and runners are driven through it
on the CPU (`Graph.device` set as CUDA graphs set it) by 8 threads at once: each gets
exactly the sprites it gets alone, and every session run happened on the device thread.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from spritegen.runtime import load_manifest
from spritegen.runtime.context import make_context
from spritegen.runtime.device_thread import DeviceThread, device_thread
from spritegen.runtime.plan import Noise, ddim_plan
from spritegen.runtime.runners import StepRunner
from spritegen.runtime.session import Graph

THREADS = 8


def test_jobs_from_many_threads_run_one_at_a_time_on_one_thread() -> None:
    device = DeviceThread("test-device")
    busy, overlaps, seen = threading.Lock(), [], set()

    def job(k: int) -> int:
        if not busy.acquire(blocking=False):
            overlaps.append(k)  # another job was inside: not serialised
            return -1
        try:
            seen.add(threading.get_ident())
            time.sleep(0.001)
            return k * k
        finally:
            busy.release()

    barrier = threading.Barrier(THREADS)

    def caller(k: int) -> list[int]:
        barrier.wait()
        return [device.call(job, k * 100 + j) for j in range(20)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(caller, range(THREADS)))
    device.close()
    assert overlaps == []
    assert results == [[(k * 100 + j) ** 2 for j in range(20)] for k in range(THREADS)]
    assert len(seen) == 1 and threading.get_ident() not in seen
    assert device.jobs == THREADS * 20


@pytest.mark.fast
def test_exceptions_reach_the_caller_and_nested_calls_run_inline() -> None:
    device = DeviceThread()

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        device.call(fail)
    # a job that hands on more work gets it done inline, on the same thread, without deadlock
    outer = device.call(lambda: (threading.get_ident(), device.call(threading.get_ident), device.is_current))
    assert outer[0] == outer[1] and outer[2] is True
    assert not device.is_current
    device.close()
    with pytest.raises(RuntimeError):
        device.call(int)


def test_one_device_thread_per_gpu() -> None:
    assert device_thread(0) is device_thread(0)
    assert device_thread(0) is not device_thread(1)


def _sample(runner: StepRunner, plan, context: np.ndarray, seed: int) -> np.ndarray:
    """DDIM through one runner, as Sampler._sample drives it."""
    noise = Noise(None, None, seed, (context.shape[0], 3, 16, 16))
    runner.start(noise.x_T, context, 0.0, 0.0)
    for step in plan.steps:
        runner.step(step, noise)
    return runner.state().copy()


def test_runners_on_a_device_thread_give_solo_results_to_eight_threads(export_dir: Path) -> None:
    manifest = load_manifest(export_dir)
    graph = Graph("ddim_step", manifest.read_file("ddim_step.onnx"), cuda=False, threads=1)
    graph.device = DeviceThread("test-cpu-device")  # what cuda_graph=True sets on a GPU
    runs = []
    run = graph.session.run_with_iobinding
    graph.session.run_with_iobinding = lambda *a: (runs.append(graph.device.is_current), run(*a))[1]
    plan = ddim_plan(manifest.schedule, 10, 0.0, None)
    contexts = [make_context(["hero", "food"][: 1 + k % 2], manifest.class_names, None) for k in range(THREADS)]
    runners = [StepRunner(graph, True, c.shape[0], (3, 16, 16), 5, False) for c in contexts]
    solo = [_sample(r, plan, c, seed) for seed, (r, c) in enumerate(zip(runners, contexts))]
    barrier = threading.Barrier(THREADS)

    def together(k: int) -> np.ndarray:
        barrier.wait()
        return _sample(runners[k], plan, contexts[k], k)

    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(together, range(THREADS)))
    graph.device.close()
    for k, (want, got) in enumerate(zip(solo, concurrent)):
        assert got.tobytes() == want.tobytes(), k
    assert len(runs) == 2 * THREADS * len(plan.steps) and all(runs)
