"""Eager PyTorch reference samplers: the course's DDPM and DDIM, and DPM-Solver++; the parity oracle.

Both follow the course's samplers (README.md, "Upstream quirks", lists where we
differ) operation for operation on the float32 schedule
of `spritegen.export.schedule`, so with guidance=0 and eta=0 they are the course's
samplers (with the pinned shortcut). Two extensions, both off by default:

- classifier-free guidance: eps = (1 + w) * eps(x, t, c) - w * eps(x, t, 0);
- stochastic DDIM (eta > 0, Song et al. 2021, eq. 12).

`sample_dpmpp` is not the course's: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++",
Algorithm 2, data prediction, multistep second order) on the same discrete schedule, and with
eta = 1 its stochastic form SDE-DPM-Solver++(2M) (same paper, section 5; the "midpoint" form
diffusers and k-diffusion use); tests/test_solvers.py checks both against diffusers.

Noise can always be injected: `noise` is x_T and `step_noise[i-1]` (shape
(T, B, C, H, W)) is the noise added by the step that starts at index i, for DDPM and
stochastic DDIM alike, so every other backend can be fed identical draws.

Symbols: x = x_i, eps = predicted noise, ab = alpha-bar_i, ab_prev = alpha-bar_prev.
"""

from __future__ import annotations

import torch
from torch import nn

from spritegen.contract import (DDIM_DEFAULT_STEPS, DDPM_SAVE_RATE, ScheduleConfig, check_solver_indices, ddim_pairs,
                                ddpm_keeps, solver_triples)
from spritegen.export.schedule import half_log_snr, make_schedule


def _time(i: int, timesteps: int) -> torch.Tensor:
    """t = i/T shaped (1, 1, 1, 1), as the course passes it (broadcast over the batch)."""
    return torch.tensor([i / timesteps])[:, None, None, None]


def _predict_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                 context: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """eps(x, t, c), mixed with the unconditional prediction when guidance != 0."""
    eps = model(x, t, c=context)
    if guidance:
        eps_uncond = model(x, t, c=torch.zeros_like(context) if context is not None else None)
        eps = (1 + guidance) * eps - guidance * eps_uncond
    return eps


