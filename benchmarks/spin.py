"""ORT spin-waiting on and off, on the cores as they are and with competing busy processes.

Why: spinning pool threads skip a thread wake-up per node (the quiet-machine win) but
steal a core from whatever else wants it (the busy-machine loss). This measures both
sides in one run so the runtime's default (`spin=None`: the automatic rule in
spritegen.runtime.session.auto_spin) is chosen from figures, not guesses.

Conditions: `busy=k` starts k processes that spin in a pure-Python loop (each wants
one whole core) before the timed rounds and stops them after. Within a condition the
two settings run in interleaved rounds, in rotated order, so a burst of outside load
hits both alike; the figure per setting is the median over rounds of the per-round
median, and the ratio is spin / no-spin (> 1: spinning is slower).

    python -m benchmarks.spin EXPORT_DIR [--busy 0 1 2] [--rounds 5] [--out benchmarks/results/spin.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from spritegen.contract import DDIM_DEFAULT_STEPS
from spritegen.runtime import Sampler
from spritegen.runtime.session import default_threads

_BURNER = "while True: pass"


@contextmanager
def competitors(count: int) -> Iterator[list[int]]:
    """`count` busy-looping child processes for the duration of the block (stopped by pid)."""
    children = [subprocess.Popen([sys.executable, "-c", _BURNER]) for _ in range(count)]
    try:
        time.sleep(0.5 if children else 0)  # let the scheduler see them
        yield [child.pid for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()


def workloads(samplers: dict[bool, Sampler]) -> dict[str, Callable[[Sampler], object]]:
    """The calls timed per setting: DDIM at the default n, batch 1 and 30, and DDPM at batch 1."""
    return {
        f"ddim{DDIM_DEFAULT_STEPS} b1": lambda s: s.ddim("hero", seed=0),
        f"ddim{DDIM_DEFAULT_STEPS} b30": lambda s: s.ddim(["hero"] * 30, seed=0),
        "ddpm b1": lambda s: s.ddpm("hero", seed=0),
    }


def one_condition(samplers: dict[bool, Sampler], busy: int, rounds: int, reps: int) -> dict:
    """{workload: {spin_ms, no_spin_ms, ratio, rounds: [...]}} under `busy` competitors."""
    calls = workloads(samplers)
    per_round: dict[str, dict[bool, list[float]]] = {name: {True: [], False: []} for name in calls}
    with competitors(busy):
        load_before = os.getloadavg()[0]
        for r in range(rounds):
            order = [True, False] if r % 2 == 0 else [False, True]
            for name, call in calls.items():
                for spin in order:
                    sampler = samplers[spin]
                    call(sampler)  # warm
                    times = []
                    for _ in range(reps):
                        start = time.perf_counter()
                        call(sampler)
                        times.append(time.perf_counter() - start)
                    per_round[name][spin].append(statistics.median(times) * 1e3)
        load_after = os.getloadavg()[0]
    result: dict = {"busy_processes": busy, "loadavg_1min": [round(load_before, 2), round(load_after, 2)]}
    for name, by_spin in per_round.items():
        spin_ms, plain_ms = statistics.median(by_spin[True]), statistics.median(by_spin[False])
        result[name] = {"spin_ms": round(spin_ms, 2), "no_spin_ms": round(plain_ms, 2),
                        "ratio": round(spin_ms / plain_ms, 3),
                        "rounds_spin_ms": [round(v, 2) for v in by_spin[True]],
                        "rounds_no_spin_ms": [round(v, 2) for v in by_spin[False]]}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="competing busy processes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="timed calls per round and setting")
    parser.add_argument("--threads", type=int, default=None, help="ORT threads (default: the cores)")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default: print only)")
    args = parser.parse_args(argv)
    samplers = {spin: Sampler.load(args.export_dir, provider="cpu", threads=args.threads, spin=spin)
                for spin in (True, False)}
    report = {"cores": default_threads(), "threads": samplers[True].threads or default_threads(),
              "conditions": []}
    for busy in args.busy:
        condition = one_condition(samplers, busy, args.rounds, args.reps)
        report["conditions"].append(condition)
        for name, row in condition.items():
            if isinstance(row, dict):
                print(f"busy={busy} load={condition['loadavg_1min']} {name:>10}: spin {row['spin_ms']:8.2f} ms"
                      f"  no-spin {row['no_spin_ms']:8.2f} ms  ratio {row['ratio']:.2f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
