"""Pictures a person can look at: labelled sprite grids (PNG) and trajectories (GIF).

Sprites are 16x16, so every image is scaled up by an integer factor with
nearest-neighbour resampling: each model pixel stays a crisp square instead of a blur.
Files are written to a temporary name beside the target and renamed at the end, so
an interrupted or failed write never leaves a half-written picture behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
    canvas = Image.new("RGB", (sum(widths) + _PAD * (ncols + 1), top + sum(heights) + _PAD * (len(table) + 1)),
                       _BACKGROUND)
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


def save_png(image: Image.Image, path: str | Path) -> Path:
    return _atomic(Path(path), lambda tmp: image.save(tmp, format="PNG"))


def save_gif(frames: Sequence[Image.Image], path: str | Path, *, frame_ms: int = 120, hold_ms: int = 1500) -> Path:
    """An animated GIF that loops; the last frame (the final sprites) is held `hold_ms`."""
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    return _atomic(Path(path), lambda tmp: frames[0].save(
        tmp, format="GIF", save_all=True, append_images=list(frames[1:]), duration=durations, loop=0))


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return _atomic(Path(path), write)


def _atomic(path: Path, write) -> Path:
    """Write via a temporary file in the target's directory, then rename over `path`
    (with the permissions a plain open() would give: mkstemp's are owner-only)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: done once, at import, and restored
    os.umask(mask)
    return mask


_UMASK = _read_umask()


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
