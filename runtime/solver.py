"""DPM-Solver++(2M) and its SDE form in the runtime: the plan and the two step implementations.

The math is `spritegen.export.reference.sample_dpmpp` (the parity oracle) and the graph
`solver_step.onnx` (spritegen.export.graphs.SolverStep), evaluated here on the manifest's
float32 alpha-bars. Per step i -> i_next, with m the previous step's x0 prediction:

    x0     = (x - sigma_i eps) / alpha_i
    D      = x0                                   first order: first step, and i_next = 0
           = x0 + (x0 - m) / (2 r)                r = (lam_i - lam_last) / (lam_next - lam_i)
    x_next = A x + B D + S z                      E = alpha_i sigma_next / (sigma_i alpha_next)
    A = (sigma_next / sigma_i) E^eta,  B = alpha_next (1 - E^(1+eta)),  S = sigma_next sqrt(1 - E^(2 eta))

(Lu et al. 2022, "DPM-Solver++", Algorithm 2, and its SDE form, eta = 1.) The noise of the
step starting at index i is stream i of the portable generator, as for DDPM and DDIM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spritegen.contract import DPMPP_DEFAULT_STEPS, check_solver_indices, dpmpp_indices, solver_triples
from spritegen.errors import ExportDirError, InputError, shown
from spritegen.runtime.checks import check_steps
from spritegen.runtime.manifest import Manifest, Schedule
from spritegen.runtime.plan import Noise, Plan
from spritegen.runtime.runners import UnetRunner, _guided_context
from spritegen.runtime.session import Graph

_F = np.float32


@dataclass(frozen=True)
class SolverStep:
    """One solver step i -> i_next (i_last: the step before; = i on the first) and its float32
    coefficients (module doc); `half_over_r` = 1 / (2 r), 0 on first-order steps."""

    i: int
    i_next: int
    i_last: int
    t: np.float32  # i / T as the network sees it
    alpha: np.float32  # alpha_i
    sigma: np.float32  # sigma_i
    a: np.float32
    b: np.float32
    s: np.float32
    half_over_r: np.float32
    noisy: bool  # whether the step adds S z (draws noise)
    keep: bool  # whether the state after it is kept as an intermediate


def dpmpp_run(timesteps: int, n: int | None, indices: Sequence[int] | None) -> tuple[int, ...]:
    """The step indices of a dpmpp call: contract.dpmpp_indices(T, n) (n default
    DPMPP_DEFAULT_STEPS), or the caller's `indices` checked; InputError otherwise."""
    if indices is None:
        n = min(DPMPP_DEFAULT_STEPS, timesteps) if n is None else n
        return tuple(dpmpp_indices(timesteps, check_steps(n, timesteps, "DPM-Solver++")))
    if n is not None:
        raise InputError("pass n or indices, not both")
    listed = indices.tolist() if isinstance(indices, np.ndarray) else indices
    if isinstance(listed, (list, tuple)):
        listed = [int(i) if isinstance(i, np.integer) else i for i in listed]
    try:
        return check_solver_indices(listed, timesteps)
    except ValueError as exc:
        raise InputError(f"{exc}; got {shown(indices)}") from None


def fast_run(manifest: Manifest, n: int | None) -> tuple[tuple[int, ...], float]:
    """(step indices, eta) of a fast call: the manifest's table for n calls (default: its
    recommended n); ExportDirError without a fitted sampler, InputError for an unfitted n."""
    fast = manifest.fast
    if fast is None:
        raise ExportDirError(f"export {manifest.directory} has no fitted few-step sampler; re-export with "
                             "spritegen-export --fit, or use the dpmpp sampler")
    return fast.table(n), fast.eta


def half_log_snr(ab_t: np.ndarray) -> np.ndarray:
    """lambda = (log ab - log(1 - ab)) / 2 in float64, rounded to float32 (index 0: +inf); the
    same expression as spritegen.export.schedule.half_log_snr, whose table solver_step.onnx holds."""
    ab = ab_t.astype(np.float64)
    with np.errstate(divide="ignore"):
        return (0.5 * (np.log(ab) - np.log(1 - ab))).astype(_F)


def solver_plan(schedule: Schedule, indices: tuple[int, ...], eta: float, save_rate: int | None,
                first_order: bool = False) -> Plan:
    """The steps over `indices` (checked by the caller: T down to 0), eta in [0, 1]; `first_order`:
    every step first order (i_last = i: DDIM, a distilled student's solver)."""
    T, ab = schedule.config.timesteps, schedule.ab_t
    alpha, sigma, lam = np.sqrt(ab), np.sqrt(_F(1) - ab), half_log_snr(ab)
    eta32 = _F(eta)
    triples = solver_triples(indices, first_order)
    steps = []
    for k, (i, i_next, i_last) in enumerate(triples, start=1):
        e = alpha[i] * sigma[i_next] / (sigma[i] * alpha[i_next])  # E = e^-h; 0 when i_next = 0
        first_order = i_last == i or i_next == 0
        half_over_r = _F(0) if first_order else _F(1) / (_F(2) * ((lam[i] - lam[i_last]) / (lam[i_next] - lam[i])))
        noisy = eta > 0 and i_next > 0
        keep = save_rate is not None and (k % save_rate == 0 or k == len(triples))
        steps.append(SolverStep(i, i_next, i_last, _F(i / T), alpha[i], sigma[i],
                                _F(sigma[i_next] / sigma[i] * e ** eta32), _F(alpha[i_next] * (1 - e ** (1 + eta32))),
                                _F(sigma[i_next] * np.sqrt(_F(1) - e ** (2 * eta32))), half_over_r, noisy, keep))
    return Plan(tuple(steps))


