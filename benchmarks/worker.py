"""One measurement job in a fresh process: `python -m benchmarks.worker REQUEST.json RESULT.json`.

Each backend runs in its own process so that one library's thread pool (torch's OpenMP
workers, ORT's spinning threads) cannot slow another's figures, and so that the
process's peak resident memory, read by the parent with os.wait4, is that backend's
alone. Jobs: "backend" (every figure of one BACKENDS row), "roofline" (FLOPs and the
matmul peak), "sweep" (one ONNX Runtime session-options configuration), "profile"
(ORT's profiler and optimised graph, benchmarks.ort_profile).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from benchmarks.timing import Timing, measure


def run_backend(request: dict, save: Callable[[dict], None] = lambda result: None) -> dict:
    """Build one backend and time every figure it can do; `save` gets the result so far after
    each figure, so a worker stopped at its deadline still reports what it measured."""
    from benchmarks.backends import BACKENDS, Setup, Unavailable
    from benchmarks.plan import Figure

    backend = {b.name: b for b in BACKENDS}[request["backend"]]
    setup = Setup(**request["setup"])
    t0 = time.perf_counter()
    try:
        runner = backend.build(setup)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    result = {"status": "ok", "build_s": time.perf_counter() - t0, "figures": {}, "errors": {}}
    for raw in request["figures"]:
        figure = Figure(**{k: v for k, v in raw.items() if k not in ("key", "title")})
        try:
            timing = _time_figure(runner, figure)
        except Exception as exc:  # one failing figure must not lose the others: it is reported
            result["errors"][figure.key] = f"{type(exc).__name__}: {exc}"
            continue
        if timing is not None:
            result["figures"][figure.key] = timing.to_dict()
            save({**result, "status": "partial", "info": runner.info()})
    result["info"] = runner.info()
    return result


def _time_figure(runner: object, figure: object) -> Timing | None:
    if figure.kind == "net":
        work = runner.net(figure.batch)
    elif figure.kind == "ddim":
        work = runner.ddim(figure.batch, figure.steps)
    else:
        work = runner.ddpm(figure.batch)
    if work is None:
        return None
    if hasattr(work, "timed"):  # an external program that times itself
        return work.timed(figure.reps, figure.warmup)
    return measure(work, reps=figure.reps, warmup=figure.warmup, budget_s=figure.budget_s,
                   min_reps=figure.min_reps, sync=runner.sync)


def run_roofline(request: dict) -> dict:
    from benchmarks import roofline

    rates = roofline.cpu_matmul_peaks(request["size"], request["reps"])
    if request["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            return {"status": "error", "reason": f"--device cuda, but torch {torch.__version__} sees no CUDA device"}
        rates.update(roofline.cuda_matmul_peaks(8192, request["reps"]))
    return {"status": "ok", "matmul_gflops": rates, "flops_per_image": roofline.flops_per_image(request["model"])}


def run_profile(request: dict) -> dict:
    from benchmarks.ort_profile import profile

    return {"status": "ok", **profile(request["export_dir"], tuple(request["batches"]), request["calls"])}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    jobs = {"backend": run_backend, "roofline": run_roofline, "profile": run_profile}
    if request["job"] == "sweep":
        from benchmarks.sweep import run_config

        jobs["sweep"] = run_config
    out = Path(argv[1])

    def save(result: dict) -> None:
        tmp = out.with_suffix(".partial")
        tmp.write_text(json.dumps(result))
        tmp.replace(out)

    try:
        result = run_backend(request, save) if request["job"] == "backend" else jobs[request["job"]](request)
    except Exception as exc:
        result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=8)}
    save(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
