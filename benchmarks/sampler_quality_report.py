"""benchmarks.sampler_quality's Markdown table and PNG plot, rendered from its JSON alone.

The plot (Pillow, as benchmarks.plot: no matplotlib needed): sprite-FID (y, linear)
against network calls per sprite (x, log scale), one marker per point coloured by
sampler, the Pareto front as a line, the real-vs-real floor dashed, and the course's
two samplers (sampler_points.LABELLED) and the front's points named.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

from benchmarks.plot import _font
from benchmarks.sampler_points import LABELLED

W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 560, 70, 170, 50, 60
COLORS = {"ddpm": (204, 85, 68), "ddim": (68, 119, 170), "dpmpp": (102, 170, 85), "fast": (153, 102, 170)}


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items()) or "-"


def _latency(row: dict) -> str:
    t = row.get("latency_ms")
    return f"{t['median_ms']:.1f} ({t['p90_ms']:.1f})" if t else "-"


def _run_line(run: dict) -> str:
    c = run.get("conditions") or {}
    load = "/".join(f"{c[k][0]:.1f}" for k in ("load_average_before", "load_average_before_latency",
                                               "load_average_after") if k in c)
    return f"{run['started'][:16]} measured {', '.join(run['labels'])} (load average {load})"


def _judge_warning(record: dict) -> str:
    target = record.get("judge_target", 0.0)
    return f" (**below the {target:g} a judge needs: the figures below are not to be trusted**)" \
        if record["judge"]["held_out_accuracy"] < target else ""


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.1f}" if floor > 0 else "-"


def markdown(record: dict) -> str:
    s, c, floor = record["settings"], record["conditions"], record["real_vs_real"]
    m, j = c["machine"], record["judge"]
    front = set(record.get("pareto_front", []))
    load = ", ".join(f"{k.removeprefix('load_average_').replace('_', ' ')} {v[0]:.2f}" for k, v in c.items()
                     if k.startswith("load_average"))
    lines = [
        f"Sprite quality against network calls ({record['mode']} run, {record['started'][:16]}): {s['n_sprites']} "
        f"sprites per point (balanced over the classes, sprite i from seed {s['seed']} + i at every point), "
        f"guidance {s['guidance']:g}, drawn at batch {s['batch']}. Judge: held-out accuracy "
        f"{j['held_out_accuracy']:.4f}{_judge_warning(record)}; real vs real sprite-FID (the floor) **{floor['fid']:.1f}**, the judge's "
        f"accuracy on real sprites {floor['judge_accuracy']:.3f}; \"x floor\": sprite-FID / the floor, a figure "
        f"less tied to one judge's feature scale. Latency: one sprite at batch 1, median (p90) "
        f"over {s['rounds']} interleaved rounds x {s['reps']}, ONNX Runtime {c['onnxruntime']} "
        f"({c['provider']}, impl {c['impl']}, {c['ort_threads'] or m.get('usable_cores')} intra-op threads, spin "
        f"{'on' if c['spin'] else 'off'}), {m['cpu_model']}, "
        f"{m.get('usable_cores', m['logical_cores'])} usable cores; load average (1 min) {load}.",
        "",
        "| point | sampler | arguments | network calls | class accuracy | sprite-FID | x floor "
        "| batch-1 ms, median (p90) | Pareto |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = record.get("runs", [])
    if len(runs) > 1:  # rows merged from --only runs: each run's own conditions
        lines[1:1] = ["", f"Rows from {len(runs)} runs (`--only`; the paragraph above is the latest's; latency "
                      "interleaved within a run only): " + "; ".join(_run_line(run) for run in runs) + "."]
    skipped = []
    for row in record["points"]:
        if row["status"] != "ok":
            skipped.append(f"- `{row['label']}`: {row['reason']}")
            continue
        lines.append(f"| `{row['label']}` | {row['method']} | {_kwargs(row['kwargs'])} | {row['calls'] or '?'} | "
                     f"{row['accuracy']:.3f} | {row['fid']:.1f} | {_ratio(row['fid'], floor['fid'])} | {_latency(row)} | "
                     f"{'yes' if row['label'] in front else ''} |")
    if skipped:
        lines += ["", "Not measured:", *skipped]
    return "\n".join(lines) + "\n"


class _Axes:
    """Data -> pixel coordinates: x log10(calls), y linear FID from 0."""

    def __init__(self, calls: list[float], fids: list[float]) -> None:
        self.x0, self.x1 = math.floor(math.log10(min(calls))), math.ceil(math.log10(max(calls)) + 1e-9)
        self.x1 = max(self.x1, self.x0 + 1)
        self.y1 = max(fids) * 1.1 or 1.0

    def __call__(self, calls: float, fid: float) -> tuple[float, float]:
        fx = (math.log10(calls) - self.x0) / (self.x1 - self.x0)
        return LEFT + fx * (W - LEFT - RIGHT), H - BOTTOM - fid / self.y1 * (H - TOP - BOTTOM)


def _frame(draw: ImageDraw.ImageDraw, axes: _Axes, floor: float, font) -> None:
    draw.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline="black")
    for decade in range(axes.x0, axes.x1 + 1):
        for mult in (1, 2, 5):
            value = mult * 10 ** decade
            if decade == axes.x1 and mult > 1:
                break
            x, _ = axes(value, 0)
            draw.line([x, H - BOTTOM, x, H - BOTTOM + 5], fill="black")
            draw.text((x - 8, H - BOTTOM + 8), f"{value:g}", fill="black", font=font)
    step = 10 ** math.floor(math.log10(axes.y1 / 4))
    step *= 5 if axes.y1 / step > 20 else 2 if axes.y1 / step > 8 else 1
    for k in range(0, int(axes.y1 / step) + 1):
        _, y = axes(10 ** axes.x0, k * step)
        draw.line([LEFT - 5, y, LEFT, y], fill="black")
        draw.text((LEFT - 40, y - 7), f"{k * step:g}", fill="black", font=font)
    _, fy = axes(10 ** axes.x0, floor)
    for x in range(LEFT, W - RIGHT, 10):
        draw.line([x, fy, x + 5, fy], fill=(120, 120, 120))
    draw.text((W - RIGHT + 6, fy - 7), f"real vs real {floor:.1f}", fill=(90, 90, 90), font=font)
    draw.text((LEFT + (W - LEFT - RIGHT) // 2 - 120, H - BOTTOM + 28), "network calls per sprite (log scale)",
              fill="black", font=font)
    draw.text((8, TOP - 22), "sprite-FID (lower is better)", fill="black", font=font)


def render(record: dict) -> bytes:
    """The PNG (module doc)."""
    rows = [r for r in record["points"] if r["status"] == "ok" and r["calls"]]
    image = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(image)
    title, small = _font(15), _font(12)
    s = record["settings"]
    draw.text((LEFT, 12), f"spritegen: sprite-FID against network calls, {s['n_sprites']} sprites per point "
              f"({record['mode']} run, {record['started'][:10]})", fill="black", font=title)
    floor = record["real_vs_real"]["fid"]
    if not rows:
        draw.text((LEFT, TOP + 20), "no point measured", fill="black", font=title)
        return _png(image)
    axes = _Axes([r["calls"] for r in rows], [r["fid"] for r in rows] + [floor])
    _frame(draw, axes, floor, small)
    by_label = {r["label"]: r for r in rows}
    front = [axes(by_label[label]["calls"], by_label[label]["fid"]) for label in record.get("pareto_front", [])
             if label in by_label]
    if len(front) > 1:
        draw.line(front, fill=(0, 0, 0), width=2)
    for r in rows:
        x, y = axes(r["calls"], r["fid"])
        color = COLORS.get(r["method"], (120, 120, 120))
        if r["kwargs"].get("eta"):
            draw.rectangle([x - 4, y - 4, x + 4, y + 4], fill=color)  # stochastic: squares
        else:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        if r["label"] in LABELLED or r["label"] in record.get("pareto_front", []):
            draw.text((x + 7, y - 14), r["label"], fill="black", font=small)
    _legend(draw, {r["method"] for r in rows}, small)
    return _png(image)


def _legend(draw: ImageDraw.ImageDraw, methods: set[str], font) -> None:
    y = TOP + 10
    for method, color in COLORS.items():
        if method in methods:
            draw.ellipse([W - RIGHT + 10, y, W - RIGHT + 18, y + 8], fill=color)
            draw.text((W - RIGHT + 24, y - 3), method, fill="black", font=font)
            y += 18
    draw.rectangle([W - RIGHT + 10, y, W - RIGHT + 18, y + 8], fill=(120, 120, 120))
    draw.text((W - RIGHT + 24, y - 3), "square: eta > 0", fill="black", font=font)
    draw.line([W - RIGHT + 8, y + 22, W - RIGHT + 20, y + 22], fill="black", width=2)
    draw.text((W - RIGHT + 24, y + 15), "Pareto front", fill="black", font=font)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
