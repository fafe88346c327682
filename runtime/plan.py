"""What one sampling call will do, decided before the loop: steps, coefficients, noise.

A `Plan` lists the steps (i -> i_prev) with their float32 coefficients, evaluated once
from the manifest's schedule arrays with the reference's expressions (so the numpy
update matches `spritegen.export.reference` to float32 rounding):

    x_prev = (x - q * eps) * p / d + r * eps + s * z

| sampler | q                    | p                      | d         | r                       | s                   |
| ------- | -------------------- | ---------------------- | --------- | ----------------------- | ------------------- |
| DDPM    | (1-a_i)/sqrt(1-ab_i) | 1                      | sqrt(a_i) | 0                       | sqrt(b_i); 0 at i=1 |
| DDIM    | sqrt(1-ab)           | sqrt(ab_prev)/sqrt(ab) | 1         | sqrt(1-ab_prev-sigma^2) | sigma (eq. 16)      |

(Ho et al. 2020 Algorithm 2; Song et al. 2021 eq. 12 and 16.) `Noise` owns x_T and the
per-step draws: injected arrays (step_noise[i-1] is the noise of the step starting at
i, the reference's convention) or one numpy Generator drawing in a fixed order (x_T,
then each noisy step in sampling order) into a buffer the caller owns. x_T is drawn
even when injected, so a seed gives the same step noise either way: `Sampler.noise(B,
seed)` plus `ddpm(..., noise=that, seed=seed)` equals `ddpm(..., seed=seed)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spritegen.contract import ddim_pairs, ddpm_keeps
from spritegen.runtime.manifest import Schedule

_F = np.float32


@dataclass(frozen=True)
class Step:
    """One sampler step i -> i_prev and its coefficients (module table)."""

    i: int
    i_prev: int
    t: np.float32  # i / T as the network sees it
    q: np.float32
    p: np.float32
    d: np.float32
    r: np.float32
    s: np.float32
    noisy: bool  # whether the step adds s * z (draws noise)
    keep: bool  # whether the state after it is kept as an intermediate


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    @property
    def kept(self) -> int:
        return sum(step.keep for step in self.steps)


def ddpm_plan(schedule: Schedule, save_rate: int | None) -> Plan:
    """T steps i -> i-1; noise on every step but the last (i = 1)."""
    T, a, b, ab = schedule.config.timesteps, schedule.a_t, schedule.b_t, schedule.ab_t
    steps = []
    for i in range(T, 0, -1):
        q = (_F(1) - a[i]) / np.sqrt(_F(1) - ab[i])
        noisy = i > 1
        steps.append(Step(i, i - 1, _F(i / T), _F(q), _F(1), np.sqrt(a[i]), _F(0),
                          np.sqrt(b[i]) if noisy else _F(0), noisy,
                          save_rate is not None and ddpm_keeps(i, T, save_rate)))
    return Plan(tuple(steps))


def ddim_plan(schedule: Schedule, n: int, eta: float, save_rate: int | None) -> Plan:
    """The steps of ddim_pairs(T, n) (the contract's clamped pairs), with eta-scaled noise."""
    T, ab_t = schedule.config.timesteps, schedule.ab_t
    pairs = ddim_pairs(T, n)
    eta32 = _F(eta)
    steps = []
    for k, (i, i_prev) in enumerate(pairs, start=1):
        ab, ab_prev = ab_t[i], ab_t[i_prev]
        sigma = eta32 * np.sqrt((_F(1) - ab_prev) / (_F(1) - ab)) * np.sqrt(_F(1) - ab / ab_prev)
        keep = save_rate is not None and (k % save_rate == 0 or k == len(pairs))
        steps.append(Step(i, i_prev, _F(i / T), np.sqrt(_F(1) - ab), np.sqrt(ab_prev) / np.sqrt(ab), _F(1),
                          np.sqrt(_F(1) - ab_prev - sigma * sigma), _F(sigma), eta > 0, keep))
    return Plan(tuple(steps))


def update(x: np.ndarray, eps: np.ndarray, step: Step, z: np.ndarray | None, tmp: np.ndarray) -> None:
    """x <- (x - q eps) p / d + r eps + s z, in place; `tmp` is scratch, `z` is consumed."""
    np.multiply(eps, step.q, out=tmp)  # q eps
    np.subtract(x, tmp, out=x)  # x - q eps
    if step.p != 1:
        np.multiply(x, step.p, out=x)  # DDIM: sqrt(ab_prev)/sqrt(ab) * (...) = scaled x0 prediction
    if step.d != 1:
        np.divide(x, step.d, out=x)  # DDPM: posterior mean
    if step.r != 0:
        np.multiply(eps, step.r, out=tmp)  # DDIM: direction pointing to x_t
        np.add(x, tmp, out=x)
    if z is not None and step.noisy:
        np.multiply(z, step.s, out=z)  # sigma z
        np.add(x, z, out=x)


def mix_guidance(eps: np.ndarray, batch: int, weight: float) -> np.ndarray:
    """eps(c) <- (1 + w) eps(c) - w eps(0), in place on rows [:B]; rows [B:] are scratch."""
    cond, uncond = eps[:batch], eps[batch:2 * batch]
    np.multiply(cond, _F(1 + weight), out=cond)
    np.multiply(uncond, _F(weight), out=uncond)
    np.subtract(cond, uncond, out=cond)
    return cond


class Noise:
    """x_T and the steps' noise, injected or drawn (module doc). One per sampling call."""

    def __init__(self, noise: np.ndarray | None, step_noise: np.ndarray | None, seed: int | None,
                 shape: tuple[int, ...]) -> None:
        self._rng = np.random.default_rng(seed)
        drawn = self._rng.standard_normal(shape, dtype=np.float32)  # drawn even when injected: see below
        self.x_T = noise if noise is not None else drawn
        self._step_noise = step_noise

    def fill(self, i: int, out: np.ndarray) -> None:
        """Write the noise of the step starting at i into `out` (no allocation when drawn)."""
        if self._step_noise is not None:
            np.copyto(out, self._step_noise[i - 1])
        else:
            self._rng.standard_normal(out=out, dtype=np.float32)
