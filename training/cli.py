"""`python -m spritegen.training`: train (or resume) the demo checkpoint's recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from spritegen.contract import ModelConfig, ScheduleConfig
from spritegen.errors import SpriteGenError
from spritegen.training.config import TrainConfig
from spritegen.wandb_env import MODES

app = typer.Typer(add_completion=False, help=__doc__)
_D = TrainConfig()


@app.command()
def main(
    out: Path = typer.Option(..., help="run directory: state.pt, context_model.pth, config.json, wandb/"),
    steps: int = typer.Option(_D.steps, min=1, help="optimiser steps"),
    resume: bool = typer.Option(False, help="continue the run saved in --out"),
    stop_at: int = typer.Option(None, min=1, help="pause (resumable) after this step"),
    batch_size: int = typer.Option(_D.batch_size, min=1),
    lrate: float = typer.Option(_D.lrate, min=0.0, help="Adam learning rate, decayed linearly to 0"),
    dataset_size: int = typer.Option(_D.dataset_size, min=5, help="procedural sprites in the data set"),
    data_seed: int = typer.Option(_D.data_seed, help="seed of make_sprites"),
    seed: int = typer.Option(_D.seed, help="seed of the weights and batch draws"),
    ema_decay: float = typer.Option(_D.ema_decay, min=0.0, max=0.99999, help="0 disables the EMA"),
    bf16: bool = typer.Option(_D.bf16, help="bfloat16 autocast (AMX); weights stay float32"),
    channels_last: bool = typer.Option(_D.channels_last),
    threads: int = typer.Option(_D.threads, min=1, help="torch.set_num_threads"),
    n_feat: int = typer.Option(ModelConfig.n_feat, min=8),
    wandb_mode: str = typer.Option("auto", "--wandb", help=f"one of {', '.join(MODES)}; auto = offline "
                                   "unless logged in (or WANDB_MODE)"),
) -> None:
    """Train ContextUnet on procedural sprites with the course's recipe."""
    config = TrainConfig(
        model=ModelConfig(n_feat=n_feat), schedule=ScheduleConfig(), steps=steps, batch_size=batch_size,
        lrate=lrate, dataset_size=dataset_size, data_seed=data_seed, seed=seed, ema_decay=ema_decay,
        bf16=bf16, channels_last=channels_last, threads=threads,
    )
    from spritegen.training.run import train

    try:
        try:
            config.model.validate()
        except ValueError as exc:
            raise SpriteGenError(f"--n-feat: {exc}") from None
        if wandb_mode not in MODES:
            raise SpriteGenError(f"--wandb must be one of {', '.join(MODES)}, got {wandb_mode!r}")
        train(config, out, resume=resume, wandb_mode=wandb_mode, stop_at=stop_at)
    except SpriteGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
