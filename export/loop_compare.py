"""Measure the two ddim_loop constructions on ONNX Runtime: `python -m spritegen.export.loop_compare`.

Builds both from the same exported DDIM body (course architecture; weights do not
change the speed) and reports, per construction: file size, session build time,
and the median / p90 of whole DDIM-25 samples at each batch, timed with
perf_counter after warm-up, interleaved so machine load hits both alike. The
numbers behind the choice documented in docs/export.md.
"""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import torch
import typer

from spritegen.contract import DDIM_DEFAULT_STEPS, ModelConfig, ScheduleConfig, ddim_pairs
from spritegen.export.graphs import DdimBody
from spritegen.export.loop_graph import as_loop, unroll
from spritegen.export.model import ContextUnet
from spritegen.export.onnx_export import DDIM_BODY, DEFAULT_OPSET, to_onnx


def _timed(session: ort.InferenceSession, feed: dict[str, np.ndarray], repeats: int) -> list[float]:
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return times


def compare(batches: tuple[int, ...] = (1, 30), repeats: int = 10, rounds: int = 3,
            steps: int = DDIM_DEFAULT_STEPS, threads: int | None = None) -> dict[str, object]:
    """{construction: {bytes, session_s, batch: {median_ms, p90_ms}}} on the CPU provider."""
    torch.manual_seed(0)
    config = ModelConfig()
    body = to_onnx(DdimBody(ContextUnet.from_config(config).eval(), ScheduleConfig()), DDIM_BODY, config,
                   DEFAULT_OPSET, groups=2)
    pairs = ddim_pairs(ScheduleConfig().timesteps, steps)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    report: dict[str, dict] = {}
    sessions = {}
    for name, build in (("unrolled", unroll), ("onnx_loop", as_loop)):
        data = build(body, pairs).SerializeToString()
        start = time.perf_counter()
        sessions[name] = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        report[name] = {"bytes": len(data), "session_s": round(time.perf_counter() - start, 3)}
    rng = np.random.default_rng(0)
    for batch in batches:
        feed = {"x": rng.standard_normal((batch, 3, 16, 16), dtype=np.float32),
                "c": np.eye(5, dtype=np.float32)[np.arange(batch) % 5], "w": np.zeros(1, np.float32)}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):  # interleave: load spikes hit both constructions
            for name, session in sessions.items():
                times[name] += _timed(session, feed, repeats)
        for name, values in times.items():
            report[name][f"batch_{batch}"] = {"median_ms": round(1e3 * float(np.median(values)), 2),
                                              "p90_ms": round(1e3 * float(np.percentile(values, 90)), 2)}
    report["setup"] = {"steps": steps, "onnxruntime": ort.__version__, "threads": threads or "ORT default",
                       "provider": "CPUExecutionProvider", "samples_per_figure": rounds * repeats}
    return report


def main(batch: list[int] = typer.Option([1, 30], help="Batch sizes to time."),
         repeats: int = typer.Option(10, help="Timed runs per round."),
         rounds: int = typer.Option(3, help="Interleaved rounds."),
         threads: int = typer.Option(0, help="ORT intra-op threads (0 = ORT default).")) -> None:
    """Print the comparison as JSON."""
    print(json.dumps(compare(tuple(batch), repeats, rounds, threads=threads or None), indent=1))


if __name__ == "__main__":
    typer.run(main)
