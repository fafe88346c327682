"""Is the int8 network (unet_int8.onnx, spritegen-export --int8) still a good sprite model?

    python -m benchmarks.int8 [--export-dir DIR] [--per-class 100]

A sampler's many steps turn int8's small per-call changes into a different sprite from
the same noise (as fp16 does over DDPM's 500 steps), so comparing int8 and fp32 sprites
pixel by pixel measures chaos, not quality. Both are reported:
1. class accuracy (benchmarks.quality's judge, trained on procedural sprites) of DDIM-25
   and DDPM-500 sprites from the runtime in fp32 and in int8, the same noise for both;
   the stated tolerance: int8 accuracy at most INT8_ACCURACY_DROP below fp32's;
2. pixel differences int8 vs fp32 from the same noise, in 8-bit levels.
Results go to benchmarks/results/int8_quality.json (the export must hold unet_int8.onnx).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer

from benchmarks.quality_classifier import predict_proba, train_classifier
from spritegen.contract import DDIM_DEFAULT_STEPS
from spritegen.errors import SpriteGenError
from spritegen.runtime import Sampler

INT8_ACCURACY_DROP = 0.03  # the stated tolerance: int8 class accuracy >= fp32's - 3 points
ROOT = Path(__file__).resolve().parent.parent
SAMPLERS = ("ddim25", "ddpm500")


def draw(sampler: Sampler, name: str, noise: np.ndarray, labels: list[str], seed: int, batch: int) -> np.ndarray:
    """Sprites of `labels` from `noise` (DDPM's step noise from `seed`), in batches of `batch`."""
    out = []
    for start in range(0, len(labels), batch):
        rows, x = labels[start:start + batch], noise[start:start + batch]
        if name == "ddim25":
            out.append(sampler.ddim(rows, n=DDIM_DEFAULT_STEPS, noise=x))
        else:
            out.append(sampler.ddpm(rows, noise=x, seed=seed + start))
    return np.concatenate(out)


def measure(export_dir: Path, per_class: int, seed: int, batch: int, samplers: tuple[str, ...]) -> dict:
    fp32 = Sampler.load(export_dir, impl="unet")
    int8 = Sampler.load(export_dir, precision="int8")
    judge, judge_report = train_classifier(train_size=10_000, test_size=3_000, epochs=2)
    classes = fp32.class_names
    labels = [name for name in classes for _ in range(per_class)]
    target = np.repeat(np.arange(len(classes)), per_class)
    noise = np.random.default_rng(seed).standard_normal((len(labels), *fp32.image_shape), dtype=np.float32)
    results = {}
    for name in samplers:
        sprites, seconds = {}, {}
        for precision, sampler in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            sprites[precision] = draw(sampler, name, noise, labels, seed, batch)
            seconds[precision] = round(time.perf_counter() - start, 1)
        accuracy = {p: float((predict_proba(judge, torch.from_numpy(s)).argmax(-1).numpy() == target).mean())
                    for p, s in sprites.items()}
        levels = np.abs(sprites["int8"] - sprites["fp32"]) * 127.5  # [-1, 1] -> 8-bit levels
        results[name] = {
            "accuracy": accuracy, "accuracy_drop": accuracy["fp32"] - accuracy["int8"],
            "within_tolerance": accuracy["int8"] >= accuracy["fp32"] - INT8_ACCURACY_DROP,
            "levels_vs_fp32_same_noise": {"mean": float(levels.mean()), "p99": float(np.percentile(levels, 99)),
                                          "share_over_8": float((levels > 8).mean())},
            "seconds": seconds, "sprites": len(labels)}
    return {"export_dir": str(export_dir), "classifier": judge_report.__dict__, "samplers": results,
            "tolerance": {"int8_accuracy_drop_max": INT8_ACCURACY_DROP},
            "meets_tolerance": all(r["within_tolerance"] for r in results.values()),
            "per_class": per_class, "seed": seed, "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(
    export_dir: Optional[Path] = typer.Option(None, help="export with unet_int8.onnx (default: the benchmark's "
                                              "cached export of the bundled model, made by benchmarks.run)"),
    per_class: int = typer.Option(100, min=1, help="sprites per class and sampler"),
    sampler: list[str] = typer.Option(list(SAMPLERS), help=f"any of {', '.join(SAMPLERS)}"),
    seed: int = typer.Option(0),
    batch: int = typer.Option(100, min=1, help="sprites per sampler call"),
    out: Path = typer.Option(ROOT / "benchmarks/results/int8_quality.json"),
) -> None:
    """Class accuracy and pixel differences of int8 vs fp32 sprites (module doc)."""
    try:
        unknown = [s for s in sampler if s not in SAMPLERS]
        if unknown:
            raise SpriteGenError(f"unknown sampler {unknown[0]!r}; choose from {', '.join(SAMPLERS)}")
        directory = export_dir or _bench_export()
        report = measure(directory, per_class, seed, batch, tuple(sampler))
    except SpriteGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(report["samplers"], indent=2))


def _bench_export() -> Path:
    """benchmarks.run's cached export of the bundled model (it holds unet_int8.onnx)."""
    from benchmarks.run import ensure_export, parse

    return Path(ensure_export(parse([]), Path(os.environ.get("TMPDIR", "/tmp"))))


if __name__ == "__main__":
    typer.run(main)