class SolverUnetRunner(UnetRunner):
    """eps from unet.onnx (UnetRunner), the solver update in numpy (module doc); state x and m."""

    def __init__(self, graph: Graph, batch: int, image: tuple[int, ...], classes: int, guided: bool) -> None:
        super().__init__(graph, batch, image, classes, guided)
        self.m = np.empty((batch, *image), np.float32)  # the previous step's x0 prediction
        self.x0 = np.empty((batch, *image), np.float32)

    def start(self, x_T: np.ndarray, context: np.ndarray, weight: float, eta: float = 0.0) -> None:
        super().start(x_T, context, weight)  # eta is in the plan's coefficients

    def _step(self, step: SolverStep, noise: Noise) -> None:
        eps = self._predict(step.t)
        x, x0, d = self.state(), self.x0, self.m
        np.multiply(eps, step.sigma, out=x0)
        np.subtract(x, x0, out=x0)
        np.divide(x0, step.alpha, out=x0)  # x0 = (x - sigma_i eps) / alpha_i
        if step.half_over_r:
            np.subtract(x0, d, out=d)  # x0 - m
            np.multiply(d, step.half_over_r, out=d)
            np.add(x0, d, out=d)  # D = x0 + (x0 - m) / (2 r)
        else:
            np.copyto(d, x0)  # D = x0
        np.multiply(x, step.a, out=x)
        np.multiply(d, step.b, out=d)
        np.add(x, d, out=x)  # x = A x + B D
        if step.noisy:
            noise.fill(step.i, self.z)
            np.multiply(self.z, step.s, out=self.z)
            np.add(x, self.z, out=x)  # + S z
        np.copyto(self.m, x0)  # the next step's m


class SolverStepRunner:
    """solver_step.onnx per step; two Bindings ping-pong between two (x, m) buffer pairs, so no
    state moves between calls (on CUDA it never leaves the GPU)."""

    def __init__(self, graph: Graph, batch: int, image: tuple[int, ...], classes: int, guided: bool) -> None:
        self.guided, self.parity = guided, 0
        shape = (batch, *image)
        self.states = (graph.buffer(shape), graph.buffer(shape))
        self.preds = (graph.buffer(shape), graph.buffer(shape))  # x0 predictions: the next call's m
        self.c = graph.buffer(((2 if guided else 1) * batch, classes))
        self.z = graph.buffer(shape)  # stays zero when eta = 0
        self.i, self.i_next, self.i_last = (graph.buffer((1,), np.int64) for _ in range(3))
        self.eta, self.w = graph.buffer((1,)), graph.buffer((1,))
        shared = {"c": self.c, "i": self.i, "i_next": self.i_next, "i_last": self.i_last, "eta": self.eta,
                  "z": self.z, "w": self.w}
        (xa, xb), (ma, mb) = self.states, self.preds
        self.bindings = (graph.bind({**shared, "x": xa, "m": ma, "x_next": xb, "x0": mb}),
                         graph.bind({**shared, "x": xb, "m": mb, "x_next": xa, "x0": ma}))
        self._device = graph.on_device

    def start(self, x_T: np.ndarray, context: np.ndarray, weight: float, eta: float = 0.0) -> None:
        self._device(self._start, x_T, context, weight, eta)

    def step(self, step: SolverStep, noise: Noise) -> None:
        self._device(self._step, step, noise)

    def state(self) -> np.ndarray:
        return self._device(self.states[self.parity].pull)

    def _start(self, x_T: np.ndarray, context: np.ndarray, weight: float, eta: float) -> None:
        self.parity = 0
        np.copyto(self.states[0].host, x_T)
        self.states[0].push()
        self.preds[0].host.fill(0)  # m of the first step: unused (first order), but finite
        self.preds[0].push()
        np.copyto(self.c.host, _guided_context(context, self.guided))
        self.c.push()
        self.w.host[0], self.eta.host[0] = weight, eta
        self.z.host.fill(0)  # eta = 0 never fills z: keep it zero, not last call's noise
        for buffer in (self.w, self.eta, self.z):
            buffer.push()

    def _step(self, step: SolverStep, noise: Noise) -> None:
        for buffer, value in ((self.i, step.i), (self.i_next, step.i_next), (self.i_last, step.i_last)):
            buffer.host[0] = value
            buffer.push()
        if step.noisy:
            noise.fill(step.i, self.z.host)
            self.z.push()
        self.bindings[self.parity].run()
        self.parity ^= 1
