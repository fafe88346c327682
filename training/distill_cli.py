"""`python -m spritegen.training distill`: distil a checkpoint into a few-step student (docs/samplers.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from spritegen.errors import SpriteGenError, UsageError
from spritegen.training.distill_config import DistillConfig, DistillUsageError
from spritegen.wandb_env import MODES

app = typer.Typer(add_completion=False, help=__doc__)
_D = DistillConfig()


@app.command()
def distill(
    out: Path = typer.Option(..., help="run directory: context_model.pth, config.json, distill_log.jsonl, wandb/"),
    teacher: str = typer.Option(None, help="the teacher checkpoint: a directory, .pth file or W&B artifact "
                                "(default: the bundled demo)"),
    student_steps: int = typer.Option(_D.student_steps, min=1, help="network calls of the student"),
    teacher_steps: int = typer.Option(None, min=2, help=f"the first teacher's DDIM steps (default {_D.teacher_steps}; "
                                      "a student teacher's own steps); rounds halve them to --student-steps"),
    steps_per_round: int = typer.Option(_D.steps_per_round, min=1, help="optimiser steps per round"),
    batch_size: int = typer.Option(_D.batch_size, min=1),
    lrate: float = typer.Option(_D.lrate, min=0.0, help="Adam learning rate, decayed linearly to 0 in each round"),
    bank_size: int = typer.Option(_D.bank_size, min=1, help="teacher samples the training states are made from"),
    bank_calls: int = typer.Option(_D.bank_calls, min=1, help="network calls of the bank's sampler"),
    seed: int = typer.Option(_D.seed, min=0),
    ema_decay: float = typer.Option(_D.ema_decay, min=0.0, max=0.99999, help="0 disables the EMA"),
    bf16: bool = typer.Option(_D.bf16, help="bfloat16 autocast for the student (the teacher runs in float32)"),
    threads: int = typer.Option(_D.threads, min=1, help="torch.set_num_threads"),
    max_minutes: float = typer.Option(None, min=0.1, help="bound the run's wall time: each round gets an equal "
                                      "share of what is left and ends (learning rate at 0) when it is spent"),
    wandb_mode: str = typer.Option("auto", "--wandb", help=f"one of {', '.join(MODES)}; auto = offline "
                                   "unless logged in (or WANDB_MODE)"),
) -> None:
    """Progressive distillation, data-free: each round a student learns one DDIM step per two of its teacher's."""
    config = DistillConfig(student_steps=student_steps, steps_per_round=steps_per_round, batch_size=batch_size,
                           lrate=lrate, bank_size=bank_size, bank_calls=bank_calls, seed=seed, ema_decay=ema_decay,
                           bf16=bf16, threads=threads, max_seconds=max_minutes * 60 if max_minutes else None)
    from spritegen.training.distill_run import distill as run

    try:
        if wandb_mode not in MODES:
            raise DistillUsageError(f"--wandb must be one of {', '.join(MODES)}, got {wandb_mode!r}")
        run(config, out, teacher=teacher, teacher_steps=teacher_steps, wandb_mode=wandb_mode)
    except (DistillUsageError, SpriteGenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2 if isinstance(exc, (DistillUsageError, UsageError)) else 1) from None
