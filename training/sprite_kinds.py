"""The kinds of non-hero, food and spell sprites: each class is a mixture of kinds.

Every `_draw_*` function paints n sprites of one kind, vectorised (see pixelart);
`mixture` splits a class's sprites among its kinds. Monsters are creatures without a
humanoid body (slimes, ghosts, horned beasts, bats, cyclopes), food is fruit and
dishes, spells are glowing orbs, star bursts and scrolls.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spritegen.training.pixelart import (
    DARK, SIZE, Canvas, X, Y, background, col, ellipse, finish, hsv, pick, rect, shade, vivid,
)

Drawer = Callable[[np.random.Generator, int], Canvas]
WHITE = np.array([1.0, 1.0, 1.0], dtype=np.float32)
BROWN = np.array([[0.45, 0.28, 0.12], [0.6, 0.4, 0.2], [0.35, 0.2, 0.1]], dtype=np.float32)


def mixture(rng: np.random.Generator, n: int, drawers: Sequence[Drawer]) -> Canvas:
    """n sprites, each of a kind drawn uniformly from `drawers`."""
    kind = rng.integers(0, len(drawers), n)
    out = Canvas(np.zeros((n, 3), dtype=np.float32))
    for j, draw in enumerate(drawers):
        where = np.flatnonzero(kind == j)
        if len(where):
            out.rgb[where] = draw(rng, len(where)).rgb
    return out


def _cx(rng: np.random.Generator, n: int) -> np.ndarray:
    return col(7.5 + rng.integers(-1, 2, n))


def _face(c: Canvas, rng: np.random.Generator, n: int, ey: np.ndarray, cx: np.ndarray, *,
          eye_dx: np.ndarray | float = 1.5, big: bool = True) -> None:
    """Monster face: two eyes (2x2 white with a pupil, or beady), a mouth with a fang."""
    dx = np.abs(X - cx)
    if big:
        c.paint((np.abs(dx - eye_dx) <= 0.5) & (Y >= ey - 1) & (Y <= ey), WHITE, solid=False)
        look = col(rng.choice([-1.0, 1.0], n))  # pupils look left or right
        c.paint((Y == ey) & (np.abs(dx - eye_dx) <= 0.5) & (((X - cx) * look > 0) == (dx > eye_dx)), DARK,
                solid=False)
    else:
        c.paint((Y == ey) & (dx == eye_dx), DARK, solid=False)
    mouth = (Y == ey + 2) & (dx <= 1.5) & col(rng.random(n) < 0.7)
    c.paint(mouth, np.full(3, 0.15, np.float32), solid=False)
    c.paint(mouth & (dx == 0.5) & (X > cx), WHITE, solid=False)


def _draw_slime(rng: np.random.Generator, n: int) -> Canvas:
    c, cx, body = Canvas(background(rng, n)), _cx(rng, n), vivid(rng, n)
    cy = col(rng.integers(10, 12, n))
    c.paint(ellipse(cy + 1, cx, col(rng.uniform(4.5, 6.5, n)), col(rng.uniform(4.5, 6.8, n))) & (Y <= 13), body)
    c.paint(ellipse(cy - 2, cx - 2.5, col(1.0), col(1.0)), shade(body, 1.8), solid=False)  # shine
    _face(c, rng, n, cy - 1, cx, eye_dx=col(rng.choice([1.5, 2.5], n)))
    return finish(c, rng, body, 0.8)


def _draw_ghost(rng: np.random.Generator, n: int) -> Canvas:
    c, cx = Canvas(background(rng, n)), _cx(rng, n)
    body = hsv(rng.random(n), rng.uniform(0.05, 0.5, n), rng.uniform(0.7, 0.95, n))
    top, rx = col(rng.integers(2, 4, n)), col(rng.uniform(3.6, 5.6, n))
    shape = ellipse(top + 4, cx, col(4.5), rx) | (rect(top + 4, 13, 0, 15) & (np.abs(X - cx) <= rx))
    wavy = (Y == 13) & (np.mod(X + col(rng.integers(0, 2, n)), 2) == 0)
    c.paint(shape & ~wavy, body)
    c.paint(rect(top + 7, top + 8, 0, 15) & (np.abs(X - cx) > rx - 0.1) & (np.abs(X - cx) <= rx + 1), body)  # arms
    _face(c, rng, n, top + 4, cx, eye_dx=1.5, big=bool(rng.random() < 0.5))
    return finish(c, rng, body, 0.8)


def _draw_beast(rng: np.random.Generator, n: int) -> Canvas:
    c, cx, body = Canvas(background(rng, n)), _cx(rng, n), vivid(rng, n)
    dx = np.abs(X - cx)
    cy, ry, rx = col(rng.integers(8, 10, n)), col(rng.uniform(3.6, 4.6, n)), col(rng.uniform(4.0, 5.8, n))
    c.paint(rect(cy + ry - 1, cy + ry + 1, 0, 15) & (dx >= 1.5) & (dx <= 3.5) & (dx != 2.5), shade(body, 0.7))
    c.paint(ellipse(cy, cx, ry, rx), body)
    horn_dx = col(rng.choice([1.5, 2.5, 3.5], n))
    horns = ((Y == cy - ry) | (Y == cy - ry - 1)) & (dx == horn_dx) | ((Y == cy - ry + 0.0) & (dx == horn_dx - 1))
    c.paint(horns & (Y < cy), pick(rng, np.array([[0.95, 0.9, 0.8], [0.3, 0.3, 0.3], [0.9, 0.2, 0.1]]), n))
    belly = ellipse(cy + 1.5, cx, col(2.0), col(2.5)) & col(rng.random(n) < 0.5)
    c.paint(belly, shade(body, 1.6))
    _face(c, rng, n, cy - 1, cx, eye_dx=1.5, big=True)
    return finish(c, rng, body, 0.85)


def _draw_bat(rng: np.random.Generator, n: int) -> Canvas:
    c, cx, body = Canvas(background(rng, n)), _cx(rng, n), vivid(rng, n, (0.25, 0.6))
    dx = np.abs(X - cx)
    cy = col(rng.integers(6, 9, n))
    span = col(rng.uniform(6.0, 8.0, n))
    wing = (dx >= 1.5) & (dx <= span) & (Y >= cy - 2 + (dx - 1.5) * 0.4) & (Y <= cy + 3 - (dx - 1.5) * 0.5)
    notch = (Y >= cy + 2 - (dx - 1.5) * 0.5) & (np.mod(dx + 0.5, 2) == 0)
    c.paint(wing & ~notch, shade(body, 0.8))
    c.paint(ellipse(cy, cx, col(2.6), col(2.2)), body)
    c.paint((Y == cy - 3) & (dx == 1.5), body)  # ears
    c.paint((Y == cy - 0.0) & (dx == 0.5), pick(rng, np.array([[1, 0.9, 0.2], [1, 0.2, 0.2]]), n), solid=False)
    c.paint((Y == cy + 1) & (dx == 0.5), WHITE, solid=False)  # fangs
    return finish(c, rng, body, 0.85)


def _draw_cyclops(rng: np.random.Generator, n: int) -> Canvas:
    c, cx, body = Canvas(background(rng, n)), _cx(rng, n), vivid(rng, n)
    cy, r = col(rng.integers(7, 10, n)), col(rng.uniform(4.5, 6.0, n))
    c.paint(ellipse(cy, cx, r, r), body)
    tentacles = rect(cy + r - 1, 14, 0, 15) & (np.mod(X - cx + 0.5, 2) == 0) & (np.abs(X - cx) <= r - 1)
    c.paint(tentacles, shade(body, 0.75))
    c.paint(ellipse(cy - 1, cx, col(1.8), col(2.2)), WHITE, solid=False)
    c.paint(ellipse(cy - 1, cx, col(0.9), col(0.9)), hsv(rng.random(n), np.full(n, 0.9), np.full(n, 0.5)), solid=False)
    c.paint((Y == cy - 1) & (np.abs(X - cx) == 0.5), DARK, solid=False)
    return finish(c, rng, body, 0.85)


def draw_monster_kinds(rng: np.random.Generator, n: int) -> Canvas:
    return mixture(rng, n, [_draw_slime, _draw_ghost, _draw_beast, _draw_bat, _draw_cyclops])


# -------------------------------------------------------------------------- food
FRUIT = np.array([[0.85, 0.1, 0.1], [1.0, 0.55, 0.05], [0.95, 0.85, 0.15], [0.5, 0.15, 0.55],
                  [0.45, 0.8, 0.2], [1.0, 0.4, 0.5]], dtype=np.float32)
LEAF = np.array([[0.2, 0.65, 0.15], [0.3, 0.5, 0.1]], dtype=np.float32)


def _draw_fruit(rng: np.random.Generator, n: int) -> Canvas:
    c, cx, flesh = Canvas(background(rng, n)), _cx(rng, n), pick(rng, FRUIT, n, 0.08)
    r, cy = col(rng.uniform(3.8, 5.6, n)), col(rng.integers(8, 10, n))
    ry = r * col(rng.uniform(0.85, 1.15, n))
    c.paint(ellipse(cy, cx, ry, r), flesh)
    c.paint(ellipse(cy - ry * 0.45, cx - r * 0.45, col(0.8), col(0.8)), shade(flesh, 2.2), solid=False)
    top = cy - ry
    stem = (np.abs(X - cx) <= 0.5) & (X <= cx) & (Y >= top - 2) & (Y <= top)
    c.paint(stem, pick(rng, BROWN, n))
    side = col(rng.choice([-1.0, 1.0], n))
    c.paint(ellipse(top - 1, cx + side * 2, col(0.9), col(1.6)), pick(rng, LEAF, n))
    return finish(c, rng, flesh, 0.7)


def _draw_burger(rng: np.random.Generator, n: int) -> Canvas:
    c, cx = Canvas(background(rng, n)), _cx(rng, n)
    w, top = col(rng.uniform(5.0, 6.6, n)), col(rng.integers(3, 6, n))
    dx = np.abs(X - cx)
    bun = pick(rng, np.array([[0.85, 0.55, 0.2], [0.75, 0.45, 0.15]]), n)
    c.paint(ellipse(top + 2.5, cx, col(2.6), w) & (Y <= top + 2), bun)  # top bun
    c.paint((Y == top + 3) & (dx <= w + 0.5) & ~((np.mod(X, 3) == 0) & (Y == top + 3) & col(rng.random(n) < 0.5)),
            pick(rng, LEAF, n))  # lettuce
    c.paint((Y == top + 4) & (dx <= w), np.array([0.98, 0.8, 0.1]))  # cheese
    c.paint(rect(top + 5, top + 6, 0, 15) & (dx <= w), pick(rng, BROWN[2:], n))  # patty
    c.paint(rect(top + 7, top + 8, 0, 15) & (dx <= w - 0.5), bun)  # bottom bun
    seeds = (Y == top + 1) & (np.mod(X + top, 3) == 0) & (dx <= w - 1)
    c.paint(seeds, np.array([1.0, 0.95, 0.8]), solid=False)
    return finish(c, rng, bun, 0.7)


def _draw_cake(rng: np.random.Generator, n: int) -> Canvas:
    c, cx = Canvas(background(rng, n)), _cx(rng, n)
    w, top = col(rng.uniform(4.0, 6.0, n)), col(rng.integers(4, 7, n))
    dx = np.abs(X - cx)
    sponge = pick(rng, np.array([[0.95, 0.8, 0.5], [0.45, 0.25, 0.15], [1.0, 0.7, 0.75]]), n)
    cream = pick(rng, np.array([[1.0, 1.0, 0.97], [1.0, 0.6, 0.75], [0.6, 0.35, 0.2]]), n)
    c.paint(rect(top, 13, 0, 15) & (dx <= w), sponge)
    c.paint(((Y == top) | (Y == top + 4)) & (dx <= w), cream)
    c.paint((Y == top + 1) & (dx <= w) & (np.mod(X, 2) == 0), cream)  # drips
    c.paint(ellipse(top - 1.5, cx, col(1.2), col(1.2)), np.array([0.85, 0.05, 0.15]))  # cherry
    return finish(c, rng, sponge, 0.7)


def _draw_drumstick(rng: np.random.Generator, n: int) -> Canvas:
    c = Canvas(background(rng, n))
    u = (X - 7.5) * col(rng.choice([-1.0, 1.0], n)) + 7.5  # X, mirrored left-right per sprite
    meat = pick(rng, np.array([[0.7, 0.38, 0.15], [0.6, 0.3, 0.1], [0.8, 0.5, 0.2]]), n)
    bone_color = np.array([0.97, 0.95, 0.88])
    cy, cu = col(rng.uniform(5.5, 7.0, n)), col(rng.uniform(5.5, 7.0, n))
    c.paint((np.abs((Y - cy) - (u - cu)) <= 0.6) & (u >= cu + 3) & (u <= cu + 6.5), bone_color)
    c.paint((u - cu - 7) ** 2 + (Y - cy - 7) ** 2 <= 1.0, bone_color)  # knob
    body = ((u - cu) / 4.2) ** 2 + ((Y - cy) / 4.2) ** 2 + 0.8 * (u - cu) * (Y - cy) / 17.6 <= 1.0
    c.paint(body, meat)
    c.paint(((u - cu + 1.5) / 1.2) ** 2 + ((Y - cy + 1.5) / 0.7) ** 2 <= 1.0, shade(meat, 1.8), solid=False)
    return finish(c, rng, meat, 0.75)


def draw_food_kinds(rng: np.random.Generator, n: int) -> Canvas:
    return mixture(rng, n, [_draw_fruit, _draw_fruit, _draw_burger, _draw_cake, _draw_drumstick])


# ------------------------------------------------------------------------ spells
def _radius(cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    return np.sqrt((Y - cy) ** 2 + (X - cx) ** 2)


def _sparkles(c: Canvas, rng: np.random.Generator, n: int, color: np.ndarray, away: np.ndarray) -> None:
    """A few plus-shaped sparkles outside the main shape."""
    for _ in range(2):
        sy, sx = col(rng.integers(1, SIZE - 1, n)), col(rng.integers(1, SIZE - 1, n))
        plus = (np.abs(Y - sy) + np.abs(X - sx) <= 1) & ~away & col(rng.random(n) < 0.7)
        c.paint(plus, color, solid=False)


def _draw_orb(rng: np.random.Generator, n: int) -> Canvas:
    c = Canvas(background(rng, n))
    hue = rng.random(n)
    cy, cx, r = col(rng.uniform(6.5, 8.5, n)), col(rng.uniform(6.5, 8.5, n)), col(rng.uniform(3.0, 4.8, n))
    d = _radius(cy, cx)
    c.paint(d <= r + 1.5, hsv(hue, np.full(n, 0.35), np.full(n, 1.0)), solid=False)  # halo
    c.paint(d <= r, hsv(hue, np.full(n, 0.9), rng.uniform(0.6, 0.9, n)))
    c.paint(d <= r * 0.65, hsv(hue, np.full(n, 0.6), np.full(n, 1.0)))
    c.paint(d <= r * 0.3, np.array([1.0, 1.0, 1.0]))
    _sparkles(c, rng, n, hsv(hue + 0.1, np.full(n, 0.4), np.full(n, 1.0)), d <= r + 2.5)
    return c


def _draw_burst(rng: np.random.Generator, n: int) -> Canvas:
    c = Canvas(background(rng, n))
    hue = rng.uniform(-0.05, 0.2, n) + (rng.random(n) < 0.4) * rng.random(n)  # fire, or any colour
    cy, cx = col(rng.uniform(6.5, 8.5, n)), col(rng.uniform(6.5, 8.5, n))
    theta = np.arctan2(Y - cy, X - cx)
    spikes, phase = col(rng.integers(4, 9, n)), col(rng.uniform(0, 2 * np.pi, n))
    edge = col(rng.uniform(5.0, 7.0, n)) * (0.6 + 0.4 * np.cos(spikes * theta + phase))
    d = _radius(cy, cx)
    c.paint(d <= edge, hsv(hue, np.full(n, 0.95), np.full(n, 0.9)))
    c.paint(d <= edge * 0.6, hsv(hue + 0.08, np.full(n, 0.8), np.full(n, 1.0)))
    c.paint(d <= edge * 0.3, np.array([1.0, 1.0, 0.85]))
    _sparkles(c, rng, n, hsv(hue + 0.12, np.full(n, 0.5), np.full(n, 1.0)), d <= edge + 1.5)
    return c


def _draw_scroll(rng: np.random.Generator, n: int) -> Canvas:
    c = Canvas(background(rng, n))
    paper = pick(rng, np.array([[0.95, 0.88, 0.68], [0.9, 0.8, 0.55], [0.98, 0.93, 0.8]]), n)
    y0, y1 = col(rng.integers(2, 5, n)), col(rng.integers(11, 14, n))
    x0 = col(rng.integers(2, 5, n))
    x1 = 15 - x0
    c.paint(rect(y0, y1, x0, x1), paper)
    rolls = rect(y0 - 1, y0, x0 - 1, x1 + 1) | rect(y1, y1 + 1, x0 - 1, x1 + 1)
    c.paint(rolls, shade(paper, 0.75))
    ink = hsv(rng.random(n), rng.uniform(0.0, 0.8, n), rng.uniform(0.1, 0.4, n))
    lines = (np.mod(Y - y0, 2) == 0) & (Y > y0 + 1) & (Y < y1 - 1) & (X > x0) & (X < x1) & \
        (rng.random((n, SIZE, SIZE)) < 0.75)
    c.paint(lines, ink, solid=False)
    seal = ellipse(y1 - 1.5, x1 - 1, col(1.1), col(1.1)) & col(rng.random(n) < 0.6)
    c.paint(seal, pick(rng, np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.8]]), n), solid=False)
    return finish(c, rng, paper, 0.8)


def draw_spell_kinds(rng: np.random.Generator, n: int) -> Canvas:
    return mixture(rng, n, [_draw_orb, _draw_burst, _draw_scroll])
