"""`python -m benchmarks.serve`: the service against the in-process Sampler, in one run.

Starts the real `spritegen serve` on loopback (its default options) and drives it with
1, 8 and 32 concurrent clients, each sending one DDIM-25 sprite per request, one request
after another; beside it the in-process `Sampler` makes one sprite per call (batch 1)
and 32 per call (batch 32). Timing is interleaved in pairs, so a slow spell of a shared
machine lands on both sides of a ratio: each 1-client request alternates with an
in-process batch-1 call, each 32-client burst with an in-process batch-32 call, and each
pair gives one ratio; the 8-client case runs between rounds. Reported per case:
throughput, latency p50/p99, failures, CPU seconds per sprite (this process's for
in-process; the server's processes' plus this process's for served) and the load average
around it; the two ratios as the median and range over pairs: served 1-client /
in-process batch-1 latency (target <= 1.25) and served 32-client / in-process batch-32
throughput (target >= 0.85).
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


def _served(url: str, clients: int, per_client: int, steps: int, published=None) -> tuple[list[float], int, int]:
    from spritegen.client import Client

    def one_client(index: int) -> tuple[list[float], int]:
        times, failures = [], 0
        with Client(url, published=published) as client:  # published: asked once per run, not per client
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


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used so far (/proc/PID/stat)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


class _Case:
    """One case's raw measurements, accumulated over the runs it gets."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.sprites, self.wall, self.failures, self.cpu = 0, 0.0, 0, 0.0
        self.load: list[float] = []

    def measure(self, body, server_pids: list[int]) -> float:
        """Run body() -> (times, sprites, failures), add it up; its wall seconds (a pair's side)."""
        pids = [os.getpid(), *server_pids]
        self.load.append(os.getloadavg()[0])
        cpu0, t0 = _cpu_s(pids), time.perf_counter()
        times, sprites, failures = body()
        wall = time.perf_counter() - t0
        self.cpu += _cpu_s(pids) - cpu0
        self.times += times
        self.sprites, self.wall, self.failures = self.sprites + sprites, self.wall + wall, self.failures + failures
        return wall

    def summary(self) -> dict:
        figures = _summary(self.times, self.sprites, self.wall, self.failures)
        return {**figures, "cpu_s_per_sprite": self.cpu / self.sprites if self.sprites else None,
                "load_1min": [min(self.load), max(self.load)] if self.load else None}


def _range(ratios: list[float]) -> dict:
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "pairs": len(ratios)}


def run(export_dir: Path, rounds: int, quick: bool, log_dir: Path) -> dict:
    from spritegen.runtime import Sampler
    from spritegen.serving.watchdog import descendants
    from tests.serving_support import running_server

    calls_b1, per_32, per_8 = (2, 1, 1) if quick else (10, 1, 6)
    steps = 5 if quick else DDIM_DEFAULT_STEPS  # quick: checks that it runs, not how fast
    # the in-process baseline with the server's own ORT settings (all cores, no spin-wait)
    sampler = Sampler.load(export_dir, provider="cpu", open_all=True, spin=False)
    cases = {case: _Case() for case in ("in-process batch 1", "in-process batch 32",
                                        *(f"served {c} clients" for c in CLIENTS))}
    latency_pairs, throughput_pairs, rss = [], [], {}
    with running_server(export_dir, log_dir, "--threads", str(os.cpu_count() or 1)) as server:
        server_pids = [server.process.pid, *descendants(server.process.pid)]
        from spritegen.client import Client

        with Client(server.url) as asker:
            published = asker.published
        _served(server.url, 1, 1, steps, published)  # warm-up: sessions, runners, connections
        _in_process(sampler, 1, 1, steps), _in_process(sampler, BATCH, 1, steps)
        rss["server_start_kib"] = server.rss_kib()
        for r in range(rounds):
            for _ in range(calls_b1):  # latency pairs, alternating which side goes first
                local = lambda: (*_in_process(sampler, 1, 1, steps), 0)  # noqa: E731
                served = lambda: _served(server.url, 1, 1, steps, published)  # noqa: E731
                sides = [("in-process batch 1", local), ("served 1 clients", served)]
                walls = {name: cases[name].measure(body, server_pids) for name, body in sides[::(-1) ** r]}
                latency_pairs.append(walls["served 1 clients"] / walls["in-process batch 1"])
            for _ in range(per_32):  # throughput pairs: 32 sprites each side
                local32 = lambda: (*_in_process(sampler, BATCH, 1, steps), 0)  # noqa: E731
                served32 = lambda: _served(server.url, BATCH, 1, steps, published)  # noqa: E731
                sides = [("in-process batch 32", local32), ("served 32 clients", served32)]
                walls = {name: cases[name].measure(body, server_pids) for name, body in sides[::(-1) ** r]}
                throughput_pairs.append(walls["in-process batch 32"] / walls["served 32 clients"])
            cases["served 8 clients"].measure(lambda: _served(server.url, 8, per_8, steps, published), server_pids)
        rss["server_end_kib"] = server.rss_kib()
    figures = {case: c.summary() for case, c in cases.items()}
    return {
        "benchmark": "serve", "quick": quick, "rounds": rounds, "steps": steps,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "server": "spritegen serve defaults (max batch 32, queue delay 2 ms, no spin), --threads all cores; "
                  "in-process Sampler with the same ORT settings",
        "conditions": "load_1min: the 1-minute load average when each run of a case began (min, max); "
                      "cpu_s_per_sprite: CPU seconds of this process (and the server's processes for served "
                      "cases) per sprite",
        "figures": figures, "rss": rss,
        "ratios": {"served_1_client_latency_over_in_process_batch1": _range(latency_pairs),
                   "served_32_clients_throughput_over_in_process_batch32": _range(throughput_pairs)},
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
              f"p99 {f['p99_ms']:8.1f} ms  failures {f['failures']}  CPU {f['cpu_s_per_sprite'] * 1e3:7.1f} "
              f"ms/sprite  load {f['load_1min'][0]:.1f}-{f['load_1min'][1]:.1f}")
    for name, r in record["ratios"].items():
        print(f"{name}: median {r['median']:.2f}, range {r['min']:.2f}-{r['max']:.2f} over {r['pairs']} pairs")
    print(f"failures {record['failures']} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
