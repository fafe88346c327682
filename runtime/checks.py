"""Checks of one sampling request's arguments: each refuses with one InputError line.

Kept apart from the sampler so its module stays about sampling; every check here runs
before anything the argument sizes is allocated (runtime.limits holds the bounds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spritegen.errors import InputError, shown
from spritegen.runtime import limits


def check_finite(array: np.ndarray, rows: np.ndarray, weight: float) -> None:
    """Never hand back NaN or Inf sprites: inputs within bounds can still overflow float32."""
    if not np.isfinite(array).all():
        raise InputError(f"sampling produced NaN or Inf (guidance {weight:g}, largest context weight "
                         f"{float(rows.max()):g}): float32 overflowed; use a smaller guidance or smaller weights")


def check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    most = limits.max_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= most:
        raise InputError(f"threads must be an integer in 1..{most} ({limits.THREADS_PER_CORE} per core: more only "
                         f"adds contention), got {shown(threads)}")
    return int(threads)


def check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {shown(value)}")
    return int(value)


def check_steps(n: Any, timesteps: int, sampler: str = "DDIM") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= timesteps:
        raise InputError(f"{sampler} steps n must be an integer in 1..{timesteps}, got {shown(n)}")
    return int(n)


def check_rate(save_rate: Any) -> int | None:
    if save_rate is None:
        return None
    if isinstance(save_rate, bool) or not isinstance(save_rate, (int, np.integer)) or save_rate < 1:
        raise InputError(f"save_rate must be a positive integer, got {shown(save_rate)}")
    return int(save_rate)


def real_number(value: Any) -> float | None:
    """`value` as a float when it is a real number (int, float, numpy scalar), else None:
    float() alone would also read the strings "0.5" and "nan", bytes, and bools."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or (isinstance(value, np.ndarray) and value.ndim):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def check_number(value: Any, name: str, upper: float | None = None) -> float:
    number = real_number(value)
    if number is None:
        raise InputError(f"{name} must be a number, got {shown(value)}")
    if not math.isfinite(number) or number < 0 or (upper is not None and number > upper):
        bounds = f"in 0..{upper:g}" if upper is not None else ">= 0"
        raise InputError(f"{name} must be a finite number {bounds}, got {shown(value)}")
    return number


def check_array(array: Any, name: str, shape: tuple[int | None, ...]) -> None:
    """float32 ndarray of `shape` (None = any size >= 1), all finite."""
    want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
    if not isinstance(array, np.ndarray):
        raise InputError(f"{name} must be a numpy float32 array of shape {want}, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {array.dtype}; pass {name}.astype(np.float32)")
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        raise InputError(f"{name} must have shape {want}, got {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"batch 0: {name} holds no sprites")
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or Inf; pass finite standard normal draws")
