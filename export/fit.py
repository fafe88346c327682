"""Fit the few-step sampler's step indices to one checkpoint, data-free.

Why: with few network calls, *where* the calls fall on the schedule decides quality, and the
best places depend on the trained network (what it gets right at which noise level), not only
on the schedule. So for each call count n we choose the n + 1 step indices T = i_0 > ... >
i_n = 0 that bring DPM-Solver++(2M)'s result closest to the model's own long-chain result from
the same starting noise (the same ODE solved with `TEACHER_STEPS` calls), averaged over
`FIT_SPRITES` noises and contexts (every class, and unconditional). No data set is needed:
the teacher is the checkpoint itself. Every run goes through the export's own
solver_step.onnx on ONNX Runtime, so the tables are fitted to exactly what the runtimes run
(and ~3x faster than eager PyTorch).

Search: coordinate descent on the integer indices, starting from the evenly spaced
contract.dpmpp_indices; for strides 64, 32, ..., 1 each interior index is moved by +-stride
while that lowers the loss. The loss is measured on the fitting noises; a second, held-out set
of noises reports the fitted and the evenly spaced tables' errors, and when the fitted table is
worse there than the evenly spaced one (it memorised its noises), the evenly spaced one is kept.
Bounded by `seconds`: when time runs out, the best table so far is kept.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from spritegen.contract import FAST_KEY, ModelConfig, ScheduleConfig, dpmpp_indices, solver_triples
from spritegen.export.probes import contexts, ort_session
from spritegen.files import write_text_atomic

FIT_CALLS = (4, 5, 6, 8, 10)  # the call counts `spritegen-export --fit` fits
FIT_SPRITES = 35  # noises the loss averages over (5 per context kind: 5 one-hots, a blend, zeros)
TEACHER_STEPS = 200  # calls of the teacher run (DPM-Solver++ 2M)
FIT_SEED, HELD_OUT_SEED = 20261204, 20261205
STRIDES = (64, 32, 16, 8, 4, 2, 1)


@dataclass(frozen=True)
class Fit:
    """One call count's fitted table and its errors (mean squared error per value vs the teacher)."""

    n: int
    indices: tuple[int, ...]
    loss: float  # on the fitting noises
    held_out: float  # on the held-out noises
    held_out_uniform: float  # the evenly spaced table, on the held-out noises
    evaluations: int
    complete: bool  # False: the time bound stopped the search early
    kept_evenly_spaced: bool  # the fitted table was worse on the held-out noises (module doc)


