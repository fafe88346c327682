"""Idle workspaces (runners) kept for reuse, bounded per batch shape and overall.

A runner holds one batch shape's bound buffers, so a later call of that shape
allocates nothing. Without a bound, a service that sees many distinct batch sizes
(or a burst of concurrency) would keep every runner it ever built. The pool keeps at
most `per_key` idle runners of one shape and `total` idle runners overall, dropping
the least recently returned shapes first; a dropped runner is simply rebuilt (a few
buffers and IO bindings) when its shape comes back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from spritegen.runtime import limits


class RunnerPool:
    """Check a runner out for one call, return it after (thread-safe)."""

    def __init__(self, build: Callable[..., Any], per_key: int = limits.MAX_IDLE_RUNNERS_PER_SHAPE,
                 total: int = limits.MAX_IDLE_RUNNERS) -> None:
        self._build, self.per_key, self.total = build, per_key, total
        self._idle: OrderedDict[Hashable, list[Any]] = OrderedDict()  # least recently returned first
        self._lock = threading.Lock()

    @contextmanager
    def checkout(self, key: tuple) -> Iterator[Any]:
        """A runner for `key` owned by this call alone (built with build(*key) when none is idle)."""
        with self._lock:
            free = self._idle.get(key)
            runner = free.pop() if free else None
            if free is not None and not free:
                del self._idle[key]
        if runner is None:
            runner = self._build(*key)
        try:
            yield runner
        finally:
            self._give_back(key, runner)

    def _give_back(self, key: tuple, runner: Any) -> None:
        with self._lock:
            free = self._idle.setdefault(key, [])
            if len(free) < self.per_key:
                free.append(runner)
            if not free:
                del self._idle[key]
                return
            self._idle.move_to_end(key)
            while self.idle() > self.total:
                oldest = next(iter(self._idle))
                self._idle[oldest].pop(0)
                if not self._idle[oldest]:
                    del self._idle[oldest]

    def idle(self) -> int:
        """Runners kept now (callers hold the lock, or read a snapshot)."""
        return sum(len(free) for free in self._idle.values())

    def shapes(self) -> list[Hashable]:
        """Keys with idle runners, least recently returned first."""
        with self._lock:
            return list(self._idle)
