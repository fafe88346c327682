"""Children die with their parent: a watchdog that SIGKILLs tritonserver and its stubs when
`spritegen serve` is gone, however it went (SIGKILL included).

PyTriton starts tritonserver with PR_SET_PDEATHSIG = SIGTERM, which Triton takes as "drain
gracefully": with our inference handler dead, it waited exit_timeout_s (~30 s) while the
requests it held hung. The watchdog is a small process whose stdin is a pipe only
`spritegen serve` holds: the serve process writes it the pids to guard once they exist;
end of file (the serve process exited, or was killed) makes the watchdog kill every one of
them still alive with the start time it was written with (a reused pid is left alone).

Run as `python -m spritegen.serving.watchdog` (serving.server starts it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` now (children first found, breadth first)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            continue
        found += children
        todo += children
    return found


class Watchdog:
    """The watchdog process, told pids as they appear (call `guard` after each start)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "spritegen.serving.watchdog"], stdin=subprocess.PIPE,
                                        start_new_session=True)  # Ctrl-C at a terminal is not its business

    def guard(self, pids: list[int]) -> None:
        assert self.process.stdin is not None
        lines = "".join(f"{pid} {stamp}\n" for pid in pids if (stamp := start_time(pid)) is not None)
        self.process.stdin.write(lines.encode())
        self.process.stdin.flush()

    def close(self) -> None:
        """Normal exit: the guarded processes are already stopped; the watchdog ends on EOF."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    guarded: dict[int, str] = {}
    for line in sys.stdin.buffer:  # ends when spritegen serve's end of the pipe closes
        pid, stamp = line.split()
        guarded[int(pid)] = stamp.decode()
    for pid, stamp in guarded.items():
        if start_time(pid) == stamp:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
