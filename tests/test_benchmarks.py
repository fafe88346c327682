"""The benchmark harness runs end to end in --quick mode and writes valid JSON, Markdown and PNG.

No timing asserts (speed is what the harness reports, as ratios within one run, not what
tests check): these tests check that every part ran, that the derived figures are
consistent with the raw ones, and the harness's own measuring tools (peak RSS, timing
statistics) against quantities known by construction.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import procs
from benchmarks.cpp_backend import DEFAULT_BINARY
from benchmarks.report import markdown
from benchmarks.timing import measure, percentile

REPO = Path(__file__).resolve().parent.parent
CPU_ROWS = ("eager", "torchscript", "ort-unet", "ort-step", "ort-loop")


@pytest.fixture(scope="module")
def export_dir(course_export: Path) -> Path:
    """The suite's shared export of the random-weight course checkpoint (with unet_fp16.onnx).
    SPRITEGEN_BENCH_TEST_EXPORT=DIR reuses an existing export instead (a local speed knob)."""
    if os.environ.get("SPRITEGEN_BENCH_TEST_EXPORT"):
        return Path(os.environ["SPRITEGEN_BENCH_TEST_EXPORT"])
    return course_export


@pytest.fixture(scope="module")
def quick_run(export_dir: Path, course_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("results")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--export-dir", str(export_dir),
                           "--checkpoint", str(course_checkpoint), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, f"benchmarks.run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"out": out, "stdout": proc.stdout}


def test_quick_run_writes_json_markdown_png(quick_run: dict) -> None:
    out = quick_run["out"]
    paths = {kind: out / f"bench-cpu-quick.{kind}" for kind in ("json", "md", "png")}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing"
        assert f"wrote {'markdown' if path.suffix == '.md' else path.suffix[1:]}: {path}" in quick_run["stdout"]
    record = json.loads(paths["json"].read_text())
    assert record["format"] == "spritegen-bench/1" and record["plan"]["mode"] == "quick"
    for key in ("cpu_model", "logical_cores", "cpu_features"):
        assert key in record["machine"]
    assert {"torch", "onnxruntime", "numpy"} <= set(record["versions"])
    assert record["peak"]["gflops"] > 0 and record["flops_per_image"] > 1e8  # ~0.3 GFLOP for the course net
    with Image.open(paths["png"]) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 200
    md = paths["md"].read_text()
    assert md == markdown(record), "the Markdown must be rendered from the JSON record alone"
    for name in CPU_ROWS:
        assert record["backends"][name]["label"] in md


def test_every_cpu_backend_measured_its_figures(quick_run: dict) -> None:
    record = json.loads((quick_run["out"] / "bench-cpu-quick.json").read_text())
    rows = record["backends"]
    for name in CPU_ROWS:
        assert rows[name]["status"] == "ok", f"{name}: {rows[name].get('reason')}"
        assert not rows[name]["errors"], f"{name}: {rows[name]['errors']}"
        assert rows[name]["peak_rss_mb"] > 10
    assert {"net_b1", "net_b2", "ddim25_b1"} <= set(rows["eager"]["figures"])
    assert "ddim25_b1" in rows["ort-loop"]["figures"] and "net_b1" not in rows["ort-loop"]["figures"]
    # the C++ rows are measured whenever the binary is built (CI builds it); only a missing
    # binary may leave them unmeasured, and then the reason must say so
    built = os.access(DEFAULT_BINARY, os.X_OK)
    for name in ("cpp-step", "cpp-loop"):
        if built:
            assert rows[name]["status"] == "ok", f"{name}: {rows[name].get('reason')}"
        else:
            assert rows[name]["status"] == "unavailable" and "not built" in rows[name]["reason"]


def test_derived_figures_are_consistent(quick_run: dict) -> None:
    record = json.loads((quick_run["out"] / "bench-cpu-quick.json").read_text())
    peak, eager = record["peak"]["gflops"], record["backends"]["eager"]["figures"]
    for name in CPU_ROWS:
        for key, t in record["backends"][name]["figures"].items():
            assert t["min_ms"] <= t["median_ms"] <= t["p90_ms"]
            assert math.isclose(t["gflops"], t["flops"] / (t["median_ms"] * 1e6), rel_tol=1e-9)
            assert math.isclose(t["x_roofline"], t["median_ms"] / (t["flops"] / (peak * 1e6)), rel_tol=1e-9)
            assert math.isclose(t["speedup"], eager[key]["median_ms"] / t["median_ms"], rel_tol=1e-9)
    assert record["backends"]["eager"]["figures"]["net_b1"]["speedup"] == 1.0
    targets = {t["target"]: t for t in record["targets"]}
    assert any("cold start" in name for name in targets)
    cold = record["coldstart"]
    assert cold["runtime"]["ok"] and cold["eager"]["ok"], cold
    assert record["sweep"]["runtime"]["status"] == "ok"


@pytest.mark.parametrize("args, says", [
    (["--export-dir", "{tmp}"], "manifest.json"),
    (["--backends", "eager,warp-drive"], "unknown backend(s) warp-drive"),
])
def test_bad_arguments_fail_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", *argv],
                          capture_output=True, text=True, timeout=600, cwd=REPO)  # a hang guard, not a speed bound
    assert proc.returncode != 0 and says in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_peak_rss_is_the_childs_own(tmp_path: Path) -> None:
    """A child that touches 300 MB reports at least that; a later small child is not charged for it."""
    big = procs.run([sys.executable, "-c", "b = bytearray(300 * 2**20)"], timeout_s=60, log_path=tmp_path / "a")
    small = procs.run([sys.executable, "-c", "pass"], timeout_s=60, log_path=tmp_path / "b")
    assert big.ok and small.ok
    assert big.peak_rss_mb >= 300
    assert small.peak_rss_mb < 150  # an empty interpreter; RUSAGE_CHILDREN would report >= 300 here


def test_child_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    done = procs.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5, log_path=tmp_path / "l")
    assert done.returncode is None and done.wall_s < 10


@pytest.mark.fast
def test_measure_counts_and_orders() -> None:
    calls = []
    timing = measure(lambda: calls.append(1), reps=7, warmup=3)
    assert len(calls) == 10 and timing.reps == 7 and timing.warmup == 3
    assert timing.min_ms <= timing.median_ms <= timing.p90_ms
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0 and percentile([1.0, 2.0], 90) == pytest.approx(1.9)


def _timing(median: float, reps: int = 10) -> dict:
    return {"median_ms": median, "p90_ms": median * 1.2, "min_ms": median * 0.9, "mean_ms": median * 1.05,
            "reps": reps, "warmup": 2}


@pytest.mark.fast
def test_rounds_merge_so_one_slow_round_moves_no_figure() -> None:
    """The VM's speed drifts for tens of seconds (benchmarks.plan): a figure is the median of
    its round medians, so a round caught in a slow spell is outvoted by the other two."""
    from benchmarks.run import _merged

    rounds = [{"status": "ok", "figures": {"net_b1": _timing(0.8), "ddim25_b1": _timing(20.0)}, "peak_rss_mb": 100,
               "wall_s": 3.0},
              {"status": "ok", "figures": {"net_b1": _timing(1.4), "ddim25_b1": _timing(35.0)}, "peak_rss_mb": 120,
               "wall_s": 4.0},
              {"status": "partial", "reason": "stopped", "figures": {"net_b1": _timing(0.82)}, "peak_rss_mb": 90,
               "wall_s": 5.0}]
    row = _merged(rounds)
    assert row["figures"]["net_b1"]["median_ms"] == 0.82 and row["figures"]["net_b1"]["reps"] == 30
    assert row["figures"]["net_b1"]["round_medians_ms"] == [0.8, 1.4, 0.82]
    assert row["figures"]["net_b1"]["min_ms"] == pytest.approx(0.72)
    assert "ddim25_b1" not in row["figures"]  # not measured in every usable round: not reported as if it were
    assert row["status"] == "partial" and row["peak_rss_mb"] == 120 and row["wall_s"] == 12.0
    unavailable = {"status": "unavailable", "reason": "no GPU"}
    assert _merged([unavailable]) == unavailable


def test_gpu_script_runs_its_call_sequence_on_the_cpu(tiny_export: Path, tmp_path: Path) -> None:
    """benchmarks/gpu.sh is meant for a lent GPU machine, as a sequence of calls; on a CPU
    (DEVICE=cpu QUICK=1) it runs every step it would run there. A small wheel travels in two
    calls: the first only stashes its part and ends; the second installs the wheel, reports
    the environment, runs the probe, the benchmark and one test file, writing JSON."""
    from tests.test_gpu_pack import make_wheel
    from benchmarks import gpu_pack

    record = gpu_pack.split([make_wheel(tmp_path)], tmp_path / "pack", 250_000, 250_000)
    assert len(record["calls"]) == 2
    out, site = tmp_path / "gpu-out", tmp_path / "site"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "OUT": str(out), "EXPORT_DIR": str(tiny_export),
           "PYTHON": sys.executable, "BACKENDS": "eager,ort-step", "SITE": str(site),
           "SPRITEGEN_GPU_STASH": str(tmp_path / "store"), "TESTS": "1",
           "TEST_FILES": "tests/test_device_thread.py::test_one_device_thread_per_gpu"}

    def device_call(k: int) -> subprocess.CompletedProcess:
        """gpu.sh as device call k sees the repository: pack.json and that call's parts only."""
        pack = tmp_path / f"call{k}"
        (pack / "parts").mkdir(parents=True)
        shutil.copy(tmp_path / "pack" / "pack.json", pack)
        for name in record["calls"][k]:
            shutil.copy(tmp_path / "pack" / "parts" / name, pack / "parts")
        return subprocess.run(["bash", "benchmarks/gpu.sh"], env={**env, "PACK_DIR": str(pack)},
                              capture_output=True, text=True, timeout=600, cwd=REPO)

    first = device_call(0)
    assert first.returncode == 0 and "run the next call" in first.stdout, first.stderr
    assert not (out / "gpu-env.txt").exists() and not site.exists()  # the call ended after stashing
    last = device_call(1)
    assert last.returncode == 0, f"gpu.sh failed:\n{last.stdout[-3000:]}\n{last.stderr[-3000:]}"
    assert (site / "sgfake_ort" / "__init__.py").is_file()
    env_report = (out / "gpu-env.txt").read_text()
    assert "providers listed" in env_report and str(site) in env_report and "sgfake-cudnn-cu13~=9.0" in env_report
    probe = json.loads((out / "gpu-probe.json").read_text())
    assert probe["ok"] and probe["session_providers"] == ["CPUExecutionProvider"]
    bench = json.loads((out / "bench-cpu-quick.json").read_text())
    assert bench["plan"]["rounds"] == 1 and set(bench["backends"]) == {"eager", "ort-step"}
    assert bench["backends"]["ort-step"]["status"] == "ok" and (out / "gpu-run.log").is_file()
    tests = json.loads((out / "cuda-tests.json").read_text())
    assert (tests["passed"], tests["failed"], tests["returncode"]) == (1, 0, 0)
    assert len(list(out.iterdir())) <= 8  # what a device call can bring back


def test_gpu_plan_times_the_issue_figures_after_capture() -> None:
    """--device cuda measures DDIM-25 at batch 1 and DDPM-500 at batch 30 (issue 15), every
    sampler warmed up first (CUDA-graph capture is not timed), and its workers fit gpu.sh."""
    from benchmarks.backends import BACKENDS
    from benchmarks.plan import gpu_plan

    plan = gpu_plan()
    keys = {f.key: f for f in plan.figures}
    assert {"ddim25_b1", "ddpm500_b30"} <= set(keys)
    assert all(f.warmup >= 1 for f in plan.figures)
    bench_timeout = int(next(line for line in (REPO / "benchmarks/gpu.sh").read_text().splitlines()
                             if line.startswith("BENCH_TIMEOUT=")).split(":-")[1].rstrip('}"'))
    rows = len([b for b in BACKENDS if b.device == "cuda"])
    assert (rows + 1) * plan.worker_timeout_s <= bench_timeout  # + the peak's worker
