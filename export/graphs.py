"""Torch modules that fuse the sampler math with the network, for the step graphs.

Each module here is traced once by the ONNX exporter; the schedule lives in buffers,
which the exporter writes as initializers, so a caller of the exported graph passes
only the state, the context, the step index and the noise (spritegen.contract.GRAPHS).
The arithmetic is operation for operation that of `spritegen.export.reference`, on
per-index coefficient tables computed with the same float32 torch ops, so a step
graph matches the eager sampler to float32 rounding.

Guidance without If nodes (CUDA graphs refuse them): c has GB = G*B rows, G in
{1, 2}; x is tiled G times, the network runs once on the stacked batch, and
eps = (1 + w') * eps[:B] - w' * eps[(G-1)B:GB] with w' = [0, w][G-1], so w is
exactly ignored without guidance (G = 1) and the unguided eps is returned bit for bit.

Shape values only index, never compute: G comes from `Shape` ops, and ONNX Runtime's
CUDA provider keeps shape arithmetic on the CPU, so a float computed from G (the
earlier w' = w * (G - 1)) would be a CPU tensor feeding GPU math: a host-device copy
per use, which also makes ORT refuse CUDA graph capture. w' is therefore *selected*
by a Slice of the two-element tensor [0, w] at G-1 (Slice reads its indices from
host memory on CUDA: no copy), which gives the same bits as the product did.
`spritegen.export.shape_flow` checks every exported graph for this rule.

Symbols: i = step index (1..T), t = i/T, ab = alpha-bar_i, ab_prev = alpha-bar_{i_prev}.
"""

from __future__ import annotations

import torch
from torch import nn

from spritegen.contract import ScheduleConfig
from spritegen.export.schedule import half_log_snr, make_schedule


def time_table(timesteps: int) -> torch.Tensor:
    """t[i] = float32(i / T) for i in 0..T, rounded from float64 as reference._time does."""
    return torch.tensor([i / timesteps for i in range(timesteps + 1)], dtype=torch.float32)


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for an int64 index of shape (1,): an ONNX Gather, shape (1,)."""
    return torch.index_select(table, 0, index)


class GuidedEps(nn.Module):
    """eps(x, t, c) with classifier-free guidance folded in (module doc)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("no_weight", torch.zeros(1))  # w' without guidance (an initializer)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]  # B
        groups = c.shape[0] // batch  # G = GB / B, 1 or 2
        stacked = x.repeat(groups, 1, 1, 1)  # (GB, C, H, W)
        eps_all = self.unet(stacked, t, c)  # (GB, C, H, W); t (1,) broadcasts over GB
        eps_cond = eps_all[:batch]  # (B, C, H, W)
        eps_uncond = eps_all[(groups - 1) * batch:groups * batch]  # (B, C, H, W)
        weight = torch.cat([self.no_weight, w])[groups - 1:groups]  # (1,): [0, w][G-1] (module doc)
        return (1 + weight) * eps_cond - weight * eps_uncond


class _ScheduleTables(nn.Module):
    """Float32 schedule tables as buffers (exported as initializers)."""

    def __init__(self, schedule: ScheduleConfig) -> None:
        super().__init__()
        s = make_schedule(schedule)
        self.register_buffer("t_table", time_table(schedule.timesteps))
        self.register_buffer("ab_t", s.ab_t.clone())
        # DDPM coefficients, each the reference's expression evaluated per index.
        eps_coef = (1 - s.a_t) / (1 - s.ab_t).sqrt()  # index 0 divides by 0: never used
        eps_coef[0] = 0
        self.register_buffer("ddpm_eps_coef", eps_coef)
        self.register_buffer("sqrt_a_t", s.a_t.sqrt())
        sigma = s.b_t.sqrt()
        sigma[:2] = 0  # no noise on the last step (i = 1); index 0 unused
        self.register_buffer("ddpm_sigma", sigma)
        # DPM-Solver++ tables (reference.sample_dpmpp): alpha, sigma, lambda = log(alpha / sigma)
        self.register_buffer("alpha", s.ab_t.sqrt())
        self.register_buffer("sigma", (1 - s.ab_t).sqrt())
        self.register_buffer("lam", half_log_snr(s.ab_t))


