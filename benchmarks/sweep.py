"""ONNX Runtime session options, one network call each: the evidence behind the
runtime's settings, re-measured in every run on the machine at hand.

Each configuration runs in its own worker process (spinning threads of one session
would otherwise steal cycles from the next). "runtime" is exactly
`spritegen.runtime.session.session_options`; the others change one thing from it
(or start from ORT's untouched defaults), so each row reads as that one change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.backends import model_config
from benchmarks.timing import measure
from spritegen.contract import FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE
from spritegen.runtime.session import session_options


@dataclass(frozen=True)
class Config:
    name: str
    doc: str
    threads: int | None = None  # None: the runtime's default
    level: str | None = None  # a GraphOptimizationLevel name
    entries: dict = field(default_factory=dict)  # session config entries
    file: str = GRAPHS["unet"].file
    plain: bool = False  # ORT's SessionOptions() untouched


CONFIGS: tuple[Config, ...] = (
    Config("runtime", "spritegen.runtime's options (ENABLE_ALL, sequential, threads = cores)"),
    Config("ort-defaults", "onnxruntime.SessionOptions() untouched", plain=True),
    Config("no-spin", "runtime with spin-waiting off (Sampler.load(spin=False), for cores shared with busy work)",
           entries={"session.intra_op.allow_spinning": "0"}),
    Config("1-thread", "runtime with intra_op_num_threads = 1", threads=1),
    Config("extended", "runtime with ORT_ENABLE_EXTENDED: no NCHWc layout transformer",
           level="ORT_ENABLE_EXTENDED"),
    Config("basic", "runtime with ORT_ENABLE_BASIC: no Conv+activation or GELU fusion", level="ORT_ENABLE_BASIC"),
    Config("fp16", f"{FP16_UNET_FILE} with the runtime's options", file=FP16_UNET_FILE),
    Config("int8", f"{INT8_UNET_FILE} (spritegen-export --int8; quality: benchmarks.int8) with the runtime's options",
           file=INT8_UNET_FILE),
)


def options(config: Config) -> ort.SessionOptions:
    """The runtime's options with this configuration's one change."""
    if config.plain:
        return ort.SessionOptions()
    opts = session_options(config.threads)
    if config.level:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, config.level)
    for key, value in config.entries.items():
        opts.add_session_config_entry(key, value)
    return opts


def run_config(request: dict) -> dict:
    """Worker job: time one network call at each batch of the request with `config`."""
    config = {c.name: c for c in CONFIGS}[request["config"]]
    export = Path(request["export_dir"])
    path = export / config.file
    if not path.is_file():
        return {"status": "unavailable", "reason": f"{path.name} not in the export"}
    return _time_calls(path, config, request)


def _time_calls(path: Path, config: Config, request: dict) -> dict:
    """One session on `path`; one IO-bound call per batch of the request, timed."""
    cfg = model_config(request["export_dir"])
    session = ort.InferenceSession(str(path), options(config), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    figures = {}
    for batch, reps in zip(request["batches"], request["reps"]):
        feeds = {"x": rng.standard_normal((batch, cfg.in_channels, cfg.height, cfg.height), dtype=np.float32),
                 "t": np.full((batch,), 0.5, np.float32), "c": np.eye(cfg.n_cfeat, dtype=np.float32)[[0] * batch]}
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        out = np.empty_like(feeds["x"])
        binding.bind_ortvalue_output("eps", ort.OrtValue.ortvalue_from_numpy(out))
        timing = measure(lambda: session.run_with_iobinding(binding), reps=reps, warmup=max(2, reps // 10),
                         budget_s=4, min_reps=min(reps, 5))
        figures[f"net_b{batch}"] = timing.to_dict()
    return {"status": "ok", "doc": config.doc, "figures": figures}
