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
i, the reference's convention) or the portable generator (`spritegen.runtime.noise`,
docs/noise.md): x_T is stream 0 and the step starting at index i is stream i, so a
seed gives the same step noise whether or not x_T is injected, and whichever steps a
sampler takes: `Sampler.noise(B, seed)` plus `ddpm(..., noise=that, seed=seed)` equals
`ddpm(..., seed=seed)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spritegen.contract import NOISE, ddim_pairs, ddpm_keeps
from spritegen.runtime.manifest import Schedule
from spritegen.runtime.noise import draw

_F = np.float32
_PREFETCH = 1 << 18  # normals drawn per pass over the coming steps' streams (1 MiB of float32)


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
    """The steps of one call, in order: `Step`s here, `runtime.solver.SolverStep`s for the solvers."""

    steps: tuple[Any, ...]

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
    """x_T and the steps' noise of one sampling call, injected or drawn (module doc).

    `seeds`: one int (the whole batch drawn as one array in C order) or a tuple of B ints
    (row r drawn as a batch-1 call with seeds[r]); `streams`: the step indices whose noise
    the call will ask for, in order, so the draws are vectorised over many steps at once."""

    def __init__(self, noise: np.ndarray | None, step_noise: np.ndarray | None, seeds: int | tuple[int, ...],
                 shape: tuple[int, ...], streams: Sequence[int] = ()) -> None:
        self._seeds, self._shape, self._step_noise = seeds, shape, step_noise
        self._streams = tuple(streams)
        self._chunk = max(1, _PREFETCH // int(np.prod(shape)))
        self._ready: dict[int, np.ndarray] = {}
        self.x_T = noise if noise is not None else self._draw((NOISE.x_t_stream,))[0]

    def fill(self, i: int, out: np.ndarray) -> None:
        """Write the noise of the step starting at i into `out`."""
        if self._step_noise is not None:
            np.copyto(out, self._step_noise[i - 1])
            return
        if i not in self._ready:
            at = self._streams.index(i) if i in self._streams else None
            coming = (i,) if at is None else self._streams[at:at + self._chunk]
            self._ready = dict(zip(coming, self._draw(coming)))
        np.copyto(out, self._ready.pop(i))

    def _draw(self, streams: tuple[int, ...]) -> np.ndarray:
        """(len(streams), *shape) float32 (docs/noise.md section 4)."""
        if isinstance(self._seeds, tuple):  # one seed per row: (S, B, C*H*W)
            return draw(self._seeds, streams, int(np.prod(self._shape[1:]))).reshape(len(streams), *self._shape)
        return draw((self._seeds,), streams, int(np.prod(self._shape))).reshape(len(streams), *self._shape)
