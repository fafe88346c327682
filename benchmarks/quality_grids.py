"""PNG grids of sprites, scaled up with nearest-neighbour so every pixel stays visible.

One row per label (class name or blend), sprites side by side, a text column on the
left. Written to a temporary file and renamed, like every other output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SCALE = 4  # 16 px -> 64 px
GAP = 2  # pixels between sprites, after scaling
LABEL_WIDTH = 110


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, 3, 16, 16) in [-1, 1] -> (N, 16, 16, 3) uint8."""
    return ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)


def save_grid(rows: Sequence[tuple[str, np.ndarray]], path: Path, scale: int = SCALE) -> Path:
    """rows: (label, images (N, 3, H, W) in [-1, 1]); all rows are drawn left-aligned."""
    height = rows[0][1].shape[-1] * scale
    columns = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (LABEL_WIDTH + columns * (height + GAP), len(rows) * (height + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        top = r * (height + GAP)
        draw.text((4, top + height // 2 - 6), label, fill=(0, 0, 0))
        for i, sprite in enumerate(to_uint8(images)):
            tile = Image.fromarray(sprite).resize((height, height), Image.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + i * (height + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    canvas.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return path
