"""Whole sampler chains through the step and loop graphs, vs the eager reference samplers.

Each case feeds the graph and `spritegen.export.reference` the same x_T and the same
per-step noise, then compares the final clipped samples. Cases cover no guidance
(GB = B, with a non-zero w that the graph must ignore), guidance (GB = 2B), eta = 0
and eta > 0, batch 1 and batch 7, one-hot, blended and zero contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from spritegen.contract import (DDIM_DEFAULT_STEPS, DPMPP_DEFAULT_STEPS, GRAPHS, ModelConfig, ScheduleConfig, ddim_pairs,
                                dpmpp_indices, solver_triples)
from spritegen.export.checks import Check, Tolerances, compare
from spritegen.export.probes import contexts, ort_session, run_ort
from spritegen.export.reference import sample_ddim, sample_ddpm, sample_dpmpp

CHAIN_SEED = 7


@dataclass(frozen=True)
class Case:
    """One chain: batch, guidance weight (0 = off), DDIM eta."""

    batch: int
    guidance: float
    eta: float = 0.0
    graph_w: float | None = None  # w fed to the graph when it differs (ignored without guidance)


DDPM_CASES = (Case(batch=1, guidance=0.0, graph_w=1.5),)  # T eager calls dominate the export time
DDIM_STEP_CASES = (Case(batch=7, guidance=2.0, eta=0.5), Case(batch=1, guidance=0.0, graph_w=3.0))
DDIM_LOOP_CASES = (Case(batch=7, guidance=0.0), Case(batch=1, guidance=2.0))
# DPM-Solver++: the SDE form (eta = 1) with guidance, the ODE form (eta = 0) with an ignored w
SOLVER_CASES = (Case(batch=7, guidance=2.0, eta=1.0), Case(batch=1, guidance=0.0, graph_w=3.0))


def _inputs(config: ModelConfig, schedule: ScheduleConfig, case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_T (B, C, H, W), context (B, K), step noise (T, B, C, H, W), seeded per case."""
    generator = torch.Generator().manual_seed(CHAIN_SEED + case.batch)
    shape = (case.batch, config.in_channels, config.height, config.height)
    noise = torch.randn(shape, generator=generator)
    step_noise = torch.randn((schedule.timesteps, *shape), generator=generator)
    context = contexts(config, case.batch + 2)[2:] if case.batch < 3 else contexts(config, case.batch)
    return noise, context, step_noise


def _graph_context(context: torch.Tensor, case: Case) -> np.ndarray:
    """(GB, K): the context, then B zero rows when guided."""
    rows = torch.cat([context, torch.zeros_like(context)]) if case.guidance else context
    return rows.numpy()


def _w(case: Case) -> np.ndarray:
    return np.array([case.guidance if case.graph_w is None else case.graph_w], np.float32)


def _ddpm(session, noise, context, step_noise, case, schedule: ScheduleConfig) -> np.ndarray:
    x, c, w = noise.numpy(), _graph_context(context, case), _w(case)
    for i in range(schedule.timesteps, 0, -1):
        z = step_noise[i - 1].numpy()  # the contract: always pass z, the graph zeroes it at i = 1
        x = run_ort(session, {"x": x, "c": c, "i": np.array([i], np.int64), "z": z, "w": w})
    return np.clip(x, -1, 1)


def _ddim(session, noise, context, step_noise, case, schedule: ScheduleConfig, steps: int) -> np.ndarray:
    x, c, w = noise.numpy(), _graph_context(context, case), _w(case)
    eta = np.array([case.eta], np.float32)
    for i, i_prev in ddim_pairs(schedule.timesteps, steps):
        feed = {"x": x, "c": c, "i": np.array([i], np.int64), "i_prev": np.array([i_prev], np.int64),
                "eta": eta, "z": step_noise[i - 1].numpy(), "w": w}
        x = run_ort(session, feed)
    return np.clip(x, -1, 1)


def _solver(session, noise, context, step_noise, case, schedule: ScheduleConfig, steps: int) -> np.ndarray:
    x, c, w = noise.numpy(), _graph_context(context, case), _w(case)
    m, eta = np.zeros_like(x), np.array([case.eta], np.float32)
    for i, i_next, i_last in solver_triples(dpmpp_indices(schedule.timesteps, steps)):
        feed = {"x": x, "m": m, "c": c, "i": np.array([i], np.int64), "i_next": np.array([i_next], np.int64),
                "i_last": np.array([i_last], np.int64), "eta": eta, "z": step_noise[i - 1].numpy(), "w": w}
        x, m = session.run(None, feed)
    return np.clip(x, -1, 1)


def _reference(model, noise, context, step_noise, case, schedule: ScheduleConfig, sampler: str,
               steps: int) -> np.ndarray:
    params = dict(timesteps=schedule.timesteps, beta1=schedule.beta1, beta2=schedule.beta2, guidance=case.guidance)
    if sampler == "ddpm":
        return sample_ddpm(model, noise, context, step_noise=step_noise, **params)[0].numpy()
    if sampler == "dpmpp":
        indices = dpmpp_indices(schedule.timesteps, steps)
        return sample_dpmpp(model, noise, context, indices=indices, eta=case.eta, step_noise=step_noise,
                            **params)[0].numpy()
    return sample_ddim(model, noise, context, n=steps, eta=case.eta, step_noise=step_noise, **params)[0].numpy()


def _graph_sample(kind: str, session, noise, context, step_noise, case: Case, schedule: ScheduleConfig,
                  steps: int) -> np.ndarray:
    """The clipped sample that graph `kind` (ddpm / ddim / dpmpp / loop) produces for one case."""
    if kind == "dpmpp":
        return _solver(session, noise, context, step_noise, case, schedule, steps)
    if kind == "ddpm":
        return _ddpm(session, noise, context, step_noise, case, schedule)
    if kind == "ddim":
        return _ddim(session, noise, context, step_noise, case, schedule, steps)
    return run_ort(session, {"x": noise.numpy(), "c": _graph_context(context, case), "w": _w(case)})


def chain_checks(directory: Path, model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
                 loop_steps: int, tol: Tolerances, say: Callable[[str], None] = lambda message: None) -> list[Check]:
    """One Check per sampler file, over all of its cases."""
    plans = [
        (GRAPHS["ddpm_step"].file, "ddpm", DDPM_CASES, schedule.timesteps),
        (GRAPHS["ddim_step"].file, "ddim", DDIM_STEP_CASES, DDIM_DEFAULT_STEPS),
        (GRAPHS["ddim_loop"].file, "loop", DDIM_LOOP_CASES, loop_steps),
        (GRAPHS["solver_step"].file, "dpmpp", SOLVER_CASES, min(DPMPP_DEFAULT_STEPS, schedule.timesteps)),
    ]
    checks = []
    for file, kind, cases, steps in plans:
        say(f"validating {file}: {len(cases)} whole {steps}-step chain(s) vs the eager reference")
        session = ort_session(directory / file)
        sampler = kind if kind in ("ddpm", "dpmpp") else "ddim"
        refs, outs = [], []
        for case in cases:
            noise, context, step_noise = _inputs(config, schedule, case)
            refs.append(_reference(model, noise, context, step_noise, case, schedule, sampler, steps))
            outs.append(_graph_sample(kind, session, noise, context, step_noise, case, schedule, steps))
        checks.append(compare(file, f"reference.sample_{sampler} ({steps} steps)", refs, outs, tol.sample))
    return checks
