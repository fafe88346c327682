"""The serving benchmark's picture: throughput and latency per case, as a PNG (Pillow only)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

_W, _ROW, _LEFT, _PAD = 900, 34, 190, 16


def render(record: dict) -> bytes:
    figures = record["figures"]
    panels = [("throughput (sprites/s, higher is better)", {k: f["throughput_sprites_per_s"] for k, f in figures.items()}),
              ("latency p50 / p99 (ms per request or call)", {k: (f["p50_ms"], f["p99_ms"]) for k, f in figures.items()})]
    height = _PAD + sum(30 + _ROW * len(values) + _PAD for _, values in panels) + 24
    image = Image.new("RGB", (_W, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    y = _PAD
    for title, values in panels:
        draw.text((_PAD, y), title, fill=(20, 20, 20), font=font)
        y += 30
        top = max(max(v) if isinstance(v, tuple) else v for v in values.values()) or 1.0
        for case, value in values.items():
            draw.text((_PAD, y + 8), case, fill=(20, 20, 20), font=font)
            bars = value if isinstance(value, tuple) else (value,)
            for k, bar in enumerate(sorted(bars, reverse=True)):  # p99 behind, p50 in front
                width = int((_W - _LEFT - 120) * bar / top)
                color = (70, 110, 190) if case.startswith("served") else (120, 120, 120)
                shade = color if k == len(bars) - 1 else tuple(min(255, c + 90) for c in color)
                draw.rectangle((_LEFT, y + 4, _LEFT + max(width, 1), y + _ROW - 6), fill=shade)
            label = " / ".join(f"{b:.1f}" for b in bars)
            draw.text((_LEFT + int((_W - _LEFT - 120) * max(bars) / top) + 6, y + 8), label, fill=(20, 20, 20), font=font)
            y += _ROW
        y += _PAD
    latency, throughput = record["ratios"].values()
    draw.text((_PAD, y), f"served 1 client / in-process batch 1 latency: {_span(latency)} (target <= 1.25);  "
              f"served 32 clients / in-process batch 32 throughput: {_span(throughput)} (target >= 0.85);  "
              f"failures {record['failures']}", fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _span(ratio: dict) -> str:
    """A ratio over interleaved pairs: median (min-max)."""
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"
