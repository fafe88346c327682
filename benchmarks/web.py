"""DDIM-25 at batch 1 in the browser (onnxruntime-web, WebAssembly) beside native ONNX Runtime.

    python -m benchmarks.web [--export-dir DIR] [--rounds 3] [--reps 5]

Three paths, one export, the same sprite (hero, seed 0):
- browser, threads: the demo page served cross-origin isolated (COOP/COEP), so
  onnxruntime-web runs WASM threads (one per core, at most 4: the demo's default);
- browser, 1 thread: the same page served without those headers (no SharedArrayBuffer);
- native: `spritegen.runtime.Sampler` (ORT's CPU provider, step graphs) with every core,
  and with one thread (the fair partner of the browser's single thread).
A browser time is one `SpriteGen.ddim` call measured in the page (performance.now), a
native time one `Sampler.ddim` call (perf_counter): each includes noise and clipping.
Paths run in `rounds` interleaved rounds in rotated order (a slow spell of the shared
machine hits all alike); each figure is the median of its round medians
(benchmarks.timing.merge_rounds). Results: benchmarks/results/web.json, and its table in web.md.
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
from benchmarks.timing import measure, merge_rounds, percentile
from benchmarks.web_browser import WEB, drive, missing, serving
from spritegen.contract import DDIM_DEFAULT_STEPS
from spritegen.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "web.json"
CONTEXT, SEED = "hero", "0"
PATHS = ("browser_threads", "browser_1thread", "native", "native_1thread")


def browser_round(urls: dict[str, str], reps: int, order: list[str]) -> dict[str, dict]:
    """One Chromium launch, one page per browser path in `order`: timings and the page's facts."""
    call = {"method": "ddim", "context": CONTEXT, "options": {"seed": SEED, "n": DDIM_DEFAULT_STEPS},
            "warmup": 1, "repeat": reps}
    pages = [{"url": f"{urls[name]}?autorun=0", "calls": [call]} for name in order]
    report = drive(pages, timeout_s=600)
    out = {}
    for name, page in zip(order, report["pages"]):
        if not page["ready"]:
            raise RuntimeError(f"{name}: the page did not load its export: {page['status']}")
        ms = sorted(page["results"][0]["times"])
        out[name] = {"timing": _timing(ms), "threads": page["threads"], "isolated": page["isolated"],
                     "chromium": report["version"]}
    return out


def native_round(samplers: dict, reps: int, order: list[str]) -> dict[str, dict]:
    out = {}
    for name in order:
        sampler = samplers[name]
        timing = measure(lambda: sampler.ddim(CONTEXT, n=DDIM_DEFAULT_STEPS, seed=int(SEED)), reps=reps, warmup=1)
        out[name] = {"timing": timing.to_dict(), "threads": sampler.threads or len(os.sched_getaffinity(0)),
                     "onnxruntime": ort_version()}
    return out


def ort_web_version() -> str:
    return json.loads((WEB / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"]


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _timing(ms: list[float]) -> dict:
    """A page's sorted call times in benchmarks.timing.Timing's fields."""
    return {"median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90), "min_ms": ms[0],
            "mean_ms": statistics.fmean(ms), "reps": len(ms), "warmup": 1}


def run(export_dir: Path, rounds: int, reps: int) -> dict:
    from spritegen.runtime import Sampler

    samplers = {"native": Sampler.load(export_dir, provider="cpu"),
                "native_1thread": Sampler.load(export_dir, provider="cpu", threads=1)}
    per_round: dict[str, list[dict]] = {name: [] for name in PATHS}
    facts: dict[str, dict] = {}
    load = [os.getloadavg()[0]]
    with serving(export_dir, isolate=True) as isolated, serving(export_dir, isolate=False) as plain:
        urls = {"browser_threads": isolated, "browser_1thread": plain}
        for number in range(rounds):
            browsers = list(urls)[number % 2:] + list(urls)[:number % 2]
            natives = list(samplers)[number % 2:] + list(samplers)[:number % 2]
            for kind in ("browser", "native")[::1 if number % 2 == 0 else -1]:
                results = browser_round(urls, reps, browsers) if kind == "browser" \
                    else native_round(samplers, reps, natives)
                for name, result in results.items():
                    per_round[name].append(result["timing"])
                    facts[name] = {k: v for k, v in result.items() if k != "timing"}
            load.append(os.getloadavg()[0])
            print(f"round {number + 1}/{rounds}: " + ", ".join(
                f"{name} {per_round[name][-1]['median_ms']:.0f} ms" for name in PATHS), flush=True)
    figures = {name: {**merge_rounds(per_round[name]), **facts[name]} for name in PATHS}
    native = figures["native"]["median_ms"]
    return {
        "what": f"DDIM-{DDIM_DEFAULT_STEPS}, batch 1, context {CONTEXT!r}, seed {SEED}: one call, ms",
        "figures": figures,
        "ratios_to_native": {name: figures[name]["median_ms"] / native for name in PATHS},
        "ratio_to_native_1thread": {name: figures[name]["median_ms"] / figures["native_1thread"]["median_ms"]
                                    for name in PATHS},
        "target": "browser_threads within 3x of native",
        "onnxruntime_web": ort_web_version(),
        "rounds": rounds, "reps_per_round": reps, "export_dir": str(export_dir),
        "machine": {**machine(), "load_average_1min_during": load,
                    "note": "shared with other work while measured: compare only the ratios of one run"},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


LABELS = {"browser_threads": "browser, WASM threads (cross-origin isolated)",
          "browser_1thread": "browser, WASM 1 thread (not isolated)",
          "native": "native ONNX Runtime (Python Sampler), all cores",
          "native_1thread": "native ONNX Runtime, 1 thread"}


def render(report: dict) -> str:
    """The Markdown table of a report (benchmarks/results/web.md), from the JSON alone."""
    load = report["machine"]["load_average_1min_during"]
    lines = [f"{report['what']}; median of {report['rounds']} interleaved round medians "
             f"({report['reps_per_round']} calls each); Chromium {report['figures']['browser_threads']['chromium']}, "
             f"onnxruntime-web {report['onnxruntime_web']}, onnxruntime "
             f"{report['figures']['native']['onnxruntime']}; {report['machine']['cpu_model']}, "
             f"{report['machine']['usable_cores']} cores; 1-min load average {min(load):.1f}-{max(load):.1f}.", "",
             "| path | threads | median ms | p90 ms | x native (all cores) | x native (1 thread) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in PATHS:
        figure = report["figures"][name]
        lines.append(f"| {LABELS[name]} | {figure['threads']} | {figure['median_ms']:.0f} | {figure['p90_ms']:.0f} | "
                     f"{report['ratios_to_native'][name]:.2f} | {report['ratio_to_native_1thread'][name]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export-dir", type=Path, help="default: the bundled model's cached export")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5, help="timed calls per path and round")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    absent = missing()
    if absent:
        print(f"error: the browser benchmark needs {', '.join(absent)}; run .ci/setup_web.sh", file=sys.stderr)
        return 2
    if args.export_dir is None:
        from spritegen.cache import default_export

        args.export_dir = default_export()
    report = run(args.export_dir, args.rounds, args.reps)
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    table = args.out.with_suffix(".md")
    write_text_atomic(table, render(report))
    print(render(report))
    print(f"wrote {args.out} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
