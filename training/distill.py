"""Progressive distillation's mathematics: the teacher's sample bank, the target, one round's update.

Progressive distillation (Salimans & Ho 2022, Algorithm 2) on the course's discrete schedule,
data-free. Notation: a_i = sqrt(ab_i), s_i = sqrt(1 - ab_i); a DDIM step (eta 0) from i to j
with the network's eps is x0 = (z - s_i eps) / a_i, z_j = a_j x0 + s_j eps.

- The bank: samples the teacher makes once from noise (SDE-DPM-Solver++ 2M, the best cheap
  sampler of export/reference.py; no training data is read). A state z_i is a bank sample
  put through the forward process at the grid's index i, z_i = a_i x + s_i noise.
- The target: the teacher takes two DDIM steps i -> i' -> i''; the x0 the student must
  predict so that its one step i -> i'' lands on the same z_i'' is
  x~ = (z_i'' - (s_i''/s_i) z_i) / (a_i'' - (s_i''/s_i) a_i)  (`pd_target`).
- The loss: the student keeps the teacher's eps output (so every exporter and runtime run it
  unchanged); its x0 = (z_i - s_i eps) / a_i is compared with x~ under truncated-SNR
  weighting max(a_i^2 / s_i^2, 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spritegen.contract import ScheduleConfig, dpmpp_indices
from spritegen.export.reference import sample_dpmpp
from spritegen.export.schedule import make_schedule
from spritegen.training.distill_config import DistillConfig, student_grid
from spritegen.training.trainer import update_

BANK_BATCH = 250  # teacher samples generated per batch (bounded memory, few Python round trips)


@dataclass(frozen=True)
class Coefficients:
    """a_i = sqrt(ab_i) and s_i = sqrt(1 - ab_i) for i = 0..T (float32, s_0 = 0)."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    timesteps: int

    @classmethod
    def of(cls, schedule: ScheduleConfig) -> "Coefficients":
        ab = make_schedule(schedule).ab_t
        return cls(alpha=ab.sqrt(), sigma=(1 - ab).sqrt(), timesteps=schedule.timesteps)

    def at(self, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_i, s_i) shaped (B, 1, 1, 1) for per-row indices i (B,)."""
        return self.alpha[i].view(-1, 1, 1, 1), self.sigma[i].view(-1, 1, 1, 1)


def x0_of(model: nn.Module, z: torch.Tensor, i: torch.Tensor, c: torch.Tensor,
          co: Coefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) of the network at per-row indices i: the network sees t = i / T, as every sampler feeds it."""
    eps = model(z, (i.float() / co.timesteps).view(-1, 1, 1, 1), c).float()
    a, s = co.at(i)
    return (z - s * eps) / a, eps


def ddim_step(model: nn.Module, z: torch.Tensor, i: torch.Tensor, j: torch.Tensor, c: torch.Tensor,
              co: Coefficients) -> torch.Tensor:
    """One deterministic DDIM step i -> j per row (j < i): z_j = a_j x0 + s_j eps."""
    x0, eps = x0_of(model, z, i, c, co)
    a_j, s_j = co.at(j)
    return a_j * x0 + s_j * eps


def pd_target(z: torch.Tensor, z2: torch.Tensor, i: torch.Tensor, i2: torch.Tensor,
              co: Coefficients) -> torch.Tensor:
    """x~: the x0 whose one DDIM step from (z, i) lands on z2 at i2 (module doc; exact at i2 = 0, s = 0)."""
    a, s = co.at(i)
    a2, s2 = co.at(i2)
    ratio = s2 / s
    return (z2 - ratio * z) / (a2 - ratio * a)


def snr_weight(i: torch.Tensor, co: Coefficients) -> torch.Tensor:
    """max(SNR_i, 1) per row, (B,): truncated-SNR weighting of the x0 loss."""
    a, s = co.at(i)
    return (a * a / (s * s)).clamp(min=1.0).view(-1)


