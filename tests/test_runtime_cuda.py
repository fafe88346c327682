"""The CUDA path (IO binding on the GPU, CUDA graphs per batch shape) against the CPU path.

Runs only where onnxruntime-gpu sees a GPU (see docs/runtime.md); elsewhere every test
is skipped with that reason. CPU and GPU differ by float32 rounding in cuDNN's
convolution algorithms (TF32 is turned off by the runtime), so the bar is the same as
for the eager reference: 1e-3 absolute on final sprites.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from spritegen.errors import InputError
from spritegen.runtime import Sampler
from tests.runtime_support import run_in_threads
from tests.tolerances import SAMPLE_ATOL

pytestmark = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                reason="needs onnxruntime-gpu (pip install 'spritegen[runtime-gpu]') and a GPU")


@pytest.fixture(scope="module")
def cpu(export_dir: Path) -> Sampler:
    return Sampler.load(export_dir, provider="cpu")


@pytest.fixture(scope="module", params=[True, False], ids=["cuda-graph", "no-cuda-graph"])
def gpu(export_dir: Path, request: pytest.FixtureRequest) -> Sampler:
    try:
        return Sampler.load(export_dir, provider="cuda", cuda_graph=request.param)
    except InputError as exc:
        pytest.skip(f"CUDA did not start: {exc}")


@pytest.mark.parametrize("impl", ["step", "unet", "loop"])
@pytest.mark.parametrize("batch", [1, 7])
def test_ddim_on_gpu_equals_cpu(cpu: Sampler, gpu: Sampler, impl: str, batch: int) -> None:
    context = (["hero", {"food": 1, "spell": 0.6}, None] * 3)[:batch]
    for guidance in (0.0, 2.0):
        expected = cpu.ddim(context, seed=batch, guidance=guidance)
        for _ in range(3):  # warm-up, capture, replays: every run must give the same sprites
            got = gpu.ddim(context, seed=batch, guidance=guidance, impl=impl)
            assert np.abs(got - expected).max() <= SAMPLE_ATOL


def test_ddpm_on_gpu_equals_cpu(cpu: Sampler, gpu: Sampler) -> None:
    expected, expected_kept = cpu.ddpm(["spell", "hero"], seed=3, save_rate=20)
    got, kept = gpu.ddpm(["spell", "hero"], seed=3, save_rate=20)
    assert np.abs(got - expected).max() <= SAMPLE_ATOL
    assert kept.shape == expected_kept.shape


def test_cuda_graphs_stay_on_after_sampling_without_warnings(export_dir: Path) -> None:
    """The step and loop graphs have no host-device copy nodes (spritegen.export.shape_flow),
    so ORT captures them: no "CUDA graphs unavailable" warning, every graph still capturing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        sampler = Sampler.load(export_dir, provider="cuda", cuda_graph=True, open_all=True)
        for impl in ("step", "unet", "loop"):
            for guidance in (0.0, 2.0):
                sampler.ddim(["hero", "food"], seed=0, guidance=guidance, impl=impl)
        sampler.ddpm("hero", seed=0)
    assert all(graph.cuda_graph for graph in sampler._graphs.values()), sampler.open_graphs


def test_interleaved_batch_sizes_and_threads(gpu: Sampler) -> None:
    """One captured graph per batch shape: interleaving shapes and threads changes nothing."""
    jobs = [lambda b=b: gpu.ddim(["hero"] * b, n=10, eta=0.5, seed=b) for b in (1, 3, 1, 5)]
    solo = [job() for job in jobs]
    results = run_in_threads(jobs)
    for k, expected in enumerate(solo):
        assert results[k].tobytes() == expected.tobytes(), k
