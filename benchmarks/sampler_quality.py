"""Sprite quality against network calls, for every sampler the runtime has: what a user reads
to choose one.

    python -m benchmarks.sampler_quality [--n-sprites 500] [--only ddim-25 ddpm-500 ...] [--quick]

For every point of benchmarks.sampler_points (a sampler method, its arguments, its
network calls), in the torch-free runtime (`spritegen.runtime.Sampler`, impl "step"):
1. draw --n-sprites sprites, balanced over the classes (class-major), sprite i from seed
   --seed + i (so x_T, and the step noise of a stochastic sampler, are the same for sprite
   i at every point and any --batch), guidance 0 unless the point says otherwise;
2. class accuracy: the judge's argmax against the class asked for (benchmarks.sampler_judge);
3. sprite-FID: Frechet distance (benchmarks.fid) between the judge's 128-d penultimate
   features of those sprites and of as many held-out procedural sprites; the floor is
   the same distance between two disjoint real sets of that size;
4. batch-1 latency of one sprite: every point timed in each of --rounds interleaved rounds
   (order rotated per round, warm-up first, perf_counter), median and p90 over all rounds.
Writes benchmarks/results/sampler_quality.{json,md,png} (--quick: sampler_quality-quick.*,
a tiny smoke run whose numbers mean nothing). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.fid import Gaussian, frechet_distance
from benchmarks.sampler_judge import JUDGE_TARGET, REAL_SEEDS, JudgeSettings, judge, load_judge
from benchmarks.sampler_points import POINTS, QUICK, Point, pareto_front, select
from benchmarks.timing import measure, merge_rounds
from spritegen.runtime import Sampler
from spritegen.training.sprites import make_sprites

REPO = Path(__file__).resolve().parent.parent
FORMAT = "spritegen-sampler-quality/1"
DOC_MARKERS = ("<!-- sampler-quality:start (python -m benchmarks.sampler_quality; "
               "benchmarks/results/sampler_quality.md) -->", "<!-- sampler-quality:end -->")
QUICK_JUDGE = JudgeSettings(train_size=3_000, test_size=500, epochs=1)  # ~3 s; ~0.9 held out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sampler_quality", description=__doc__.splitlines()[0])
    p.add_argument("--n-sprites", type=int, help="sprites per point, a multiple of the class count (default 500; "
                   "--quick: 10)")
    p.add_argument("--only", nargs="+", metavar="LABEL", help="measure these points only, replacing their rows "
                   "in an existing JSON of the same settings")
    p.add_argument("--quick", action="store_true", help="smoke run: a few points, 10 sprites, a tiny judge")
    p.add_argument("--export-dir", help="spritegen-export directory (default: the bundled model's cached export)")
    p.add_argument("--batch", type=int, default=100, help="sprites per sampler call while drawing (default 100)")
    p.add_argument("--seed", type=int, default=0, help="sprite i is drawn from seed SEED + i (default 0)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the runtime's)")
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 5; --quick: 1)")
    p.add_argument("--reps", type=int, help="timed batch-1 sprites per point and round (default 3; --quick: 1)")
    p.add_argument("--max-minutes", type=float, default=90.0, help="start no new point after this long; the rest "
                   "are rows marked skipped (default 90)")
    p.add_argument("--retrain-judge", action="store_true", help="train the judge even if a cached one exists")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where results go")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="where the table is pasted "
                   "between its markers (not by --quick)")
    p.add_argument("--render", action="store_true", help="measure nothing: write the Markdown and PNG again from "
                   "the JSON in --out")
    return p.parse_args(argv)


def log(message: str, t0: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {message}", flush=True)


def resolve_calls(sampler: Sampler, point: Point) -> int | None:
    """point.calls, else the steps the method reports to its progress callback (one sprite)."""
    if point.calls is not None:
        return point.calls
    if "progress" not in inspect.signature(getattr(sampler, point.method)).parameters:
        return None
    seen: list[int] = []
    getattr(sampler, point.method)(sampler.class_names[0], seed=0, progress=lambda done, total: seen.append(total),
                                   **point.kwargs)
    return seen[-1] if seen else None


def draw(sampler: Sampler, point: Point, labels: list[str], seed: int, batch: int) -> np.ndarray:
    """Sprite i of class labels[i] from seed `seed + i`, in batches of `batch`."""
    method = getattr(sampler, point.method)
    out = [method(labels[start:start + batch], seed=[seed + i for i in range(start, min(start + batch, len(labels)))],
                  **point.kwargs) for start in range(0, len(labels), batch)]
    return np.concatenate(out)


def score(model, sprites: np.ndarray, target: np.ndarray, real: Gaussian, classes: tuple[str, ...]) -> dict:
    """Class accuracy (overall and per class) and sprite-FID against the real set."""
    predicted, features = judge(model, sprites)
    return {"accuracy": float((predicted == target).mean()),
            "per_class": {name: float((predicted[target == k] == k).mean()) for k, name in enumerate(classes)},
            "fid": frechet_distance(Gaussian.of(features), real)}


def latency(samplers: dict[str | None, Sampler], points: list[Point], rounds: int, reps: int) -> dict[str, dict]:
    """Batch-1 time of one sprite per point: `rounds` interleaved rounds, the order rotated
    each round, one warm-up call per point and round (benchmarks.timing)."""
    per_point: dict[str, list[dict]] = {p.label: [] for p in points}
    for r in range(rounds):
        order = points[r % len(points):] + points[:r % len(points)]
        for point in order:
            sampler = samplers[point.export]
            method, context = getattr(sampler, point.method), sampler.class_names[r % len(sampler.class_names)]
            timing = measure(lambda: method(context, seed=r, **point.kwargs), reps=reps, warmup=1)
            per_point[point.label].append(timing.to_dict())
    return {label: merge_rounds(figures) for label, figures in per_point.items()}


def conditions(sampler: Sampler) -> dict:
    import onnxruntime

    from benchmarks.run import machine
    from spritegen.runtime.session import default_threads

    return {"machine": machine(), "ort_threads": sampler.threads or default_threads(), "provider": sampler.provider,
            "impl": sampler.impl, "spin": sampler.spin, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__}


def measure_points(samplers: dict[str | None, Sampler], model, points: list[Point], args: argparse.Namespace,
                   real: Gaussian, deadline: float) -> list[dict]:
    """Quality of every point (absent methods and points past the deadline: skipped rows)."""
    classes = samplers[None].class_names
    per_class = args.n_sprites // len(classes)
    labels = [name for name in classes for _ in range(per_class)]
    target = np.repeat(np.arange(len(classes)), per_class)
    rows = {}
    for point in sorted(points, key=_cost):  # cheapest first: --max-minutes cuts the expensive tail
        row = {"label": point.label, "method": point.method, "kwargs": point.kwargs, "note": point.note,
               "calls": point.calls, "run": args.started, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        sampler = samplers[point.export]
        if point.export:
            row["checkpoint_sha256"] = sampler.manifest.checkpoint_sha256
        if not hasattr(sampler, point.method):
            rows[point.label] = {**row, "status": "skipped", "reason": f"the runtime has no Sampler.{point.method} (yet)"}
            log(f"{point.label}: skipped (no Sampler.{point.method})")
            continue
        if time.perf_counter() > deadline:
            rows[point.label] = {**row, "status": "skipped", "reason": f"--max-minutes {args.max_minutes:g} spent"}
            continue
        start = time.perf_counter()
        sprites = draw(sampler, point, labels, args.seed, args.batch)
        seconds = time.perf_counter() - start
        row.update(status="ok", calls=resolve_calls(sampler, point), seconds=round(seconds, 1),
                   **score(model, sprites, target, real, classes))
        rows[point.label] = row
        log(f"{point.label}: accuracy {row['accuracy']:.3f}, sprite-FID {row['fid']:.1f} ({seconds:.0f} s)")
    return [rows[p.label] for p in points]  # table order


def _cost(point: Point) -> float:
    return point.calls if point.calls is not None else float("inf")


def real_floor(model, n: int) -> tuple[Gaussian, dict]:
    """The real set generated sprites are compared with, and the real-vs-real floor."""
    (a, labels_a), (b, _) = (make_sprites(n, seed=s) for s in REAL_SEEDS)
    predicted, features_a = judge(model, a)
    real = Gaussian.of(features_a)
    return real, {"fid": frechet_distance(Gaussian.of(judge(model, b)[1]), real),
                  "judge_accuracy": float((predicted == labels_a).mean()), "seeds": list(REAL_SEEDS)}


def run(args: argparse.Namespace) -> dict:
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    args.started = started
    load_before = os.getloadavg()
    points = select(args.only or (QUICK if args.quick else None))
    export_dir = args.export_dir or str(_default_export())
    sampler = Sampler.load(export_dir, impl="step", threads=args.threads)
    samplers: dict[str | None, Sampler] = {None: sampler}
    if any(p.export for p in points):
        from benchmarks.student_export import student_exports

        for key, path in student_exports(say=log).items():
            samplers[key] = Sampler.load(path, impl="step", threads=args.threads)
    model, judge_report = load_judge(QUICK_JUDGE if args.quick else JudgeSettings(), retrain=args.retrain_judge)
    log(f"judge: held-out accuracy {judge_report['held_out_accuracy']:.4f} "
        f"({'cached' if judge_report['cached'] else 'trained'}: {judge_report['cache_file']})")
    real, floor = real_floor(model, args.n_sprites)
    log(f"real vs real: sprite-FID {floor['fid']:.1f} ({args.n_sprites} vs {args.n_sprites})")
    rows = measure_points(samplers, model, points, args, real, t0 + 60 * args.max_minutes)
    timed = [p for p, row in zip(points, rows) if row["status"] == "ok"]
    log(f"latency: batch 1, {args.rounds} rounds x {args.reps} sprites per point, {len(timed)} points")
    load_latency = os.getloadavg()
    for label, figure in latency(samplers, timed, args.rounds, args.reps).items():
        next(row for row in rows if row["label"] == label)["latency_ms"] = figure
    return {"format": FORMAT, "mode": "quick" if args.quick else "full", "started": started,
            "seconds": round(time.perf_counter() - t0, 1), "export_dir": export_dir,
            "checkpoint_sha256": sampler.manifest.checkpoint_sha256,
            "settings": {"n_sprites": args.n_sprites, "batch": args.batch, "seed": args.seed,
                         "rounds": args.rounds, "reps": args.reps, "guidance": 0.0},
            "judge": judge_report, "judge_target": JUDGE_TARGET, "real_vs_real": floor,
            "conditions": {**conditions(sampler), "load_average_before": load_before,
                           "load_average_before_latency": load_latency, "load_average_after": os.getloadavg()},
            "points": rows}


def merge(record: dict, previous: dict | None) -> dict:
    """With --only: the new rows replace theirs in `previous` (same settings and judge), the
    others are kept, and so is a measured row where the new one was skipped; the Pareto
    front is recomputed over all ok rows."""
    same = ("settings", "n_sprites"), ("settings", "seed"), ("judge", "cache_file"), ("checkpoint_sha256",)
    runs = [_run_summary(record)]
    if previous and all(_get(previous, keys) == _get(record, keys) for keys in same):
        old = {row["label"]: {"run": previous["started"], **row} for row in previous["points"]}
        for row in record["points"]:
            if row["status"] == "ok" or row["label"] not in old or old[row["label"]]["status"] != "ok":
                old[row["label"]] = row
        order = {p.label: k for k, p in enumerate(POINTS)}
        points = sorted(old.values(), key=lambda row: order.get(row["label"], len(order)))
        runs = previous.get("runs", [_run_summary(previous)]) + runs
        record = {**record, "points": points}
    record = {**record, "runs": runs}
    ok = [(r["label"], r["calls"], r["fid"]) for r in record["points"] if r["status"] == "ok" and r["calls"]]
    return {**record, "pareto_front": pareto_front(ok)}


def _run_summary(record: dict) -> dict:
    """One run's date, duration, rows and conditions, kept in `runs` when rows are merged."""
    return {"started": record["started"], "seconds": record.get("seconds"), "conditions": record.get("conditions"),
            "settings": record.get("settings"), "labels": [row["label"] for row in record["points"]]}