@torch.no_grad()
def make_bank(teacher: nn.Module, schedule: ScheduleConfig, size: int, calls: int, n_classes: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples (size, C, H, W) in [-1, 1], labels (size,)): the teacher's own class-balanced samples
    from noise, SDE-DPM-Solver++ 2M with `calls` evenly spaced network calls, float32, eval mode."""
    teacher.eval()
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % n_classes
    channels, height = teacher.in_channels, teacher.h
    samples = []
    for start in range(0, size, BANK_BATCH):
        rows = labels[start:start + BANK_BATCH]
        noise = torch.randn((len(rows), channels, height, height), generator=g)
        x, _ = sample_dpmpp(teacher, noise, F.one_hot(rows, n_classes).float(),
                            indices=dpmpp_indices(schedule.timesteps, calls), timesteps=schedule.timesteps,
                            beta1=schedule.beta1, beta2=schedule.beta2, eta=1.0, generator=g)
        samples.append(x)
    return torch.cat(samples), labels


@dataclass
class Batch:
    """One distillation batch: the state z_i, the step's three indices, the context."""

    z: torch.Tensor  # (B, C, H, W)
    i: torch.Tensor  # (B,) start of the student's step
    mid: torch.Tensor  # (B,) the teacher's intermediate index i'
    end: torch.Tensor  # (B,) the step's end i''
    c: torch.Tensor  # (B, K), zero rows for dropped contexts


def draw_batch(bank: tuple[torch.Tensor, torch.Tensor], teacher_grid: list[int], co: Coefficients,
               config: DistillConfig, n_classes: int, round_index: int, step: int) -> Batch:
    """The batch of (round, step): a pure function of (seed, round, step) and the bank."""
    samples, labels = bank
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + round_index * 100_003 + step)
    rows = torch.randint(0, len(samples), (config.batch_size,), generator=g)
    k = torch.randint(0, (len(teacher_grid) - 1) // 2, (config.batch_size,), generator=g)
    grid = torch.tensor(teacher_grid)
    i, mid, end = grid[2 * k], grid[2 * k + 1], grid[2 * k + 2]
    a, s = co.at(i)
    z = a * samples[rows] + s * torch.randn(samples[rows].shape, generator=g)
    keep = torch.rand(config.batch_size, generator=g) >= config.context_dropout
    c = F.one_hot(labels[rows], n_classes).float() * keep[:, None]
    return Batch(z=z, i=i, mid=mid, end=end, c=c)


class RoundTrainer:
    """One round: a student initialised from the teacher learns one step per two of the teacher's.

    The student trains in eval mode (BatchNorm frozen at the teacher's statistics: see __init__)
    with Adam, learning rate decayed linearly to 0 over the round; the round's result is the EMA
    of its weights, the next round's teacher.
    """

    def __init__(self, teacher: nn.Module, co: Coefficients, config: DistillConfig, teacher_steps: int) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        # eval mode: BatchNorm normalises with the teacher's running statistics (a fixed affine map), so
        # the function trained is exactly the one exported and sampled (train mode's batch statistics
        # differ from them, and a student fitted through them misses its target in eval mode)
        self.student = copy.deepcopy(teacher).eval().requires_grad_(True)
        self.ema = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=config.lrate)
        self.co, self.config = co, config
        self.teacher_grid = student_grid(co.timesteps, teacher_steps)
        self.step_count = 0

    @torch.no_grad()
    def target(self, batch: Batch) -> torch.Tensor:
        """x~ of the teacher's two DDIM steps i -> i' -> i'' (float32, eval mode)."""
        z_mid = ddim_step(self.teacher, batch.z, batch.i, batch.mid, batch.c, self.co)
        z_end = ddim_step(self.teacher, z_mid, batch.mid, batch.end, batch.c, self.co)
        return pd_target(batch.z, z_end, batch.i, batch.end, self.co)

    def loss(self, batch: Batch, target: torch.Tensor) -> torch.Tensor:
        """The student's truncated-SNR-weighted x0 error against x~ (bf16 autocast when enabled)."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            x0, _ = x0_of(self.student, batch.z, batch.i, batch.c, self.co)
        per_row = (x0.float() - target).pow(2).mean(dim=(1, 2, 3))
        return (snr_weight(batch.i, self.co) * per_row).mean()

    def step(self, batch: Batch, fraction: float | None = None) -> float:
        """One Adam step at learning rate lrate * (1 - fraction) (default: the share of the round's steps
        done; DistillConfig.round_fraction with a time bound); returns the loss."""
        done = self.step_count / self.config.steps_per_round if fraction is None else fraction
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lrate * max(1 - done, 0.0)
        loss = self.loss(batch, self.target(batch))
        self.step_count = update_(self.optimizer, loss, self.ema, self.student, self.step_count, self.config.ema_decay)
        return float(loss.detach())

    def result(self) -> nn.Module:
        """The round's student (the EMA when enabled), in eval mode: the next teacher."""
        return (self.ema if self.config.ema_decay > 0 else self.student).eval().requires_grad_(False)
