"""The eager reference samplers against a re-derivation written here from the course's sampler
text (README.md, "Upstream quirks").

The re-derivation shares no code with spritegen.export.reference: schedule, index
walk, save rule and update formulas are typed again from the course's text, so a
wrong index, a missing square root or a shifted noise draw shows up as a mismatch.
"""

from __future__ import annotations

import pytest
import torch

from spritegen.contract import ModelConfig
from spritegen.export.reference import sample_ddim, sample_ddpm
from tests.models import make_random_model
from tests.tolerances import REDERIVATION_ATOL

T, BETA1, BETA2 = 500, 1e-4, 0.02


def course_schedule() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = (BETA2 - BETA1) * torch.linspace(0, 1, T + 1) + BETA1
    a = 1 - b
    ab = torch.cumsum(a.log(), dim=0).exp()
    ab[0] = 1
    return b, a, ab


def rederived_ddpm(model, x, c, z):
    b, a, ab = course_schedule()
    kept = []
    for i in range(T, 0, -1):
        eps = model(x, torch.tensor([[[[i / T]]]]), c)
        noise = z[i - 1] if i > 1 else torch.zeros_like(x)
        x = (x - eps * ((1 - a[i]) / torch.sqrt(1 - ab[i]))) / torch.sqrt(a[i]) + torch.sqrt(b[i]) * noise
        if i % 20 == 0 or i == T or i < 8:
            kept.append(x)
    return torch.clamp(x, -1, 1), torch.stack(kept)


def rederived_ddim(model, x, c, n):
    _, _, ab = course_schedule()
    step = T // n
    kept = []
    i = T
    while i > 0:
        prev = i - step if i - step >= 0 else 0
        eps = model(x, torch.tensor([[[[i / T]]]]), c)
        x = torch.sqrt(ab[prev]) / torch.sqrt(ab[i]) * (x - torch.sqrt(1 - ab[i]) * eps) + torch.sqrt(1 - ab[prev]) * eps
        kept.append(x)
        i -= step
    return torch.clamp(x, -1, 1), torch.stack(kept)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    """A small ContextUnet (n_feat=16) keeps 500 steps cheap; the samplers do not care."""
    return make_random_model(seed=3, config=ModelConfig(n_feat=16))


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    context = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0.6], [0, 0, 0, 0, 0]], dtype=torch.float32)
    return torch.randn(3, 3, 16, 16, generator=g), context


def test_ddpm_matches_rederivation(small_model, inputs) -> None:
    noise, context = inputs
    z = torch.randn(T, *noise.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, want_kept = rederived_ddpm(small_model, noise, context, z)
    got, got_kept = sample_ddpm(small_model, noise, context, step_noise=z)
    assert got_kept.shape == (32, 3, 3, 16, 16)  # 25 multiples of 20, plus i = 7..1
    torch.testing.assert_close(got, want, rtol=0, atol=REDERIVATION_ATOL)
    torch.testing.assert_close(got_kept, want_kept, rtol=0, atol=REDERIVATION_ATOL)


def test_ddpm_generator_draws_equal_injected_draws(small_model, inputs) -> None:
    """Without step_noise, step i draws from the generator in order i = T..2."""
    noise, context = inputs
    g = torch.Generator().manual_seed(5)
    drawn = [torch.randn(noise.shape, generator=g) for _ in range(T - 1)]  # steps T..2
    z = torch.stack([torch.zeros_like(noise)] + drawn[::-1])  # z[i-1] for i = 1..T
    injected, _ = sample_ddpm(small_model, noise, context, step_noise=z)
    generated, _ = sample_ddpm(small_model, noise, context, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(generated, injected, rtol=0, atol=0)


@pytest.mark.parametrize(("n", "steps"), [(25, 25), (50, 50), (7, 8)])
def test_ddim_matches_rederivation(small_model, inputs, n: int, steps: int) -> None:
    noise, context = inputs
    with torch.no_grad():
        want, want_kept = rederived_ddim(small_model, noise, context, n)
    got, got_kept = sample_ddim(small_model, noise, context, n=n)
    assert got_kept.shape[0] == steps
    torch.testing.assert_close(got, want, rtol=0, atol=REDERIVATION_ATOL)
    torch.testing.assert_close(got_kept, want_kept, rtol=0, atol=REDERIVATION_ATOL)


def test_ddim_eta_zero_ignores_noise_and_eta_positive_uses_it(small_model, inputs) -> None:
    noise, context = inputs
    z = torch.randn(T, *noise.shape, generator=torch.Generator().manual_seed(2))
    deterministic, _ = sample_ddim(small_model, noise, context, n=25)
    with_noise, _ = sample_ddim(small_model, noise, context, n=25, eta=0.0, step_noise=z)
    stochastic, _ = sample_ddim(small_model, noise, context, n=25, eta=1.0, step_noise=z)
    assert torch.equal(deterministic, with_noise)
    assert (stochastic - deterministic).abs().max() > 1e-2


@pytest.mark.fast
def test_guidance_mixes_conditional_and_unconditional(small_model, inputs) -> None:
    """One DDIM step (n=1) exposes eps directly: x_0 = (x - sqrt(1-ab) eps) / sqrt(ab)."""
    noise, context = inputs
    _, _, ab = course_schedule()
    t = torch.tensor([[[[1.0]]]])
    with torch.no_grad():
        eps = 3.0 * small_model(noise, t, context) - 2.0 * small_model(noise, t, torch.zeros_like(context))
    want = (noise - torch.sqrt(1 - ab[T]) * eps) / torch.sqrt(ab[T])
    _, kept = sample_ddim(small_model, noise, context, n=1, guidance=2.0)
    torch.testing.assert_close(kept[-1], want, rtol=1e-5, atol=1e-4)


@pytest.mark.fast
def test_ddim_rejects_n_outside_range(small_model, inputs) -> None:
    noise, context = inputs
    for n in (0, T + 1):
        with pytest.raises(ValueError, match="1 <= n <= 500"):
            sample_ddim(small_model, noise, context, n=n)
