"""Few-step samplers at batch 1 in the C++ sampler (examples/cpp) beside its DDIM-25.

    python -m benchmarks.cpp_fewstep [--export-dir DIR] [--rounds 3] [--reps 10] [--binary PATH]

Issue 18's C++ latency target: the <= 8-call point >= 3x faster than DDIM-25 at batch 1.
Samplers, one export, the same sprite per sampler (hero, seed 0): DDIM-25 as the C++ program
runs it by default (ddim_loop.onnx, one graph call) and per step (ddim_step.onnx, 25 calls),
DPM-Solver++ 2M with 8 network calls, and the export's fitted `fast` sampler at its default n
when the manifest has one (both solver_step.onnx). Each runs with every core and with one
ONNX Runtime thread. A time is the program's own clock around one generate() call (noise,
every network call, clipping; `--repeat`, after one untimed warm-up call: no process start-up
counted). Beside every figure the 1-minute load average before and after its calls, because
on a shared machine it moves the wall time. Paths and samplers run in `rounds` interleaved
rounds in rotated order, each figure the median of its round medians
(benchmarks.timing.merge_rounds); compare only the ratios of one run.
Results: benchmarks/results/cpp_fewstep.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.cpp_backend import DEFAULT_BINARY, External
from benchmarks.run import machine
from benchmarks.timing import merge_rounds
from benchmarks.web import rotated
from spritegen.contract import DDIM_DEFAULT_STEPS, FAST_KEY, GRAPHS, MANIFEST_FILE
from spritegen.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "cpp_fewstep.json"
CONTEXT, SEED = "hero", "0"
FEW_CALLS = 8  # issue 18: the <= 8-call point must be >= 3x faster than DDIM-25
BASELINE, BASELINE_STEP = f"ddim{DDIM_DEFAULT_STEPS}", f"ddim{DDIM_DEFAULT_STEPS}-step"
# sampler key -> the program's options; "fast" only when the export has a fitted sampler
SAMPLERS = {BASELINE: ("--sampler", "ddim", "--n", str(DDIM_DEFAULT_STEPS), "--graph", "auto"),
            BASELINE_STEP: ("--sampler", "ddim", "--n", str(DDIM_DEFAULT_STEPS), "--graph", "step"),
            f"dpmpp{FEW_CALLS}": ("--sampler", "dpmpp", "--n", str(FEW_CALLS)),
            "fast": ("--sampler", "fast")}
PATHS = {"all_cores": (), "1thread": ("--threads", "1")}


def measured(binary: Path, export_dir: Path, key: str, path: str, reps: int) -> dict:
    """One figure of one round: the program's timing, its graph and call count, the load around it."""
    command = [str(binary), "--export-dir", str(export_dir), "--class", CONTEXT, "--seed", SEED,
               *SAMPLERS[key], *PATHS[path]]
    info: dict = {}
    load0 = os.getloadavg()[0]
    timing = External(command, info).timed(reps, 1)
    record = info["program_record"]
    return {"timing": timing.to_dict(), "load": [load0, os.getloadavg()[0]], "calls": record["n"],
            "graph": record["graph"]}


def merge(results: list[dict]) -> dict:
    """One figure from its rounds: merged timings, the load range, the run's facts."""
    loads = [value for r in results for value in r["load"]]
    return {**merge_rounds([r["timing"] for r in results]), "calls": results[-1]["calls"],
            "graph": results[-1]["graph"], "load_1min": [min(loads), max(loads)]}


