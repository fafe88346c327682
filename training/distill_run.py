"""One distillation run in a directory: the teacher, its bank, the rounds, the student's files.

The run directory gets, each written atomically (spritegen/files.py):
- distill_log.jsonl: one line per logged step (round, step, loss, lr, step_s) and one per
  finished round, rewritten as the run goes, so a background run can be watched;
- at the end context_model.pth (the last round's EMA weights, course key names plus
  init_conv.shortcut.*) and config.json: the teacher's model and schedule keys, the
  distillation settings, and the "distillation" section (export/student.py reads it);
- wandb/: the offline (unless logged in) W&B run, job type "distill", with the model artifact.
A run is not resumable: a directory that already holds a student is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spritegen.contract import CHECKPOINT_FILE
from spritegen.errors import SpriteGenError
from spritegen.export.checkpoint import LoadedCheckpoint, load_checkpoint
from spritegen.export.run_config import RUN_CONFIG_FILE
from spritegen.export.student import STUDENT_SOLVER, read_student
from spritegen.files import atomic_write, sha256_file, write_text_atomic
from spritegen.training.distill import Coefficients, RoundTrainer, draw_batch, make_bank
from spritegen.training.distill_config import (DISTILLATION_KEY, LOG_FILE, LOSS, METHOD, TARGET, DistillConfig,
                                               DistillUsageError, check_grid_fits, halvings, student_grid)

ROUND_LOSS_WINDOW = 100  # a round's final_loss = mean loss of its last this-many steps


class DistillError(SpriteGenError):
    """A distillation cannot start or continue (message says what to do)."""


def teacher_steps_for(student: dict[str, Any] | None, requested: int | None, default: int) -> int:
    """The first teacher's grid: a student teacher's own steps (it was distilled for nothing else), else
    `requested` or `default`; DistillUsageError when the request contradicts a student's schedule."""
    if student is None:
        return requested or default
    own = student["student_steps"]
    if requested is not None and requested != own:
        raise DistillUsageError(f"the teacher is a {own}-step distilled student (indices {student['indices']}): "
                                f"it can only teach on its own steps; drop --teacher-steps or pass {own}")
    if student["indices"] != student_grid(student["indices"][0], own):
        raise DistillUsageError(f"the teacher is a {own}-step student on indices {student['indices']}, not the "
                                "evenly spaced grid distill halves; distil its own teacher instead")
    return own


def load_teacher(source: str | None, requested_steps: int | None,
                 config: DistillConfig) -> tuple[LoadedCheckpoint, DistillConfig, dict[str, Any] | None]:
    """The teacher checkpoint, the config with the teacher's grid settled, the teacher's own student section."""
    loaded = load_checkpoint(source)
    student = read_student(loaded.provenance.get("run_config"), loaded.checkpoint_sha256, loaded.schedule,
                           f"the teacher's {RUN_CONFIG_FILE}")
    steps = teacher_steps_for(student, requested_steps, config.teacher_steps)
    config = dataclasses.replace(config, teacher_steps=steps).validate()
    check_grid_fits(loaded.schedule, config.teacher_steps)
    return loaded, config, student


class _Log:
    """The run's jsonl log, rewritten atomically on every record."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, []

    def record(self, entry: dict[str, Any]) -> None:
        self.lines.append(json.dumps(entry))
        write_text_atomic(self.path, "\n".join(self.lines) + "\n")


def _round(trainer: RoundTrainer, bank: tuple[torch.Tensor, torch.Tensor], index: int, label: str,
           log: _Log, wandb: Any, console: Console, offset: int, budget: float | None) -> dict[str, Any]:
    """Train one round to its last step, or until `budget` seconds are spent, with a progress bar (a log
    line per log_every steps off a terminal)."""
    cfg, n_classes = trainer.config, trainer.teacher.n_cfeat
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    losses: list[float] = []
    window: list[float] = []
    times: list[float] = []
    began = time.perf_counter()
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=cfg.steps_per_round, loss="-")
        fraction = 0.0
        while fraction < 1:
            batch = draw_batch(bank, trainer.teacher_grid, trainer.co, cfg, n_classes, index, trainer.step_count)
            start = time.perf_counter()
            loss = trainer.step(batch, fraction)
            fraction = cfg.round_fraction(trainer.step_count, time.perf_counter() - began, budget)
            times.append(time.perf_counter() - start)
            if not math.isfinite(loss):
                raise DistillError(f"the loss became {loss} in round {index + 1} at step {trainer.step_count}; "
                                   "lower --lrate")
            losses.append(loss)
            window.append(loss)
            step = trainer.step_count
            if step % cfg.log_every == 0 or fraction >= 1:
                mean, step_s = statistics.fmean(window), statistics.median(times[-len(window):])
                lr = trainer.optimizer.param_groups[0]["lr"]
                log.record({"round": index + 1, "step": step, "loss": round(mean, 6), "lr": lr, "step_s": round(step_s, 4)})
                wandb.log({"loss": mean, "lr": lr, "step_s": step_s, "round": index + 1}, offset + step)
                bar.update(task, completed=step, loss=f"{mean:.4f}")
                if not console.is_terminal:
                    console.log(f"{label} step {step}/{cfg.steps_per_round} loss {mean:.4f} ({step_s:.3f} s/step)")
                window = []
    return {"steps": trainer.step_count, "stopped_by_time": trainer.step_count < cfg.steps_per_round,
            "first_loss": round(statistics.fmean(losses[:cfg.log_every]), 6),
            "final_loss": round(statistics.fmean(losses[-ROUND_LOSS_WINDOW:]), 6),
            "median_step_s": round(statistics.median(times), 4), "seconds": round(time.perf_counter() - began, 1)}


def _publish(model: torch.nn.Module, loaded: LoadedCheckpoint, config: DistillConfig, section: dict[str, Any],
             out: Path, wandb: Any) -> dict[str, Any]:
    """Write context_model.pth, then config.json with the weights' sha256; return the config."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(out / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))
    section["weights_sha256"] = sha256_file(out / CHECKPOINT_FILE)
    published = {**loaded.config.to_dict(), **loaded.schedule.to_dict(), **config.run_config(),
                 "weights": "ema" if config.ema_decay > 0 else "trained", "wandb_run_id": wandb.id,
                 "wandb_mode": wandb.mode, "torch": torch.__version__, DISTILLATION_KEY: section}
    write_text_atomic(out / RUN_CONFIG_FILE, json.dumps(published, indent=2) + "\n")
    return published


