"""The C++ example (examples/cpp, built by .ci/setup_cpp.sh into build/cpp/spritegen_cpp).

The program times itself (`--repeat N` prints one JSON line with median, p90 and min of
N generate() calls after a warm-up call), so the row reports its numbers and adds no
process start-up. Only DDIM at batch 1 is measured: the engine case of issue 8.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.backends import Setup, Unavailable
from benchmarks.timing import Timing

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BINARY = Path(os.environ.get("SPRITEGEN_CPP_BUILD", REPO / "build" / "cpp")) / "spritegen_cpp"


@dataclass
class External:
    """Work timed by another program: `timed(reps, warmup)` returns its Timing."""

    command: list[str]
    info: dict

    def timed(self, reps: int, warmup: int) -> Timing:
        del warmup  # the program always warms up with one untimed call
        process = subprocess.Popen([*self.command, "--repeat", str(max(reps, 1))], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"{self.command[0]} exited {process.returncode}: {err.strip()[-300:]}")
        record = json.loads(out.strip().splitlines()[-1])
        self.info["program_record"] = record
        return Timing(median_ms=record["median_ms"], p90_ms=record["p90_ms"], min_ms=record["min_ms"],
                      mean_ms=record["median_ms"], reps=int(record["repeat"]), warmup=1)


class CppRunner:
    def __init__(self, binary: Path, setup: Setup, graph: str) -> None:
        self.binary, self.setup, self.graph = binary, setup, graph
        self._info = {"binary": str(binary), "graph": graph, "threads": setup.threads, "spin": setup.ort_spin}

    def net(self, batch: int) -> None:
        return None

    def ddim(self, batch: int, n: int) -> External | None:
        if batch != 1:
            return None
        command = [str(self.binary), "--export-dir", self.setup.export_dir, "--sampler", "ddim", "--n", str(n),
                   "--graph", self.graph, "--num", "1", "--seed", "0"]
        if self.setup.threads:
            command += ["--threads", str(self.setup.threads)]
        if self.setup.ort_spin:  # as the Python rows (the C++ example itself defaults to no spinning)
            command += ["--spin"]
        return External(command, self._info)

    def ddpm(self, batch: int) -> None:
        return None

    def sync(self) -> None:
        """The program's own clock covers its work."""

    def info(self) -> dict:
        return self._info


def cpp(setup: Setup, device: str, graph: str = "step") -> CppRunner:
    if device != "cpu":
        raise Unavailable("the C++ example runs on the CPU provider")
    binary = Path(setup.cpp_binary) if setup.cpp_binary else DEFAULT_BINARY
    if not os.access(binary, os.X_OK):
        raise Unavailable(f"{binary} is not built (bash .ci/setup_cpp.sh builds it; or pass --cpp-binary)")
    return CppRunner(binary, setup, graph)
