"""The points benchmarks.sampler_quality measures: one row per sampler and step count.

A point is data: a label (what --only names and the table shows), the name of a
`spritegen.runtime.Sampler` method, the keyword arguments it is called with (besides
context and seed), and the network calls one sprite costs. A new sampler is one more row;
a row whose method the runtime does not have (yet) is skipped with a note, so the rows of
samplers still being written light up once they are merged.

Network calls count evaluations of the network per sprite: guidance (a row with
"guidance" in its kwargs) runs the conditional and unconditional rows in one call of
twice the batch, so it doubles the work per call but not the count. None means "ask the
sampler": the count is read from the method's progress callback (steps in total).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from spritegen.contract import DDIM_DEFAULT_STEPS

DDIM_STEPS = (4, 5, 8, 10, 15, 25, 50, 100, 500)
DPMPP_STEPS = (4, 5, 6, 8, 10, 15, 25)
LABELLED = ("ddpm-500", f"ddim-{DDIM_DEFAULT_STEPS}")  # named on the plot: the course's two samplers


@dataclass(frozen=True)
class Point:
    """One sampler configuration (module doc)."""

    label: str
    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    calls: int | None = None
    note: str = ""
    export: str | None = None  # None: the measured export; else a benchmarks.student_export key


def _ddim(n: int, eta: float) -> Point:
    suffix = "" if eta == 0 else f"-eta{eta:g}"
    note = "stochastic DDIM (eq. 12)" if eta else ("today's default" if n == DDIM_DEFAULT_STEPS else "")
    return Point(f"ddim-{n}{suffix}", "ddim", {"n": n, "eta": float(eta)}, n, note)


def _dpmpp(n: int, eta: float) -> Point:
    suffix = "" if eta == 0 else f"-eta{eta:g}"
    note = "DPM-Solver++ 2M" + (" SDE" if eta else "")
    return Point(f"dpmpp-{n}{suffix}", "dpmpp", {"n": n, "eta": float(eta)}, n, note)


POINTS: tuple[Point, ...] = (
    Point("ddpm-500", "ddpm", {}, 500, "the course's sampler"),
    *(_ddim(n, 0.0) for n in DDIM_STEPS),
    *(_ddim(n, 1.0) for n in DDIM_STEPS),
    *(_dpmpp(n, 0.0) for n in DPMPP_STEPS),
    *(_dpmpp(n, 1.0) for n in DPMPP_STEPS),
    Point("fast", "fast", {}, None, "the export's fitted few-step sampler at its recommended call count"),
    Point("student-4", "fast", {}, 4, "the bundled 4-step distilled student (export/demo/student) as exported: "
          "first order, eta 1", export="student"),
    Point("student-4-eta0", "fast", {}, 4, "the same student, deterministic DDIM (eta 0, what it was distilled for)",
          export="student-eta0"),
)
QUICK = ("ddim-4", "ddim-25", "ddim-5-eta1", "dpmpp-5", "fast")  # --quick: seconds, every kind of row


def select(labels: Sequence[str] | None, points: Sequence[Point] = POINTS) -> list[Point]:
    """The points named by `labels` (all when None), in table order; ValueError naming
    the first unknown label and the known ones."""
    if labels is None:
        return list(points)
    known = {p.label for p in points}
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ValueError(f"unknown point {unknown[0]!r}; known points: {', '.join(p.label for p in points)}")
    return [p for p in points if p.label in set(labels)]


def pareto_front(rows: Sequence[tuple[str, float, float]]) -> list[str]:
    """Labels of the (label, calls, score) rows no other row beats: none has at most as many
    calls and a lower score (lower is better), or fewer calls and an equal score. In call order."""
    front, best = [], float("inf")
    for label, _calls, score in sorted(rows, key=lambda r: (r[1], r[2])):
        if score < best:
            front.append(label)
            best = score
    return front
