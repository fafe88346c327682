"""export(): one checkpoint in, one validated export directory out (all-or-nothing).

Recipe: 1. check options; 2. load the checkpoint (pinning the shortcut if absent) and the
run config that belongs to it; 3. in a staging directory (staging.py: locked, crash-safe swap)
write unet.onnx, unet.ts, the step graphs (DDPM, DDIM, DPM-Solver++), the loop graph and (optionally) unet_fp16.onnx and
unet_int8.onnx, each carrying the checkpoint's sha256; 4. validate them against eager PyTorch;
5. write manifest.json with hashes and the measured errors; 6. swap the staging directory in.
Any failure raises a SpriteGenError and leaves no directory behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx

from spritegen import __version__
from spritegen.contract import (DDIM_DEFAULT_STEPS, FAST_KEY, FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE, MANIFEST_FORMAT,
                                TORCHSCRIPT_FILE, GraphMeta, ScheduleConfig, ddim_pairs)
from spritegen.errors import ExportError, UsageError
from spritegen.export.checkpoint import LoadedCheckpoint, load_checkpoint
from spritegen.export.checks import Tolerances
from spritegen.export.fit import fast_section, fit_indices, shipped_section
from spritegen.export.student import fast_section as student_section
from spritegen.export.student import read_student
from spritegen.export.fp16 import to_fp16
from spritegen.export.graphs import DdimBody, DdimStep, DdpmStep, SolverStep
from spritegen.export.int8 import CALIBRATION_STEPS, calibration_feeds, to_int8
from spritegen.export.loop_graph import unroll
from spritegen.export.manifest import T_DEFINITION, build_manifest, class_names, write_manifest
from spritegen.export.onnx_export import DDIM_BODY, DEFAULT_OPSET, check_opset, save, set_metadata, to_onnx
from spritegen.export.staging import resolve_target, staged_directory
from spritegen.export.torchscript import export_torchscript
from spritegen.export.probes import VALIDATION_THREADS
from spritegen.export.validate import torch_threads, validate

DEFAULT_OUT = Path("spritegen-export")
# ddim_loop.onnx repeats the network's nodes once per step: 1000 steps is a ~1M-node graph
# (the weights are shared), far beyond any useful deterministic DDIM.
LOOP_STEPS_MAX = 1000


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, its manifest, and how long it took."""

    directory: Path
    manifest: dict[str, Any]
    seconds: float


