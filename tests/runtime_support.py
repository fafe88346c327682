"""Shared helpers for the runtime and CLI tests.

The export they sample from is conftest's session-scoped `bundled_export` (the bundled
demo checkpoint, exported once per session and shared with the parity suite): tests
must never alter it, so a test that corrupts an export works on `copy_export`'s copy.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np


def copy_export(source: Path, target: Path) -> Path:
    """A private copy of an export directory, to corrupt or edit."""
    shutil.copytree(source, target)
    return target


def run_in_threads(jobs: list[Callable[[], np.ndarray]], rounds: int = 3) -> list[np.ndarray]:
    """Each job on its own thread, all at once, `rounds` times; the last result of each."""
    results: list = [None] * len(jobs)

    def work(k: int) -> None:
        for _ in range(rounds):
            results[k] = jobs[k]()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
