"""Each manifest field the runtime reads, checked for type and range before it is used.

A manifest is JSON from elsewhere: `"model": "big"`, `"timesteps": 10**7`, a class
name that is a number or a hash that is a list must each become one FieldError line
naming the field (manifest.load_manifest adds the file and the fix), never an
AttributeError from deep inside the sampler or a 30 GB allocation. Bounds live in
runtime.limits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from spritegen.contract import (FAST_KEY, FIRST_ORDER_SOLVERS, MODEL_LIMITS, SOLVERS, UNCONDITIONAL, ModelConfig,
                                ScheduleConfig, check_solver_indices)
from spritegen.errors import InputError, UsageError, shown
from spritegen.files import is_sha256
from spritegen.runtime import limits



class FieldError(ValueError):
    """One manifest field is missing, of the wrong type or out of range (the message names it)."""


def section(data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise FieldError(f"{where}{key} must be an object, got {_kind(value)}")
    return value


def integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(f"{name} must be an integer in {low}..{high}, got {_show(value)}")
    return value


def real(value: Any, name: str, low: float, high: float) -> float:
    """A finite JSON number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{name} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and low <= number <= high):
        raise FieldError(f"{name} must be a finite number in {low:g}..{high:g}, got {_show(value)}")
    return number


def model_config(data: dict[str, Any]) -> ModelConfig:
    """model.hyperparameters (or model itself, as early exports wrote it): a ModelConfig the
    exporter would accept (contract.MODEL_LIMITS and ModelConfig.validate, the exporter's own
    check), so every export the exporter writes loads, and no other does."""
    model = section(data, "model")
    entry = section(model, "hyperparameters", "model.") if "hyperparameters" in model else model
    values = {}
    for field in dataclasses.fields(ModelConfig):
        name = f"model.hyperparameters.{field.name}"
        if field.name not in entry:
            raise FieldError(f"{name} is missing")
        values[field.name] = integer(entry[field.name], name, *MODEL_LIMITS[field.name])
    try:
        return ModelConfig(**values).validate()
    except ValueError as exc:  # an architecture rule (n_feat % 8, height % 4, the channels)
        raise FieldError(f"model.hyperparameters.{exc}") from None


def names(data: dict[str, Any], count: int) -> tuple[str, ...]:
    """class_names: `count` distinct (ignoring case, as lookups do) plain names, none UNCONDITIONAL
    and none holding the CLI's blend syntax (',' '=')."""
    value = data.get("class_names")
    if not isinstance(value, list) or len(value) != count:
        raise FieldError(f"class_names must be a list of n_cfeat={count} names, got {_kind(value)}")
    seen: set[str] = set()
    for name in value:
        if (not isinstance(name, str) or not 0 < len(name) <= limits.MAX_CLASS_NAME or name != name.strip()
                or any(c in name for c in ",=") or not name.isprintable()):
            raise FieldError(f"class name {_show(name)} must be 1..{limits.MAX_CLASS_NAME} printable characters "
                             "without ',', '=' or surrounding spaces")
        if name.lower() in seen or name.lower() == UNCONDITIONAL:
            raise FieldError(f"class name {name!r} is used twice (ignoring case) or reserved")
        seen.add(name.lower())
    return tuple(value)


def schedule_config(data: dict[str, Any]) -> ScheduleConfig:
    entry = section(data, "schedule")
    timesteps = integer(entry.get("timesteps"), "schedule.timesteps", 1, limits.MAX_TIMESTEPS)
    beta1 = real(entry.get("beta1"), "schedule.beta1", 0.0, 0.999)
    beta2 = real(entry.get("beta2"), "schedule.beta2", beta1, 0.999)
    if beta1 <= 0:
        raise FieldError(f"schedule.beta1 must be > 0, got {beta1!r}")
    return ScheduleConfig(timesteps=timesteps, beta1=beta1, beta2=beta2)


def schedule_arrays(data: dict[str, Any], timesteps: int) -> dict[str, list[float]]:
    """schedule.b_t, a_t, ab_t (or schedule.arrays.*): timesteps + 1 numbers in [0, 1] each."""
    entry = section(data, "schedule")
    arrays = section(entry, "arrays", "schedule.") if "arrays" in entry else entry
    out = {}
    for key in ("b_t", "a_t", "ab_t"):
        values = arrays.get(key)
        if not isinstance(values, list) or len(values) != timesteps + 1:
            raise FieldError(f"schedule array {key} must hold {timesteps + 1} finite numbers, got {_kind(values)}")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise FieldError(f"schedule array {key} must hold {timesteps + 1} finite numbers in 0..1, "
                                 f"found {_show(value)}")
        out[key] = values
    return out


def files(data: dict[str, Any]) -> tuple[dict[str, str], dict[str, int | None]]:
    """files: {name: sha256} or {name: {"sha256": hex, "bytes": n}} -> (digests, sizes)."""
    digests: dict[str, str] = {}
    sizes: dict[str, int | None] = {}
    for name, value in section(data, "files").items():
        entry = value if isinstance(value, dict) else {"sha256": value}
        digests[name] = hex_digest(entry.get("sha256"), f"files[{name[:80]!r}].sha256")
        size = entry.get("bytes")
        sizes[name] = None if size is None else integer(size, f"files[{name[:80]!r}].bytes", 0, 1 << 62)
    return digests, sizes