class _FusedStep(_ScheduleTables):
    """The schedule tables plus the guided network: what every fused graph is made of."""

    def __init__(self, unet: nn.Module, schedule: ScheduleConfig) -> None:
        super().__init__(schedule)
        self.eps = GuidedEps(unet)

    def _ddim_inputs(self, x: torch.Tensor, c: torch.Tensor, i: torch.Tensor, i_prev: torch.Tensor,
                     w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """eps at t = i/T (B, C, H, W), then ab and ab_prev (1,): what a DDIM update needs."""
        eps = self.eps(x, _lookup(self.t_table, i), c, w)
        return eps, _lookup(self.ab_t, i), _lookup(self.ab_t, i_prev)


def _x0_scaled(x: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor, ab_prev: torch.Tensor) -> torch.Tensor:
    """sqrt(ab_prev) * x0_pred, written as reference.sample_ddim writes it."""
    return ab_prev.sqrt() / ab.sqrt() * (x - (1 - ab).sqrt() * eps)


class DdpmStep(_FusedStep):
    """One DDPM step i -> i-1 (Ho et al. 2020, Algorithm 2), as reference.sample_ddpm."""

    def forward(self, x: torch.Tensor, c: torch.Tensor, i: torch.Tensor, z: torch.Tensor,
                w: torch.Tensor) -> torch.Tensor:
        # 1. predict the noise at t = i/T
        eps = self.eps(x, _lookup(self.t_table, i), c, w)  # (B, C, H, W)
        # 2. posterior mean (eq. 11), then add sigma_i * z, sigma_1 = 0
        mean = (x - eps * _lookup(self.ddpm_eps_coef, i)) / _lookup(self.sqrt_a_t, i)
        return mean + _lookup(self.ddpm_sigma, i) * z


def ddim_update(x: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor, ab_prev: torch.Tensor,
                eta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Generalised DDIM (Song et al. 2021, eq. 12 and 16) as reference.sample_ddim writes it."""
    # 2. sigma (eq. 16); 0 for eta = 0, which is the course's sampler
    sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
    # 3. x_prev = sqrt(ab_prev) * x0_pred + sqrt(1 - ab_prev - sigma^2) * eps + sigma * z
    return _x0_scaled(x, eps, ab, ab_prev) + (1 - ab_prev - sigma**2).sqrt() * eps + sigma * z


class DdimStep(_FusedStep):
    """One DDIM step i -> i_prev with eta and injected noise z."""

    def forward(self, x: torch.Tensor, c: torch.Tensor, i: torch.Tensor, i_prev: torch.Tensor,
                eta: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # 1. predict the noise at t = i/T
        eps, ab, ab_prev = self._ddim_inputs(x, c, i, i_prev, w)  # (B, C, H, W), (1,), (1,)
        return ddim_update(x, eps, ab, ab_prev, eta, z)


class DdimBody(_FusedStep):
    """A deterministic DDIM step (eta = 0): the body that ddim_loop.onnx repeats.

    Unlike DdimStep it has no z input, so the loop graph needs no noise; x_prev is
    the reference's x0_scaled + sqrt(1 - ab_prev) * eps, the eta = 0 case exactly.
    """

    def forward(self, x: torch.Tensor, c: torch.Tensor, i: torch.Tensor, i_prev: torch.Tensor,
                w: torch.Tensor) -> torch.Tensor:
        eps, ab, ab_prev = self._ddim_inputs(x, c, i, i_prev, w)
        return _x0_scaled(x, eps, ab, ab_prev) + (1 - ab_prev).sqrt() * eps  # (B, C, H, W)


class SolverStep(_FusedStep):
    """One DPM-Solver++(2M) step i -> i_next, eta > 0 its SDE form, as reference.sample_dpmpp.

    The first-order cases (the first step: i_last = i; the last: i_next = 0) are selected
    with a Where, not an If (module doc): the second-order branch is computed too and
    discarded there, where r is 0 or infinite.
    """

    def forward(self, x: torch.Tensor, m: torch.Tensor, c: torch.Tensor, i: torch.Tensor, i_next: torch.Tensor,
                i_last: torch.Tensor, eta: torch.Tensor, z: torch.Tensor,
                w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # 1. predict the noise at t = i/T, then the data x0 = (x - sigma_i eps) / alpha_i
        eps = self.eps(x, _lookup(self.t_table, i), c, w)  # (B, C, H, W)
        a_i, s_i = _lookup(self.alpha, i), _lookup(self.sigma, i)  # (1,)
        a_n, s_n = _lookup(self.alpha, i_next), _lookup(self.sigma, i_next)  # (1,)
        x0 = (x - s_i * eps) / a_i  # (B, C, H, W)
        # 2. D = x0 + (x0 - m) / (2 r), r = h_last / h; D = x0 where the step is first order
        lam_i = _lookup(self.lam, i)
        r = (lam_i - _lookup(self.lam, i_last)) / (_lookup(self.lam, i_next) - lam_i)
        first_order = torch.logical_or(i_last == i, i_next == 0)  # (1,) bool
        d = torch.where(first_order, x0, x0 + (x0 - m) / (2 * r))
        # 3. x_next = (s_n / s_i) E^eta x + a_n (1 - E^(1+eta)) D + s_n sqrt(1 - E^(2 eta)) z, E = e^-h
        e = a_i * s_n / (s_i * a_n)  # (1,)
        x_next = s_n / s_i * e.pow(eta) * x + a_n * (1 - e.pow(1 + eta)) * d + s_n * (1 - e.pow(2 * eta)).sqrt() * z
        return x_next, x0
