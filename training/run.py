"""One training run in a directory: progress, resumable checkpoints, W&B, the final weights.

The run directory holds
- state.pt: model, EMA, optimiser, step, loss history (rewritten every
  checkpoint_every steps and on Ctrl-C; `--resume` continues from it);
- context_model.pth + config.json at the end: the shipped (EMA) weights with the course's
  key names plus init_conv.shortcut.*, and the run config with the final loss. This pair
  is what `load_model(DIR)` reads and what export/demo/ bundles;
- wandb/: the W&B run (offline unless logged in), with the `model` artifact.
Every file is written to a temporary name and renamed, so nothing is ever half-written.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spritegen.contract import CHECKPOINT_FILE
from spritegen.errors import SpriteGenError
from spritegen.export.run_config import RUN_CONFIG_FILE  # the name an artifact directory's config has
from spritegen.files import atomic_write, write_text_atomic
from spritegen.training.config import TrainConfig
from spritegen.training.trainer import Trainer, draw_batch, load_data

STATE_FILE = "state.pt"
FINAL_LOSS_WINDOW = 200  # final_loss = mean loss of the last this-many steps


class TrainingError(SpriteGenError):
    """A run cannot start, resume, or continue (message says what to do)."""


def _atomic_save(obj: Any, path: Path) -> None:
    """`obj` (text, or anything torch.save takes) to `path` all-or-nothing (spritegen.files)."""
    if isinstance(obj, str):
        write_text_atomic(path, obj)
    else:
        atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _start(config: TrainConfig, out: Path, resume: bool) -> tuple[Trainer, dict[str, Any]]:
    """A fresh trainer, or the saved one when resuming (the saved config must match)."""
    trainer = Trainer(config)
    history: dict[str, Any] = {"recent": [], "step_s": [], "wandb_id": None}
    state_path = out / STATE_FILE
    if not state_path.exists():
        if resume:
            raise TrainingError(f"nothing to resume: {state_path} does not exist; drop --resume to start a run")
        return trainer, history
    if not resume:
        raise TrainingError(f"{out} already holds a run ({STATE_FILE}); pass --resume to continue it "
                            "or choose another --out")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    saved = state["run_config"]
    differ = sorted(k for k, v in config.run_config().items() if saved.get(k) != v)
    if differ:
        raise TrainingError(f"the run in {out} was started with other settings ({', '.join(differ)}); "
                            "resume with the same options")
    trainer.load_state(state["trainer"])
    return trainer, state["history"]


def _checkpoint(trainer: Trainer, history: dict[str, Any], out: Path) -> None:
    _atomic_save({"trainer": trainer.state(), "history": history,
                  "run_config": trainer.config.run_config()}, out / STATE_FILE)


def _publish(trainer: Trainer, history: dict[str, Any], out: Path, wandb_mode: str) -> dict[str, Any]:
    """Write the shipped weights and their config.json; return the latter."""
    recent = history["recent"][-FINAL_LOSS_WINDOW:]
    summary = {
        "steps_done": trainer.step_count,
        "final_loss": round(statistics.fmean(recent), 5) if recent else None,
        "median_step_s": round(statistics.median(history["step_s"]), 4) if history["step_s"] else None,
        "weights": "ema" if trainer.config.ema_decay > 0 else "trained",
        "wandb_run_id": history["wandb_id"], "wandb_mode": wandb_mode,
        "torch": torch.__version__,
    }
    _atomic_save(trainer.shipped_state_dict(), out / CHECKPOINT_FILE)
    config = {**trainer.config.run_config(), **summary}
    _atomic_save(json.dumps(config, indent=2) + "\n", out / RUN_CONFIG_FILE)
    return config


def train(config: TrainConfig, out: Path, *, resume: bool = False, wandb_mode: str = "auto",
          stop_at: int | None = None, console: Console | None = None) -> dict[str, Any] | None:
    """Run (or resume) `config` in `out` to the last step; returns the published config.json.

    With `stop_at` the run pauses (checkpointed) after that step and returns None, so a
    long run can be split into sessions; `resume=True` continues it.
    """
    from spritegen.training.wandb_run import WandbRun

    console = console or Console(stderr=True)
    torch.set_num_threads(config.threads)
    trainer, history = _start(config, out, resume)  # checks first: a refused run creates nothing
    out.mkdir(parents=True, exist_ok=True)
    images, labels = load_data(config)
    wandb = WandbRun(out, config.run_config(), mode=wandb_mode, run_id=history["wandb_id"])
    history["wandb_id"] = wandb.id
    console.log(f"training {config.steps} steps from step {trainer.step_count} in {out} "
                f"(W&B {wandb.mode}: {wandb.directory})")
    try:
        _loop(trainer, history, images, labels, out, wandb, console, min(stop_at or config.steps, config.steps))
    except KeyboardInterrupt:
        _checkpoint(trainer, history, out)
        wandb.finish({"interrupted_at": trainer.step_count})
        raise TrainingError(f"interrupted at step {trainer.step_count}; continue with --resume --out {out}") from None
    _checkpoint(trainer, history, out)
    if trainer.step_count < config.steps:
        wandb.finish({"paused_at": trainer.step_count})
        console.log(f"paused at step {trainer.step_count}; continue with --resume --out {out}")
        return None
    published = _publish(trainer, history, out, wandb.mode)
    wandb.log_model(out / CHECKPOINT_FILE, trainer.step_count, metadata=published)
    wandb.finish({"final_loss": published["final_loss"], "median_step_s": published["median_step_s"]})
    console.log(f"done: final loss {published['final_loss']}, weights in {out / CHECKPOINT_FILE}")
    return published


def _loop(trainer: Trainer, history: dict[str, Any], images: torch.Tensor, labels: torch.Tensor,
          out: Path, wandb: Any, console: Console, last: int) -> None:
    cfg = trainer.config
    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=trainer.step_count, loss="-")
        window: list[float] = []
        while trainer.step_count < last:
            batch = draw_batch(images, labels, trainer.step_count, cfg)
            start = time.perf_counter()
            loss = trainer.step(batch)
            history["step_s"].append(time.perf_counter() - start)
            if not math.isfinite(loss):  # nan or +-inf
                raise TrainingError(f"loss became {loss} at step {trainer.step_count}; lower --lrate "
                                    "or resume from the last checkpoint")
            history["recent"] = (history["recent"] + [loss])[-FINAL_LOSS_WINDOW:]
            window.append(loss)
            step = trainer.step_count
            if step % cfg.log_every == 0 or step == last:
                mean = statistics.fmean(window)
                step_s = statistics.median(history["step_s"][-len(window):])
                wandb.log({"loss": mean, "lr": trainer.optimizer.param_groups[0]["lr"], "step_s": step_s}, step)
                bar.update(task, completed=step, loss=f"{mean:.4f}")
                if not console.is_terminal:
                    console.log(f"step {step}/{cfg.steps} loss {mean:.4f} ({step_s:.3f} s/step)")
                window = []
            if step % cfg.checkpoint_every == 0:
                _checkpoint(trainer, history, out)
