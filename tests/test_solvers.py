"""DPM-Solver++(2M) and its SDE form: the reference against diffusers, the runtime against the
reference, the step-index rules, and every refusal one line.

diffusers (a test dependency) is configured with the course's schedule: its betas are the
course's b_t[1..T], its alpha-bars are set to the course's float32 ab_t[1..T] (the course
computes them as exp(cumsum(log)), diffusers as cumprod: 1e-6 apart, which a chain amplifies
to 1e-3), its discrete timestep k is the course's index k + 1, and the network sees
t = (k + 1) / T, the course's t/T input scaling (not k / 1000 as in diffusers' pipelines).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from spritegen.contract import FAST_KEY, MANIFEST_FILE, check_solver_indices, dpmpp_indices, solver_triples
from spritegen.errors import ExportDirError, InputError
from spritegen.export import load_model
from spritegen.export.reference import sample_dpmpp
from spritegen.export.schedule import make_schedule
from spritegen.runtime import Sampler
from spritegen.runtime.plan import Noise
from tests.runtime_support import link_export
from tests.tolerances import DIFFUSERS_ATOL, IMPL_ATOL, SAMPLE_ATOL

T = 500


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model(None).eval()


def _diffusers(model: torch.nn.Module, algorithm: str, n: int, noise: torch.Tensor, context: torch.Tensor,
               step_noise: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """diffusers' scheduler driven by the course's model (module doc); (x_0, course indices)."""
    from diffusers import DPMSolverMultistepScheduler

    schedule = make_schedule()
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=schedule.b_t[1:].numpy(),
                                            algorithm_type=algorithm, solver_order=2, final_sigmas_type="zero",
                                            lower_order_final=True)
    scheduler.alphas_cumprod = schedule.ab_t[1:].clone()
    scheduler.set_timesteps(n)
    x = noise.clone()
    for k in scheduler.timesteps:
        i = int(k) + 1  # the course's index
        with torch.no_grad():
            eps = model(x, torch.tensor([i / T])[:, None, None, None], c=context)
        x = scheduler.step(eps, k, x, variance_noise=step_noise[i - 1]).prev_sample
    return x, [int(k) + 1 for k in scheduler.timesteps] + [0]


@pytest.mark.parametrize("algorithm, eta", [("dpmsolver++", 0.0), ("sde-dpmsolver++", 1.0)])
@pytest.mark.parametrize("n", [4, 9])
def test_reference_equals_diffusers(model: torch.nn.Module, algorithm: str, eta: float, n: int) -> None:
    generator = torch.Generator().manual_seed(n)
    noise = torch.randn(5, 3, 16, 16, generator=generator)
    context = torch.cat([torch.eye(5)[:4], torch.zeros(1, 5)])  # four classes and unconditional
    step_noise = torch.randn(T, 5, 3, 16, 16, generator=generator)
    expected, indices = _diffusers(model, algorithm, n, noise, context, step_noise)
    got, kept = sample_dpmpp(model, noise, context, indices=indices, eta=eta, step_noise=step_noise)
    assert kept.shape == (n, 5, 3, 16, 16)
    error = float((got - expected.clip(-1, 1)).abs().max())
    assert error <= DIFFUSERS_ATOL, f"{algorithm} n={n}: {error:.2e} from diffusers"
    assert float((got - sample_dpmpp(model, noise, context, indices=indices, eta=1 - eta,
                                     step_noise=step_noise)[0]).abs().max()) > 1e-2  # eta matters


def test_first_order_run_is_ddim(model: torch.nn.Module) -> None:
    """One call (T -> 0) and the first step of every run are first order: DDIM exactly."""
    from spritegen.export.reference import sample_ddim

    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    context = torch.eye(5)[:2]
    got = sample_dpmpp(model, noise, context, indices=[T, 0])[0]
    want = sample_ddim(model, noise, context, n=1)[0]
    assert float((got - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("n", [1, 2, 7, 10, 499, 500])
def test_indices_rule(n: int) -> None:
    indices = dpmpp_indices(T, n)
    assert len(indices) == n + 1 and check_solver_indices(indices, T) == tuple(indices)
    assert indices == [T * (n - k) // n for k in range(n + 1)]  # integer math: the same in C++ and JS
    triples = solver_triples(indices)
    assert triples[0] == (T, indices[1], T) and all(t[2] == indices[k] for k, t in enumerate(triples[1:]))


@pytest.mark.parametrize("bad", [[T], [T, 10, 10, 0], [T, 300, 400, 0], [T - 1, 0], [T, 1], [T, 2.5, 0],
                                 [T, True, 0], "500,0", None])
def test_bad_indices_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        check_solver_indices(bad, T)


def _runtime_noise(sampler: Sampler, seed: int, batch: int, indices: list[int]) -> np.ndarray:
    """The step noise the runtime draws for `seed` (stream i for the step starting at i), as the
    reference's step_noise array."""
    source = Noise(None, None, seed, (batch, *sampler.image_shape), indices[:-1])
    step_noise = np.zeros((T, batch, *sampler.image_shape), np.float32)
    for i in indices[:-1]:
        source.fill(i, step_noise[i - 1])
    return step_noise


