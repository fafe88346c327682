"""`python -m benchmarks.serve`: the service against the in-process Sampler, in one run.

Starts the real `spritegen serve` on loopback (its default options) and drives it with
1, 8 and 32 concurrent clients, each sending one DDIM-25 sprite per request, one request
after another; beside it the in-process `Sampler` makes one sprite per call (batch 1)
and 32 per call (batch 32). The five cases run in rounds, rotated, so a slow spell of a
shared machine lands on all of them; each figure is over all rounds. Reported:
throughput (sprites/s), latency p50/p99 per request or call, failed requests, and the
issue's two ratios: served 1-client p50 / in-process batch-1 p50 (target <= 1.25) and
served 32-client throughput / in-process batch-32 throughput (target >= 0.85).
Writes benchmarks/results/serve.json and serve.png (or --out).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.timing import percentile
from spritegen.contract import CLASS_NAMES, DDIM_DEFAULT_STEPS
from spritegen.files import write_bytes_atomic, write_text_atomic

RESULTS = Path(__file__).parent / "results"
CLIENTS = (1, 8, 32)
BATCH = 32


def _summary(latencies_s: list[float], sprites: int, wall_s: float, failures: int) -> dict:
    ms = sorted(x * 1e3 for x in latencies_s)
    return {"sprites": sprites, "requests": len(ms), "failures": failures, "wall_s": wall_s,
            "throughput_sprites_per_s": sprites / wall_s if wall_s > 0 else 0.0,
            "p50_ms": statistics.median(ms) if ms else None, "p99_ms": percentile(ms, 99) if ms else None}


def _in_process(sampler, batch: int, calls: int, steps: int) -> tuple[list[float], int]:
    context = [CLASS_NAMES[k % len(CLASS_NAMES)] for k in range(batch)]
    times = []
    for call in range(calls):
        t0 = time.perf_counter()
        sampler.ddim(context, n=steps, seed=list(range(call * batch, (call + 1) * batch)))
        times.append(time.perf_counter() - t0)
    return times, batch * calls


def _served(url: str, clients: int, per_client: int, steps: int) -> tuple[list[float], int, int]:
    from spritegen.client import Client

    def one_client(index: int) -> tuple[list[float], int]:
        times, failures = [], 0
        with Client(url) as client:
            for k in range(per_client):
                t0 = time.perf_counter()
                try:
                    client.ddim([CLASS_NAMES[(index + k) % len(CLASS_NAMES)]], n=steps, seed=index * 1000 + k)
                    times.append(time.perf_counter() - t0)
                except Exception:  # counted, never hidden: the report shows failures
                    failures += 1
        return times, failures

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    times = [t for r in results for t in r[0]]
    return times, len(times), sum(r[1] for r in results)


def run(export_dir: Path, rounds: int, quick: bool, log_dir: Path) -> dict:
    from spritegen.runtime import Sampler
    from tests.serving_support import running_server

    calls_b1, calls_b32, per_client = (2, 1, {1: 2, 8: 1, 32: 1}) if quick else (10, 2, {1: 10, 8: 6, 32: 3})
    steps = 5 if quick else DDIM_DEFAULT_STEPS  # quick: checks that it runs, not how fast
    # the in-process baseline with the server's own ORT settings (all cores, no spin-wait)
    sampler = Sampler.load(export_dir, provider="cpu", open_all=True, spin=False)
    cases = ["in-process batch 1", "in-process batch 32", *(f"served {c} clients" for c in CLIENTS)]
    raw: dict[str, dict] = {case: {"times": [], "sprites": 0, "wall": 0.0, "failures": 0} for case in cases}
    rss = {}
    with running_server(export_dir, log_dir, "--threads", str(os.cpu_count() or 1)) as server:
        _served(server.url, 1, 1, steps)  # warm-up: sessions, runners, connections
        _in_process(sampler, 1, 1, steps), _in_process(sampler, BATCH, 1, steps)
        rss["server_start_kib"] = server.rss_kib()
        for r in range(rounds):
            for case in cases[r % len(cases):] + cases[:r % len(cases)]:  # rotated order
                t0 = time.perf_counter()
                if case.startswith("in-process"):
                    batch = 1 if case.endswith(" 1") else BATCH
                    times, sprites = _in_process(sampler, batch, calls_b1 if batch == 1 else calls_b32, steps)
                    failures = 0
                else:
                    clients = int(case.split()[1])
                    times, sprites, failures = _served(server.url, clients, per_client[clients], steps)
                entry = raw[case]
                entry["wall"] += time.perf_counter() - t0
                entry["times"] += times
                entry["sprites"] += sprites
                entry["failures"] += failures
        rss["server_end_kib"] = server.rss_kib()
    figures = {case: _summary(e["times"], e["sprites"], e["wall"], e["failures"]) for case, e in raw.items()}
    b1, b32 = figures["in-process batch 1"], figures["in-process batch 32"]
    one, many = figures["served 1 clients"], figures["served 32 clients"]
    return {
        "benchmark": "serve", "quick": quick, "rounds": rounds, "steps": steps,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "server": "spritegen serve defaults (max batch 32, queue delay 2 ms, no spin), --threads all cores; "
                  "in-process Sampler with the same ORT settings",
        "figures": figures, "rss": rss,
        "ratios": {"served_1_client_p50_over_in_process_batch1_p50": one["p50_ms"] / b1["p50_ms"],
                   "served_32_clients_throughput_over_in_process_batch32": many["throughput_sprites_per_s"]
                   / b32["throughput_sprites_per_s"]},
        "targets": {"latency_ratio_max": 1.25, "throughput_ratio_min": 0.85, "failures": 0},
        "failures": sum(f["failures"] for f in figures.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", type=Path, default=None, help="export (default: the bundled model's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, a few requests: checks it runs")
    parser.add_argument("--out", type=Path, default=None, help="JSON record (default: benchmarks/results/"
                        "serve.json, serve-quick.json with --quick); the PNG goes beside it")
    args = parser.parse_args(argv)
    from benchmarks.serve_plot import render
    from spritegen.cli import default_export

    export_dir = args.export_dir or default_export()
    args.out = args.out or RESULTS / ("serve-quick.json" if args.quick else "serve.json")
    with tempfile.TemporaryDirectory() as logs:
        record = run(export_dir, 1 if args.quick else args.rounds, args.quick, Path(logs))
    write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")
    write_bytes_atomic(args.out.with_suffix(".png"), render(record))
    for case, f in record["figures"].items():
        print(f"{case:22s} {f['throughput_sprites_per_s']:7.1f} sprites/s  p50 {f['p50_ms']:8.1f} ms  "
              f"p99 {f['p99_ms']:8.1f} ms  failures {f['failures']}")
    print(json.dumps(record["ratios"]), f"failures {record['failures']}", f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
