"""Does a checkpoint draw the class it is asked for? Class-conditional sample accuracy.

    python -m benchmarks.quality [--checkpoint PATH] [--per-class 100] [--sampler ddim25 --sampler ddpm500]

1. train a small CNN judge on procedural sprites (benchmarks.quality_classifier) and
   check it on held-out sprites (target >= 98%);
2. draw `per-class` samples of every class with the eager reference samplers
   (spritegen.export.reference, float32, the course's samplers, no guidance), batched;
3. accuracy = share of samples the judge assigns to the class they were conditioned on
   (target >= 90% for DDIM-25 and DDPM-500);
4. grids of real and generated sprites and of blended contexts (hero+food,
   spell+side-facing) into docs/images/, results into benchmarks/results/quality.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import typer

from benchmarks.quality_classifier import TEST_SEED, confusion, predict_proba, train_classifier
from benchmarks.quality_grids import save_grid
from spritegen.contract import CLASS_NAMES, DDIM_DEFAULT_STEPS
from spritegen.errors import SpriteGenError
from spritegen.export.checkpoint import load_checkpoint
from spritegen.export.reference import sample_ddim, sample_ddpm
from spritegen.training.sprites import make_sprites

Sampler = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
SAMPLERS: dict[str, Sampler] = {
    "ddim25": lambda model, noise, c, g: sample_ddim(model, noise, c, n=DDIM_DEFAULT_STEPS)[0],
    "ddpm500": lambda model, noise, c, g: sample_ddpm(model, noise, c, generator=g)[0],
}
CLASSIFIER_TARGET, SAMPLE_TARGET = 0.98, 0.90
BLENDS = (("hero", "food"), ("spell", "side-facing"))
BLEND_WEIGHTS = ((1.0, 0.0), (1.0, 0.4), (1.0, 0.7), (1.0, 1.0), (0.7, 1.0), (0.4, 1.0), (0.0, 1.0))
GRID_COLUMNS = 12
ROOT = Path(__file__).resolve().parent.parent


def generate(model: torch.nn.Module, sampler: str, per_class: int, seed: int, batch: int) -> torch.Tensor:
    """per_class samples of every class (class-major order), in batches of `batch`."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(per_class)
    noise = torch.randn((len(labels), 3, 16, 16), generator=g)
    context = torch.eye(len(CLASS_NAMES))[labels]
    return torch.cat([SAMPLERS[sampler](model, n, c, g) for n, c in zip(noise.split(batch), context.split(batch))])


def score_sampler(model: torch.nn.Module, judge: torch.nn.Module, sampler: str, per_class: int, seed: int,
                  batch: int, images_dir: Path) -> dict:
    start = time.perf_counter()
    samples = generate(model, sampler, per_class, seed, batch)
    seconds = time.perf_counter() - start
    target = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
    predicted = predict_proba(judge, samples).argmax(-1).numpy()
    per_class_acc = {name: float((predicted[target == k] == k).mean()) for k, name in enumerate(CLASS_NAMES)}
    rows = [(name, samples[k * per_class:k * per_class + GRID_COLUMNS].numpy()) for k, name in enumerate(CLASS_NAMES)]
    grid = save_grid(rows, images_dir / f"samples_{sampler}.png")
    return {"accuracy": float((predicted == target).mean()), "per_class": per_class_acc,
            "confusion": confusion(predicted, target), "samples": len(target), "seconds": round(seconds, 1),
            "grid": str(grid.relative_to(ROOT)) if grid.is_relative_to(ROOT) else str(grid)}


def blends(model: torch.nn.Module, judge: torch.nn.Module, seed: int, images_dir: Path) -> list[dict]:
    """DDIM-25 on mixed contexts, the same noise along each row pair so sprites morph."""
    rows, report = [], []
    noise = torch.randn((GRID_COLUMNS, 3, 16, 16), generator=torch.Generator().manual_seed(seed + 1))
    for a, b in BLENDS:
        ia, ib = CLASS_NAMES.index(a), CLASS_NAMES.index(b)
        for wa, wb in BLEND_WEIGHTS:
            context = torch.zeros(GRID_COLUMNS, len(CLASS_NAMES))
            context[:, ia], context[:, ib] = wa, wb
            samples = sample_ddim(model, noise, context, n=DDIM_DEFAULT_STEPS)[0]
            proba = predict_proba(judge, samples).mean(0)
            label = f"{a} {wa:g} + {b} {wb:g}"
            rows.append((label, samples.numpy()))
            report.append({"context": {a: wa, b: wb}, f"p_{a}": round(float(proba[ia]), 3),
                           f"p_{b}": round(float(proba[ib]), 3)})
    save_grid(rows, images_dir / "blends_ddim25.png")
    return report


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run(checkpoint: Optional[str], per_class: int, samplers: list[str], seed: int, batch: int,
        out: Path, images_dir: Path, judge_train_size: int = 10_000) -> dict:
    loaded = load_checkpoint(checkpoint)
    judge, judge_report = train_classifier(train_size=judge_train_size, test_size=3_000, epochs=2)
    real, labels = make_sprites(1_000, seed=TEST_SEED)
    save_grid([(name, real[labels == k][:GRID_COLUMNS]) for k, name in enumerate(CLASS_NAMES)],
              images_dir / "sprites_real.png")
    results = {name: score_sampler(loaded.model, judge, name, per_class, seed, batch, images_dir) for name in samplers}
    report = {
        "checkpoint": {k: v for k, v in loaded.provenance.items() if k != "run_config"},
        "checkpoint_config": loaded.provenance.get("run_config"),
        "classifier": judge_report.__dict__, "samplers": results, "blends": blends(loaded.model, judge, seed, images_dir),
        "targets": {"classifier_held_out": CLASSIFIER_TARGET, "generated": SAMPLE_TARGET},
        "meets_targets": judge_report.held_out_accuracy >= CLASSIFIER_TARGET
        and all(r["accuracy"] >= SAMPLE_TARGET for r in results.values()),
        "per_class": per_class, "seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(report, out)
    return report


def main(
    checkpoint: Optional[str] = typer.Option(None, help="checkpoint source (default: the bundled demo)"),
    per_class: int = typer.Option(100, min=1, help="samples per class and sampler"),
    sampler: list[str] = typer.Option(list(SAMPLERS), help=f"any of {', '.join(SAMPLERS)}"),
    seed: int = typer.Option(0),
    batch: int = typer.Option(500, min=1, help="samples per sampler call"),
    out: Path = typer.Option(ROOT / "benchmarks/results/quality.json"),
    images: Path = typer.Option(ROOT / "docs/images", help="where the PNG grids go"),
    judge_train_size: int = typer.Option(10_000, min=100, help="sprites the judge trains on (2 epochs)"),
) -> None:
    """Class-conditional accuracy of generated sprites (see module doc)."""
    try:
        unknown = [s for s in sampler if s not in SAMPLERS]
        if unknown:
            raise SpriteGenError(f"unknown sampler {unknown[0]!r}; choose from {', '.join(SAMPLERS)}")
        report = run(checkpoint, per_class, sampler, seed, batch, out, images, judge_train_size)
    except SpriteGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"classifier held-out accuracy {report['classifier']['held_out_accuracy']:.4f}")
    for name, r in report["samplers"].items():
        print(f"{name}: accuracy {r['accuracy']:.3f} over {r['samples']} samples ({r['seconds']} s)")
    print(f"meets targets: {report['meets_targets']}; results in {out}")


if __name__ == "__main__":
    typer.run(main)