@pytest.mark.parametrize("eta, guidance, n", [(0.0, 0.0, 10), (1.0, 2.0, 6), (0.5, 0.0, 3)])
def test_runtime_equals_reference(bundled_sampler: Sampler, model: torch.nn.Module, eta: float, guidance: float,
                                  n: int) -> None:
    sampler = bundled_sampler  # the demo's export: `model` is its checkpoint
    context = ["hero", {"food": 1.0, "spell": 0.6}, None]
    indices, seed = dpmpp_indices(T, n), 11 + n
    step = sampler.dpmpp(context, n=n, eta=eta, seed=seed, guidance=guidance, impl="step")
    unet = sampler.dpmpp(context, n=n, eta=eta, seed=seed, guidance=guidance, impl="unet")
    assert float(np.abs(step - unet).max()) <= IMPL_ATOL * (1 + 2 * guidance)
    want, _ = sample_dpmpp(model, torch.from_numpy(sampler.noise(3, seed)), torch.from_numpy(sampler.context(context)),
                           indices=indices, eta=eta, guidance=guidance,
                           step_noise=torch.from_numpy(_runtime_noise(sampler, seed, 3, indices)))
    assert float(np.abs(step - want.numpy()).max()) <= SAMPLE_ATOL * (1 + 2 * guidance)


def test_explicit_indices_and_intermediates(sampler: Sampler) -> None:
    indices = [T, 400, 200, 50, 0]
    sprites, kept = sampler.dpmpp(["hero"], indices=indices, seed=3, save_rate=1)
    assert kept.shape == (4, 1, 3, 16, 16) and np.array_equal(np.clip(kept[-1], -1, 1), sprites)
    assert not np.array_equal(sprites, sampler.dpmpp(["hero"], n=4, seed=3))  # other indices, other sprite


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "DPM-Solver++ steps n must be an integer in 1..500"),
    (dict(n=501), "DPM-Solver++ steps n must be an integer in 1..500"),
    (dict(n=2.5), "DPM-Solver++ steps n must be an integer"),
    (dict(eta=1.5), "eta must be a finite number in 0..1"),
    (dict(indices=[T, 10, 20, 0]), "step indices must fall strictly from T=500 to 0"),
    (dict(indices=[T, 0], n=1), "pass n or indices, not both"),
    (dict(impl="loop"), "impl='loop' exists for deterministic DDIM only"),
    (dict(save_rate=0), "save_rate must be a positive integer"),
])
def test_bad_dpmpp_arguments(sampler: Sampler, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        sampler.dpmpp(["hero"], **kwargs)


def _with_fast(export_dir: Path, target: Path, section: object) -> Path:
    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    manifest[FAST_KEY] = section
    return link_export(export_dir, target, manifest)


GOOD_FAST = {"solver": "dpmpp", "eta": 1.0, "default_n": 4, "indices": {"4": [T, 300, 150, 40, 0], "2": [T, 200, 0]}}


def test_fast_runs_the_manifest_table(export_dir: Path, tmp_path: Path) -> None:
    sampler = Sampler.load(_with_fast(export_dir, tmp_path / "fast", GOOD_FAST))
    assert np.array_equal(sampler.fast(["hero", "food"], seed=5),
                          sampler.dpmpp(["hero", "food"], indices=GOOD_FAST["indices"]["4"], eta=1.0, seed=5))
    assert np.array_equal(sampler.fast(["hero"], n=2, seed=5),
                          sampler.dpmpp(["hero"], indices=[T, 200, 0], eta=1.0, seed=5))
    with pytest.raises(InputError, match="fitted for n in 2, 4 network calls, got 3; use one of those, or the dpmpp"):
        sampler.fast(["hero"], n=3)


def test_export_without_fast_section_says_how_to_get_one(export_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    manifest.pop(FAST_KEY, None)
    sampler = Sampler.load(link_export(export_dir, tmp_path / "plain", manifest))
    with pytest.raises(ExportDirError, match="has no fitted few-step sampler; re-export with spritegen-export --fit"):
        sampler.fast(["hero"])


@pytest.mark.parametrize("section, message", [
    ("fast", "fast must be an object"),
    ({**GOOD_FAST, "solver": "magic"}, "fast.solver must be one of dpmpp"),
    ({**GOOD_FAST, "eta": 2}, "fast.eta must be a finite number in 0..1"),
    ({**GOOD_FAST, "default_n": 3}, "fast.default_n = 3 has no table"),
    ({**GOOD_FAST, "indices": {"4": [T, 300, 350, 40, 0]}}, "strictly from T=500 to 0"),
    ({**GOOD_FAST, "indices": {"3": [T, 300, 150, 40, 0]}}, "must hold 3 + 1 step indices"),
    ({**GOOD_FAST, "indices": {"x" * 10**5: [T, 0]}}, "must hold"),
    ({**GOOD_FAST, "indices": {str(k): [T, 0] for k in range(100)}}, "must hold 1..64 tables"),
    ({**GOOD_FAST, "student": [1]}, "fast.student must be an object"),
    ({**GOOD_FAST, "solver": "ddim", "student": {}, "indices": {"4": [T, 300, 150, 40, 0], "1": [T, 0]}},
     "holds one table"),
])
def test_malformed_fast_section_refused_at_load(export_dir: Path, tmp_path: Path, section: object,
                                                message: str) -> None:
    with pytest.raises(ExportDirError) as caught:
        Sampler.load(_with_fast(export_dir, tmp_path / "bad", section))
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 400
