"""Few-step samplers at batch 1 in the browser (onnxruntime-web, WebAssembly) beside native ONNX Runtime.

    python -m benchmarks.web [--export-dir DIR] [--rounds 3] [--reps 5]

Samplers, one export, the same sprite per sampler (hero, seed 0): DDIM-25 (the course's
default), DPM-Solver++ 2M with 8 network calls (issue 18's <= 8-call point), and the export's
fitted `fast` sampler at its default n when the manifest has one. Four paths run each:
- browser, threads: the demo page served cross-origin isolated (COOP/COEP) with `?threads=`
  every core (2..4), so onnxruntime-web runs WASM threads;
- browser, 1 thread: the same page served without those headers (no SharedArrayBuffer);
- native: `spritegen.runtime.Sampler` (ORT's CPU provider, step graphs) with every core,
  and with one thread (the fair partner of the browser's single thread).
A browser time is one SpriteGen call measured in the page (performance.now), a native time
one Sampler call (perf_counter): each includes noise and clipping. Beside every figure: the
CPU time per sprite (every Chromium process's, from /proc, or this process's) and the 1-minute
load average before and after its timed calls, because on a shared machine both move the
wall time. Paths and samplers run in `rounds` interleaved rounds in rotated order (a slow
spell of the machine hits all alike); each figure is the median of its round medians
(benchmarks.timing.merge_rounds). The page's default thread count on this machine
(spritegen.js's wasmThreads) is recorded too. Results: benchmarks/results/web.json and web.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.run import machine
from benchmarks.timing import merge_rounds, percentile
from benchmarks.web_browser import WEB, drive, missing, serving
from spritegen.contract import DDIM_DEFAULT_STEPS, GRAPHS, ddim_pairs
from spritegen.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "web.json"
CONTEXT, SEED = "hero", "0"
PATHS = ("browser_threads", "browser_1thread", "native", "native_1thread")
FEW_CALLS = 8  # issue 18: the <= 8-call point must be >= 3x faster than DDIM-25
# sampler key -> (SpriteGen / Sampler method, its options); "fast" only when the export has one
SAMPLERS = {f"ddim{DDIM_DEFAULT_STEPS}": ("ddim", {"n": DDIM_DEFAULT_STEPS}),
            f"dpmpp{FEW_CALLS}": ("dpmpp", {"n": FEW_CALLS}), "fast": ("fast", {})}
BASELINE = f"ddim{DDIM_DEFAULT_STEPS}"


def rotated(items: list, number: int) -> list:
    """`items` rotated by the round number: each item runs first in some round."""
    k = number % len(items)
    return items[k:] + items[:k]


def browser_round(urls: dict[str, str], samplers: list[str], reps: int, number: int) -> dict[str, dict]:
    """One Chromium launch, one page per browser path: every sampler's timings and the page's facts."""
    order, calls = rotated(list(urls), number), rotated(samplers, number)
    pages = [{"url": f"{urls[name]}autorun=0", "calls": [
        {"method": SAMPLERS[key][0], "context": CONTEXT, "options": {"seed": SEED, **SAMPLERS[key][1]},
         "warmup": 1, "repeat": reps} for key in calls]} for name in order]
    report = drive(pages, timeout_s=600)
    out = {}
    for name, page in zip(order, report["pages"]):
        if not page["ready"]:
            raise RuntimeError(f"{name}: the page did not load its export: {page['status']}")
        for key, result in zip(calls, page["results"]):
            ms = sorted(result["times"])
            cpu = None if result["cpu_ms"] is None else result["cpu_ms"] / len(ms)
            out[f"{name}/{key}"] = {"timing": _timing(ms), "cpu_ms_per_sprite": cpu, "load": result["load"],
                                    "calls": result["calls"], "threads": page["threads"],
                                    "isolated": page["isolated"], "chromium": report["version"],
                                    "page_default_threads": page["defaultThreads"], "page_cores": page["cores"]}
    return out


def native_round(samplers: dict, keys: list[str], reps: int, number: int) -> dict[str, dict]:
    """Every sampler on both native Samplers, timed here: wall and process CPU time per call."""
    out = {}
    for name in rotated(list(samplers), number):
        sampler = samplers[name]
        for key in rotated(keys, number):
            method, options = SAMPLERS[key]
            run = lambda: getattr(sampler, method)(CONTEXT, seed=int(SEED), **options)  # noqa: E731
            run()  # warm-up
            load0, cpu0, ms = os.getloadavg()[0], time.process_time(), []
            for _ in range(reps):
                t0 = time.perf_counter()
                run()
                ms.append((time.perf_counter() - t0) * 1e3)
            cpu = (time.process_time() - cpu0) * 1e3 / reps
            out[f"{name}/{key}"] = {"timing": _timing(sorted(ms)), "cpu_ms_per_sprite": cpu,
                                    "load": [load0, os.getloadavg()[0]], "calls": native_calls(sampler, key),
                                    "threads": sampler.threads or len(os.sched_getaffinity(0)),
                                    "onnxruntime": ort_version()}
    return out


def native_calls(sampler, key: str) -> int:
    """Network calls per sprite of `key` on the Python runtime, from the contract's rules."""
    method, options = SAMPLERS[key]
    if method == "ddim":
        return len(ddim_pairs(sampler.timesteps, options["n"]))
    indices = sampler.check_fast()[0] if method == "fast" else sampler.check_dpmpp(**options)
    return len(indices) - 1