def run(binary: Path, export_dir: Path, rounds: int, reps: int) -> dict:
    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    keys = [key for key in SAMPLERS if key != "fast" or manifest.get(FAST_KEY)]
    per_round: dict[str, list[dict]] = {}
    for number in range(rounds):
        for path in rotated(list(PATHS), number):
            for key in rotated(keys, number):
                per_round.setdefault(f"{path}/{key}", []).append(measured(binary, export_dir, key, path, reps))
        print(f"round {number + 1}/{rounds}: " + ", ".join(
            f"{name} {per_round[name][-1]['timing']['median_ms']:.1f} ms" for name in per_round), flush=True)
    figures = {name: merge(results) for name, results in per_round.items()}
    speedups = {base: {name: figures[f"{name.split('/')[0]}/{base}"]["median_ms"] / figure["median_ms"]
                       for name, figure in figures.items()} for base in (BASELINE, BASELINE_STEP)}
    few = [name for name, figure in figures.items() if figure["calls"] <= FEW_CALLS]
    return {
        "what": f"C++ sampler, batch 1, context {CONTEXT!r}, seed {SEED}: one sprite per generate() call, ms",
        "figures": figures,
        "speedup_over": speedups,
        "target": f"issue 18: the <= {FEW_CALLS}-call point >= 3x faster than {BASELINE} at batch 1 in C++",
        "target_met": {path: max(speedups[BASELINE][name] for name in few if name.startswith(path + "/")) >= 3
                       for path in PATHS},
        "rounds": rounds, "reps_per_round": reps, "export_dir": str(export_dir), "binary": str(binary),
        "machine": {**machine(), "note": "shared with other work while measured: compare only the ratios of one run"},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render(report: dict) -> str:
    """The Markdown table of a report (benchmarks/results/cpp_fewstep.md), from the JSON alone."""
    figures = report["figures"]
    loads = [value for figure in figures.values() for value in figure["load_1min"]]
    lines = [f"{report['what']}; median of {report['rounds']} interleaved round medians "
             f"({report['reps_per_round']} calls each); {report['machine']['cpu_model']}, "
             f"{report['machine']['usable_cores']} usable cores; 1-min load average {min(loads):.1f}-{max(loads):.1f}.",
             "", f"| threads | sampler | graph | network calls | median ms | p90 ms | load avg | "
                 f"x faster than {BASELINE} (loop) | x faster than {BASELINE_STEP} |",
             "|---|---|---|---:|---:|---:|---|---:|---:|"]
    for name, figure in figures.items():
        path, key = name.split("/")
        low, high = figure["load_1min"]
        lines.append(f"| {path} | {key} | {figure['graph']} | {figure['calls']} | {figure['median_ms']:.1f} | "
                     f"{figure['p90_ms']:.1f} | {low:.1f}-{high:.1f} | {report['speedup_over'][BASELINE][name]:.2f} | "
                     f"{report['speedup_over'][BASELINE_STEP][name]:.2f} |")
    met = ", ".join(f"{path}: {'met' if ok else 'missed'}" for path, ok in report["target_met"].items())
    return "\n".join(lines) + f"\n\n{report['target']}: {met}.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export-dir", type=Path, help="default: the bundled model's cached export")
    parser.add_argument("--binary", type=Path, default=DEFAULT_BINARY, help="the C++ example (bash .ci/setup_cpp.sh)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10, help="timed calls per path, sampler and round")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    problem = None
    if args.rounds < 1 or args.reps < 1:
        problem = "--rounds and --reps must be at least 1"
    elif not os.access(args.binary, os.X_OK):
        problem = f"{args.binary} is not built: run bash .ci/setup_cpp.sh, or pass --binary"
    elif not args.out.parent.is_dir():  # before minutes of measuring, not after
        problem = f"cannot write {args.out}: directory {args.out.parent} does not exist; create it first"
    if problem is None and args.export_dir is None:
        from spritegen.cache import default_export

        args.export_dir = default_export()
    solver = GRAPHS["solver_step"].file
    if problem is None and not (args.export_dir / solver).is_file():
        problem = (f"export {args.export_dir} has no {solver}: it predates DPM-Solver++; re-export it (a cached "
                   "export: delete that directory and it is rebuilt), or pass --export-dir")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    report = run(args.binary, args.export_dir, args.rounds, args.reps)
    write_text_atomic(args.out, json.dumps(report, indent=1) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
