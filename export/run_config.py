"""Run configs: the hyperparameters and schedule a checkpoint was trained with, read as untrusted data.

Where a run config may come from (and nowhere else, so an unrelated config.json lying next to
a .pth file can never change an export's schedule):

- the `config.json` of an artifact directory (context_model.pth + config.json, as training
  writes it and `wandb artifact get` downloads it; the bundled demo is one);
- the W&B run that logged a model artifact (`artifact.logged_by().config`);
- a file the user names (`spritegen-export --config FILE`), which wins over both.

A config is parsed strictly: a bounded regular file, UTF-8 JSON, an object; every known key
an integer (hyperparameters, timesteps) or a finite number (betas) within the contract's
limits. The architecture keys are cross-checked against the weights' shapes, so a config can
only confirm the architecture, never resize it. Every failure is one CheckpointError that
names the config's origin and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spritegen.contract import ModelConfig, ScheduleConfig
from spritegen.errors import CheckpointError
from spritegen.files import read_regular_file

RUN_CONFIG_FILE = "config.json"  # an artifact directory's run config (training writes it beside the weights)
MAX_CONFIG_BYTES = 1 << 20  # a run config is a few hundred bytes; 1 MiB refuses anything else unread
SCHEDULE_KEYS = ("timesteps", "beta1", "beta2")


@dataclass(frozen=True)
class RunConfig:
    """A parsed run config and where it came from (said in the output and the manifest)."""

    values: dict[str, Any]
    origin: str  # e.g. "config.json of artifact directory runs/demo", "--config my.json"
    path: str | None  # the file read, None for a W&B run config

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "path": self.path}


def read_config_file(path: Path, origin: str) -> RunConfig:
    """The JSON object in `path`, or a one-line CheckpointError naming `origin`."""
    data = read_regular_file(path, MAX_CONFIG_BYTES, CheckpointError, f"run config ({origin})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{origin} is not UTF-8 text (byte {exc.start}); fix it, or pass another "
                              "run config with --config") from None
    try:
        values = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{origin} nests its JSON too deeply to be a run config; fix it, or pass "
                              "another with --config") from None
    except ValueError as exc:
        raise CheckpointError(f"{origin} is not valid JSON ({exc}); fix it, or pass another with --config") from None
    return from_mapping(values, origin, str(path))


def from_mapping(values: Any, origin: str, path: str | None = None) -> RunConfig:
    """A RunConfig from an already-parsed object (a W&B run config), refusing non-objects."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{origin} holds a JSON {type(values).__name__}, not an object of run settings "
                              "(n_feat, timesteps, ...)")
    return RunConfig(values={str(k): v for k, v in values.items()}, origin=origin, path=path)


def _integer(config: RunConfig, key: str) -> int:
    value = config.values[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON writers may spell 64 as 64.0
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{config.origin}: {key} must be an integer, got {value!r}")
    return value


def _number(config: RunConfig, key: str) -> float:
    value = config.values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"{config.origin}: {key} must be a finite number, got {value!r}")
    return float(value)


def model_config(inferred: ModelConfig, config: RunConfig | None) -> ModelConfig:
    """`inferred` (from the weights' shapes), after the run config's architecture keys agree with it."""
    try:
        inferred.validate()
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's weights describe an unsupported ContextUnet: {exc}") from None
    if config is None:
        return inferred
    for field in dataclasses.fields(ModelConfig):
        if field.name not in config.values:
            continue
        value = _integer(config, field.name)
        if value != getattr(inferred, field.name):
            raise CheckpointError(f"{config.origin}: {field.name}={value} contradicts the checkpoint's weights "
                                  f"({field.name}={getattr(inferred, field.name)} from their shapes); it is not "
                                  "this checkpoint's run config")
    return inferred


def schedule_config(config: RunConfig | None) -> ScheduleConfig:
    """The run config's schedule (the course's defaults for absent keys), within the contract's limits."""
    if config is None:
        return ScheduleConfig()
    defaults = ScheduleConfig()
    schedule = ScheduleConfig(
        timesteps=_integer(config, "timesteps") if "timesteps" in config.values else defaults.timesteps,
        beta1=_number(config, "beta1") if "beta1" in config.values else defaults.beta1,
        beta2=_number(config, "beta2") if "beta2" in config.values else defaults.beta2,
    )
    try:
        return schedule.validate()
    except ValueError as exc:
        raise CheckpointError(f"{config.origin}: {exc}") from None
