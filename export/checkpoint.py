"""Checkpoint sources: a W&B model artifact, a local file or directory, or the bundled demo.

`load_checkpoint` resolves a source to a state_dict plus its run config and provenance,
then builds a ContextUnet from it strictly (the course's key names; only the pinned
shortcut may be absent). Checkpoints are untrusted: they are read with
`torch.load(weights_only=True)`, which never unpickles arbitrary objects.
W&B is reached only through `api_factory` (default `wandb.Api`), the one seam tests
replace, so the call path is the course's: api.artifact(name, type="model").download(),
artifact.logged_by().config.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from spritegen.contract import CHECKPOINT_FILE, ModelConfig
from spritegen.errors import CheckpointError
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet, pinned_shortcut_

BUNDLED_DIR = Path(__file__).parent / "demo"  # the demo checkpoint and its training config
RUN_CONFIG_FILE = "config.json"  # run config saved beside a checkpoint (as W&B's run config)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A ready model and where it came from (recorded in the export's manifest)."""

    model: ContextUnet
    config: ModelConfig
    provenance: dict[str, Any]  # kind + artifact name/version/digest or file path, always sha256
    shortcut_from_checkpoint: bool  # False: the shortcut was drawn from shortcut_seed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def looks_like_artifact(source: str) -> bool:
    """entity/project/name:alias (or project/name:alias) names a W&B artifact, not a path."""
    return ":" in source and not Path(source).exists()


def _from_wandb(name: str, api_factory: Callable[[], Any] | None) -> tuple[Path, dict | None, dict]:
    hint = f"download it with `wandb artifact get {name}` and pass the directory, or pass a local .pth file"
    try:
        if api_factory is None:
            import wandb

            api_factory = wandb.Api
        api = api_factory()
    except Exception as exc:  # wandb raises many types for "no key" / "no network"
        raise CheckpointError(f"cannot reach W&B to fetch {name!r} (not logged in or no network: "
                              f"{_first_line(exc)}); {hint}") from None
    try:
        artifact = api.artifact(name, type="model")
    except Exception as exc:
        message = _first_line(exc)
        if any(word in message.lower() for word in ("not found", "does not exist", "no such", "404")):
            raise CheckpointError(f"W&B artifact {name!r} not found ({message}); check the "
                                  "entity/project/name:version spelling") from None
        raise CheckpointError(f"cannot fetch W&B artifact {name!r} ({message}); {hint}") from None
    try:
        directory = Path(artifact.download())
        run = artifact.logged_by()
    except Exception as exc:
        raise CheckpointError(f"cannot download W&B artifact {name!r} ({_first_line(exc)}); {hint}") from None
    run_config = dict(run.config) if run is not None else None
    provenance = {"kind": "wandb", "artifact": name, "version": getattr(artifact, "version", None),
                  "digest": getattr(artifact, "digest", None)}
    return directory / CHECKPOINT_FILE, run_config, provenance


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _resolve(source: str | Path | None, api_factory: Callable[[], Any] | None) -> tuple[Path, dict | None, dict]:
    """-> (checkpoint file, run config or None, provenance without sha256)."""
    if source is None:
        path = BUNDLED_DIR / CHECKPOINT_FILE
        if not path.is_file():
            raise CheckpointError(f"the bundled demo checkpoint is missing ({path}); reinstall spritegen "
                                  "or pass a checkpoint path")
        return path, _read_run_config(BUNDLED_DIR), {"kind": "bundled", "path": "spritegen/export/demo"}
    text = str(source)
    if looks_like_artifact(text):
        return _from_wandb(text, api_factory)
    path = Path(text)
    if path.is_dir():
        if not (path / CHECKPOINT_FILE).is_file():
            raise CheckpointError(f"directory {path} holds no {CHECKPOINT_FILE}; pass the .pth file "
                                  "or a downloaded model artifact directory")
        return path / CHECKPOINT_FILE, _read_run_config(path), {"kind": "directory", "path": str(path)}
    if path.is_file():
        return path, _read_run_config(path.parent), {"kind": "file", "path": str(path)}
    raise CheckpointError(f"checkpoint source {text!r} is neither an existing file or directory nor a W&B "
                          "artifact name (entity/project/name:version)")


