"""Shared helpers for the runtime and CLI tests.

The export they sample from is conftest's session-scoped `bundled_export` (the bundled
demo checkpoint, exported once per session and shared with the parity suite): tests
must never alter it, so a test that corrupts an export works on `copy_export`'s copy.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def copy_export(source: Path, target: Path) -> Path:
    """A private copy of an export directory, to corrupt or edit."""
    shutil.copytree(source, target)
    return target


def link_export(source: Path, target: Path, manifest: dict[str, Any] | bytes | None = None) -> Path:
    """A directory whose files are symlinks to `source`'s (cheap, and `source` is never altered:
    replace a link, never write through it) with its own manifest.json (default: a copy)."""
    from spritegen.contract import MANIFEST_FILE

    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != MANIFEST_FILE:
            (target / path.name).symlink_to(path)
    data = (source / MANIFEST_FILE).read_bytes() if manifest is None else manifest
    (target / MANIFEST_FILE).write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
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


def ended_within(call: Callable[[], Any], seconds: float) -> BaseException | None:
    """Run `call` in a thread; what it raised (None: it returned). Fails, instead of hanging the
    suite, if it is still running after `seconds`: the state a test waits for is "it ended"
    (a blocked FIFO read, a trickling server), never how fast it ended."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (handed back to the test)
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the call was still running after {seconds} s"
    return outcome[0]
