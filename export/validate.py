"""Validation of a freshly written export directory against eager PyTorch.

Separate from writing (as in Optimum): every file is checked, every failure is
collected with its measured error, then one ExportError names them all. Checks:

1. onnx.checker with full_check on every .onnx file;
2. the network files written (unet.onnx, unet.ts, unet_fp16.onnx) vs the eager model on the probe set,
   unet_int8.onnx on held-out DDIM trajectory states (relative RMS error, see checks.py);
3. the ORT-optimised unet graph: BatchNorm folded, GELU fused (no Erf left);
4. sampler files vs the eager reference samplers on whole chains with the same noise
   (skipped when step 2 failed: they would only repeat the network's error).

Errors: max_abs = max |out - ref|; max_rel = max_abs / max |ref| (relative to the
output's range; element-wise ratios explode where the reference crosses zero).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import onnx
import onnxruntime as ort
import torch
from torch import nn

from spritegen.contract import FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE, TORCHSCRIPT_FILE, ModelConfig, ScheduleConfig
from spritegen.errors import ExportError, first_line
from spritegen.export.chains import chain_checks
from spritegen.export.checks import Check, Tolerances, compare
from spritegen.export.int8 import CALIBRATION_STEPS, HELD_OUT_SEED, sampling_calls
from spritegen.export.probes import VALIDATION_THREADS, ort_session, probe_set, run_ort
from spritegen.export.torchscript import load_torchscript


def check_onnx_files(directory: Path) -> None:
    """onnx.checker with full_check (shape inference included) on every .onnx file."""
    for path in sorted(directory.glob("*.onnx")):
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:
            raise ExportError(f"{path.name} fails onnx.checker: {first_line(exc)}") from None


def network_checks(directory: Path, model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
                   tol: Tolerances) -> list[Check]:
    """unet.onnx, unet.ts and (if written) unet_fp16.onnx vs eager on the probe set."""
    probes = probe_set(config, schedule)
    with torch.no_grad():
        refs = [model(p.x, p.t, p.c).numpy() for p in probes]
        scripted = load_torchscript(directory / TORCHSCRIPT_FILE)
        ts_outs = [scripted(p.x, p.t, p.c).numpy() for p in probes]
    checks = [compare(TORCHSCRIPT_FILE, "eager ContextUnet", refs, ts_outs, tol.eps)]
    for file, tolerance in ((GRAPHS["unet"].file, tol.eps), (FP16_UNET_FILE, tol.fp16_eps)):
        if (directory / file).is_file():
            session = ort_session(directory / file)
            outs = [run_ort(session, p.feed()) for p in probes]
            checks.append(compare(file, "eager ContextUnet", refs, outs, tolerance))
    if (directory / INT8_UNET_FILE).is_file():
        checks.append(int8_check(directory / INT8_UNET_FILE, model, config, schedule, tol))
    return checks


def int8_check(path: Path, model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
               tol: Tolerances) -> Check:
    """unet_int8.onnx vs eager on states real sampling visits (held-out DDIM trajectories, not
    the probe set's noise at every t, which int8's calibrated ranges are not meant for)."""
    feeds, refs = sampling_calls(model, config, schedule, seed=HELD_OUT_SEED)
    session = ort_session(path)
    outs = [run_ort(session, f) for f in feeds]
    return compare(path.name, f"eager on held-out DDIM-{CALIBRATION_STEPS} states", refs, outs,
                   tol.int8_eps_rel_rms, bound="rel_rms")


def optimised_ops(path: Path) -> dict[str, int]:
    """Op counts of ORT's optimised graph (portable EXTENDED level); raise if BN or Erf survive."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts = Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    leftovers = {op: counts[op] for op in ("BatchNormalization", "Erf") if counts[op]}
    if leftovers:
        raise ExportError(f"ONNX Runtime left {leftovers} in the optimised {path.name}: BatchNorm should fold "
                          "into Conv and GELU fuse into one node")
    return dict(sorted(counts.items()))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Eager references on `count` threads (see probes.VALIDATION_THREADS), restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def validate(directory: Path, model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
             loop_steps: int, tol: Tolerances = Tolerances(),
             say: Callable[[str], None] = lambda message: None) -> dict[str, object]:
    """Run every check on `directory`; return the manifest's `validation` section or raise."""
    check_onnx_files(directory)
    networks = [f for f in (GRAPHS["unet"].file, TORCHSCRIPT_FILE, FP16_UNET_FILE, INT8_UNET_FILE)
                if (directory / f).is_file()]
    say(f"validating {', '.join(networks)} against eager PyTorch")
    with torch_threads(VALIDATION_THREADS):
        checks = network_checks(directory, model, config, schedule, tol)
        if all(c.passed for c in checks):
            checks += chain_checks(directory, model, config, schedule, loop_steps, tol, say)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ExportError("validation failed: " + "; ".join(c.failure() for c in failed))
    return {
        "tolerances": tol.to_dict(),
        "error_definition": "max_abs = max|out - ref|, max_rel = max_abs / max|ref|",
        "files": {c.file: c.to_dict() for c in checks},
        "ort_optimised_unet_ops": optimised_ops(directory / GRAPHS["unet"].file),
        "onnx_checker": "full_check passed",
    }
