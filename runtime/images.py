"""Pictures a person can look at: labelled sprite grids (PNG) and trajectories (GIF).

Sprites are 16x16, so every image is scaled up by an integer factor with
nearest-neighbour resampling: each model pixel stays a crisp square instead of a blur.
Files are written through spritegen.files.atomic_write (a temporary name beside the
target, renamed at the end; regular files only), so an interrupted or failed write never
leaves a half-written picture behind and never writes through a symlink or a device.
Sizes are bounded (runtime.limits.MAX_PICTURE_PIXELS, MAX_ANIMATION_PIXELS) and checked
before a canvas is allocated; `check_grid` lets a caller check before sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spritegen.errors import InputError, shown
from spritegen.files import atomic_write
from spritegen.runtime import limits

Cell = Union[np.ndarray, str, None]  # an image (C, H, W), a text label, or empty
_PAD = 4  # pixels between cells
_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)


def to_pixels(image: np.ndarray, *, normalise: bool = False) -> np.ndarray:
    """(C, H, W) float -> (H, W, 3) uint8. Sprites map [-1, 1] linearly to 0..255;
    `normalise` stretches min..max instead (for noise, which has no fixed range)."""
    x = np.asarray(image, np.float32)
    if normalise:
        low, high = float(x.min()), float(x.max())
        x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    else:
        x = (np.clip(x, -1, 1) + 1) / 2
    pixels = np.round(x * 255).astype(np.uint8).transpose(1, 2, 0)  # (H, W, C)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]


def grid(rows: Sequence[Sequence[Cell]], *, header: Sequence[str] | None = None, scale: int = 4,
         normalise_columns: Sequence[int] = ()) -> Image.Image:
    """A table of cells: images scaled `scale`x (nearest), text labels, an optional header row.

    Every column is as wide as its widest cell; images in `normalise_columns` are
    min-max stretched (see `to_pixels`).
    """
    _check_scale(scale)
    font = _font()
    ncols = max(len(r) for r in rows)
    table = [list(r) + [None] * (ncols - len(r)) for r in rows]
    sizes = [[_cell_size(cell, scale, font) for cell in row] for row in table]
    head = list(header or [])
    widths = [max([s[k][0] for s in sizes] + [_text_size(head[k], font)[0] if k < len(head) else 0])
              for k in range(ncols)]
    head_height = max((_text_size(h, font)[1] for h in head), default=0)
    heights = [max(s[1] for s in row) for row in sizes]
    top = head_height + _PAD if head else 0
    size = (sum(widths) + _PAD * (ncols + 1), top + sum(heights) + _PAD * (len(table) + 1))
    _check_pixels(size[0] * size[1], limits.MAX_PICTURE_PIXELS, "picture")
    canvas = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    xs = np.cumsum([_PAD] + [w + _PAD for w in widths[:-1]]).tolist()
    for k, text in enumerate(head):
        draw.text((xs[k], _PAD), text, fill=_INK, font=font)
    y = top + _PAD
    for row, height in zip(table, heights):
        for k, cell in enumerate(row):
            if isinstance(cell, np.ndarray):
                canvas.paste(_scaled(cell, scale, k in normalise_columns), (xs[k], y))
            elif isinstance(cell, str):
                text_height = _text_size(cell, font)[1]
                draw.text((xs[k], y + (height - text_height) // 2), cell, fill=_INK, font=font)
        y += height + _PAD
    return canvas


def sprite_rows(sprites: np.ndarray, labels: Sequence[str], per_row: int) -> list[list[Cell]]:
    """Rows of `per_row` sprites (B, C, H, W), each row led by its label."""
    return [[labels[r]] + list(sprites[r * per_row:(r + 1) * per_row]) for r in range(len(labels))]


def check_grid(rows: int, per_row: int, scale: int, sprite: tuple[int, int], frames: int = 1) -> None:
    """InputError when a grid of `rows` x `per_row` sprites of `sprite` (H, W) pixels at `scale`
    (and an animation of `frames` such grids) would exceed the picture bounds. A lower bound
    (labels excluded), so a caller can refuse before sampling; `grid` checks the exact size."""
    _check_scale(scale)
    width = per_row * (sprite[1] * scale + _PAD) + _PAD
    height = rows * (sprite[0] * scale + _PAD) + _PAD
    _check_pixels(width * height, limits.MAX_PICTURE_PIXELS, "picture")
    _check_pixels(width * height * frames, limits.MAX_ANIMATION_PIXELS, f"animation of {frames} frames")


def save_png(image: Image.Image, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_gif(frames: Sequence[Image.Image], path: str | Path, *, frame_ms: int = 120, hold_ms: int = 1500) -> Path:
    """An animated GIF that loops; the last frame (the final sprites) is held `hold_ms`."""
    for name, value in (("frame_ms", frame_ms), ("hold_ms", hold_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= limits.MAX_FRAME_MS:
            raise InputError(f"{name} must be an integer in 10..{limits.MAX_FRAME_MS} (GIF delays are hundredths "
                             f"of a second), got {shown(value)}")
    if not frames:
        raise InputError("an animation needs at least one frame")
    _check_pixels(sum(f.width * f.height for f in frames), limits.MAX_ANIMATION_PIXELS, "animation")
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    return atomic_write(path, lambda tmp: frames[0].save(
        tmp, format="GIF", save_all=True, append_images=list(frames[1:]), duration=durations, loop=0))


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return atomic_write(path, write)


def _check_scale(scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= limits.MAX_SCALE:
        raise InputError(f"scale must be an integer in 1..{limits.MAX_SCALE}, got {shown(scale)}")


def _check_pixels(pixels: int, most: int, what: str) -> None:
    if pixels > most:
        raise InputError(f"the {what} would have {pixels:,} pixels, more than the {most:,} allowed "
                         f"(~{math.ceil(most * 3 / 2**20)} MiB as RGB); use a smaller --scale or fewer sprites")


def _font(size: int = 13):
    """Pillow's bundled scalable font when FreeType is there, else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _scaled(image: np.ndarray, scale: int, normalise: bool) -> Image.Image:
    pixels = Image.fromarray(to_pixels(image, normalise=normalise), "RGB")
    return pixels.resize((pixels.width * scale, pixels.height * scale), Image.Resampling.NEAREST)


def _cell_size(cell: Cell, scale: int, font) -> tuple[int, int]:
    if isinstance(cell, np.ndarray):
        return cell.shape[-1] * scale, cell.shape[-2] * scale
    return _text_size(cell, font) if isinstance(cell, str) else (0, 0)


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left + 2, bottom + 2
