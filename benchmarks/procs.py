"""Run a child process with a deadline and read its own peak resident memory and wall time.

Peak memory is `ru_maxrss` of exactly the measured process, read with os.wait4. One
subtlety decides the design: Linux carries the high-water RSS of the process that
forked across `exec`, so a child forked from a large parent (a pytest run with torch
loaded, say) would be charged the parent's size. The command is therefore started by
a tiny launcher (`python -S`, a few MB) that `posix_spawn`s it, waits for it, and writes
the child's wall time and peak RSS to a file; the launcher's own size is the floor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = r"""
import json, os, sys, time
command, report = json.loads(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
with open(report, "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "wall_s": wall, "peak_rss_mb": kb / 1024}, f)
"""


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None: killed at the deadline
    wall_s: float  # spawn to exit of the command itself, perf_counter
    peak_rss_mb: float
    log: str  # the tail of its stdout and stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(command: list[str], *, timeout_s: float, log_path: Path, env: dict | None = None) -> Finished:
    """Run `command` (stdout and stderr to `log_path`), killing its process group at `timeout_s`."""
    report = log_path.with_name(log_path.name + ".rusage.json")
    report.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, json.dumps(command), str(report)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            process.wait(timeout=timeout_s)
        except BaseException:  # the deadline, Ctrl-C or SIGTERM: never leave the job running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
    tail = log_path.read_text(errors="replace")[-2000:]
    if not report.is_file():  # killed, or the launcher itself failed
        return Finished(returncode=None, wall_s=time.perf_counter() - t0, peak_rss_mb=0.0, log=tail)
    figures = json.loads(report.read_text())
    return Finished(returncode=figures["code"], wall_s=figures["wall_s"], peak_rss_mb=figures["peak_rss_mb"],
                    log=tail)
