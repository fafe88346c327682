"""Training step time of the course recipe on this CPU: fp32 vs bf16 autocast, channels_last, threads.

    python -m benchmarks.quality_train_speed [--reps 10] [--out benchmarks/results/train_speed.json]

One full `Trainer.step` (forward, MSE, backward, Adam, EMA) at batch 100 for each
variant, timed by benchmarks.timing.measure (warm-up, perf_counter, median and p90).
Variants run one after another in this process, so compare them as ratios within one
run; on a shared machine absolute numbers move with the load (recorded beside them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from benchmarks.timing import measure
from spritegen.training.config import TrainConfig
from spritegen.training.trainer import Trainer, draw_batch, load_data

VARIANTS = (  # (name, bf16, channels_last, threads)
    ("fp32", False, False, 2),
    ("bf16", True, False, 2),
    ("fp32+channels_last", False, True, 2),
    ("bf16+channels_last", True, True, 2),
    ("bf16, 1 thread", True, False, 1),
)


def time_variant(bf16: bool, channels_last: bool, threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    config = TrainConfig(bf16=bf16, channels_last=channels_last, threads=threads, dataset_size=1000)
    images, labels = load_data(config)
    trainer = Trainer(config)
    batches = iter(range(10_000))
    timing = measure(lambda: trainer.step(draw_batch(images, labels, next(batches), config)), reps=reps, warmup=3)
    return timing.to_dict()


def main(reps: int = 10, out: Path = Path("benchmarks/results/train_speed.json")) -> None:
    results = {}
    for name, bf16, channels_last, threads in VARIANTS:
        results[name] = time_variant(bf16, channels_last, threads, reps)
        print(f"{name:22s} median {results[name]['median_ms']:7.1f} ms  p90 {results[name]['p90_ms']:7.1f} ms",
              flush=True)
    base = results["fp32"]["median_ms"]
    record = {"batch_size": 100, "variants": results,
              "speedup_vs_fp32": {k: round(base / v["median_ms"], 2) for k, v in results.items()},
              "load_average": os.getloadavg(), "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"written {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(reps=int(args[0]) if args else 10)
