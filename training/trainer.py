"""The course's training recipe with the correct forward process, resumable.

Recipe (the course's training lesson; docs/training.md): Adam, lr decayed linearly to 0, batch 100, the context zeroed for
~20% of samples (so unconditional sampling and guidance work), t uniform in 1..T,
loss = MSE(eps_theta(x_t, t/T, c), eps). The forward process is DDPM's (Ho et al.
2020, eq. 4): x_t = sqrt(ab_t) * x_0 + sqrt(1 - ab_t) * eps. The course's code omits the
square root on the noise coefficient, which trains on less noise than the samplers
assume; we do not copy that.

Every batch is drawn from a generator seeded by (seed, step), so a resumed run draws
exactly the batches an uninterrupted one would. The shipped weights are an exponential
moving average (EMA) of the trained ones, BatchNorm statistics included.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spritegen.export.model import ContextUnet
from spritegen.export.schedule import make_schedule
from spritegen.training.config import TrainConfig


def perturb(x0: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps; ab: (B,) alpha-bar at each sample's t."""
    ab = ab.view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


@dataclass
class Batch:
    """One training batch: clean images, their noise, step indices and contexts."""

    x0: torch.Tensor  # (B, C, H, W)
    noise: torch.Tensor  # (B, C, H, W)
    t: torch.Tensor  # (B,) int64 in 1..T
    c: torch.Tensor  # (B, K) one-hot, zero rows for dropped contexts


def draw_batch(images: torch.Tensor, labels: torch.Tensor, step: int, config: TrainConfig) -> Batch:
    """The batch of `step`, a pure function of (config.seed, step) and the data."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    index = torch.randint(0, len(images), (config.batch_size,), generator=g)
    x0 = images[index]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(1, config.schedule.timesteps + 1, (config.batch_size,), generator=g)
    c = F.one_hot(labels[index], config.model.n_cfeat).float()
    keep = torch.rand(config.batch_size, generator=g) >= config.context_dropout
    return Batch(x0=x0, noise=noise, t=t, c=c * keep[:, None])


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear decay from lrate to 0 over the run (the course decays per epoch)."""
    return config.lrate * (1 - step / config.steps)


@torch.no_grad()
def update_ema_(ema: nn.Module, model: nn.Module, step_count: int, ema_decay: float) -> None:
    """EMA of parameters and float buffers (BatchNorm stats) after `step_count` updates, in place;
    warm-up (decay (1 + n) / (10 + n) while below ema_decay) so early EMAs track; integer buffers copied."""
    decay = min(ema_decay, (1 + step_count) / (10 + step_count))
    live = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in list(ema.named_parameters()) + list(ema.named_buffers()):
        if value.dtype.is_floating_point:
            value.lerp_(live[name].detach(), 1 - decay)
        else:
            value.copy_(live[name])


def update_(optimizer: torch.optim.Optimizer, loss: torch.Tensor, ema: nn.Module, model: nn.Module,
            step_count: int, ema_decay: float) -> int:
    """One optimiser step on `loss`, then the EMA (update_ema_); returns the new step count."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    update_ema_(ema, model, step_count + 1, ema_decay)
    return step_count + 1


class Trainer:
    """Model, EMA copy, optimiser and step counter; `step()` runs one update."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.model = ContextUnet.from_config(config.model)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lrate)
        self.ab_t = make_schedule(config.schedule).ab_t
        self.step_count = 0

    def step(self, batch: Batch) -> float:
        """One Adam step on `batch`; returns the (float32) loss."""
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step_count, cfg)
        self.model.train()
        # 1. forward process q(x_t | x_0) at each sample's own t
        x_t = perturb(batch.x0, batch.noise, self.ab_t[batch.t])
        if cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        t_in = (batch.t.float() / cfg.schedule.timesteps).view(-1, 1, 1, 1)
        # 2. predict the noise (bf16 matmuls on AMX when enabled), loss in float32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            pred = self.model(x_t, t_in, batch.c)
        loss = F.mse_loss(pred.float(), batch.noise)
        # 3. update, then the EMA
        self.step_count = update_(self.optimizer, loss, self.ema, self.model, self.step_count, cfg.ema_decay)
        return float(loss.detach())

    def shipped_model(self) -> nn.Module:
        """The weights to publish: the EMA when enabled, else the trained model."""
        return self.ema if self.config.ema_decay > 0 else self.model

    def shipped_state_dict(self) -> dict[str, torch.Tensor]:
        """Course key names plus init_conv.shortcut.*, contiguous float32 tensors."""
        return {k: v.detach().contiguous().clone() for k, v in self.shipped_model().state_dict().items()}

    def state(self) -> dict:
        """Everything a resume needs (tensors and plain containers: weights_only-loadable)."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step_count}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step"])


def load_data(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's procedural data set as tensors (regenerated from data_seed: cheap, exact)."""
    from spritegen.training.sprites import make_sprites

    images, labels = make_sprites(config.dataset_size, seed=config.data_seed)
    return torch.from_numpy(images), torch.from_numpy(labels)
