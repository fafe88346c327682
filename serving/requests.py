"""One served request -> validated sprite rows, with the runtime's own checks and messages.

A request is a mapping of input name -> array with a leading batch dimension of sprites
(what PyTriton hands the model). `parse` checks it alone, before it meets any other
request, so a malformed request is refused with one line and never reaches a batch:
contexts go through `runtime.context.make_context`, the sampler's arguments through the
served Sampler's own `check_<sampler>` (`check_ddim`, `check_dpmpp`, `check_fast`: the
runtime's ranges, the export's fitted call counts, one wording everywhere), guidance and
noise through the checks every Sampler call runs. Triton
itself has already refused unknown inputs, wrong dtypes, wrong per-row shapes and
batches above max_batch_size (serving.binding declares them).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spritegen.errors import InputError
from spritegen.runtime.context import make_context
from spritegen.runtime import limits
from spritegen.runtime.checks import check_array, check_number
from spritegen.serving.schema import SAMPLER_ARGS, UNCONDITIONAL, Published, Schema

CONTEXT_INPUTS = ("context", "class_name", "class_index")


@dataclass(frozen=True)
class Params:
    """What rows must share to be sampled in one call (serving.batching groups by it): the
    sampler's name is part of the key, so rows of different samplers are never merged."""

    sampler: str  # a name in serving.schema.SAMPLER_ARGS
    args: tuple[tuple[str, float | int], ...]  # its arguments, in SAMPLER_ARGS order
    guidance: float
    step_noise: bool  # rows carrying explicit step noise run apart from rows drawing it


@dataclass(frozen=True)
class Row:
    """One sprite to make."""

    params: Params
    context: np.ndarray  # (K,) float32
    seed: int
    noise: np.ndarray | None  # (C, H, W) x_T, or None: drawn from seed
    step_noise: np.ndarray | None  # (T, C, H, W), or None: drawn from seed


def parse(request: Mapping[str, np.ndarray], sampler: str, facts: Published, runtime: Any) -> list[Row]:
    """The request's rows, or InputError naming what is wrong with it. `facts`: what the
    service publishes (schema, classes, defaults); `runtime`: the served Sampler, whose
    check_<sampler> checks the arguments (module doc)."""
    schema = facts.schema
    batch = _batch(request, schema, sampler)
    contexts = _contexts(request, batch, schema, facts.class_names)
    params = [_params(request, r, sampler, facts.defaults[sampler], runtime) for r in range(batch)]
    seeds = _seeds(request, batch)
    noise = _noise(request, "noise", (None, *schema.image))
    step_noise = _noise(request, "step_noise", (None, schema.timesteps, *schema.image))
    return [Row(params=params[r], context=contexts[r], seed=seeds[r],
                noise=None if noise is None else noise[r],
                step_noise=None if step_noise is None else step_noise[r]) for r in range(batch)]


def _batch(request: Mapping[str, np.ndarray], schema: Schema, sampler: str) -> int:
    """The request's sprite count: every input's leading dimension, all equal and >= 1."""
    known = {f.name: f for f in schema.inputs_of(sampler)}
    sizes = {}
    for name, array in request.items():
        if name not in known:
            raise InputError(f"unknown input {name!r}; the {sampler} model takes {', '.join(known)}")
        want = (None, *known[name].shape)
        if array.ndim != len(want) or tuple(array.shape[1:]) != known[name].shape:
            shown = "(B, " + ", ".join(map(str, known[name].shape)) + ")"
            raise InputError(f"input {name} must have shape {shown}, got {tuple(array.shape)}")
        sizes[name] = array.shape[0]
    if not sizes:
        raise InputError("empty request; give one of context, class_name or class_index per sprite")
    if len(set(sizes.values())) != 1:
        raise InputError(f"inputs disagree on the number of sprites: {sizes}; give one row per sprite in each")
    batch = next(iter(sizes.values()))
    if batch < 1:
        raise InputError("batch 0: a request must ask for at least one sprite")
    return batch


def _contexts(request: Mapping[str, np.ndarray], batch: int, schema: Schema,
              class_names: tuple[str, ...]) -> np.ndarray:
    given = [name for name in CONTEXT_INPUTS if name in request]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise InputError(f"give exactly one of context, class_name, class_index per request (got {what})")
    if given[0] == "context":
        return make_context(np.asarray(request["context"]), class_names, batch)
    if given[0] == "class_name":
        names = [_text(value) for value in request["class_name"][:, 0]]
        return make_context([None if name.lower() == UNCONDITIONAL else name for name in names], class_names, batch)
    indices = request["class_index"][:, 0]
    bad = [int(i) for i in indices if not 0 <= int(i) < schema.classes]
    if bad:
        raise InputError(f"class_index {bad[0]} is out of range; valid: 0..{schema.classes - 1} "
                         f"({', '.join(class_names)})")
    return np.eye(schema.classes, dtype=np.float32)[indices.astype(np.int64)]


def _text(value: object) -> str:
    """A class name, its size checked before anything reads it (a megabyte-long one must
    cost no more than a short one)."""
    if len(value) > 4 * limits.MAX_CLASS_NAME:  # type: ignore[arg-type]  (bytes or str: UTF-8 <= 4 bytes a char)
        raise InputError(f"class_name is too long ({len(value)} bytes); class names are at most "  # type: ignore[arg-type]
                         f"{limits.MAX_CLASS_NAME} characters")
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("class_name is not UTF-8 text") from None
    return str(value)


def _params(request: Mapping[str, np.ndarray], row: int, sampler: str, defaults: Mapping[str, float | int],
            runtime: Any) -> Params:
    """Row `row`'s sampler parameters, defaults filled in, checked as the Sampler checks them."""
    def value(name: str) -> Any:
        return request[name][row, 0].item() if name in request else defaults[name]

    guidance = check_number(value("guidance"), "guidance", upper=limits.MAX_GUIDANCE)
    args = tuple((name, value(name)) for name in SAMPLER_ARGS[sampler])
    if args:  # ddpm takes none and has no check
        getattr(runtime, f"check_{sampler}")(**dict(args))
    return Params(sampler, args, guidance, "step_noise" in request)


def _seeds(request: Mapping[str, np.ndarray], batch: int) -> list[int]:
    """Each row's seed (uint64, so always valid), or a fresh 64-bit one to report back."""
    if "seed" in request:
        return [int(s) for s in request["seed"][:, 0]]
    return [secrets.randbits(64) for _ in range(batch)]


def _noise(request: Mapping[str, np.ndarray], name: str, shape: tuple[int | None, ...]) -> np.ndarray | None:
    if name not in request:
        return None
    array = request[name]
    check_array(array, name, shape)
    return array