def _step_noise(step_noise: torch.Tensor | None, i: int, like: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
    """The noise of the step starting at i: injected, or drawn from `generator`."""
    if step_noise is not None:
        return step_noise[i - 1]
    return torch.randn(like.shape, generator=generator, dtype=like.dtype)


@torch.no_grad()
def sample_ddpm(model: nn.Module, noise: torch.Tensor, context: torch.Tensor | None, *,
                step_noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                timesteps: int = 500, beta1: float = 1e-4, beta2: float = 0.02,
                save_rate: int = DDPM_SAVE_RATE, guidance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's DDPM sampler (T steps). Returns (clip(x_0, -1, 1), intermediates).

    intermediates: (K, B, C, H, W), the unclipped state after each step i with
    i % save_rate == 0, i == T, or i < 8, in sampling order.
    """
    s = make_schedule(ScheduleConfig(timesteps, beta1, beta2))
    x = noise
    kept = []
    for i in range(timesteps, 0, -1):
        # 1. predict the noise at t = i/T
        eps = _predict_eps(model, x, _time(i, timesteps), context, guidance)
        # 2. z ~ N(0, I), none on the last step (Ho et al. 2020, Algorithm 2)
        z = _step_noise(step_noise, i, x, generator) if i > 1 else 0
        # 3. posterior mean, then add sigma_i * z with sigma_i^2 = beta_i
        mean = (x - eps * ((1 - s.a_t[i]) / (1 - s.ab_t[i]).sqrt())) / s.a_t[i].sqrt()
        x = mean + s.b_t.sqrt()[i] * z
        if ddpm_keeps(i, timesteps, save_rate):
            kept.append(x)
    return x.clip(-1, 1), torch.stack(kept)


@torch.no_grad()
def sample_ddim(model: nn.Module, noise: torch.Tensor, context: torch.Tensor | None, *,
                n: int = DDIM_DEFAULT_STEPS, timesteps: int = 500, beta1: float = 1e-4,
                beta2: float = 0.02, eta: float = 0.0, step_noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                guidance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's DDIM sampler with step T // n. Returns (clip(x_0, -1, 1), intermediates).

    Steps run over `ddim_pairs(T, n)`: when n does not divide T the last step goes to
    t = 0 instead of the course's negative index (which wrapped to the schedule's end).
    intermediates: (S, B, C, H, W), the unclipped state after every step.
    """
    s = make_schedule(ScheduleConfig(timesteps, beta1, beta2))
    x = noise
    kept = []
    for i, i_prev in ddim_pairs(timesteps, n):
        ab, ab_prev = s.ab_t[i], s.ab_t[i_prev]
        # 1. predict the noise at t = i/T
        eps = _predict_eps(model, x, _time(i, timesteps), context, guidance)
        # 2. sigma (Song et al. eq. 16); 0 for eta = 0, which is the course's sampler
        sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
        # 3. x_prev = sqrt(ab_prev) * x0_pred + sqrt(1 - ab_prev - sigma^2) * eps + sigma * z (eq. 12)
        x0_scaled = ab_prev.sqrt() / ab.sqrt() * (x - (1 - ab).sqrt() * eps)
        x = x0_scaled + (1 - ab_prev - sigma**2).sqrt() * eps
        if eta > 0:
            x = x + sigma * _step_noise(step_noise, i, x, generator)
        kept.append(x)
    return x.clip(-1, 1), torch.stack(kept)


@torch.no_grad()
def sample_dpmpp(model: nn.Module, noise: torch.Tensor, context: torch.Tensor | None, *,
                 indices: list[int] | tuple[int, ...], timesteps: int = 500, beta1: float = 1e-4,
                 beta2: float = 0.02, eta: float = 0.0, step_noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 guidance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DPM-Solver++(2M), eta = 0, or SDE-DPM-Solver++(2M), eta = 1 (module doc), one network call
    per step over `indices` (T = i_0 > ... > i_n = 0, e.g. contract.dpmpp_indices).
    Returns (clip(x_0, -1, 1), intermediates (n, B, C, H, W), the unclipped state after each step).

    Symbols: alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha / sigma) (half_log_snr),
    h = lambda_next - lambda_i, E = e^-h = alpha_i sigma_next / (sigma_i alpha_next) (0 at the
    end, where sigma = 0), x0 = data prediction, m = the previous step's x0.
    """
    indices = check_solver_indices(list(indices), timesteps)
    s = make_schedule(ScheduleConfig(timesteps, beta1, beta2))
    alpha, sigma, lam = s.ab_t.sqrt(), (1 - s.ab_t).sqrt(), half_log_snr(s.ab_t)
    x, m = noise, None
    kept = []
    for i, i_next, i_last in solver_triples(indices):
        # 1. predict the noise at t = i/T, then the data x0 = (x - sigma_i eps) / alpha_i
        eps = _predict_eps(model, x, _time(i, timesteps), context, guidance)
        x0 = (x - sigma[i] * eps) / alpha[i]
        # 2. D: x0 (first order: the first step, and the last, which lands on sigma = 0), else the
        #    2M correction D = x0 + (x0 - m) / (2 r), r = h_last / h (Lu et al. 2022, Algorithm 2)
        if m is None or i_next == 0:
            d = x0
        else:
            r = (lam[i] - lam[i_last]) / (lam[i_next] - lam[i])
            d = x0 + (x0 - m) / (2 * r)
        # 3. x_next = (sigma_next / sigma_i) E^eta x + alpha_next (1 - E^(1+eta)) D
        #             + sigma_next sqrt(1 - E^(2 eta)) z          (eta = 0: the ODE solver)
        e = alpha[i] * sigma[i_next] / (sigma[i] * alpha[i_next])
        x = sigma[i_next] / sigma[i] * e**eta * x + alpha[i_next] * (1 - e ** (1 + eta)) * d
        if eta > 0 and i_next > 0:
            x = x + sigma[i_next] * (1 - e ** (2 * eta)).sqrt() * _step_noise(step_noise, i, x, generator)
        m = x0
        kept.append(x)
    return x.clip(-1, 1), torch.stack(kept)
