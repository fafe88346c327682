"""export(): one checkpoint in, one validated export directory out (all-or-nothing).

Recipe: 1. check options; 2. load the checkpoint (pinning the shortcut if absent);
3. in a staging directory write unet.onnx, unet.ts, the step graphs, the loop graph
and (optionally) unet_fp16.onnx and unet_int8.onnx; 4. validate them against eager PyTorch; 5. write
manifest.json with hashes and the measured errors; 6. swap the staging directory in.
Any failure raises a SpriteGenError and leaves no directory behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx

from spritegen import __version__
from spritegen.contract import (DDIM_DEFAULT_STEPS, FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE, MANIFEST_FORMAT,
                                TORCHSCRIPT_FILE, ScheduleConfig, ddim_pairs)
from spritegen.errors import ExportError
from spritegen.export.checkpoint import LoadedCheckpoint, load_checkpoint
from spritegen.export.checks import Tolerances
from spritegen.export.fp16 import to_fp16
from spritegen.export.graphs import DdimBody, DdimStep, DdpmStep
from spritegen.export.int8 import CALIBRATION_STEPS, calibration_feeds, to_int8
from spritegen.export.loop_graph import unroll
from spritegen.export.manifest import build_manifest, class_names, write_manifest
from spritegen.export.onnx_export import DDIM_BODY, DEFAULT_OPSET, check_opset, save, set_metadata, to_onnx
from spritegen.export.staging import staged_directory
from spritegen.export.torchscript import export_torchscript
from spritegen.export.probes import VALIDATION_THREADS
from spritegen.export.validate import torch_threads, validate

DEFAULT_OUT = Path("spritegen-export")


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, its manifest, and how long it took."""

    directory: Path
    manifest: dict[str, Any]
    seconds: float


def _metadata(loaded: LoadedCheckpoint, schedule: ScheduleConfig, graph: str, shortcut_seed: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key facts every ONNX file carries in metadata_props."""
    source = {k: v for k, v in loaded.provenance.items() if k != "run_config"}
    return {"spritegen.format": MANIFEST_FORMAT, "spritegen.version": __version__, "graph": graph,
            "hyperparameters": loaded.config.to_dict(), "class_names": class_names(loaded.config),
            "schedule": schedule.to_dict(), "t_definition": "t = float32(i / T)", "source": source,
            "shortcut_seed": shortcut_seed, "shortcut_from_checkpoint": loaded.shortcut_from_checkpoint,
            **(extra or {})}


def write_files(directory: Path, loaded: LoadedCheckpoint, schedule: ScheduleConfig, *, opset: int,
                shortcut_seed: int, loop_steps: int, fp16: bool, say: Callable[[str], None],
                int8: bool = False) -> None:
    """Every model file of the export into `directory` (no validation, no manifest)."""
    model, config = loaded.model, loaded.config

    def write(proto: onnx.ModelProto, graph: str, file: str, extra: dict[str, Any] | None = None) -> None:
        doc = GRAPHS[graph].doc if graph in GRAPHS else f"{GRAPHS['unet'].doc} ({extra['precision']})"
        set_metadata(proto, _metadata(loaded, schedule, graph, shortcut_seed, extra), doc)
        save(proto, directory / file)
        say(f"wrote {file}")

    unet = to_onnx(model, GRAPHS["unet"], config, opset)
    write(unet, "unet", GRAPHS["unet"].file)
    export_torchscript(model, directory / TORCHSCRIPT_FILE)
    say(f"wrote {TORCHSCRIPT_FILE}")
    for name, module in (("ddpm_step", DdpmStep), ("ddim_step", DdimStep)):
        spec = GRAPHS[name]
        write(to_onnx(module(model, schedule), spec, config, opset, groups=2), name, spec.file)
    body = to_onnx(DdimBody(model, schedule), DDIM_BODY, config, opset, groups=2)
    write(unroll(body, ddim_pairs(schedule.timesteps, loop_steps)), "ddim_loop", GRAPHS["ddim_loop"].file,
          {"ddim_loop_steps": loop_steps, "ddim_loop_implementation": "unrolled"})
    if fp16:
        write(to_fp16(unet), "unet_fp16", FP16_UNET_FILE,
              {"precision": "fp16 weights and compute, fp32 IO, normalisation in fp32"})
    if int8:
        say(f"quantizing to {INT8_UNET_FILE} (calibrated on DDIM-{CALIBRATION_STEPS} trajectories)")
        feeds = calibration_feeds(model, config, schedule)
        write(to_int8(directory / GRAPHS["unet"].file, feeds), "unet_int8", INT8_UNET_FILE,
              {"precision": "int8 QDQ: per-channel int8 weights, uint8 activations calibrated on "
                            f"DDIM-{CALIBRATION_STEPS} trajectories; fp32 IO"})


def _check_steps(loop_steps: int, schedule: ScheduleConfig) -> None:
    if not 1 <= loop_steps <= schedule.timesteps:
        raise ExportError(f"--loop-steps must be in 1..{schedule.timesteps}, got {loop_steps}")


def export(source: str | Path | None = None, out: str | Path = DEFAULT_OUT, *, opset: int = DEFAULT_OPSET,
           fp16: bool = False, int8: bool = False, shortcut_seed: int = 0, loop_steps: int = DDIM_DEFAULT_STEPS,
           tolerances: Tolerances = Tolerances(), api_factory: Callable[[], Any] | None = None,
           say: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export `source` (anything load_checkpoint accepts; None = bundled demo) to `out`."""
    started = time.perf_counter()
    check_opset(opset)
    target = Path(out).expanduser().absolute()
    loaded = load_checkpoint(source, shortcut_seed=shortcut_seed, api_factory=api_factory)
    schedule = ScheduleConfig.from_dict(loaded.provenance.get("run_config") or {})
    _check_steps(loop_steps, schedule)
    say(f"loaded ContextUnet{loaded.config.to_dict()} from {loaded.provenance.get('kind')} source")
    options = dict(opset=opset, shortcut_seed=shortcut_seed, loop_steps=loop_steps, fp16=fp16, int8=int8)
    with staged_directory(target) as staging, torch_threads(VALIDATION_THREADS):
        write_files(staging, loaded, schedule, say=say, **options)
        validation = validate(staging, loaded.model, loaded.config, schedule, loop_steps, tolerances, say)
        say("validated every file against eager PyTorch")
        manifest = build_manifest(staging, loaded, schedule, validation=validation, **options)
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        write_manifest(staging, manifest)
    return ExportResult(directory=target, manifest=manifest, seconds=time.perf_counter() - started)
