"""manifest.json: everything a torch-free sampler needs, and the proof of what was validated.

The IO contract is `spritegen.contract.GRAPHS` with the model's concrete C, H, W, K
filled in (B and GB stay symbolic: every batch axis is dynamic). The schedule arrays
are the exporter's float32 tensors written as JSON numbers; each float32 value is
exact in a float64 JSON number, so `np.asarray(values, np.float32)` restores them
bit for bit. docs/export.md documents every key.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from spritegen.contract import (CLASS_NAMES, FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE, MANIFEST_FILE,
                                MANIFEST_FORMAT, MANIFEST_NOISE_KEY, NOISE, TORCHSCRIPT_FILE, GraphSpec, ModelConfig,
                                ScheduleConfig, ddim_pairs)
from spritegen.export.checkpoint import LoadedCheckpoint
from spritegen.files import sha256_file
from spritegen.files import write_text_atomic
from spritegen.export.onnx_export import dims
from spritegen.export.schedule import make_schedule

T_DEFINITION = "t = float32(i / T)"  # how every graph derives the network's t from the step index
TOOLS = ("spritegen", "torch", "onnx", "onnxruntime", "numpy", "wandb")


def class_names(config: ModelConfig) -> list[str]:
    """The course's names when the context has its 5 entries, else positional names."""
    if config.n_cfeat == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{k}" for k in range(config.n_cfeat)]


def concrete_contract(spec: GraphSpec, config: ModelConfig) -> dict[str, Any]:
    """spec.to_dict() with C/H/W/K replaced by numbers (B, GB stay symbolic)."""
    sizes = dims(config)
    entry = spec.to_dict()
    for tensor in entry["inputs"] + entry["outputs"]:
        tensor["shape"] = [sizes[d] if d in sizes else d for d in tensor["shape"]]
    return entry


def graphs_section(config: ModelConfig, schedule: ScheduleConfig, loop_steps: int, fp16: bool,
                   int8: bool = False) -> dict[str, Any]:
    """The IO contract of every file written, keyed as contract.GRAPHS (+ unet_fp16, unet_int8, torchscript)."""
    section = {name: concrete_contract(spec, config) for name, spec in GRAPHS.items()}
    section["ddim_loop"].update(steps=loop_steps, pairs=[list(p) for p in ddim_pairs(schedule.timesteps, loop_steps)],
                                implementation="unrolled")
    if fp16:
        section["unet_fp16"] = {**concrete_contract(GRAPHS["unet"], config), "file": FP16_UNET_FILE,
                                "doc": "the noise predictor with fp16 weights and compute, fp32 IO"}
    if int8:
        section["unet_int8"] = {**concrete_contract(GRAPHS["unet"], config), "file": INT8_UNET_FILE,
                                "doc": "the noise predictor quantized to int8 (QDQ, calibrated), fp32 IO"}
    section["torchscript"] = {"file": TORCHSCRIPT_FILE, "signature": "forward(x, t, c=None) -> eps",
                              "doc": "frozen TorchScript of the network; IO as unet"}
    return section


def schedule_section(schedule: ScheduleConfig) -> dict[str, Any]:
    """Parameters and float32 arrays (index 0..T), plus how t is derived."""
    s = make_schedule(schedule)
    return {**schedule.to_dict(), "t_definition": T_DEFINITION,
            "b_t": s.b_t.tolist(), "a_t": s.a_t.tolist(), "ab_t": s.ab_t.tolist()}


def file_hashes(directory: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in `directory` except the manifest itself."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_manifest(directory: Path, loaded: LoadedCheckpoint, schedule: ScheduleConfig, *, opset: int,
                   shortcut_seed: int, loop_steps: int, fp16: bool, validation: dict[str, Any],
                   int8: bool = False) -> dict[str, Any]:
    """The whole manifest for the files now in `directory`."""
    return {
        "format": MANIFEST_FORMAT,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"architecture": "ContextUnet", "hyperparameters": loaded.config.to_dict()},
        "class_names": class_names(loaded.config),
        "dims": {k: v for k, v in dims(loaded.config).items() if k != "1"},
        "schedule": schedule_section(schedule),
        "graphs": graphs_section(loaded.config, schedule, loop_steps, fp16, int8),
        "ddim_loop_steps": loop_steps,
        "guidance": {"rows": "GB = B (w ignored) or 2B (rows B..2B-1 = unconditional context, zeros)",
                     "formula": "eps = (1 + w) * eps(c) - w * eps(uncond)"},
        MANIFEST_NOISE_KEY: NOISE.manifest_entry(),  # what a seed means (docs/noise.md)
        "opset": opset,
        "exporter": "torch.onnx.export(dynamo=False), constant folding, eval mode",
        "shortcut": {"seed": shortcut_seed, "from_checkpoint": loaded.shortcut_from_checkpoint},
        "provenance": loaded.provenance,
        "files": file_hashes(directory),
        "tools": tool_versions(),
        "validation": validation,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, default=str)
    write_text_atomic(directory / MANIFEST_FILE, text + "\n")
