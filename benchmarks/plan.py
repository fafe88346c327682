"""What one run measures and how often: the figures of issue 7, full and --quick.

Repeat counts are the most a figure takes in one round; each also has a time budget (see
benchmarks.timing.measure) so the full run stays under ten minutes even on a slow or
busy machine. Backends are measured in `rounds` (every backend once per round, in a fresh
worker, each round in a rotated order), and each figure is the median of its round
medians: this VM's CPU slows by up to 1.7x under sustained load and recovers when idle
(docs/benchmarks.md), so a backend measured only once, or always late in the order, can
land wholly in a slow spell while the eager baseline does not. --quick keeps every code
path but shrinks batches and repeats to a smoke test (its numbers are not worth reporting).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from spritegen.contract import DDIM_DEFAULT_STEPS


@dataclass(frozen=True)
class Figure:
    """One timed quantity: `kind` net (one network call), ddim or ddpm (a whole sample)."""

    kind: str
    batch: int
    steps: int  # network calls per run: 1, n (DDIM) or T (DDPM)
    reps: int
    warmup: int
    budget_s: float
    min_reps: int = 1

    @property
    def key(self) -> str:
        return f"net_b{self.batch}" if self.kind == "net" else f"{self.kind}{self.steps}_b{self.batch}"

    @property
    def title(self) -> str:
        what = "one network call" if self.kind == "net" else f"{self.kind.upper()}-{self.steps}"
        return f"{what}, batch {self.batch}"

    def to_dict(self) -> dict:
        return {**asdict(self), "key": self.key, "title": self.title}


@dataclass(frozen=True)
class Plan:
    mode: str
    figures: tuple[Figure, ...]
    coldstart_reps: int
    sweep_reps: tuple[int, int]  # (batch 1, batch 30) calls per ORT options configuration
    sweep_batches: tuple[int, int]
    sweep_configs: tuple[str, ...] | None  # names of benchmarks.sweep.CONFIGS; None: all
    peak_size: int  # n of the n x n x n fp32 matrix multiply
    peak_reps: int
    worker_timeout_s: float  # a backend that takes longer is stopped and reported as an error
    rounds: int = 1  # times every backend is measured, interleaved (module doc)

    def to_dict(self) -> dict:
        return {**asdict(self), "figures": [f.to_dict() for f in self.figures]}


def full_plan(timesteps: int = 500, n: int = DDIM_DEFAULT_STEPS) -> Plan:
    """The issue's figures: calls at batch 1/8/30, DDIM-n at 1, DDPM-T + DDIM-n at 30."""
    return Plan(
        mode="full",
        figures=(  # per round
            Figure("net", 1, 1, reps=100, warmup=30, budget_s=2),
            Figure("net", 8, 1, reps=30, warmup=8, budget_s=2),
            Figure("net", 30, 1, reps=15, warmup=4, budget_s=2),
            Figure("ddim", 1, n, reps=10, warmup=2, budget_s=3, min_reps=3),
            Figure("ddim", 30, n, reps=3, warmup=1, budget_s=4, min_reps=2),
            Figure("ddpm", 30, timesteps, reps=1, warmup=0, budget_s=15, min_reps=1),
        ),
        coldstart_reps=3,
        sweep_reps=(300, 30),
        sweep_batches=(1, 30),
        sweep_configs=None,
        peak_size=2048,
        peak_reps=20,
        worker_timeout_s=300,
        rounds=3,
    )


def quick_plan(timesteps: int = 500, n: int = DDIM_DEFAULT_STEPS) -> Plan:
    """Every backend and part once or twice at batch <= 2: a smoke test, not a measurement."""
    full = full_plan(timesteps, n)
    return replace(
        full,
        mode="quick",
        figures=(
            Figure("net", 1, 1, reps=2, warmup=3, budget_s=1),  # TorchScript optimises on calls 2-3
            Figure("net", 2, 1, reps=1, warmup=1, budget_s=1),
            Figure("ddim", 1, n, reps=1, warmup=0, budget_s=1),
        ),  # no DDPM-500: eager needs T network calls per run (the same runner code as DDIM)
        coldstart_reps=1,
        sweep_reps=(5, 2),
        sweep_batches=(1, 2),
        sweep_configs=("runtime", "no-spin"),
        peak_size=256,
        peak_reps=3,
        worker_timeout_s=300,  # a safety net for an overloaded machine, not a budget
        rounds=1,
    )


def gpu_plan(timesteps: int = 500, n: int = DDIM_DEFAULT_STEPS) -> Plan:
    """The issue's GPU figures within one device call: one call at batch 1 and 30, DDIM-n at
    1 and 30, DDPM-T at 30; each sampler warmed up once first, so CUDA-graph capture (the
    first runs of each batch shape) is not timed."""
    full = full_plan(timesteps, n)
    return replace(
        full,
        mode="gpu",
        figures=(
            Figure("net", 1, 1, reps=100, warmup=30, budget_s=2),
            Figure("net", 30, 1, reps=30, warmup=10, budget_s=2),
            Figure("ddim", 1, n, reps=20, warmup=3, budget_s=3, min_reps=5),
            Figure("ddim", 30, n, reps=5, warmup=2, budget_s=3, min_reps=2),
            Figure("ddpm", 30, timesteps, reps=3, warmup=1, budget_s=10, min_reps=1),
        ),
        # eight workers (the peak and seven rows) within gpu.sh's 330 s: a stuck one keeps
        # what it measured ("partial") and cannot starve the others
        worker_timeout_s=40,
        rounds=1,
    )
