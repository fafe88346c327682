"""The one table of backends the harness measures, and the interface each one implements.

A backend is a row of `BACKENDS`: a name, a label for humans, the device it runs on,
and the dotted path of a builder. Builders are imported lazily inside the worker
process that measures the backend, so the ONNX Runtime workers never import torch
(their memory figure is the runtime's own) and the CPU rows need no CUDA.

A builder takes a `Setup` and returns a `Runner`; a runner hands out prepared
closures, one per figure (`None` when the backend cannot do that figure). Inputs are
allocated while preparing, so a timed closure holds only the work itself.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from spritegen.contract import MANIFEST_FILE, ModelConfig, ScheduleConfig

Work = Callable[[], object]


@dataclass(frozen=True)
class Setup:
    """What every builder may need; plain data, so it crosses into a worker as JSON."""

    export_dir: str
    checkpoint: str | None  # load_model source for the eager rows (None: the bundled demo)
    threads: int | None  # intra-op threads for torch and ORT (None: each library's default)
    cpp_binary: str | None = None  # the C++ example's executable, when built
    ort_spin: bool = True  # ORT rows and the C++ program: threads spin-wait between ops (the runtime default)
    extra: dict = field(default_factory=dict)


class Runner(Protocol):
    """Prepared work for each figure; `sync` makes asynchronous devices finish."""

    def net(self, batch: int) -> Work | None: ...
    def ddim(self, batch: int, n: int) -> Work | None: ...
    def ddpm(self, batch: int) -> Work | None: ...
    def sync(self) -> None: ...
    def info(self) -> dict: ...


class Unavailable(Exception):
    """The backend cannot run here (no GPU, no onnxruntime-gpu, C++ binary not built): a reason, not a failure."""


@dataclass(frozen=True)
class Backend:
    name: str
    label: str
    device: str  # "cpu" or "cuda"
    builder: str  # "module:function" returning a Runner
    kwargs: tuple[tuple[str, object], ...] = ()

    def build(self, setup: Setup) -> Runner:
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)(setup, device=self.device, **dict(self.kwargs))


BACKENDS: tuple[Backend, ...] = (
    Backend("eager", "eager PyTorch (reference samplers)", "cpu", "benchmarks.torch_backends:eager"),
    Backend("torchscript", "TorchScript (unet.ts)", "cpu", "benchmarks.torch_backends:torchscript"),
    Backend("ort-unet", "ONNX Runtime: unet.onnx + numpy update", "cpu", "benchmarks.ort_backends:sampler",
            (("impl", "unet"),)),
    Backend("ort-step", "ONNX Runtime: fused step graph", "cpu", "benchmarks.ort_backends:sampler",
            (("impl", "step"),)),
    Backend("ort-loop", "ONNX Runtime: whole DDIM loop graph", "cpu", "benchmarks.ort_backends:sampler",
            (("impl", "loop"),)),
    Backend("ort-int8", "ONNX Runtime int8 (opt-in): unet_int8.onnx + numpy update", "cpu",
            "benchmarks.ort_backends:sampler", (("impl", "unet"), ("precision", "int8"))),
    Backend("cpp-step", "C++ program: ddim_step.onnx", "cpu", "benchmarks.cpp_backend:cpp", (("graph", "step"),)),
    Backend("cpp-loop", "C++ program: ddim_loop.onnx", "cpu", "benchmarks.cpp_backend:cpp", (("graph", "loop"),)),
    Backend("eager-cuda", "eager PyTorch CUDA", "cuda", "benchmarks.torch_backends:eager"),
    Backend("torchscript-cuda", "TorchScript CUDA", "cuda", "benchmarks.torch_backends:torchscript"),
    Backend("torch-cuda-graph", "PyTorch CUDA + CUDA graphs", "cuda", "benchmarks.torch_backends:cuda_graph"),
    Backend("ort-cuda-unet", "ONNX Runtime CUDA: unet + numpy update", "cuda", "benchmarks.ort_backends:sampler",
            (("impl", "unet"),)),
    Backend("ort-cuda-step", "ONNX Runtime CUDA: step graph, IO binding, CUDA graphs", "cuda",
            "benchmarks.ort_backends:sampler", (("impl", "step"),)),
    Backend("ort-cuda-step-nograph", "ONNX Runtime CUDA: step graph, IO binding, no CUDA graphs", "cuda",
            "benchmarks.ort_backends:sampler", (("impl", "step"), ("cuda_graph", False))),
    Backend("ort-cuda-loop", "ONNX Runtime CUDA: whole DDIM loop graph, CUDA graphs", "cuda",
            "benchmarks.ort_backends:sampler", (("impl", "loop"),)),
)
REFERENCE = {"cpu": "eager", "cuda": "eager-cuda"}  # ratios are to this row of the same device


def backends_for(device: str, names: list[str] | None = None) -> list[Backend]:
    """The rows of `device`, or exactly `names` (ValueError naming the valid ones)."""
    by_name = {b.name: b for b in BACKENDS}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
        return [by_name[n] for n in names]
    return [b for b in BACKENDS if b.device == device]


def model_config(export_dir: str | Path) -> ModelConfig:
    """The exported model's hyperparameters from manifest.json, read as the runtime reads them
    (spritegen.runtime.manifest) but without importing the runtime, so torch workers stay
    free of onnxruntime and their memory figure is their own."""
    entry = json.loads((Path(export_dir) / MANIFEST_FILE).read_text())["model"]
    return ModelConfig.from_dict(entry.get("hyperparameters", entry))


def schedule_config(export_dir: str | Path) -> ScheduleConfig:
    """The exported schedule's parameters (T, beta1, beta2) from manifest.json."""
    return ScheduleConfig.from_dict(json.loads((Path(export_dir) / MANIFEST_FILE).read_text())["schedule"])


def export_file(setup: Setup, name: str) -> Path:
    """A file of the export directory; Unavailable when the export lacks it."""
    path = Path(setup.export_dir) / name
    if not path.is_file():
        raise Unavailable(f"{path} does not exist (export without it?)")
    return path
