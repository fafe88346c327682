"""Vectorised pixel-art primitives: a batch of 16x16 canvases painted with boolean masks.

Every shape is computed for a whole batch at once from per-sprite parameters shaped
(n, 1, 1), so drawing 20k sprites costs a few dozen numpy operations per shape rather
than a Python loop per sprite. Colours are RGB in [0, 1]; `Canvas.paint` overwrites the
pixels of a mask (pixel art has no blending).
"""

from __future__ import annotations

import numpy as np

SIZE = 16
# Pixel-centre coordinates, broadcast against per-sprite parameters shaped (n, 1, 1).
Y, X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


class Canvas:
    """n RGB canvases (n, 16, 16, 3) with a per-sprite background colour."""

    def __init__(self, background: np.ndarray) -> None:
        self.rgb = np.broadcast_to(background[:, None, None, :], (len(background), SIZE, SIZE, 3)).copy()
        self.drawn = np.zeros((len(background), SIZE, SIZE), dtype=bool)  # union of painted shapes

    def paint(self, mask: np.ndarray, color: np.ndarray, *, solid: bool = True) -> None:
        """Overwrite the pixels of `mask` (n, 16, 16) with `color` ((n, 3) or (3,)).

        `solid` shapes count for the outline; glows and sparkles do not.
        """
        mask = np.broadcast_to(mask, self.drawn.shape)
        color = np.broadcast_to(np.asarray(color, dtype=np.float32), (len(self.rgb), 3))
        self.rgb = np.where(mask[..., None], color[:, None, None, :], self.rgb)
        if solid:
            self.drawn |= mask

    def outline(self, color: np.ndarray, enabled: np.ndarray) -> None:
        """A 1-pixel outline (4-neighbourhood) around everything solid, where `enabled` (n,)."""
        ring = dilate(self.drawn) & ~self.drawn
        self.paint(ring & enabled[:, None, None], color, solid=False)

    def to_model_range(self) -> np.ndarray:
        """float32 (n, 3, 16, 16) in [-1, 1], the course's normalisation."""
        return (np.clip(self.rgb, 0, 1).transpose(0, 3, 1, 2) * 2 - 1).astype(np.float32)


def dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbourhood dilation of (n, 16, 16) boolean masks, no wrap-around."""
    out = mask.copy()
    out[:, 1:, :] |= mask[:, :-1, :]
    out[:, :-1, :] |= mask[:, 1:, :]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def col(values: np.ndarray) -> np.ndarray:
    """Per-sprite values (n,) -> (n, 1, 1) to broadcast against Y and X (bools stay bools)."""
    values = np.asarray(values)
    if values.ndim == 0:  # one value for every sprite
        return values.astype(np.float32)
    return (values if values.dtype == bool else values.astype(np.float32))[:, None, None]


def ellipse(cy: np.ndarray, cx: np.ndarray, ry: np.ndarray, rx: np.ndarray) -> np.ndarray:
    return ((Y - cy) / ry) ** 2 + ((X - cx) / rx) ** 2 <= 1.0


def rect(y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Pixels with y0 <= Y <= y1 and x0 <= X <= x1 (inclusive, any broadcastable bounds)."""
    return (Y >= y0) & (Y <= y1) & (X >= x0) & (X <= x1)


def hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB: arrays (n,) in [0, 1] -> (n, 3)."""
    h = np.mod(h, 1.0) * 6.0
    k = np.mod(np.array([5.0, 3.0, 1.0])[None, :] + h[:, None], 6.0)
    rgb = v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.astype(np.float32)


def shade(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Darken (< 1) or lighten (> 1, towards white) colours (n, 3)."""
    if factor <= 1:
        return (rgb * factor).astype(np.float32)
    return (1 - (1 - rgb) / factor).astype(np.float32)


def pick(rng: np.random.Generator, palette: np.ndarray, n: int, jitter: float = 0.06) -> np.ndarray:
    """n colours drawn from a fixed palette (k, 3), each jittered a little."""
    chosen = palette[rng.integers(0, len(palette), n)]
    return np.clip(chosen + rng.uniform(-jitter, jitter, (n, 3)), 0, 1).astype(np.float32)


# ------------------------------------------------------------ palettes shared by all kinds
SKIN = np.array([[1.0, 0.85, 0.7], [0.95, 0.75, 0.55], [0.8, 0.58, 0.4], [0.55, 0.38, 0.25],
                 [0.98, 0.9, 0.8]], dtype=np.float32)
HAIR = np.array([[0.15, 0.1, 0.05], [0.45, 0.25, 0.1], [0.9, 0.75, 0.3], [0.7, 0.2, 0.1],
                 [0.9, 0.9, 0.9], [0.2, 0.2, 0.6]], dtype=np.float32)
METAL = np.array([[0.75, 0.78, 0.82], [0.55, 0.58, 0.62], [0.9, 0.75, 0.2]], dtype=np.float32)
DARK = np.array([0.08, 0.07, 0.1], dtype=np.float32)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly near-white, sometimes a light pastel tint (the same for every class)."""
    white = rng.random(n) < 0.6
    tint = hsv(rng.random(n), rng.uniform(0.08, 0.3, n), rng.uniform(0.88, 1.0, n))
    return np.where(white[:, None], rng.uniform(0.93, 1.0, (n, 1)), tint).astype(np.float32)


def vivid(rng: np.random.Generator, n: int, v: tuple[float, float] = (0.45, 0.9)) -> np.ndarray:
    return hsv(rng.random(n), rng.uniform(0.45, 0.95, n), rng.uniform(*v, n))


def finish(canvas: Canvas, rng: np.random.Generator, main: np.ndarray, p_outline: float) -> Canvas:
    """Outline everything solid in black or a dark shade of the main colour."""
    n = len(main)
    color = np.where((rng.random(n) < 0.5)[:, None], DARK[None, :], shade(main, 0.35))
    canvas.outline(color, rng.random(n) < p_outline)
    return canvas
