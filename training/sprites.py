"""Procedural 16x16 pixel-art sprites in the course's five classes.

The course's sprite data set cannot be downloaded here, so the bundled demo checkpoint
is trained on this generator instead. Each class is a mixture of kinds (a monster is a
slime, a ghost, a horned beast, a bat or a cyclops), each kind a few parametric shapes
with per-sprite palettes, sizes, positions, accessories and an optional outline. What
keeps the classes apart is what a person would use: heroes face the viewer (symmetric,
two eyes), side-facing characters are in profile (one eye, a nose, a stride), monsters
are creatures without a humanoid body, food is fruit and dishes, spells are glowing
orbs, bursts and scrolls.

Everything is vectorised over the sprites of one kind (see pixelart), so 20k sprites
take about a second. Output is deterministic from the seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from spritegen.contract import CLASS_NAMES
from spritegen.training.pixelart import (
    DARK, HAIR, METAL, SIZE, SKIN, Canvas, X, Y, background, col, ellipse, finish, pick, rect, shade, vivid,
)
from spritegen.training.sprite_kinds import draw_food_kinds, draw_monster_kinds, draw_spell_kinds

def _head(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head centre row, centre column (half-integer, so |X - cx| is symmetric), half width)."""
    hy = col(rng.integers(3, 5, n))
    cx = col(7.5 + rng.integers(-1, 2, n))
    rx = col(rng.choice([2.5, 2.9], n))
    return hy, cx, rx


def draw_heroes(rng: np.random.Generator, n: int) -> Canvas:
    """Front-facing humanoids: symmetric face with two eyes, hair/helmet/crown, tunic, legs."""
    c = Canvas(background(rng, n))
    hy, cx, rx = _head(rng, n)
    dx = np.abs(X - cx)
    bw = col(rng.choice([1.5, 2.5], n))  # half width of the torso
    skin, hair, tunic = pick(rng, SKIN, n), pick(rng, HAIR, n), vivid(rng, n)
    pants = vivid(rng, n, (0.25, 0.6))
    cape = rect(hy + 2, hy + 7, 0, 15) & (dx <= bw + 1.5) & col(rng.random(n) < 0.3)
    c.paint(cape, shade(vivid(rng, n), 0.8))
    c.paint(rect(hy + 3, hy + 6, 0, 15) & (dx <= bw), tunic)  # torso
    c.paint(rect(hy + 3, hy + 5, 0, 15) & (dx > bw) & (dx <= bw + 1), np.where(
        (rng.random(n) < 0.5)[:, None], skin, shade(tunic, 0.8)))  # sleeves / arms
    c.paint((Y == hy + 6) & (dx > bw) & (dx <= bw + 1), skin)  # hands
    c.paint((Y == hy + 5) & (dx <= bw) & col(rng.random(n) < 0.6), pick(rng, HAIR[:2], n))  # belt
    c.paint(rect(hy + 7, hy + 9, 0, 15) & (dx <= bw) & (dx >= 0.5 + (bw > 2)), pants)  # legs
    c.paint((Y == hy + 9) & (dx <= bw) & (dx >= 0.5 + (bw > 2)), shade(pants, 0.5))  # boots
    c.paint(ellipse(hy, cx, col(2.3), rx), skin)  # face
    style = col(rng.integers(0, 4, n))
    hair_top = ellipse(hy, cx, col(2.3), rx) & (Y <= hy - 1)
    long_sides = rect(hy - 1, hy + 2, 0, 15) & (dx > rx - 1) & (dx <= rx + 0.6)
    c.paint((style == 0) & hair_top, hair)
    c.paint((style == 1) & (hair_top | long_sides), hair)
    helmet = ellipse(hy - 0.5, cx, col(2.5), rx + 0.6) & (Y <= hy - 1)
    c.paint((style == 2) & (helmet | ((dx <= 0.5) & (Y == hy - 3.5 - 0.5))), pick(rng, METAL, n))
    crown = ((Y == hy - 2) & (dx <= rx)) | ((Y == hy - 3) & ((dx == 0.5) | (dx == 2.5)))
    c.paint((style == 3) & hair_top, hair)
    c.paint((style == 3) & crown, METAL[2])
    c.paint((Y == hy) & (dx == 1.5), DARK)  # two eyes: the frontal view
    c.paint((Y == hy + 1.0) & (dx == 0.5) & col(rng.random(n) < 0.5), shade(skin, 0.7))  # mouth
    _hero_gear(c, rng, n, hy, cx, bw)
    return finish(c, rng, tunic, 0.75)


