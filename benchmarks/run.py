"""`python -m benchmarks.run [--quick] [--out benchmarks/results]`: the whole benchmark, one command.

Order: the export (made once from the checkpoint if no --export-dir is given), the
roofline (FLOPs and the matmul peak), every backend of the device in its own worker
process, cold start, the ORT options sweep; then JSON, Markdown and PNG in --out, whose
paths it prints. Exits non-zero only when nothing could be measured; a backend that is
unavailable or fails is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from benchmarks import coldstart, plot, procs, report
from benchmarks.backends import Setup, backends_for, model_config
from benchmarks.plan import Plan, full_plan, gpu_plan, quick_plan
from benchmarks.sweep import CONFIGS
from benchmarks.timing import merge_rounds
from spritegen.contract import MANIFEST_FILE

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke test: tiny batches and repeat counts (seconds)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where results go")
    p.add_argument("--export-dir", help="spritegen-export directory (default: the cached export `spritegen sample` uses, "
                   "or an export of --checkpoint)")
    p.add_argument("--checkpoint", help="checkpoint for the eager rows and the default export (default: bundled)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="which table of backends to run")
    p.add_argument("--backends", help="comma-separated subset of backends (default: all of --device)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ORT (default: each library's)")
    p.add_argument("--no-spin", dest="ort_spin", action="store_false",
                   help="ORT rows and the C++ program without spin-waiting threads (Sampler.load(spin=False)), "
                   "as on cores shared with other busy work")
    p.add_argument("--cpp-binary", help="the C++ example (default: build/cpp/spritegen_cpp if built)")
    p.add_argument("--rounds", type=int, help="times every backend is measured, interleaved (default: the plan's, "
                   "3 for a full run, 1 for --quick)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: coldstart,sweep,profile")
    return p.parse_args(argv)


def log(message: str, t0: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - t0:6.1f}s] {message}", flush=True)


def ensure_export(args: argparse.Namespace, work: Path) -> str:
    """The export directory to measure: --export-dir; else an export of --checkpoint (default:
    the bundled demo) with unet_fp16.onnx and unet_int8.onnx, cached under spritegen's cache
    directory by the checkpoint's sha256 (so the int8 and fp16 rows run). Exporting runs once."""
    if args.export_dir:
        if not (Path(args.export_dir) / MANIFEST_FILE).is_file():
            raise SystemExit(f"error: {args.export_dir} has no {MANIFEST_FILE}; make one with spritegen-export")
        return args.export_dir
    from spritegen.cache import bundled_checkpoint, cache_dir

    checkpoint = Path(args.checkpoint) if args.checkpoint else bundled_checkpoint()
    digest = hashlib.sha256(checkpoint.read_bytes() if checkpoint.is_file()
                            else str(args.checkpoint).encode()).hexdigest()[:16]
    target = cache_dir() / "bench-exports" / digest
    if (target / MANIFEST_FILE).is_file():
        return str(target)
    log(f"exporting {checkpoint} into {target} with --fp16 --int8 (once)")
    code = (f"from spritegen.export.exporter import export; "
            f"export({args.checkpoint!r}, {str(target)!r}, fp16=True, int8=True)")
    done = procs.run([sys.executable, "-c", code], timeout_s=900, log_path=work / "export.log")
    if not done.ok:
        raise SystemExit(f"error: exporting {checkpoint} failed (exit {done.returncode}):\n{done.log[-1500:]}")
    return str(target)


def worker(request: dict, work: Path, tag: str, timeout_s: float) -> dict:
    """Run one job in a fresh process; add its wall time and peak RSS to its result."""
    req, res = work / f"{tag}.request.json", work / f"{tag}.result.json"
    req.write_text(json.dumps(request))
    done = procs.run([sys.executable, "-m", "benchmarks.worker", str(req), str(res)], timeout_s=timeout_s,
                     log_path=work / f"{tag}.log", env={**os.environ, "PYTHONPATH": _pythonpath()})
    if res.is_file():
        result = json.loads(res.read_text())
        if done.returncode is None:  # stopped at the deadline: keep the figures it finished
            result["reason"] = f"stopped after {timeout_s:.0f} s (worker timeout); later figures missing"
    elif done.returncode is None:
        result = {"status": "error", "reason": f"stopped after {timeout_s:.0f} s (worker timeout)"}
    else:
        result = {"status": "error", "reason": f"worker exited {done.returncode}: {done.log[-600:]}"}
    result.update(wall_s=done.wall_s, peak_rss_mb=done.peak_rss_mb)
    return result