def _get(record: dict, keys: tuple[str, ...]) -> object:
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _default_export() -> Path:
    from spritegen.cache import default_export

    return default_export(say=log)


def result_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The JSON, Markdown and PNG a run writes (--quick: *-quick.*, so a smoke run never
    overwrites a real one)."""
    stem = "sampler_quality-quick" if args.quick else "sampler_quality"
    return {kind: args.out / f"{stem}.{kind}" for kind in ("json", "md", "png")}


def _check(args: argparse.Namespace) -> None:
    """Usage errors: one line, exit 2."""
    from spritegen.contract import CLASS_NAMES

    args.n_sprites = args.n_sprites or (10 if args.quick else 500)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.reps = args.reps or (1 if args.quick else 3)
    classes = len(CLASS_NAMES)
    if args.n_sprites < 2 * classes or args.n_sprites % classes:
        raise ValueError(f"--n-sprites must be a multiple of {classes} (the classes), at least {2 * classes}; "
                         f"got {args.n_sprites}")
    for flag in ("batch", "rounds", "reps"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    select(args.only)
    json_file = result_paths(args)["json"]
    if args.render and not json_file.is_file():
        raise ValueError(f"--render needs {json_file}; run the benchmark first")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.doc_section import write_section
    from benchmarks.sampler_quality_report import markdown, render
    from spritegen.errors import SpriteGenError
    from spritegen.files import write_bytes_atomic, write_text_atomic

    args = parse(argv)
    try:
        _check(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = result_paths(args)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        record = None if args.render else run(args)
        # read after the run: rows another --only run wrote meanwhile are kept
        previous = json.loads(paths["json"].read_text()) if (args.only or args.render) and paths["json"].is_file() \
            else None
        record = previous if record is None else merge(record, previous)
        write_text_atomic(paths["json"], json.dumps(record, indent=2) + "\n")
        text = markdown(record)
        write_text_atomic(paths["md"], text)
        write_bytes_atomic(paths["png"], render(record))
        if not args.quick:
            write_section(args.doc, text, *DOC_MARKERS)
    except SpriteGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(text)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
