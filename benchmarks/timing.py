"""How every figure is timed: warm up, synchronise, perf_counter, median and p90.

One function so no backend times itself differently. A time budget bounds the slow
cases (eager DDPM-500 at batch 30 takes tens of seconds per run) without a special
case: timing stops once `min_reps` runs are in and the budget is spent.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of repeated runs, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    reps: int
    warmup: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (q in 0..100)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def measure(fn: Callable[[], object], *, reps: int, warmup: int = 1, budget_s: float = float("inf"),
            min_reps: int = 1, sync: Callable[[], None] | None = None) -> Timing:
    """Time `fn()` `reps` times after `warmup` untimed calls.

    `sync` (e.g. torch.cuda.synchronize) runs before the clock starts and before it stops,
    so asynchronous GPU work is inside the measured interval. Stops early once `min_reps`
    runs are timed and `budget_s` seconds (warm-up included) have passed.
    """
    sync = sync or (lambda: None)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= min_reps and time.perf_counter() - start > budget_s:
            break
    ms = sorted(s * 1e3 for s in samples)
    return Timing(median_ms=statistics.median(ms), p90_ms=percentile(ms, 90), min_ms=ms[0],
                  mean_ms=statistics.fmean(ms), reps=len(ms), warmup=warmup)


def merge_rounds(figures: list[dict]) -> dict:
    """One figure from its per-round Timing dicts (benchmarks.plan: rounds): the median of
    the round medians and of the round p90s, so one round in a slow spell of the machine
    moves no figure; min over all; mean weighted by repeats; each round's median kept."""
    medians = [f["median_ms"] for f in figures]
    reps = sum(f["reps"] for f in figures)
    return {"median_ms": statistics.median(medians), "p90_ms": statistics.median(f["p90_ms"] for f in figures),
            "min_ms": min(f["min_ms"] for f in figures),
            "mean_ms": sum(f["mean_ms"] * f["reps"] for f in figures) / reps, "reps": reps,
            "warmup": figures[0]["warmup"], "round_medians_ms": medians}
