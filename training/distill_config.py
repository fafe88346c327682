"""The distillation run's configuration and the "distillation" section a student's config.json carries.

A student is an ordinary ContextUnet checkpoint (same architecture, same epsilon output), so
its config.json holds the teacher's model and schedule keys unchanged (load_checkpoint reads
them) plus the distillation settings and one section, DISTILLATION_KEY, that says what the
weights are: whose student (the teacher's sha256), on which step indices it must be sampled
(DDIM, eta 0, one network call per step), and the sha256 of the weights themselves, so a
student's config beside other weights is refused (export/student.py checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from spritegen.contract import ScheduleConfig, dpmpp_indices
from spritegen.export.student import DISTILLATION_KEY

__all__ = ["DISTILLATION_KEY", "DistillConfig", "DistillUsageError", "halvings", "student_grid"]
LOG_FILE = "distill_log.jsonl"  # one JSON object per logged step, and one per finished round
METHOD = "progressive distillation (Salimans & Ho 2022), data-free"
TARGET = ("x~ = (z_i'' - (s_i''/s_i) z_i) / (a_i'' - (s_i''/s_i) a_i): the x0 that makes one DDIM step i -> i'' "
          "land where the teacher's two DDIM steps i -> i' -> i'' land")
LOSS = "mean of max(SNR_i, 1) * (x0_student - x~)^2 (truncated-SNR weighting)"


class DistillUsageError(ValueError):
    """Settings that cannot describe a distillation (message says what is allowed)."""


def student_grid(timesteps: int, steps: int) -> list[int]:
    """The step indices T > ... > 0 of a `steps`-step student: evenly spaced in integer arithmetic
    (contract.dpmpp_indices), so halving a grid keeps every other index: the 2n grid's indices
    2k are the n grid's index k, and the teacher's midpoint is index 2k + 1."""
    return dpmpp_indices(timesteps, steps)


def halvings(teacher_steps: int, student_steps: int) -> list[tuple[int, int]]:
    """(teacher steps, student steps) of each round, e.g. 32 -> 4: [(32, 16), (16, 8), (8, 4)]."""
    if student_steps < 1 or teacher_steps <= student_steps or teacher_steps % student_steps:
        raise DistillUsageError(f"the teacher's steps ({teacher_steps}) must be the student's ({student_steps}) "
                                "times a power of 2 (2, 4, 8, ...): each round halves the steps")
    ratio = teacher_steps // student_steps
    if ratio & (ratio - 1):
        raise DistillUsageError(f"the teacher's steps ({teacher_steps}) must be the student's ({student_steps}) "
                                f"times a power of 2, not {ratio}: each round halves the steps")
    rounds, n = [], teacher_steps
    while n > student_steps:
        rounds.append((n, n // 2))
        n //= 2
    return rounds


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run; defaults are what trained export/demo/student (docs/training.md)."""

    student_steps: int = 4  # network calls of the final student
    teacher_steps: int = 32  # the first teacher's DDIM grid; rounds halve it down to student_steps
    steps_per_round: int = 1500  # optimiser steps of each round
    batch_size: int = 64
    lrate: float = 2e-4  # Adam, decayed linearly to 0 within each round (the student starts as the teacher)
    context_dropout: float = 0.2  # share of rows with a zero (unconditional) context, like training
    bank_size: int = 2000  # teacher samples the states z_i are made from (forward process at the grid's times)
    bank_calls: int = 10  # network calls of the bank's sampler: SDE-DPM-Solver++ 2M, evenly spaced
    seed: int = 0  # bank noise and every batch draw (per round and step)
    ema_decay: float = 0.999  # each round's student is the EMA of its trained weights (warm-up as training)
    bf16: bool = True  # the student's forward/backward under bfloat16 autocast; the teacher runs in float32
    threads: int = 2  # torch.set_num_threads
    log_every: int = 50  # steps between loss lines / W&B points
    max_seconds: float | None = None  # wall-time bound of the whole run (bank included); None: none

    def round_fraction(self, step: int, elapsed: float, budget: float | None) -> float:
        """How far a round is, in [0, 1]: its steps done, or its share of the time bound spent,
        whichever is further (the learning rate decays to 0 and the round ends at 1)."""
        by_steps = step / self.steps_per_round
        return max(by_steps, elapsed / budget) if budget else by_steps

    def validate(self) -> "DistillConfig":
        """self, or DistillUsageError naming the first setting that cannot work."""
        positive = ("student_steps", "teacher_steps", "steps_per_round", "batch_size", "bank_size", "bank_calls",
                    "threads", "log_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DistillUsageError(f"{name} must be a positive integer, got {value!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise DistillUsageError(f"max_seconds must be positive, got {self.max_seconds!r}")
        if not 0 <= self.context_dropout < 1 or not 0 <= self.ema_decay < 1 or not self.lrate > 0:
            raise DistillUsageError("context_dropout and ema_decay must be in [0, 1) and lrate > 0")
        halvings(self.teacher_steps, self.student_steps)
        return self

    def run_config(self) -> dict[str, Any]:
        """The distillation settings as flat run-config keys (W&B config, config.json)."""
        return {f"distill_{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}


def check_grid_fits(schedule: ScheduleConfig, teacher_steps: int) -> None:
    """DistillUsageError unless every index of the teacher's grid is distinct (teacher_steps <= T)."""
    if teacher_steps > schedule.timesteps:
        raise DistillUsageError(f"the teacher's grid of {teacher_steps} steps does not fit the schedule's "
                                f"T={schedule.timesteps}; pass --teacher-steps <= {schedule.timesteps}")
