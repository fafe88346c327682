"""The service's own Prometheus metrics, served at /metrics on the HTTP port (the gate).

Triton's metrics port counts successes, failures and durations per model, but 0.7.0's
Triton counts neither requests rejected for a full queue (its REJECTED counter stays 0)
nor rows refused inside a batch, and has no batch-size distribution. These are ours:

- spritegen_requests_total{model, outcome}: outcome ok, refused (the client's mistake) or
  failed (ours) per request the samplers saw;
- spritegen_rejected_total{status}: HTTP answers of 503 (queue full) and 400 (refused
  by Triton or the gate) as the gate relayed them (gRPC does not pass the gate);
- spritegen_in_flight{model}: requests being computed now (observable "in flight");
- spritegen_batch_rows and spritegen_batch_seconds: histograms of rows per execution and
  seconds per execution, per model, for alerting on batching and latency.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.sum, self.count = bounds, [0] * len(bounds), 0.0, 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        cumulative, out = 0, []
        for bound, count in zip(self.bounds, self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{{labels},le="{bound:g}"}} {cumulative}')
        out += [f'{name}_bucket{{{labels},le="+Inf"}} {self.count}', f"{name}_sum{{{labels}}} {self.sum:.6f}",
                f"{name}_count{{{labels}}} {self.count}"]
        return out


class Metrics:
    """Thread-safe counters and histograms (one per process: METRICS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._rejected: dict[int, int] = defaultdict(int)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._rows: dict[str, _Histogram] = {}
        self._seconds: dict[str, _Histogram] = {}

    def started(self, model: str, requests: int) -> None:
        with self._lock:
            self._in_flight[model] += requests

    def finished(self, model: str, outcomes: dict[str, int], rows: int, seconds: float) -> None:
        """A batch of `model` done: how many requests ended how, its rows and duration."""
        with self._lock:
            self._in_flight[model] -= sum(outcomes.values())
            for outcome, count in outcomes.items():
                self._requests[(model, outcome)] += count
            if rows:
                self._rows.setdefault(model, _Histogram(ROW_BUCKETS)).observe(rows)
                self._seconds.setdefault(model, _Histogram(SECOND_BUCKETS)).observe(seconds)

    def rejected(self, status: int) -> None:
        with self._lock:
            self._rejected[status] += 1

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())

    def text(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            out = ["# TYPE spritegen_requests_total counter"]
            out += [f'spritegen_requests_total{{model="{m}",outcome="{o}"}} {n}' for (m, o), n in
                    sorted(self._requests.items())]
            out.append("# TYPE spritegen_rejected_total counter")
            out += [f'spritegen_rejected_total{{status="{s}"}} {n}' for s, n in sorted(self._rejected.items())]
            out.append("# TYPE spritegen_in_flight gauge")
            out += [f'spritegen_in_flight{{model="{m}"}} {n}' for m, n in sorted(self._in_flight.items())]
            for name, table in (("spritegen_batch_rows", self._rows), ("spritegen_batch_seconds", self._seconds)):
                out.append(f"# TYPE {name} histogram")
                for model, histogram in sorted(table.items()):
                    out += histogram.lines(name, f'model="{model}"')
        return "\n".join(out) + "\n"


METRICS = Metrics()