def _pythonpath() -> str:
    """The repo root first, so `benchmarks` imports in workers whatever the caller's cwd."""
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def roofline_round(args: argparse.Namespace, plan: Plan, setup: Setup, work: Path, number: int) -> dict:
    """One roofline job: FLOPs per image and each library's fp32 matmul rate (GFLOP/s)."""
    model = model_config(setup.export_dir).to_dict()
    roof = worker({"job": "roofline", "device": args.device, "size": plan.peak_size, "reps": plan.peak_reps,
                   "model": model}, work, f"roofline-r{number}", plan.worker_timeout_s)
    if roof.get("status") != "ok":
        raise SystemExit(f"error: the roofline job failed: {roof.get('reason')}")
    rates = {k: v for k, v in roof["matmul_gflops"].items()
             if (k == "torch_cuda_fp32" if args.device == "cuda" else not k.startswith("torch_cuda"))}
    log(f"round {number + 1}/{plan.rounds} fp32 peak {max(rates.values()):.0f} GFLOP/s ({max(rates, key=rates.get)}); "
        f"{roof['flops_per_image'] / 1e9:.3f} GFLOP/image")
    return {"rates": rates, "all": roof["matmul_gflops"], "flops_per_image": roof["flops_per_image"]}


def measure_rounds(args: argparse.Namespace, plan: Plan, setup: Setup, work: Path) -> dict:
    """The fp32 peak and every backend of the device (or --backends), each in its own worker
    process, in `plan.rounds` interleaved rounds in rotated orders (benchmarks.plan): the peak
    is the median of the rounds' best-library rates (the machine as it was while the backends
    ran, the statistic every figure uses), each figure the median of its round medians."""
    backends = backends_for(args.device, args.backends.split(",") if args.backends else None)
    figures = [f.to_dict() for f in plan.figures]
    peaks: list[dict] = []
    rounds: dict[str, list[dict]] = {b.name: [] for b in backends}
    for number in range(plan.rounds):
        peaks.append(roofline_round(args, plan, setup, work, number))
        # Each round starts at a different backend: the CPU slows after tens of seconds of
        # full load and recovers when idle (docs/benchmarks.md), so a fixed order would
        # always measure the same backends on a fresh CPU and the others on a hot one.
        start = number * len(backends) // plan.rounds
        for backend in backends[start:] + backends[:start]:
            if rounds[backend.name] and rounds[backend.name][0].get("status") == "unavailable":
                continue  # no GPU, no C++ build: it will not appear in a later round either
            result = worker({"job": "backend", "backend": backend.name, "setup": setup.__dict__,
                             "figures": figures}, work, f"{backend.name}-r{number}", plan.worker_timeout_s)
            rounds[backend.name].append(result)
            shown = ", ".join(f"{k} {v['median_ms']:.3g} ms" for k, v in result.get("figures", {}).items())
            log(f"round {number + 1}/{plan.rounds} {backend.name}: {result['status']} "
                f"{shown or result.get('reason', '')}"[:300])
    rates = {k: statistics.median(p["rates"][k] for p in peaks) for k in peaks[0]["rates"]}
    source = max(rates, key=rates.get)
    return {"peak": {"gflops": rates[source], "source": source, "all": rates, "dtype": "float32",
                     "matrix": plan.peak_size, "round_gflops": [max(p["rates"].values()) for p in peaks]},
            "flops_per_image": peaks[0]["flops_per_image"],
            "backends": {b.name: {**_merged(rounds[b.name]), "label": b.label, "device": b.device}
                         for b in backends}}


def _merged(results: list[dict]) -> dict:
    """One backend's row from its rounds: figures merged (timing.merge_rounds) where every
    round measured them; the first round's status and reason when none is usable."""
    usable = [r for r in results if r.get("figures")]
    if not usable:
        return results[0]
    keys = [k for k in usable[0]["figures"] if all(k in r["figures"] for r in usable)]
    merged = {**usable[0], "figures": {k: merge_rounds([r["figures"][k] for r in usable]) for k in keys},
              "rounds": len(usable), "peak_rss_mb": max(r["peak_rss_mb"] for r in usable),
              "wall_s": sum(r["wall_s"] for r in results)}
    errors = {k: v for r in results for k, v in r.get("errors", {}).items()}
    if errors:
        merged["errors"] = errors
    if any(r.get("status") != "ok" for r in results):
        merged["status"] = "partial"
        merged["reason"] = "; ".join(r.get("reason", r.get("status", "")) for r in results if r.get("status") != "ok")
    return merged