def _hero_gear(c: Canvas, rng: np.random.Generator, n: int, hy: np.ndarray, cx: np.ndarray,
               bw: np.ndarray) -> None:
    """A sword, a shield or a staff held at one side (or nothing)."""
    gear = col(rng.integers(0, 4, n))
    side = col(rng.choice([-1.0, 1.0], n))
    hand_x = cx + side * (bw + 1.5)
    blade = (X == hand_x) & (Y >= hy - 1) & (Y <= hy + 5)
    c.paint((gear == 1) & blade, pick(rng, METAL[:2], n))
    c.paint((gear == 1) & (Y == hy + 5) & (np.abs(X - hand_x) <= 1), pick(rng, HAIR[1:2], n))
    shield = rect(hy + 2, hy + 6, 0, 15) & (np.abs(X - (cx - side * (bw + 1.5))) <= 1)
    c.paint((gear == 2) & shield, pick(rng, METAL, n))
    c.paint((gear == 2) & shield & (Y == hy + 4), vivid(rng, n))
    staff = (X == hand_x) & (Y >= hy - 2) & (Y <= hy + 8)
    c.paint((gear == 3) & staff, np.array([0.5, 0.3, 0.12]))
    c.paint((gear == 3) & (Y == hy - 3) & (X == hand_x), vivid(rng, n, (0.8, 1.0)))


def draw_side_facing(rng: np.random.Generator, n: int) -> Canvas:
    """Characters in profile: one eye, a nose, hair at the back, a striding or standing pose."""
    c = Canvas(background(rng, n))
    hy, cx, rx = _head(rng, n)
    facing = col(rng.choice([-1.0, 1.0], n))
    u = (X - cx) * facing  # > 0 in front of the character
    skin, hair, tunic = pick(rng, SKIN, n), pick(rng, HAIR, n), vivid(rng, n)
    pants = vivid(rng, n, (0.25, 0.6))
    pack = rect(hy + 3, hy + 5, 0, 15) & (u >= -3.5) & (u <= -2.5) & col(rng.random(n) < 0.35)
    c.paint(pack, shade(vivid(rng, n), 0.7))
    c.paint(rect(hy + 3, hy + 6, 0, 15) & (np.abs(u) <= 1.5), tunic)  # narrow torso
    stride = col(rng.random(n) < 0.7)
    leg_row = Y - (hy + 7)
    front = (u == 0.5 + leg_row * stride) & (leg_row >= 0) & (leg_row <= 2)
    back = (u == -0.5 - leg_row * stride) & (leg_row >= 0) & (leg_row <= 2)
    c.paint(front | back, pants)
    c.paint((front | back) & (leg_row == 2), shade(pants, 0.5))
    arm_row = Y - (hy + 3)
    arm = (u == 0.5 + arm_row) & (arm_row >= 0) & (arm_row <= 2)
    c.paint(arm, shade(tunic, 0.75))
    c.paint((u == 3.5) & (arm_row == 3), skin)  # hand reaching forward
    head = ellipse(hy, cx, col(2.3), rx)
    c.paint(head, skin)
    c.paint((Y == hy + 1) & (u > rx) & (u <= rx + 1), skin)  # nose: the profile
    style = col(rng.integers(0, 3, n))
    back_hair = head & ((Y <= hy - 1) | (u <= -0.5))
    tail = rect(hy, hy + 2, 0, 15) & (u <= -rx) & (u >= -rx - 1) & (style == 1)
    c.paint(back_hair | tail, hair)
    hat = ((Y == hy - 2) & (u >= -rx) & (u <= rx + 1.5)) | (rect(hy - 4, hy - 3, 0, 15) & (np.abs(u) <= 1.5))
    c.paint((style == 2) & hat, vivid(rng, n, (0.3, 0.7)))
    c.paint((Y == hy) & (u == 1.5), DARK)  # the one visible eye
    held = (Y == hy + 6) & (u >= 4.5) & (u <= 6.5) & col(rng.random(n) < 0.3)  # a tool held forward
    c.paint(held, pick(rng, METAL[:2], n))
    return finish(c, rng, tunic, 0.75)


DRAWERS: dict[str, Callable[[np.random.Generator, int], Canvas]] = {
    "hero": draw_heroes,
    "non-hero": draw_monster_kinds,
    "food": draw_food_kinds,
    "spell": draw_spell_kinds,
    "side-facing": draw_side_facing,
}


def make_sprites(count: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` sprites, classes balanced and shuffled, deterministic from `seed`.

    Returns images float32 (count, 3, 16, 16) in [-1, 1] and labels int64 (count,)
    indexing CLASS_NAMES (the course's context order).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    assert tuple(DRAWERS) == CLASS_NAMES, "drawers must follow the contract's class order"
    root = np.random.SeedSequence(int(seed))
    order_rng, *class_rngs = [np.random.default_rng(s) for s in root.spawn(1 + len(CLASS_NAMES))]
    labels = order_rng.permutation(np.arange(count) % len(CLASS_NAMES)).astype(np.int64)
    images = np.empty((count, 3, SIZE, SIZE), dtype=np.float32)
    for k, (name, draw) in enumerate(DRAWERS.items()):
        where = np.flatnonzero(labels == k)
        if len(where):
            images[where] = draw(class_rngs[k], len(where)).to_model_range()
    return images, labels