class _Problem:
    """Noises, contexts and the teacher's results for one seed; loss of a table on them."""

    def __init__(self, solver_step: Path, config: ModelConfig, schedule: ScheduleConfig, seed: int,
                 sprites: int, teacher_steps: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        shape = (sprites, config.in_channels, config.height, config.height)
        self.session = ort_session(solver_step)
        self.noise = torch.randn(shape, generator=generator).numpy()  # (B, C, H, W)
        self.context = contexts(config, sprites).numpy()  # (B, K): one-hots, a blend, zeros, repeated
        self.teacher = self.run(dpmpp_indices(schedule.timesteps, min(teacher_steps, schedule.timesteps)))

    def run(self, indices: list[int] | tuple[int, ...]) -> np.ndarray:
        """The deterministic (eta = 0) solver's unclipped final state over `indices`."""
        x, m = self.noise, np.zeros_like(self.noise)
        zero, z = np.zeros(1, np.float32), np.zeros_like(self.noise)  # eta = 0: z is read, never used
        for i, i_next, i_last in solver_triples(indices):
            feed = {"x": x, "m": m, "c": self.context, "i": np.array([i]), "i_next": np.array([i_next]),
                    "i_last": np.array([i_last]), "eta": zero, "z": z, "w": zero}
            x, m = self.session.run(None, feed)
        return x

    def loss(self, indices: list[int] | tuple[int, ...]) -> float:
        return float(np.mean((self.run(indices) - self.teacher) ** 2))


def fit_indices(solver_step: Path, config: ModelConfig, schedule: ScheduleConfig, calls: tuple[int, ...] = FIT_CALLS,
                seconds: float = 600.0, say: Callable[[str], None] = lambda message: None, *,
                sprites: int = FIT_SPRITES, teacher_steps: int = TEACHER_STEPS) -> list[Fit]:
    """A fitted table per call count in `calls` (module doc), within about `seconds` after the
    teacher runs; `solver_step` is the export's solver_step.onnx."""
    say(f"fitting step indices for {', '.join(map(str, calls))} calls: teacher = DPM-Solver++ with "
        f"{min(teacher_steps, schedule.timesteps)} calls on {sprites} noises (+ {sprites} held out)")
    fitting = _Problem(solver_step, config, schedule, FIT_SEED, sprites, teacher_steps)
    held_out = _Problem(solver_step, config, schedule, HELD_OUT_SEED, sprites, teacher_steps)
    started = time.perf_counter()
    fits = []
    for k, n in enumerate(calls):
        deadline = started + seconds * (k + 1) / len(calls)  # an equal share of the budget per call count
        fits.append(_fit_one(fitting, held_out, n, schedule.timesteps, deadline))
        f = fits[-1]
        kept = ", the fitted table was worse there: kept the evenly spaced one" if f.kept_evenly_spaced else ""
        say(f"  n={n}: {list(f.indices)}  held-out error {f.held_out:.2e} (evenly spaced {f.held_out_uniform:.2e}), "
            f"{f.evaluations} evaluations{'' if f.complete else ', stopped by the time bound'}{kept}")
    return fits


def _fit_one(fitting: _Problem, held_out: _Problem, n: int, timesteps: int, deadline: float) -> Fit:
    """Coordinate descent over the interior indices of an n-call table (module doc)."""
    uniform = dpmpp_indices(timesteps, n)
    best, best_loss, evaluations = list(uniform), fitting.loss(uniform), 1
    complete = True
    for stride in STRIDES:
        improved = True
        while improved and complete:
            improved = False
            for j in range(1, n):
                for move in (stride, -stride):
                    if time.perf_counter() > deadline:
                        complete = False
                        break
                    trial = list(best)
                    trial[j] += move
                    if not trial[j + 1] < trial[j] < trial[j - 1]:
                        continue
                    loss = fitting.loss(trial)
                    evaluations += 1
                    if loss < best_loss:
                        best, best_loss, improved = trial, loss, True
                        break
        if not complete:
            break
    fitted, spaced = held_out.loss(best), held_out.loss(uniform)
    if fitted > spaced:  # it memorised its noises: keep the evenly spaced table
        return Fit(n=n, indices=tuple(uniform), loss=fitting.loss(uniform), held_out=spaced, held_out_uniform=spaced,
                   evaluations=evaluations, complete=complete, kept_evenly_spaced=True)
    return Fit(n=n, indices=tuple(best), loss=best_loss, held_out=fitted, held_out_uniform=spaced,
               evaluations=evaluations, complete=complete, kept_evenly_spaced=False)


# What `fast` runs (contract.FAST_KEY): DPM-Solver++ on the fitted tables, with this eta, at this
# many calls by default. Chosen on the bundled model by benchmarks.sampler_quality (docs/samplers.md).
FAST_SOLVER = "dpmpp"
FAST_ETA = 1.0
FAST_DEFAULT_CALLS = 6
# The bundled demo checkpoint's fit, made once by `python -m spritegen.export.fit` and shipped, so
# exporting the demo needs no fitting; used only for the checkpoint and schedule it names.
DEMO_FIT_FILE = Path(__file__).parent / "demo" / "fast.json"


def fast_section(fits: list[Fit], teacher_steps: int = TEACHER_STEPS, sprites: int = FIT_SPRITES) -> dict[str, Any]:
    """The manifest's FAST_KEY section for `fits` (spritegen.runtime reads solver, eta, default_n and
    indices; "fit" records how the tables were made)."""
    default = FAST_DEFAULT_CALLS if any(f.n == FAST_DEFAULT_CALLS for f in fits) else max(f.n for f in fits)
    return {"solver": FAST_SOLVER, "eta": FAST_ETA, "default_n": default,
            "indices": {str(f.n): list(f.indices) for f in fits},
            "fit": {"objective": f"mean squared error of the eta = 0 solver's x_0 against DPM-Solver++ with "
                                 f"{teacher_steps} calls from the same noise, over {sprites} noises",
                    "errors": {str(f.n): {"fitted": f.loss, "held_out": f.held_out,
                                          "held_out_evenly_spaced": f.held_out_uniform,
                                          "evaluations": f.evaluations, "complete": f.complete,
                                          "kept_evenly_spaced": f.kept_evenly_spaced} for f in fits}}}


def shipped_section(checkpoint_sha256: str, schedule: ScheduleConfig) -> dict[str, Any] | None:
    """The shipped fit (DEMO_FIT_FILE) when it was made for this checkpoint and schedule, else None."""
    if not DEMO_FIT_FILE.is_file():
        return None
    shipped = json.loads(DEMO_FIT_FILE.read_text())
    if shipped.get("checkpoint_sha256") != checkpoint_sha256 or shipped.get("schedule") != schedule.to_dict():
        return None
    return shipped["section"]


def main() -> None:
    """Fit the bundled demo checkpoint and write DEMO_FIT_FILE (run after retraining the demo)."""
    import tempfile

    from spritegen.export.exporter import export

    with tempfile.TemporaryDirectory() as tmp:
        result = export(None, Path(tmp) / "export", fit=True, fit_seconds=float(os.environ.get("FIT_SECONDS", 1800)),
                        say=print)
        provenance = result.manifest["provenance"]
        record = {"checkpoint_sha256": provenance["checkpoint_sha256"], "schedule": ScheduleConfig.from_dict(
            result.manifest["schedule"]).to_dict(), "section": result.manifest[FAST_KEY]}
    write_text_atomic(DEMO_FIT_FILE, json.dumps(record, indent=1) + "\n")
    print(f"wrote {DEMO_FIT_FILE}")


if __name__ == "__main__":
    main()
