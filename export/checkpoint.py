"""Checkpoint sources: a W&B model artifact, a local file or directory, or the bundled demo.

`load_checkpoint` resolves a source to the checkpoint file, the run config that belongs to it
(run_config.py says which ones do) and its provenance, reads the file once (a bounded read of
a regular file), and builds a ContextUnet from those bytes strictly (state_dict.py). The
sha256 recorded as `checkpoint_sha256` is that of the bytes loaded.
W&B is reached only through `api_factory` (default `wandb.Api`), the one seam tests
replace, so the call path is the course's: api.artifact(name, type="model").download(),
artifact.logged_by().config.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spritegen.contract import CHECKPOINT_FILE, ModelConfig, ScheduleConfig
from spritegen.errors import CheckpointError, first_line
from spritegen.export.model import SHORTCUT_SEED_MAX, ContextUnet
from spritegen.export.run_config import (RUN_CONFIG_FILE, RunConfig, from_mapping, model_config, read_config_file,
                                         schedule_config)
from spritegen.export.state_dict import build_model, check_archive, infer_config, read_state_dict
from spritegen.files import read_regular_file
from spritegen.wandb_env import fetch_artifact

BUNDLED_DIR = Path(__file__).parent / "demo"  # the demo checkpoint and its training config
# The largest supported ContextUnet (contract.MODEL_LIMITS) is ~0.4 GB of float32 weights.
MAX_CHECKPOINT_BYTES = 1 << 30
SHA256_OF = "the checkpoint file's bytes"  # what provenance.checkpoint_sha256 hashes
NO_CONFIG = "none: hyperparameters from the weights' shapes, the course's schedule"

__all__ = ["BUNDLED_DIR", "LoadedCheckpoint", "RUN_CONFIG_FILE", "infer_config", "load_checkpoint", "load_model",
           "read_state_dict"]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A ready model, its schedule, and where both came from (recorded in the export's manifest)."""

    model: ContextUnet
    config: ModelConfig
    provenance: dict[str, Any]  # kind, artifact/path, checkpoint_sha256, config origin, run_config
    shortcut_from_checkpoint: bool  # False: the shortcut was drawn from shortcut_seed
    schedule: ScheduleConfig = ScheduleConfig()
    notes: tuple[str, ...] = field(default=())  # what the user should know (an ignored config.json)

    @property
    def checkpoint_sha256(self) -> str:
        return self.provenance["checkpoint_sha256"]


@dataclass(frozen=True)
class _Source:
    checkpoint: Path
    config: RunConfig | None
    provenance: dict[str, Any]
    notes: tuple[str, ...] = ()