def loop_steps(data: dict[str, Any], timesteps: int, has_loop: bool) -> int | None:
    """ddim_loop_steps: required with ddim_loop.onnx, an integer in 1..T."""
    value = data.get("ddim_loop_steps")
    if value is None and not has_loop:
        return None
    return integer(value, "ddim_loop_steps", 1, timesteps)


@dataclasses.dataclass(frozen=True)
class FastSampler:
    """The export's fitted few-step sampler (manifest "fast", written by spritegen-export; docs/samplers.md):
    a solver, its eta, and one table of step indices (T .. 0) per fitted call count."""

    solver: str
    eta: float
    default_n: int
    indices: dict[int, tuple[int, ...]]  # network calls -> step indices
    student: bool = False  # the export's network is a distilled student: only this sampler, only default_n

    @property
    def first_order(self) -> bool:
        """Whether every step is first order (i_last = i: contract.FIRST_ORDER_SOLVERS, DDIM)."""
        return self.solver in FIRST_ORDER_SOLVERS

    def student_only(self) -> UsageError:
        """The one refusal of anything but `fast` with default_n calls on a student's export."""
        return UsageError(f"this export holds a {self.default_n}-step distilled student: use --sampler fast "
                          f"({self.default_n} calls); its weights give sprites on its own step indices only")

    def table(self, n: Any) -> tuple[int, ...]:
        """The step indices for `n` network calls (None: default_n); InputError naming the fitted
        call counts for any other n (the one wording of the runtime, the service and its client)."""
        n = self.default_n if n is None else n
        if self.student and n != self.default_n:
            raise self.student_only()
        if isinstance(n, bool) or n not in self.indices:
            raise InputError(f"the fast sampler of this export is fitted for n in "
                             f"{', '.join(map(str, self.indices))} network calls, got {shown(n)}; use one of those, "
                             "or the dpmpp sampler for any n")
        return self.indices[int(n)]


def fast_sampler(data: dict[str, Any], timesteps: int) -> FastSampler | None:
    """The "fast" section, every table checked (contract.check_solver_indices); None when absent."""
    if data.get(FAST_KEY) is None:
        return None
    entry = section(data, FAST_KEY)
    solver = entry.get("solver")
    if solver not in SOLVERS:
        raise FieldError(f"{FAST_KEY}.solver must be one of {', '.join(SOLVERS)}, got {_show(solver)}")
    eta = real(entry.get("eta"), f"{FAST_KEY}.eta", 0.0, 1.0)
    tables = section(entry, "indices", f"{FAST_KEY}.")
    if not 1 <= len(tables) <= limits.MAX_FAST_TABLES:
        raise FieldError(f"{FAST_KEY}.indices must hold 1..{limits.MAX_FAST_TABLES} tables, got {len(tables)}")
    indices = {}
    for key, value in tables.items():
        n = int(key) if isinstance(key, str) and key.isdigit() and len(key) <= 5 else -1
        try:
            table = check_solver_indices(value, timesteps)
        except ValueError as exc:
            raise FieldError(f"{FAST_KEY}.indices[{key[:20]!r}]: {exc}") from None
        if n != len(table) - 1:
            raise FieldError(f"{FAST_KEY}.indices[{key[:20]!r}] must hold {key[:20]} + 1 step indices")
        indices[n] = table
    default_n = integer(entry.get("default_n"), f"{FAST_KEY}.default_n", 1, timesteps)
    if default_n not in indices:
        raise FieldError(f"{FAST_KEY}.default_n = {default_n} has no table in {FAST_KEY}.indices")
    student = entry.get("student")
    if student is not None and not isinstance(student, dict):
        raise FieldError(f"{FAST_KEY}.student must be an object (a distilled student's record), got {_kind(student)}")
    if student is not None and len(indices) != 1:
        raise FieldError(f"{FAST_KEY}: a distilled student's section holds one table (its own steps), got {len(indices)}")
    return FastSampler(solver=solver, eta=eta, default_n=default_n, indices=dict(sorted(indices.items())),
                       student=student is not None)


def checkpoint_digest(data: dict[str, Any]) -> str | None:
    """provenance.checkpoint_sha256, else provenance.sha256 (exports before the dedicated key), else None."""
    if data.get("provenance") is None:
        return None
    provenance = section(data, "provenance")
    found = {hex_digest(provenance[key], f"provenance.{key}") for key in ("checkpoint_sha256", "sha256")
             if provenance.get(key) is not None}
    if len(found) > 1:
        raise FieldError("provenance.checkpoint_sha256 and provenance.sha256 name different checkpoints")
    return next(iter(found), None)


def hex_digest(value: Any, name: str) -> str:
    if not is_sha256(value):
        raise FieldError(f"{name} must be 64 lowercase hex digits, got {_show(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, (list, dict, str)):
        return f"a {type(value).__name__} of length {len(value)}"
    return _show(value)


def _show(value: Any) -> str:
    """A short repr (hostile values can be megabytes long)."""
    return f"a {type(value).__name__}" if isinstance(value, (list, dict)) else shown(value)