def measure_sweep(plan: Plan, setup: Setup, work: Path) -> dict:
    """The ORT session-options configurations of the plan, one worker each."""
    sweep = {}
    for config in CONFIGS:
        if plan.sweep_configs is None or config.name in plan.sweep_configs:
            sweep[config.name] = worker({"job": "sweep", "config": config.name, "export_dir": setup.export_dir,
                                         "batches": list(plan.sweep_batches), "reps": list(plan.sweep_reps)},
                                        work, f"sweep-{config.name}", plan.worker_timeout_s)
    log("ORT options sweep: " + ", ".join(f"{k} {v['status']}" for k, v in sweep.items()))
    return sweep


def measure_all(args: argparse.Namespace, plan: Plan, setup: Setup, work: Path) -> dict:
    record = measure_rounds(args, plan, setup, work)
    skip = set(filter(None, args.skip.split(",")))
    if args.device == "cpu" and "coldstart" not in skip:
        log("cold start ...")
        record["coldstart"] = coldstart.measure(setup.export_dir, args.checkpoint, plan.coldstart_reps)
        log("cold start: " + ", ".join(f"{k} {v['median_s']:.2f} s" if v.get("ok") else f"{k} failed"
                                       for k, v in record["coldstart"].items()))
    if args.device == "cpu" and "sweep" not in skip:
        record["sweep"] = measure_sweep(plan, setup, work)
    if args.device == "cpu" and "profile" not in skip:
        record["profile"] = worker({"job": "profile", "export_dir": setup.export_dir,
                                    "batches": list(plan.sweep_batches), "calls": plan.sweep_reps[1]},
                                   work, "profile", plan.worker_timeout_s)
        log(f"ORT profile: {record['profile']['status']}")
    return record


def machine() -> dict:
    """CPU model, cores and the SIMD/matrix features that decide the kernels, plus the GPU."""
    info = {"cpu_model": platform.processor() or platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "gpu": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu_model"] = fields.get("model name", info["cpu_model"])
        flags = set(fields.get("flags", "").split())
        info["cpu_features"] = sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                               "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile", "avx_vnni"})
    except OSError:
        pass
    try:
        import subprocess

        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["gpu"] = gpu.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def versions() -> dict:
    found = {}
    for name in ("spritegen", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "pillow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through procs.run: workers are killed
    try:
        backends_for(args.device, args.backends.split(",") if args.backends else None)
    except ValueError as exc:  # an unknown --backends name: say so before any work
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = quick_plan() if args.quick else gpu_plan() if args.device == "cuda" else full_plan()
    if args.rounds:
        plan = replace(plan, rounds=max(1, args.rounds))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spritegen-bench-") as tmp:
        work = Path(tmp)
        export_dir = ensure_export(args, work)
        setup = Setup(export_dir=export_dir, checkpoint=args.checkpoint, threads=args.threads,
                      cpp_binary=args.cpp_binary, ort_spin=args.ort_spin)
        log(f"{plan.mode} run on {args.device}, export {export_dir}")
        record = measure_all(args, plan, setup, work)
    record.update(format="spritegen-bench/1", started=started, duration_s=time.perf_counter() - t0,
                  device=args.device, threads=args.threads, ort_spin=args.ort_spin, export_dir=export_dir, checkpoint=args.checkpoint,
                  machine=machine(), versions=versions(), plan=plan.to_dict(),
                  manifest=_manifest_facts(export_dir))
    report.derive(record)
    record["targets"] = report.check_targets(record)
    paths = report.write(record, args.out, plot.render(record))
    print(report.markdown(record))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    measured = [r for r in record["backends"].values() if r.get("figures")]
    return 0 if measured else 1


def _manifest_facts(export_dir: str) -> dict:
    data = json.loads((Path(export_dir) / MANIFEST_FILE).read_text())
    keep = ("format", "opset", "ddim_loop_steps", "source", "provenance", "tools", "versions")
    return {k: data[k] for k in keep if k in data}


if __name__ == "__main__":
    sys.exit(main())
