"""The course's DDPM noise schedule, computed in float32 exactly as the course does.

b_t = (beta2 - beta1) * linspace(0, 1, T+1) + beta1; a_t = 1 - b_t;
ab_t = exp(cumsum(log a_t)), ab_t[0] = 1. Index 0..T. The manifest stores these
arrays, so nothing downstream recomputes them (and float rounding cannot drift).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spritegen.contract import ScheduleConfig


@dataclass(frozen=True)
class Schedule:
    """Float32 tensors of shape (T+1,): beta (b_t), alpha (a_t), alpha-bar (ab_t)."""

    config: ScheduleConfig
    b_t: torch.Tensor
    a_t: torch.Tensor
    ab_t: torch.Tensor


def make_schedule(config: ScheduleConfig = ScheduleConfig()) -> Schedule:
    """Build the schedule as the course's setup_ddpm does (same ops, same dtype)."""
    b_t = (config.beta2 - config.beta1) * torch.linspace(0, 1, config.timesteps + 1) + config.beta1
    a_t = 1 - b_t
    ab_t = torch.cumsum(a_t.log(), dim=0).exp()
    ab_t[0] = 1
    return Schedule(config=config, b_t=b_t, a_t=a_t, ab_t=ab_t)


def half_log_snr(ab_t: torch.Tensor) -> torch.Tensor:
    """lambda_i = log(alpha_i / sigma_i) = (log ab_i - log(1 - ab_i)) / 2 per index, the time
    variable of DPM-Solver (Lu et al. 2022), computed in float64 from the float32 alpha-bars and
    rounded once to float32; index 0 (ab = 1, sigma = 0) is +inf. The runtime computes the same
    table from the manifest's ab_t with the same expression (runtime/plan.py)."""
    ab = ab_t.double()
    lam = 0.5 * (ab.log() - (1 - ab).log())
    return lam.float()
