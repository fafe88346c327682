"""Turn what a user says about classes into the float32 context rows the network reads.

Accepted forms (B = number of sprites, K = number of classes):
- None: unconditional (zero rows); B comes from `batch` (the noise's batch, or 1);
- a class name ("hero") or a blend dict ({"hero": 1, "food": 0.6}): one row;
- a list mixing names, blend dicts and None (unconditional): one row each;
- an array-like of shape (B, K): used as it is (cast to float32).

Weights must be finite, non-negative and at most limits.MAX_CONTEXT_WEIGHT: a negative,
NaN or huge weight is a mistake the network was never trained on (huge ones overflow
float32 into NaN sprites), so it is refused rather than silently sampled. A class named
twice in one blend ("hero" and "Hero", or hero=1,hero=2) is refused too: silently keeping
one of the weights would sample something the user did not ask for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from spritegen.contract import UNCONDITIONAL
from spritegen.errors import InputError, shown
from spritegen.runtime.checks import real_number
from spritegen.runtime.limits import MAX_CONTEXT_WEIGHT

Context = Union[None, str, Mapping[str, float], Sequence[Union[str, Mapping[str, float]]], np.ndarray]


def make_context(context: Context, class_names: Sequence[str], batch: int | None = None,
                 max_batch: int | None = None) -> np.ndarray:
    """The context as a C-contiguous float32 array (B, K); InputError on anything malformed.

    `batch` is only used for `None`; other forms carry their own batch size, and a
    given `batch` that disagrees with it is refused (so noise and context cannot be
    silently paired wrongly). A context of more than `max_batch` rows is refused before
    its rows are allocated.
    """
    names = tuple(class_names)
    rows_wanted = _rows_asked(context, batch)
    if max_batch is not None and rows_wanted is not None and rows_wanted > max_batch:
        raise InputError(f"batch {rows_wanted} is more than this sampler's max_batch={max_batch}; sample in "
                         "smaller batches, or raise it with Sampler.load(max_batch=...) (CLI: --max-batch)")
    if context is None:
        rows = np.zeros((1 if batch is None else batch, len(names)), np.float32)
    elif isinstance(context, (str, Mapping)):
        rows = _rows([context], names)
    elif isinstance(context, np.ndarray) or _is_nested_numbers(context):
        rows = _array(context, len(names))
    elif isinstance(context, Sequence):
        rows = _rows(list(context), names)
    else:
        raise InputError(f"context must be None, a class name, a blend dict, a list of those, or a (B, "
                         f"{len(names)}) array; got {type(context).__name__}")
    if rows.shape[0] == 0:
        raise InputError("batch 0: ask for at least one sprite")
    if batch is not None and rows.shape[0] != batch:
        raise InputError(f"context has {rows.shape[0]} rows but the noise has batch {batch}; give one "
                         "context row per sprite")
    return rows


def parse_blend(text: str, class_names: Sequence[str]) -> dict[str, float]:
    """'hero=1,food=0.6' -> {'hero': 1.0, 'food': 0.6} (the CLI's --blend syntax)."""
    blend: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise InputError(f"blend part {part!r} is not name=weight (for example hero=1,food=0.6)")
        name = name.strip()
        if name.lower() in (known.lower() for known in blend):
            raise InputError(f"blend {text!r} names {name!r} twice; give each class once")
        try:
            blend[name] = float(value)
        except ValueError:
            raise InputError(f"blend weight {value.strip()!r} for {name!r} is not a number") from None
    if not blend:
        raise InputError(f"blend {text!r} names no class (for example hero=1,food=0.6)")
    _check_names(blend, tuple(class_names))
    return blend


def describe(row: np.ndarray, class_names: Sequence[str]) -> str:
    """A short label for one context row: 'hero', 'hero 1 + food 0.6', or 'unconditional'."""
    parts = [(name, float(w)) for name, w in zip(class_names, row) if w != 0]
    if not parts:
        return UNCONDITIONAL
    if len(parts) == 1 and parts[0][1] == 1:
        return parts[0][0]
    return " + ".join(f"{name} {w:g}" for name, w in parts)


def _rows_asked(context: Context, batch: int | None) -> int | None:
    """How many rows `context` asks for, known before building them (None: not a sized form)."""
    if context is None:
        return batch
    if isinstance(context, (str, Mapping)):
        return 1
    if isinstance(context, np.ndarray):
        return int(context.shape[0]) if context.ndim else None
    return len(context) if isinstance(context, Sequence) else None


def _is_nested_numbers(value: Any) -> bool:
    """A list of lists of numbers (an array written as Python lists)."""
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
            and all(isinstance(row, Sequence) and not isinstance(row, str) for row in value))


def _array(value: Any, width: int) -> np.ndarray:
    try:
        rows = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"context array is not numeric ({exc})") from None
    if rows.ndim != 2 or rows.shape[1] != width:
        raise InputError(f"context array must have shape (B, {width}), got {rows.shape}")
    _check_weights(rows)
    return np.ascontiguousarray(rows)


def _rows(items: list, names: tuple[str, ...]) -> np.ndarray:
    rows = np.zeros((len(items), len(names)), np.float32)
    for row, item in zip(rows, items):
        if item is None:
            continue  # unconditional: a zero row
        if isinstance(item, str):
            row[_index(item, names)] = 1.0
        elif isinstance(item, Mapping):
            _check_names(item, names)
            for name, weight in item.items():
                row[_index(name, names)] = _weight(weight, name)
        else:
            raise InputError(f"context item {shown(item)} is neither a class name, a blend dict nor None")
    _check_weights(rows)
    return rows


def _index(name: str, names: tuple[str, ...]) -> int:
    lowered = [n.lower() for n in names]
    key = name.strip().lower()
    if key not in lowered:
        raise InputError(f"unknown class {shown(name)}; valid classes: {', '.join(names)}")
    return lowered.index(key)


def _check_names(blend: Mapping[str, Any], names: tuple[str, ...]) -> None:
    seen: dict[int, str] = {}
    for name in blend:
        if not isinstance(name, str):
            raise InputError(f"blend key {shown(name)} is not a class name; valid classes: {', '.join(names)}")
        index = _index(name, names)
        if index in seen:
            raise InputError(f"blend names class {names[index]!r} twice ({shown(seen[index])} and {shown(name)}); "
                             "give each class once")
        seen[index] = name


def _weight(value: Any, name: str) -> float:
    weight = real_number(value)
    if weight is None:
        raise InputError(f"weight {shown(value)} for {shown(name)} is not a number")
    if not np.isfinite(weight) or not 0 <= weight <= MAX_CONTEXT_WEIGHT:
        raise InputError(f"weight {shown(value)} for {shown(name)} must be a finite number in 0..{MAX_CONTEXT_WEIGHT:g}")
    return weight


def _check_weights(rows: np.ndarray) -> None:
    if not np.isfinite(rows).all():
        raise InputError("context weights must be finite (found NaN or Inf)")
    if (rows < 0).any():
        raise InputError(f"context weights must be >= 0 (found {float(rows.min()):g})")
    if (rows > MAX_CONTEXT_WEIGHT).any():
        raise InputError(f"context weights must be <= {MAX_CONTEXT_WEIGHT:g} (found {float(rows.max()):g}); "
                         "larger weights overflow float32 in the network")