def _read_run_config(directory: Path) -> dict | None:
    """A run config saved beside the checkpoint (as training writes it), if any."""
    path = directory / RUN_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    return config if isinstance(config, dict) else None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True: tensors and plain containers only, no code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "Unsupported global" in detail:
            raise CheckpointError(f"{path} is not a plain state_dict: it needs unpickling arbitrary objects, "
                                  f"which spritegen refuses for untrusted files ({detail})") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} does not hold a state_dict (a dict of parameter name -> tensor); "
                              "save it with torch.save(model.state_dict(), path)")
    return state


def _unpickler_detail(exc: BaseException) -> str:
    """The one informative line of torch's long weights_only error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return (rest or (lines[i + 1] if i + 1 < len(lines) else "")).split(". ")[0]
    return _first_line(exc)


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Hyperparameters from the state_dict's shapes, when no run config says them."""
    try:
        conv = state["init_conv.conv1.0.weight"]  # (n_feat, in_channels, 3, 3)
        context = state["contextembed1.model.0.weight"]  # (2 n_feat, n_cfeat)
        up0 = state["up0.0.weight"]  # (2 n_feat, 2 n_feat, height/4, height/4)
    except KeyError as exc:
        raise CheckpointError(f"state_dict lacks {exc.args[0]!r}: not a ContextUnet checkpoint") from None
    return ModelConfig(in_channels=conv.shape[1], n_feat=conv.shape[0], n_cfeat=context.shape[1],
                       height=up0.shape[2] * 4)


def build_model(state: dict[str, torch.Tensor], config: ModelConfig, shortcut_seed: int) -> tuple[ContextUnet, bool]:
    """ContextUnet with `state` loaded strictly; the shortcut is pinned when absent."""
    model = ContextUnet.from_config(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in SHORTCUT_KEYS]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise CheckpointError(f"checkpoint does not match ContextUnet{config.to_dict()}: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"checkpoint key {key!r} has shape {tuple(tensor.shape)} but ContextUnet"
                                  f"{config.to_dict()} expects {tuple(expected[key].shape)}")
    has_shortcut = all(k in state for k in SHORTCUT_KEYS)
    if not has_shortcut:
        pinned_shortcut_(model.init_conv.shortcut, shortcut_seed)
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in SHORTCUT_KEYS}}
    model.load_state_dict(state, strict=True)
    return model.eval(), has_shortcut


def _few(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_checkpoint(source: str | Path | None = None, *, shortcut_seed: int = 0,
                    api_factory: Callable[[], Any] | None = None) -> LoadedCheckpoint:
    """Resolve `source`, read it safely, and build the model (see module doc)."""
    path, run_config, provenance = _resolve(source, api_factory)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the artifact holds no {CHECKPOINT_FILE}")
    state = read_state_dict(path)
    config = ModelConfig.from_dict({**infer_config(state).to_dict(), **(run_config or {})})
    model, has_shortcut = build_model(state, config, shortcut_seed)
    provenance = {**provenance, "sha256": sha256_file(path), "run_config": run_config}
    return LoadedCheckpoint(model=model, config=config, provenance=provenance, shortcut_from_checkpoint=has_shortcut)


def load_model(source: str | Path | None = None, *, shortcut_seed: int = 0,
               api_factory: Callable[[], Any] | None = None) -> ContextUnet:
    """The model of `source` in eval mode: a W&B artifact name, a .pth file, a directory
    holding context_model.pth, or None for the bundled demo checkpoint."""
    return load_checkpoint(source, shortcut_seed=shortcut_seed, api_factory=api_factory).model