def _metadata(loaded: LoadedCheckpoint, schedule: ScheduleConfig, graph: str, shortcut_seed: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key facts every ONNX file carries in metadata_props, keyed by contract.GraphMeta."""
    source = {k: v for k, v in loaded.provenance.items() if k != "run_config"}
    return {GraphMeta.FORMAT: MANIFEST_FORMAT, GraphMeta.VERSION: __version__, GraphMeta.GRAPH: graph,
            GraphMeta.HYPERPARAMETERS: loaded.config.to_dict(), GraphMeta.CLASS_NAMES: class_names(loaded.config),
            GraphMeta.SCHEDULE: schedule.to_dict(), GraphMeta.T_DEFINITION: T_DEFINITION, GraphMeta.SOURCE: source,
            GraphMeta.CHECKPOINT_SHA256: loaded.checkpoint_sha256, GraphMeta.SHORTCUT_SEED: shortcut_seed,
            GraphMeta.SHORTCUT_FROM_CHECKPOINT: loaded.shortcut_from_checkpoint, **(extra or {})}


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
    for name, module in (("ddpm_step", DdpmStep), ("ddim_step", DdimStep), ("solver_step", SolverStep)):
        spec = GRAPHS[name]
        write(to_onnx(module(model, schedule), spec, config, opset, groups=2), name, spec.file)
    body = to_onnx(DdimBody(model, schedule), DDIM_BODY, config, opset, groups=2)
    write(unroll(body, ddim_pairs(schedule.timesteps, loop_steps)), "ddim_loop", GRAPHS["ddim_loop"].file,
          {GraphMeta.LOOP_STEPS: loop_steps, GraphMeta.LOOP_IMPLEMENTATION: "unrolled"})
    if fp16:
        write(to_fp16(unet), "unet_fp16", FP16_UNET_FILE,
              {GraphMeta.PRECISION: "fp16 weights and compute, fp32 IO, normalisation in fp32"})
    if int8:
        say(f"quantizing to {INT8_UNET_FILE} (calibrated on DDIM-{CALIBRATION_STEPS} trajectories)")
        feeds = calibration_feeds(model, config, schedule)
        write(to_int8(directory / GRAPHS["unet"].file, feeds), "unet_int8", INT8_UNET_FILE,
              {GraphMeta.PRECISION: "int8 QDQ: per-channel int8 weights, uint8 activations calibrated on "
                            f"DDIM-{CALIBRATION_STEPS} trajectories; fp32 IO"})


def _check_options(opset: int, loop_steps: Any, schedule: ScheduleConfig, loaded: LoadedCheckpoint) -> None:
    """ExportError for an option the export cannot honour; the schedule's T is named by origin."""
    check_opset(opset)
    high = min(schedule.timesteps, LOOP_STEPS_MAX)
    if isinstance(loop_steps, bool) or not isinstance(loop_steps, int) or not 1 <= loop_steps <= high:
        why = (f"the unrolled loop graph is capped at {LOOP_STEPS_MAX} steps" if high == LOOP_STEPS_MAX else
               f"the schedule's T = {schedule.timesteps}; run config: {loaded.provenance['config']['origin']}")
        raise ExportError(f"--loop-steps must be in 1..{high} ({why}), got {loop_steps!r}")


def export(source: str | Path | None = None, out: str | Path = DEFAULT_OUT, *, opset: int = DEFAULT_OPSET,
           fp16: bool = False, int8: bool = False, shortcut_seed: int = 0, loop_steps: int = DDIM_DEFAULT_STEPS,
           tolerances: Tolerances = Tolerances(), api_factory: Callable[[], Any] | None = None,
           config: str | Path | None = None, fit: bool = False, fit_seconds: float = 600.0,
           say: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export `source` (anything load_checkpoint accepts; None = bundled demo) to `out`.

    `config` names the run config explicitly (see run_config.py for which configs are read
    otherwise). `fit` fits the few-step sampler's step indices to the checkpoint (export/fit.py,
    about `fit_seconds`); without it the manifest carries the shipped fit when there is one for
    this checkpoint (the bundled demo's), else no fitted sampler. Every failure raises a
    SpriteGenError and leaves `out` as it was.
    """
    started = time.perf_counter()
    check_opset(opset)
    target = resolve_target(out)
    loaded = load_checkpoint(source, shortcut_seed=shortcut_seed, api_factory=api_factory, config=config)
    schedule = loaded.schedule
    _check_options(opset, loop_steps, schedule, loaded)
    student = read_student(loaded.provenance.get("run_config"), loaded.checkpoint_sha256, schedule,
                           loaded.provenance["config"]["origin"])
    if student is not None and fit:
        raise UsageError(f"this checkpoint is a {student['student_steps']}-step distilled student: it runs on its "
                         "own step indices only, so there is nothing to fit; export it without --fit")
    for note in loaded.notes:
        say(f"note: {note}")
    say(f"loaded ContextUnet{loaded.config.to_dict()} from {loaded.provenance.get('kind')} source "
        f"(sha256 {loaded.checkpoint_sha256[:12]}); run config: {loaded.provenance['config']['origin']}; "
        f"schedule T={schedule.timesteps}")
    options = dict(opset=opset, shortcut_seed=shortcut_seed, loop_steps=loop_steps, fp16=fp16, int8=int8)
    with staged_directory(target) as staging, torch_threads(VALIDATION_THREADS):
        write_files(staging, loaded, schedule, say=say, **options)
        validation = validate(staging, loaded.model, loaded.config, schedule, loop_steps, tolerances, say)
        say("validated every file against eager PyTorch")
        manifest = build_manifest(staging, loaded, schedule, validation=validation, **options)
        if student is not None:
            manifest[FAST_KEY] = student_section(student)
            say(f"fast sampler: the distilled student's DDIM on its {student['student_steps']} step indices "
                f"{student['indices']}")
        elif fit:
            fits = fit_indices(staging / GRAPHS["solver_step"].file, loaded.config, schedule, seconds=fit_seconds, say=say)
            manifest[FAST_KEY] = fast_section(fits)
        elif (shipped := shipped_section(loaded.checkpoint_sha256, schedule)) is not None:
            manifest[FAST_KEY] = shipped
            say("fast sampler: the shipped fit of this checkpoint (export/demo/fast.json)")
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        write_manifest(staging, manifest)
    return ExportResult(directory=target, manifest=manifest, seconds=time.perf_counter() - started)