def _mode(path: Path, what: str) -> int | None:
    """st_mode of `path` (following links), None if absent; one line for any other OS refusal
    (a component over 255 bytes, a permission, a link loop)."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or first_line(exc)
        raise CheckpointError(f"cannot use {what} {str(path)[:200]!r}: {reason}") from None


def looks_like_artifact(source: str) -> bool:
    """entity/project/name:alias (or project/name:alias) names a W&B artifact, not a path."""
    if ":" not in source:
        return False
    try:
        return not os.path.lexists(source)
    except (OSError, ValueError):
        return True


def _from_wandb(name: str, api_factory: Callable[[], Any] | None) -> _Source:
    hint = f"download it with `wandb artifact get {name}` and pass the directory, or pass a local .pth file"
    artifact = fetch_artifact(name, "model", CheckpointError, hint, api_factory)
    try:
        directory = Path(artifact.download())
        run = artifact.logged_by()
        run_config = dict(run.config) if run is not None else None
    except Exception as exc:
        raise CheckpointError(f"cannot download W&B artifact {name!r} ({first_line(exc)}); {hint}") from None
    config = from_mapping(run_config, f"the W&B run config of {name}") if run_config is not None else None
    provenance = {"kind": "wandb", "artifact": name, "version": getattr(artifact, "version", None),
                  "digest": getattr(artifact, "digest", None)}
    return _Source(directory / CHECKPOINT_FILE, config, provenance)


def _directory_config(directory: Path, origin: str) -> RunConfig | None:
    """config.json of an artifact directory, if it has one."""
    path = directory / RUN_CONFIG_FILE
    return read_config_file(path, f"{RUN_CONFIG_FILE} of {origin}") if _mode(path, "run config") is not None else None


def _resolve(source: str | Path | None, api_factory: Callable[[], Any] | None) -> _Source:
    """The checkpoint file, the run config that belongs to it (or None), provenance without hashes."""
    if source is None:
        return _Source(BUNDLED_DIR / CHECKPOINT_FILE, _directory_config(BUNDLED_DIR, "the bundled demo"),
                       {"kind": "bundled", "path": "spritegen/export/demo"})
    text = str(source)
    if not text.strip():
        raise CheckpointError("the checkpoint source is an empty string; pass a path or a W&B artifact name, "
                              "or omit it for the bundled demo")
    if looks_like_artifact(text):
        return _from_wandb(text, api_factory)
    path = Path(text)
    mode = _mode(path, "checkpoint source")
    if mode is None:
        raise CheckpointError(f"checkpoint source {text[:200]!r} is neither an existing file or directory nor a "
                              "W&B artifact name (entity/project/name:version)")
    if stat.S_ISDIR(mode):
        checkpoint = path / CHECKPOINT_FILE
        if _mode(checkpoint, "checkpoint") is None:
            raise CheckpointError(f"directory {path} holds no {CHECKPOINT_FILE}; pass the .pth file "
                                  "or a downloaded model artifact directory")
        return _Source(checkpoint, _directory_config(path, f"artifact directory {path}"),
                       {"kind": "directory", "path": str(path)})
    notes = ()
    beside = path.parent / RUN_CONFIG_FILE
    if stat.S_ISREG(mode) and _mode(beside, "run config") is not None:
        notes = (f"ignored {beside}: a config.json beside a .pth file may belong to another run; pass the "
                 f"artifact directory ({path.parent}) or --config {beside} if it is this checkpoint's",)
    return _Source(path, None, {"kind": "file", "path": str(path)}, notes)


def _check_seed(shortcut_seed: Any) -> None:
    if isinstance(shortcut_seed, bool) or not isinstance(shortcut_seed, int) or \
            not 0 <= shortcut_seed <= SHORTCUT_SEED_MAX:
        raise CheckpointError(f"--shortcut-seed must be an integer in 0..{SHORTCUT_SEED_MAX}, got {shortcut_seed!r}")


def load_checkpoint(source: str | Path | None = None, *, shortcut_seed: int = 0,
                    api_factory: Callable[[], Any] | None = None,
                    config: str | Path | None = None) -> LoadedCheckpoint:
    """Resolve `source`, read it safely, and build the model (see module doc).

    `config` names a run config file explicitly; it wins over the source's own.
    """
    _check_seed(shortcut_seed)
    resolved = _resolve(source, api_factory)
    run_config = resolved.config
    if config is not None:
        if _mode(Path(config), "--config") is None:
            raise CheckpointError(f"--config {config} does not exist; pass the run config's path")
        run_config = read_config_file(Path(config), f"--config {config}")
    data = read_regular_file(resolved.checkpoint, MAX_CHECKPOINT_BYTES, CheckpointError, "checkpoint")
    check_archive(data, str(resolved.checkpoint), MAX_CHECKPOINT_BYTES)
    state = read_state_dict(data, str(resolved.checkpoint))
    model_cfg = model_config(infer_config(state), run_config)
    schedule = schedule_config(run_config)
    model, has_shortcut = build_model(state, model_cfg, shortcut_seed)
    provenance = {**resolved.provenance, "checkpoint_sha256": hashlib.sha256(data).hexdigest(),
                  "checkpoint_sha256_of": SHA256_OF,
                  "config": run_config.to_dict() if run_config else {"origin": NO_CONFIG, "path": None},
                  "run_config": run_config.values if run_config else None}
    return LoadedCheckpoint(model=model, config=model_cfg, provenance=provenance,
                            shortcut_from_checkpoint=has_shortcut, schedule=schedule, notes=resolved.notes)


def load_model(source: str | Path | None = None, *, shortcut_seed: int = 0,
               api_factory: Callable[[], Any] | None = None, config: str | Path | None = None) -> ContextUnet:
    """The model of `source` in eval mode: a W&B artifact name, a .pth file, a directory
    holding context_model.pth (and its config.json), or None for the bundled demo checkpoint."""
    return load_checkpoint(source, shortcut_seed=shortcut_seed, api_factory=api_factory, config=config).model
