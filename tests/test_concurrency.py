"""One Sampler shared by 8 threads: each caller gets exactly the samples it gets alone.

ONNX Runtime sessions run concurrently; the Sampler hands each call its own workspace
from a pool. The requests below differ in step implementation, sampler, batch, context,
guidance and eta, and two pairs share a workspace key (same implementation, batch and
guidance), so a buffer shared by mistake shows up as a changed sprite. Equality is
exact (byte for byte): the same inputs through the same kernels at the same batch
give the same float32 results, so any difference means one call saw another's data.

On a GPU (onnxruntime-gpu) the same test runs on CUDA with CUDA graphs, where every
session's device work goes through the one device thread (runtime/device_thread.py):
it then also checks that the thread did that work and that no graph lost its capture.
Here it runs on the CPU only; tests/test_device_thread.py drives the device thread with
real threads on the CPU.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import pytest

from spritegen.runtime import Sampler
from spritegen.runtime.device_thread import device_thread

THREADS = 8
ROUNDS = 2  # concurrent rounds; the second reuses the workspaces the first pooled


def _requests(sampler: Sampler) -> list[Callable[[], Any]]:
    """Eight different calls (module doc); seeds differ so no two results coincide."""
    ddim, ddpm = sampler.ddim, sampler.ddpm
    return [
        lambda: ddim(["hero", "food", None], n=25, seed=1, impl="step"),
        lambda: ddim(["spell", "hero", {"hero": 1, "food": 0.6}], n=25, seed=2, impl="step"),  # same key as above
        lambda: ddim("side-facing", n=7, eta=0.5, seed=3, guidance=2.0, impl="step"),
        lambda: ddim(["non-hero"] * 7, n=25, seed=4, impl="unet", save_rate=5),
        lambda: ddim(["food"] * 7, n=25, seed=5, impl="unet", save_rate=5),  # same key as above
        lambda: ddim([{"spell": 0.5, "side-facing": 0.5}] * 2, n=sampler.manifest.ddim_loop_steps, seed=6,
                     guidance=1.0, impl="loop"),
        lambda: ddpm("hero", seed=7, impl="step"),
        lambda: ddim(None, n=50, seed=8, guidance=1.5, impl="unet"),
    ]


def _as_tuple(result: Any) -> tuple[np.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


_NO_CUDA = "CUDAExecutionProvider" not in ort.get_available_providers()


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    _NO_CUDA, reason="needs onnxruntime-gpu and a GPU"))])
def shared_sampler(tiny_export: Path, request: pytest.FixtureRequest) -> Sampler:
    """The tiny model's export: sharing is about workspaces and sessions, not the model's size."""
    return Sampler.load(tiny_export, provider=request.param)


def test_eight_threads_get_what_they_get_alone(shared_sampler: Sampler) -> None:
    jobs_before = device_thread(0).jobs
    requests = _requests(shared_sampler)
    assert len(requests) == THREADS
    alone = [_as_tuple(request()) for request in requests]
    kept = [tuple(a.copy() for a in result) for result in alone]  # to prove results are never aliased
    barrier = threading.Barrier(THREADS)

    def together(request: Callable[[], Any]) -> tuple[np.ndarray, ...]:
        barrier.wait()  # all eight start at once
        return _as_tuple(request())

    for round_ in range(ROUNDS):
        barrier.reset()
        with ThreadPoolExecutor(THREADS) as pool:
            concurrent = list(pool.map(together, requests))
        for k, (want, got) in enumerate(zip(alone, concurrent)):
            for w, g in zip(want, got):
                assert g.dtype == w.dtype and g.shape == w.shape
                assert np.array_equal(g, w), (f"round {round_}, request {k}: differs from its solo run by "
                                              f"{float(np.abs(g - w).max()):.3g}")
    # nothing shared was corrupted: a solo call after the storm still gives the same sprites,
    # and no returned array was a view that later calls overwrote
    for request, want, before in zip(requests, alone, kept):
        assert all(np.array_equal(g, w) for g, w in zip(_as_tuple(request()), want))
        assert all(np.array_equal(w, b) for w, b in zip(want, before))
    if shared_sampler.cuda:  # every step of every call was handed to the device thread, captures kept
        assert device_thread(0).jobs - jobs_before >= (ROUNDS + 2) * 500
        assert all(graph.cuda_graph for graph in shared_sampler._graphs.values())
