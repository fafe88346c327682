"""Turn one run's raw measurements into the record: derived figures, targets, JSON, Markdown.

Everything relative is computed here from numbers of the same run: speed-up against the
reference row of the same device (eager PyTorch), achieved GFLOP/s, the roofline time
(FLOPs / measured peak) and each median as a multiple of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.backends import REFERENCE
from benchmarks.roofline import roofline_ms

# Issue 7's targets: (what, figure key, backend, kind, bound); kinds "speedup" (>= bound
# times faster than the reference row) and "roofline" (median <= bound x roofline time).
TARGETS: tuple[tuple[str, str, str, str, float], ...] = (
    ("one call, batch 1: ORT >= 4x eager", "net_b1", "ort-unet", "speedup", 4.0),
    ("one call, batch 1: ORT within 1.5x roofline", "net_b1", "ort-unet", "roofline", 1.5),
    ("one call, batch 30: ORT within 1.25x roofline", "net_b30", "ort-unet", "roofline", 1.25),
    ("DDIM-25, batch 1: ORT (step graph) >= 4x eager", "ddim25_b1", "ort-step", "speedup", 4.0),
    ("DDIM-25, batch 1: ORT (loop graph) >= 4x eager", "ddim25_b1", "ort-loop", "speedup", 4.0),
)
GPU_TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("DDIM-25, batch 1 < 5 ms", "ddim25_b1", "ms", 5.0),
    ("DDPM-500, batch 30 < 150 ms", "ddpm500_b30", "ms", 150.0),
)


def derive(record: dict) -> None:
    """Add flops, gflops, roofline_ms, x_roofline and speedup to every timed figure, in place."""
    peak = record["peak"]["gflops"]
    per_image = record["flops_per_image"]
    figures = {f["key"]: f for f in record["plan"]["figures"]}
    ref = record["backends"].get(REFERENCE[record["device"]], {}).get("figures", {})
    for backend in record["backends"].values():
        for key, timing in backend.get("figures", {}).items():
            figure = figures[key]
            flops = per_image * figure["batch"] * figure["steps"]
            timing["flops"] = flops
            timing["gflops"] = flops / (timing["median_ms"] * 1e6)
            timing["roofline_ms"] = roofline_ms(flops, peak)
            timing["x_roofline"] = timing["median_ms"] / timing["roofline_ms"]
            if key in ref:
                timing["speedup"] = ref[key]["median_ms"] / timing["median_ms"]


def check_targets(record: dict) -> list[dict]:
    """Each target with its measured value and pass/fail (None when not measured)."""
    results = []
    rows = record["backends"]
    if record["device"] == "cpu":
        for what, key, backend, kind, bound in TARGETS:
            timing = rows.get(backend, {}).get("figures", {}).get(key)
            value = None if timing is None else timing.get("speedup" if kind == "speedup" else "x_roofline")
            ok = None if value is None else (value >= bound if kind == "speedup" else value <= bound)
            results.append({"target": what, "figure": key, "backend": backend, "value": value, "bound": bound,
                            "kind": kind, "met": ok})
        cold = record.get("coldstart", {})
        if cold.get("runtime", {}).get("ok") and cold.get("eager", {}).get("ok"):
            value = cold["eager"]["median_s"] / cold["runtime"]["median_s"]
        else:
            value = None
        results.append({"target": "cold start: runtime >= 3x faster than eager", "figure": "coldstart",
                        "backend": "runtime", "value": value, "bound": 3.0, "kind": "speedup",
                        "met": None if value is None else value >= 3.0})
        return results
    ref = rows.get(REFERENCE["cuda"], {}).get("figures", {})
    for name, row in rows.items():
        if not name.startswith(("ort-cuda", "torch-cuda-graph")):
            continue
        for what, key, _, bound in GPU_TARGETS:
            timing = row.get("figures", {}).get(key)
            value = None if timing is None else timing["median_ms"]
            results.append({"target": f"{name}: {what}", "figure": key, "backend": name, "value": value,
                            "bound": bound, "kind": "ms", "met": None if value is None else value < bound})
        timing = row.get("figures", {}).get("ddim25_b1")
        value = timing.get("speedup") if timing and "ddim25_b1" in ref else None
        results.append({"target": f"{name}: DDIM-25 batch 1 >= 5x eager CUDA", "figure": "ddim25_b1",
                        "backend": name, "value": value, "bound": 5.0, "kind": "speedup",
                        "met": None if value is None else value >= 5.0})
    return results


def _cell(timing: dict | None) -> str:
    if timing is None:
        return "-"
    text = f"{timing['median_ms']:.3g}"
    if "speedup" in timing:
        text += f" ({timing['speedup']:.2g}x)"
    return text


def markdown(record: dict) -> str:
    """The human summary: the machine, the latency table, roofline, cold start, targets, sweep."""
    figures = record["plan"]["figures"]
    m = record["machine"]
    lines = [
        f"# spritegen benchmark ({record['plan']['mode']} run, {record['device']})",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores; {m.get('gpu') or 'no GPU'}. "
        f"{record['started']}. torch {record['versions'].get('torch', '-')}, "
        f"onnxruntime {record['versions'].get('onnxruntime', '-')}. Threads: {record['threads'] or 'library default'}, "
        f"ORT spin-waiting {'on' if record.get('ort_spin', True) else 'off'}.",
        f"fp32 matmul peak measured in this run: {record['peak']['gflops']:.0f} GFLOP/s "
        f"({record['peak']['source']}; " + ", ".join(f"{k} {v:.0f}" for k, v in record['peak']['all'].items())
        + f"). Network: {record['flops_per_image'] / 1e9:.3f} GFLOP per image per call.",
        "",
        f"Median milliseconds (speed-up over eager PyTorch in the same run); every backend measured in "
        f"{record['plan'].get('rounds', 1)} interleaved round(s), each figure the median of the round medians; "
        "p90, per-round medians and more in the JSON.",
        "",
        "| backend | " + " | ".join(f["title"] for f in figures) + " | peak RSS MB |",
        "|---" * (len(figures) + 2) + "|",
    ]
    for name, row in record["backends"].items():
        if not row.get("figures"):  # unavailable, failed, or stopped before its first figure
            continue
        cells = [_cell(row["figures"].get(f["key"])) for f in figures]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {row.get('peak_rss_mb', 0):.0f} |")
    roof = [f"{record['flops_per_image'] * f['batch'] * f['steps'] / (record['peak']['gflops'] * 1e6):.3g}"
            for f in figures]
    lines.append("| *roofline (FLOPs / peak)* | " + " | ".join(roof) + " | |")
    skipped = [f"{r['label']}: {r.get('reason', r.get('status'))}" for r in record["backends"].values()
               if r.get("status") != "ok"]
    skipped += [f"{r['label']}, {key}: {error[:200]}" for r in record["backends"].values()
                for key, error in r.get("errors", {}).items()]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped) + "."]
    lines += _roofline_table(record) + _coldstart_table(record) + _targets_table(record) + _sweep_table(record)
    lines += _profile_lines(record)
    return "\n".join(lines) + "\n"


def _roofline_table(record: dict) -> list[str]:
    lines = ["", "## Against the hardware limit", "", "| backend | figure | GFLOP/s | % of peak | x roofline |",
             "|---|---|---|---|---|"]
    for row in record["backends"].values():
        for key, t in row.get("figures", {}).items():
            if key.startswith("net") or key.startswith("ddim25_b1"):
                lines.append(f"| {row['label']} | {key} | {t['gflops']:.0f} | "
                             f"{100 * t['gflops'] / record['peak']['gflops']:.0f}% | {t['x_roofline']:.2f} |")
    lines += ["", "Every row against the fp32 peak and roofline, int8 rows too: int8 kernels have a higher "
              "peak of their own, so those rows can pass 100 %."]
    return lines


def _coldstart_table(record: dict) -> list[str]:
    cold = record.get("coldstart")
    if not cold:
        return []
    lines = ["", "## Cold start: fresh process to the first PNG (one sprite, DDIM-25)", "",
             "| path | median s | p90 s | peak RSS MB |", "|---|---|---|---|"]
    for name, c in cold.items():
        if c.get("ok"):
            lines.append(f"| {name} | {c['median_s']:.2f} | {c['p90_s']:.2f} | {c['peak_rss_mb']:.0f} |")
        else:
            lines.append(f"| {name} | failed: {c.get('error', '')[:120]} | | |")
    return lines


def _targets_table(record: dict) -> list[str]:
    lines = ["", "## Targets (issue 7)", "", "| target | measured | met |", "|---|---|---|"]
    for t in record["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.2f}" + ("x" if t["kind"] != "ms" else " ms")
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {met} |")
    return lines


def _sweep_table(record: dict) -> list[str]:
    sweep = record.get("sweep")
    if not sweep:
        return []
    keys = sorted({k for s in sweep.values() for k in s.get("figures", {})}, key=lambda k: int(k.split("_b")[1]))
    lines = ["", "## ONNX Runtime session options (one unet.onnx call, median / p90 ms)", "",
             "| configuration | " + " | ".join(keys) + " | what |", "|---" * (len(keys) + 2) + "|"]
    for name, s in sweep.items():
        if s.get("status") != "ok":
            lines.append(f"| {name} | " + " | ".join("-" for _ in keys) + f" | {s.get('reason', s.get('status'))} |")
            continue
        cells = [f"{s['figures'][k]['median_ms']:.3g} / {s['figures'][k]['p90_ms']:.3g}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['doc']} |")
    return lines


def _profile_lines(record: dict) -> list[str]:
    prof = record.get("profile")
    if not prof or prof.get("status") != "ok":
        return []
    lines = ["", "## Where ONNX Runtime spends one unet.onnx call (ORT profiler, share of kernel time)", "",
             "Optimised graph: " + ", ".join(f"{op} {n}" for op, n in prof["optimized_ops"].items()) + ".", ""]
    for key, shares in prof["kernel_share"].items():
        lines.append(f"- {key}: " + ", ".join(f"{op} {100 * v:.1f}%" for op, v in shares.items() if v >= 0.005))
    return lines


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside `path` and rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write(record: dict, out: Path, png: bytes) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{record['device']}" + ("-quick" if record["plan"]["mode"] == "quick" else "")
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md", "png": out / f"{stem}.png"}
    write_atomic(paths["json"], json.dumps(record, indent=2, sort_keys=False).encode())
    write_atomic(paths["markdown"], markdown(record).encode())
    write_atomic(paths["png"], png)
    return paths
