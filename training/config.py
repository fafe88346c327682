"""The training run's configuration: the course's recipe plus what makes it reproducible.

`TrainConfig.run_config()` is the flat dict that goes to W&B (`wandb.init(config=...)`)
and to config.json beside the weights. Its keys name the model and schedule exactly as
ModelConfig / ScheduleConfig do (n_feat, n_cfeat, height, timesteps, beta1, beta2), so
`load_checkpoint` and the course's `artifact.logged_by().config` read it unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spritegen.contract import ModelConfig, ScheduleConfig


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one run; defaults are the course's recipe (docs/training.md)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    steps: int = 10_000  # optimiser steps, as the demo run (the course counts epochs: run_config's n_epoch)
    batch_size: int = 100  # the course's batch
    lrate: float = 1e-3  # Adam, decayed linearly to 0 over `steps`
    context_dropout: float = 0.2  # share of samples trained with a zero (unconditional) context
    dataset_size: int = 40_000  # procedural sprites, balanced over the 5 classes
    data_seed: int = 0  # make_sprites(dataset_size, seed=data_seed)
    seed: int = 0  # weights init and every batch draw (per step, so resuming is exact)
    ema_decay: float = 0.999  # shipped weights are the EMA of the trained ones; 0 = no EMA
    bf16: bool = True  # torch.autocast(bfloat16) on CPU (AMX); the weights stay float32
    channels_last: bool = False  # ~5% faster with bf16 here (docs/training.md); the demo ran without
    threads: int = 2  # torch.set_num_threads
    checkpoint_every: int = 250  # steps between resumable checkpoints
    log_every: int = 50  # steps between loss lines / W&B points

    def run_config(self) -> dict[str, Any]:
        """Flat run config, the course's key names first."""
        flat = {**self.model.to_dict(), **self.schedule.to_dict()}
        for f in dataclasses.fields(self):
            if f.name not in ("model", "schedule"):
                flat[f.name] = getattr(self, f.name)
        flat["n_epoch"] = round(self.steps * self.batch_size / self.dataset_size, 2)  # the course's unit
        flat["forward_process"] = "sqrt(ab)*x + sqrt(1-ab)*noise"
        return flat

    @classmethod
    def from_run_config(cls, values: dict[str, Any]) -> "TrainConfig":
        """Inverse of run_config (extra keys such as final_loss are ignored)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {k: values[k] for k in known if k in values and k not in ("model", "schedule")}
        return cls(model=ModelConfig.from_dict(values), schedule=ScheduleConfig.from_dict(values), **kwargs)
