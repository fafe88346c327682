"""Where ONNX Runtime spends a unet.onnx call, and what its optimiser made of the graph.

`python -m benchmarks.ort_profile EXPORT_DIR [--batch 1 30]` prints, per batch, each
operator type's share of kernel time (ORT's own profiler) and the node counts of the
graph ORT actually runs (SessionOptions.optimized_model_filepath): whether BatchNorm is
folded, GELU is one node, and how many layout reorders the NCHWc transformer added.
The harness records the same in its JSON ("profile").
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.backends import model_config
from spritegen.contract import GRAPHS
from spritegen.runtime.session import session_options


def optimized_ops(path: Path, work: Path) -> dict[str, int]:
    """Node counts per op type of the graph after ORT's optimisations (the runtime's options)."""
    options = session_options(None)
    options.optimized_model_filepath = str(work / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return dict(collections.Counter(node.op_type for node in graph.node).most_common())


def kernel_shares(path: Path, batch: int, calls: int, work: Path) -> dict[str, float]:
    """Fraction of summed kernel time per op type over `calls` profiled calls."""
    cfg = model_config(path.parent)
    options = session_options(None)
    options.enable_profiling = True
    options.profile_file_prefix = str(work / f"profile-b{batch}")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(0).standard_normal((batch, cfg.in_channels, cfg.height, cfg.height),
                                                           dtype=np.float32),
             "t": np.full((batch,), 0.5, np.float32), "c": np.eye(cfg.n_cfeat, dtype=np.float32)[[0] * batch]}
    for _ in range(calls):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: us / whole for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}


def profile(export_dir: str | Path, batches: tuple[int, ...] = (1, 30), calls: int = 30) -> dict:
    path = Path(export_dir) / GRAPHS["unet"].file
    with tempfile.TemporaryDirectory(prefix="spritegen-ortprof-") as tmp:
        work = Path(tmp)
        return {"optimized_ops": optimized_ops(path, work),
                "kernel_share": {f"net_b{b}": kernel_shares(path, b, calls, work) for b in batches}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 30])
    args = parser.parse_args()
    result = profile(args.export_dir, tuple(args.batch))
    print("optimised graph:", ", ".join(f"{op} {n}" for op, n in result["optimized_ops"].items()))
    for key, shares in result["kernel_share"].items():
        print(f"{key}: " + ", ".join(f"{op} {100 * share:.1f}%" for op, share in shares.items() if share >= 0.005))


if __name__ == "__main__":
    main()
