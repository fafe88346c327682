"""A PNG of latency per backend, drawn with Pillow (no matplotlib needed).

One panel per figure: a horizontal bar per backend (median, with a tick at p90), the
median in ms and the speed-up over eager written beside it, and a dashed line at the roofline time, so
"how far from the hardware's limit" is visible at a glance.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

WIDTH, LABEL_W, ROW_H, PAD = 1100, 330, 22, 12
COLORS = {"eager": (204, 85, 68), "torchscript": (221, 153, 51), "ort": (68, 119, 170), "cpp": (102, 170, 85),
          "torch-cuda": (153, 102, 170)}


def _color(name: str) -> tuple[int, int, int]:
    name = {"cold-eager": "eager", "cold-runtime": "ort"}.get(name, name)
    for prefix, color in COLORS.items():
        if name.startswith(prefix):
            return color
    return (120, 120, 120)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _panels(record: dict) -> list[tuple[str, list[tuple[str, str, float, float, str]], float | None]]:
    """(title, [(backend, label, median, p90, note)], roofline) per figure, plus cold start."""
    panels = []
    for figure in record["plan"]["figures"]:
        bars, roof = [], None
        for name, row in record["backends"].items():
            t = row.get("figures", {}).get(figure["key"])
            if t:
                note = f"{_ms(t['median_ms'])}" + (f"  ({t['speedup']:.1f}x)" if "speedup" in t else "")
                bars.append((name, row["label"], t["median_ms"], t["p90_ms"], note))
                roof = t["roofline_ms"]
        if bars:
            panels.append((f"{figure['title']} (ms)", bars, roof))
    cold = record.get("coldstart") or {}
    bars = [(f"cold-{n}", n, c["median_s"] * 1e3, c["p90_s"] * 1e3, _ms(c["median_s"] * 1e3))
            for n, c in cold.items() if c.get("ok")]
    if bars:
        panels.append(("cold start to first PNG (ms)", bars, None))
    return panels


def render(record: dict) -> bytes:
    panels = _panels(record)
    height = PAD + 30 + sum(30 + ROW_H * len(bars) + PAD for _, bars, _ in panels) + PAD
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    title, small = _font(16), _font(12)
    m = record["machine"]
    draw.text((PAD, PAD), f"spritegen latency per backend: {m['cpu_model']} x{m['logical_cores']}"
              f"{', ' + m['gpu'] if m.get('gpu') else ''}; {record['plan']['mode']} run, {record['started'][:16]}",
              fill="black", font=title)
    y = PAD + 30
    plot_w = WIDTH - LABEL_W - 170
    for heading, bars, roof in panels:
        draw.text((PAD, y), heading + ("   dashed: roofline" if roof else ""), fill="black", font=title)
        y += 26
        top = max(max(bar[3] for bar in bars), roof or 0)
        scale = plot_w / top if top > 0 else 1.0
        for name, label, median, p90, note in bars:
            draw.text((PAD, y + 4), label[:48], fill="black", font=small)
            x0 = LABEL_W
            draw.rectangle([x0, y + 3, x0 + max(1, median * scale), y + ROW_H - 3], fill=_color(name))
            px = x0 + p90 * scale
            draw.line([px, y + 5, px, y + ROW_H - 5], fill="black", width=1)
            draw.text((x0 + max(median, p90) * scale + 6, y + 4), note, fill="black", font=small)
            y += ROW_H
        if roof:
            rx = LABEL_W + roof * scale
            for dash in range(y - ROW_H * len(bars), y, 6):
                draw.line([rx, dash, rx, dash + 3], fill=(0, 0, 0), width=1)
        y += PAD
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