def distill(config: DistillConfig, out: Path, *, teacher: str | None = None, teacher_steps: int | None = None,
            wandb_mode: str = "auto", console: Console | None = None) -> dict[str, Any]:
    """Distil `teacher` (None: the bundled demo) into a config.student_steps-step student in `out`;
    returns the published config.json. DistillUsageError / CheckpointError before anything is written."""
    from spritegen.training.wandb_run import WandbRun

    console = console or Console(stderr=True)
    if (out / CHECKPOINT_FILE).exists() or (out / LOG_FILE).exists():
        raise DistillUsageError(f"{out} already holds a distillation run; choose another --out")
    loaded, config, teacher_student = load_teacher(teacher, teacher_steps, config)
    torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    wandb = WandbRun(out, {**loaded.config.to_dict(), **loaded.schedule.to_dict(), **config.run_config(),
                           "teacher_sha256": loaded.checkpoint_sha256}, mode=wandb_mode, job_type="distill")
    console.log(f"distilling {loaded.checkpoint_sha256[:12]} from {config.teacher_steps} to {config.student_steps} "
                f"DDIM steps in {out} (W&B {wandb.mode}: {wandb.directory})")
    co = Coefficients.of(loaded.schedule)
    bank = make_bank(loaded.model, loaded.schedule, config.bank_size, config.bank_calls, loaded.config.n_cfeat,
                     config.seed)
    bank_s = round(time.perf_counter() - began, 1)
    console.log(f"bank: {config.bank_size} teacher samples in {bank_s} s")
    log, model, rounds = _Log(out / LOG_FILE), loaded.model.eval(), []
    plan = halvings(config.teacher_steps, config.student_steps)
    for index, (n_teacher, n_student) in enumerate(plan):
        trainer = RoundTrainer(model, co, config, n_teacher)
        budget = None if config.max_seconds is None else \
            max(config.max_seconds - (time.perf_counter() - began), 1.0) / (len(plan) - index)
        summary = _round(trainer, bank, index, f"round {index + 1}: {n_teacher} -> {n_student}", log, wandb, console,
                         index * config.steps_per_round, budget)
        rounds.append({"teacher_steps": n_teacher, "student_steps": n_student, **summary})
        log.record({"round_done": index + 1, **rounds[-1]})
        model = trainer.result()
    section = {
        "method": METHOD, "target": TARGET, "loss": LOSS, "sampler": STUDENT_SOLVER, "eta": 0.0,
        "student_steps": config.student_steps, "indices": student_grid(loaded.schedule.timesteps, config.student_steps),
        "teacher_sha256": loaded.checkpoint_sha256, "teacher_source": loaded.provenance.get("kind"),
        "teacher_steps": config.teacher_steps, "teacher_is_student": teacher_student is not None,
        "rounds": rounds, "steps_per_round": config.steps_per_round, "max_seconds": config.max_seconds,
        "bank": {"size": config.bank_size, "sampler": "SDE-DPM-Solver++ 2M, evenly spaced",
                 "calls": config.bank_calls, "seconds": bank_s},
        "wall_seconds": round(time.perf_counter() - began, 1), "threads": config.threads,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    published = _publish(model, loaded, config, section, out, wandb)
    wandb.log_model(out / CHECKPOINT_FILE, sum(r["steps"] for r in rounds), metadata={DISTILLATION_KEY: section})
    wandb.finish({"final_loss": rounds[-1]["final_loss"], "wall_seconds": section["wall_seconds"]})
    console.log(f"done in {section['wall_seconds']} s: student on indices {section['indices']}, "
                f"final loss {rounds[-1]['final_loss']}, weights in {out / CHECKPOINT_FILE}")
    return published
