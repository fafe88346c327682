"""Merge the validated rows of many requests into as few Sampler calls as their parameters allow.

Rows are grouped by `requests.Params` (sampler, its arguments, guidance, explicit step noise):
rows that differ there are never merged, rows that agree are sampled in one call with
one seed per row, `Sampler.ddim(contexts, seed=[s0, s1, ...])`, whose row r equals the
batch-1 call with seed s_r (the runtime's per-row noise streams). So batching does not
change answers: a served sprite is what the same request gets in-process, alone.

Rows with explicit x_T join their group with the seed's x_T replaced by theirs (the
step noise still comes from their seed, as in-process `ddim(..., noise=x, seed=s)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spritegen.runtime import Sampler
from spritegen.runtime.images import to_pixels
from spritegen.serving.requests import Params, Row


@dataclass(frozen=True)
class Sprite:
    """One row's answer."""

    sprite: np.ndarray  # (C, H, W) float32 in [-1, 1]
    pixels: np.ndarray  # (H, W, 3) uint8
    seed: int


def sample_rows(sampler: Sampler, rows: Sequence[Row], max_batch: int) -> list[Sprite]:
    """Every row's sprite, in order, with one Sampler call per (parameters, chunk of max_batch)."""
    groups: dict[Params, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.params, []).append(index)
    answers: list[Sprite | None] = [None] * len(rows)
    for params, members in groups.items():
        for start in range(0, len(members), max_batch):
            chunk = members[start:start + max_batch]
            sprites = _sample(sampler, params, [rows[i] for i in chunk])
            for i, sprite in zip(chunk, sprites):
                answers[i] = Sprite(sprite=sprite, pixels=to_pixels(sprite), seed=rows[i].seed)
    return answers  # type: ignore[return-value]  (every index was filled)


def _sample(sampler: Sampler, params: Params, rows: Sequence[Row]) -> np.ndarray:
    """One Sampler call for rows that share `params`: (B, C, H, W)."""
    contexts = np.stack([row.context for row in rows])  # (B, K)
    seeds = [row.seed for row in rows]
    noise = None
    if any(row.noise is not None for row in rows):
        noise = sampler.noise(len(rows), seeds)  # (B, C, H, W): each row's own x_T ...
        for r, row in enumerate(rows):
            if row.noise is not None:
                noise[r] = row.noise  # ... unless the request brought one
    step_noise = np.stack([row.step_noise for row in rows], axis=1) if params.step_noise else None  # (T, B, C, H, W)
    method = getattr(sampler, params.sampler)  # serving.schema.SAMPLER_ARGS names Sampler methods
    return method(contexts, seed=seeds, noise=noise, step_noise=step_noise, guidance=params.guidance,
                  **dict(params.args))