def ort_web_version() -> str:
    return json.loads((WEB / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"]


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _timing(ms: list[float]) -> dict:
    """Sorted call times in benchmarks.timing.Timing's fields."""
    return {"median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90), "min_ms": ms[0],
            "mean_ms": statistics.fmean(ms), "reps": len(ms), "warmup": 1}


def merge(results: list[dict]) -> dict:
    """One figure from its rounds: merged timings, the median CPU time per sprite, the load range."""
    cpu = [r["cpu_ms_per_sprite"] for r in results if r["cpu_ms_per_sprite"] is not None]
    loads = [value for r in results for value in r["load"]]
    facts = {k: v for k, v in results[-1].items() if k not in ("timing", "cpu_ms_per_sprite", "load")}
    return {**merge_rounds([r["timing"] for r in results]), **facts,
            "cpu_ms_per_sprite": statistics.median(cpu) if cpu else None,
            "round_cpu_ms_per_sprite": cpu, "load_1min": [min(loads), max(loads)]}


def run(export_dir: Path, rounds: int, reps: int) -> dict:
    from spritegen.runtime import Sampler

    samplers = {"native": Sampler.load(export_dir, provider="cpu"),
                "native_1thread": Sampler.load(export_dir, provider="cpu", threads=1)}
    keys = [key for key in SAMPLERS if key != "fast" or samplers["native"].manifest.fast is not None]
    threads = max(2, min(4, len(os.sched_getaffinity(0))))
    per_round: dict[str, list[dict]] = {}
    with serving(export_dir, isolate=True) as isolated, serving(export_dir, isolate=False) as plain:
        urls = {"browser_threads": f"{isolated}?threads={threads}&", "browser_1thread": f"{plain}?"}
        for number in range(rounds):
            kinds = ("browser", "native") if number % 2 == 0 else ("native", "browser")
            for kind in kinds:
                results = browser_round(urls, keys, reps, number) if kind == "browser" \
                    else native_round(samplers, keys, reps, number)
                for name, result in results.items():
                    per_round.setdefault(name, []).append(result)
            print(f"round {number + 1}/{rounds}: " + ", ".join(
                f"{name} {per_round[name][-1]['timing']['median_ms']:.0f} ms" for name in sorted(per_round)), flush=True)
    figures = {f"{path}/{key}": merge(per_round[f"{path}/{key}"]) for path in PATHS for key in keys}
    speedups = {path: {key: figures[f"{path}/{BASELINE}"]["median_ms"] / figures[f"{path}/{key}"]["median_ms"]
                       for key in keys} for path in PATHS}
    cpu = {name: figure["cpu_ms_per_sprite"] for name, figure in figures.items()}
    cpu_speedups = {path: {key: cpu[f"{path}/{BASELINE}"] / cpu[f"{path}/{key}"]
                           if cpu[f"{path}/{BASELINE}"] and cpu[f"{path}/{key}"] else None for key in keys}
                    for path in PATHS}
    return {
        "what": f"batch 1, context {CONTEXT!r}, seed {SEED}: one sprite per call, ms",
        "samplers": {key: SAMPLERS[key][0] + (f"-{SAMPLERS[key][1]['n']}" if "n" in SAMPLERS[key][1] else "")
                     for key in keys},
        "figures": figures,
        "speedup_over_baseline": speedups,
        "cpu_saving_over_baseline": cpu_speedups,  # baseline CPU time per sprite / this one's
        "baseline": BASELINE,
        "ratio_to_native": {name: figures[name]["median_ms"] / figures[f"native/{name.split('/')[1]}"]["median_ms"]
                            for name in figures},
        "ratio_to_native_1thread": {
            name: figures[name]["median_ms"] / figures[f"native_1thread/{name.split('/')[1]}"]["median_ms"]
            for name in figures},
        "target": f"issue 18: the <= {FEW_CALLS}-call point >= 3x faster than {BASELINE} at batch 1 in the browser",
        "onnxruntime_web": ort_web_version(),
        "rounds": rounds, "reps_per_round": reps, "export_dir": str(export_dir),
        "machine": {**machine(), "note": "shared with other work while measured: compare only the ratios of one run"},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


LABELS = {"browser_threads": "browser, WASM threads (cross-origin isolated)",
          "browser_1thread": "browser, WASM 1 thread (not isolated)",
          "native": "native ONNX Runtime (Python Sampler), all cores",
          "native_1thread": "native ONNX Runtime, 1 thread"}


def render(report: dict) -> str:
    """The Markdown table of a report (benchmarks/results/web.md), from the JSON alone."""
    figures = report["figures"]
    loads = [value for figure in figures.values() for value in figure["load_1min"]]
    browser = figures[f"browser_threads/{report['baseline']}"]
    native = figures[f"native/{report['baseline']}"]
    lines = [f"{report['what']}; median of {report['rounds']} interleaved round medians "
             f"({report['reps_per_round']} calls each); Chromium {browser['chromium']}, "
             f"onnxruntime-web {report['onnxruntime_web']}, onnxruntime "
             f"{native['onnxruntime']}; {report['machine']['cpu_model']}, "
             f"{report['machine']['usable_cores']} cores (the page's default: {browser['page_default_threads']} WASM "
             f"thread(s) for {browser['page_cores']} cores); 1-min load average {min(loads):.1f}-{max(loads):.1f}.", "",
             f"| path | sampler | calls | threads | median ms | p90 ms | CPU ms per sprite | load avg | "
             f"x faster than {report['baseline']} | x less CPU | x native | x native 1 thread |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, figure in figures.items():
        path, key = name.split("/")
        cpu = "-" if figure["cpu_ms_per_sprite"] is None else f"{figure['cpu_ms_per_sprite']:.0f}"
        low, high = figure["load_1min"]
        saving = report["cpu_saving_over_baseline"][path][key]
        lines.append(f"| {LABELS[path]} | {report['samplers'][key]} | {figure['calls']} | {figure['threads']} | "
                     f"{figure['median_ms']:.0f} | {figure['p90_ms']:.0f} | {cpu} | {low:.1f}-{high:.1f} | "
                     f"{report['speedup_over_baseline'][path][key]:.2f} | "
                     f"{'-' if saving is None else f'{saving:.2f}'} | {report['ratio_to_native'][name]:.2f} | "
                     f"{report['ratio_to_native_1thread'][name]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export-dir", type=Path, help="default: the bundled model's cached export")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5, help="timed calls per path, sampler and round")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    absent = missing()
    if absent:
        print(f"error: the browser benchmark needs {', '.join(absent)}; run .ci/setup_web.sh", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.reps < 1:
        print("error: --rounds and --reps must be at least 1", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():  # before minutes of measuring, not after
        print(f"error: cannot write {args.out}: directory {args.out.parent} does not exist; create it first",
              file=sys.stderr)
        return 2
    if args.export_dir is None:
        from spritegen.cache import default_export

        args.export_dir = default_export()
    solver = GRAPHS["solver_step"].file
    if not (args.export_dir / solver).is_file():  # an export (or a cached one) from before DPM-Solver++
        print(f"error: export {args.export_dir} has no {solver}: it predates DPM-Solver++; re-export it "
              "(a cached export: delete that directory and it is rebuilt), or pass --export-dir", file=sys.stderr)
        return 2
    report = run(args.export_dir, args.rounds, args.reps)
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    table = args.out.with_suffix(".md")
    write_text_atomic(table, render(report))
    print(render(report))
    print(f"wrote {args.out} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
