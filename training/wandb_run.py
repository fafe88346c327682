"""W&B logging the way the course's training run does it, offline unless logged in.

The course logs its run config (n_feat, n_cfeat, height, timesteps, beta1, beta2,
batch_size, lrate, n_epoch, ...), the loss, and the weights as a `model` artifact
holding context_model.pth; the sampling lesson then reads the architecture back with
`artifact.logged_by().config`. We do the same, so the export flow is the course's.
Without credentials the run is written offline under the run directory
(`wandb sync <dir>` uploads it later); `mode` forces a choice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spritegen.wandb_env import MODES, PROJECT, resolve_mode

__all__ = ["MODES", "WandbRun"]


class WandbRun:
    """A thin wrapper: init with the run config, log scalars, log the model artifact."""

    def __init__(self, run_dir: Path, config: dict[str, Any], mode: str = "auto",
                 run_id: str | None = None, job_type: str = "train") -> None:
        import wandb  # imported here: W&B is only needed when training logs

        self.mode = resolve_mode(mode)
        self._wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), job_type=job_type, config=config,
            mode=self.mode, dir=os.environ.get("WANDB_DIR", str(run_dir)), id=run_id, resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def directory(self) -> str:
        """The run's local files (the offline-run-* folder when offline)."""
        return str(Path(self.run.dir).parent)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_model(self, checkpoint: Path, step: int, metadata: dict[str, Any]) -> None:
        """The course's artifact: type `model`, one file context_model.pth."""
        artifact = self._wandb.Artifact(f"{self.run.id}_context_model", type="model", metadata=metadata)
        artifact.add_file(str(checkpoint), name=checkpoint.name)
        self.run.log_artifact(artifact, aliases=["latest", f"step_{step}"])

    def finish(self, summary: dict[str, Any]) -> None:
        for key, value in summary.items():
            self.run.summary[key] = value
        self.run.finish()
