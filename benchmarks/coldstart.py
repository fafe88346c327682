"""Cold start: a fresh process until the first PNG exists, and that process's peak memory.

Paths, run alternately so a burst of load on a shared machine hits both alike:
- runtime: `spritegen sample` (one sprite, DDIM-25) on the export directory;
- eager: benchmarks.eager_sample (torch, the checkpoint, the reference sampler);
- python: an empty interpreter, the floor under both.
The console script is run as `python -c "from spritegen.cli import app; app()"`, which is
what the installed `spritegen` entry point executes, so no PATH lookup is involved.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import procs
from benchmarks.timing import percentile
from spritegen.contract import DDIM_DEFAULT_STEPS

_CLI = "import sys; from spritegen.cli import app; sys.argv[0] = 'spritegen'; app()"


def commands(export_dir: str, checkpoint: str | None, png: Path, n: int) -> dict[str, list[str]]:
    eager = [sys.executable, "-m", "benchmarks.eager_sample", str(png), "--n", str(n)]
    if checkpoint:
        eager += ["--checkpoint", checkpoint]
    return {
        "runtime": [sys.executable, "-c", _CLI, "sample", "--export-dir", export_dir, "--sampler", "ddim",
                    "--n", str(n), "--classes", "hero", "--num", "1", "--seed", "0", "--out", str(png)],
        "eager": eager,
        "python": [sys.executable, "-c", "pass"],
    }


def measure(export_dir: str, checkpoint: str | None, reps: int, n: int = DDIM_DEFAULT_STEPS, timeout_s: float = 120) -> dict:
    """{path: {median_s, p90_s, min_s, reps, peak_rss_mb, ok, error?}} for each path."""
    walls: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="spritegen-coldstart-") as tmp:
        for rep in range(reps):
            for name in commands(export_dir, checkpoint, Path(tmp) / "x.png", n):
                png = Path(tmp) / f"{name}-{rep}.png"
                command = commands(export_dir, checkpoint, png, n)[name]
                done = procs.run(command, timeout_s=timeout_s, log_path=Path(tmp) / f"{name}.log")
                made = name == "python" or (png.is_file() and png.stat().st_size > 0)
                if not done.ok or not made:
                    errors[name] = f"exit {done.returncode}, png {'written' if made else 'missing'}: {done.log[-400:]}"
                    continue
                walls.setdefault(name, []).append(done.wall_s)
                rss[name] = max(rss.get(name, 0.0), done.peak_rss_mb)
    result = {}
    for name in ("runtime", "eager", "python"):
        if name in walls:
            w = sorted(walls[name])
            result[name] = {"median_s": statistics.median(w), "p90_s": percentile(w, 90), "min_s": w[0],
                            "reps": len(w), "peak_rss_mb": rss[name], "ok": True}
        else:
            result[name] = {"ok": False, "error": errors.get(name, "not run")}
    return result
