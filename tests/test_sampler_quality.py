"""benchmarks.sampler_quality: the sprite-FID against closed forms, the points table, and a
--quick run end to end (JSON schema, Markdown, PNG, usage errors). No timing asserts: the
latency it measures is checked for presence and consistency only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.fid import Gaussian, fid, frechet_distance
from benchmarks.sampler_points import POINTS, QUICK, pareto_front, select
from tests.tolerances import FID_RTOL

REPO = Path(__file__).resolve().parent.parent


def _features(seed: int = 0, n: int = 500, width: int = 128) -> np.ndarray:
    """ReLU-like features (non-negative, some units dead: a singular covariance), as the judge's."""
    x = np.maximum(np.random.default_rng(seed).standard_normal((n, width)) @
                   np.random.default_rng(seed + 1).standard_normal((width, width)) / 8, 0)
    x[:, :16] = 0.0
    return x


def _scale(x: np.ndarray) -> float:
    return 2 * float(np.trace(np.cov(x, rowvar=False)))


def test_fid_of_a_set_with_itself_is_zero() -> None:
    x = _features()
    assert fid(x, x) <= FID_RTOL * _scale(x)


def test_fid_of_a_mean_shift_is_its_squared_length() -> None:
    x = _features()
    previous = 0.0
    for length in (0.1, 0.5, 1.0, 3.0):
        shift = np.random.default_rng(7).standard_normal(x.shape[1])
        shift *= length / np.linalg.norm(shift)
        d = fid(x, x + shift)
        assert abs(d - length**2) <= FID_RTOL * _scale(x), (length, d)
        assert d > previous  # grows with the shift
        previous = d


def test_fid_of_a_spread_change_follows_the_closed_form() -> None:
    """Same mean, covariance s^2 S: d^2 = (1 - s)^2 tr(S)."""
    x = _features()
    mean, trace = x.mean(0), np.trace(np.cov(x, rowvar=False))
    for s in (0.5, 0.9, 1.2, 2.0):
        d = fid(x, mean + s * (x - mean))
        assert abs(d - (1 - s) ** 2 * trace) <= FID_RTOL * _scale(x) * max(1, s * s), (s, d)


def test_fid_of_diagonal_gaussians_matches_the_per_dimension_formula() -> None:
    """Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    rng = np.random.default_rng(3)
    m1, m2, a, b = rng.standard_normal(64), rng.standard_normal(64), rng.uniform(0, 2, 64), rng.uniform(0, 2, 64)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    d = frechet_distance(Gaussian(m1, np.diag(a)), Gaussian(m2, np.diag(b)))
    assert abs(d - expected) <= FID_RTOL * (a.sum() + b.sum())
    assert abs(d - frechet_distance(Gaussian(m2, np.diag(b)), Gaussian(m1, np.diag(a)))) <= FID_RTOL * expected


def test_fid_refuses_mismatched_or_too_few_features() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        Gaussian.of(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="widths differ"):
        fid(np.ones((3, 4)), np.ones((3, 5)))


def test_pareto_front_keeps_only_unbeaten_points() -> None:
    rows = [("a", 4, 300.0), ("b", 5, 260.0), ("c", 8, 270.0), ("d", 25, 90.0), ("e", 25, 130.0),
            ("f", 500, 50.0), ("g", 500, 110.0)]
    assert pareto_front(rows) == ["a", "b", "d", "f"]


def test_points_table_is_unique_and_selectable() -> None:
    labels = [p.label for p in POINTS]
    assert len(labels) == len(set(labels))
    assert set(QUICK) <= set(labels)
    assert [p.label for p in select(["ddim-25", "ddpm-500"])] == ["ddpm-500", "ddim-25"]  # table order
    with pytest.raises(ValueError, match="unknown point 'nope'"):
        select(["nope"])


@pytest.fixture(scope="module")
def quick(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --quick run on the bundled model's export (SPRITEGEN_BENCH_TEST_EXPORT=DIR reuses an
    existing export instead, as in test_benchmarks.py), its judge trained into a fresh cache."""
    export = os.environ.get("SPRITEGEN_BENCH_TEST_EXPORT") or request.getfixturevalue("bundled_export")
    out = tmp_path_factory.mktemp("sampler_quality")
    env = {**os.environ, "SPRITEGEN_CACHE_DIR": str(out / "cache")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sampler_quality", "--quick", "--export-dir",
                           str(export), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, f"sampler_quality failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def test_quick_run_writes_the_schema(quick: Path) -> None:
    record = json.loads((quick / "sampler_quality-quick.json").read_text())
    assert record["format"] == "spritegen-sampler-quality/1" and record["mode"] == "quick"
    assert record["judge"]["cached"] is False and Path(record["judge"]["cache_file"]).is_file()
    assert record["real_vs_real"]["fid"] >= 0
    for key in ("load_average_before", "load_average_after", "machine", "ort_threads"):
        assert key in record["conditions"]
    assert [row["label"] for row in record["points"]] == list(QUICK)
    ok = [row for row in record["points"] if row["status"] == "ok"]
    assert {"ddim-4", "ddim-25", "ddim-5-eta1"} <= {row["label"] for row in ok}
    n = record["settings"]["n_sprites"]
    for row in ok:
        assert 0 <= row["accuracy"] <= 1 and row["fid"] >= 0
        assert row["calls"] == row["kwargs"].get("n", row["calls"]) >= 1  # fast: the count its progress reported
        assert abs(np.mean(list(row["per_class"].values())) - row["accuracy"]) < 1e-9  # balanced classes
        assert min(row["per_class"].values()) * n / 5 == round(min(row["per_class"].values()) * n / 5)
        t = row["latency_ms"]
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["p90_ms"] and t["reps"] >= 1
    for row in record["points"]:
        if row["status"] != "ok":
            assert row["reason"]
    assert set(record["pareto_front"]) <= {row["label"] for row in ok} and record["pareto_front"]


def test_quick_run_writes_markdown_and_png(quick: Path) -> None:
    text = (quick / "sampler_quality-quick.md").read_text()
    assert "| `ddim-25` | ddim | n=25, eta=0 | 25 |" in text and "real vs real" in text
    with Image.open(quick / "sampler_quality-quick.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600


@pytest.mark.parametrize("args, message", [
    (["--n-sprites", "12"], "--n-sprites must be a multiple of 5"),
    (["--only", "ddim-3"], "unknown point 'ddim-3'"),
    (["--batch", "0"], "--batch must be at least 1"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sampler_quality", *args, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_render_pastes_the_table_between_the_doc_markers(quick: Path, tmp_path: Path) -> None:
    from benchmarks.sampler_quality import DOC_MARKERS

    (tmp_path / "sampler_quality.json").write_text((quick / "sampler_quality-quick.json").read_text())
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Before\n\n{DOC_MARKERS[0]}\nold table\n{DOC_MARKERS[1]}\n\nafter\n")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sampler_quality", "--render", "--out", str(tmp_path),
                           "--doc", str(doc)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = doc.read_text()
    assert "old table" not in text and text.startswith("# Before\n") and text.endswith("\nafter\n")
    assert "| `ddim-25` | ddim |" in text and text.count(DOC_MARKERS[0]) == 1
    assert (tmp_path / "sampler_quality.md").read_text() in text


def test_merge_replaces_rerun_rows_keeps_the_rest_and_never_drops_a_measurement() -> None:
    from benchmarks.sampler_quality import merge

    def record(started: str, *rows: tuple[str, str, float]) -> dict:
        return {"started": started, "settings": {"n_sprites": 500, "seed": 0}, "judge": {"cache_file": "j"},
                "checkpoint_sha256": "c", "points": [{"label": label, "status": status, "calls": 5, "fid": fid}
                                                     for label, status, fid in rows]}

    previous = record("old", ("ddim-5", "ok", 10.0), ("ddim-8", "ok", 20.0), ("ddim-10", "ok", 30.0))
    merged = merge(record("new", ("ddim-8", "ok", 5.0), ("ddim-10", "skipped", 0.0), ("ddim-4", "ok", 1.0)), previous)
    assert [(r["label"], r["fid"]) for r in merged["points"]] == [("ddim-4", 1.0), ("ddim-5", 10.0), ("ddim-8", 5.0),
                                                                  ("ddim-10", 30.0)]  # table order
    assert merged["pareto_front"] == ["ddim-4"] and [r["started"] for r in merged["runs"]] == ["old", "new"]
    assert merged["points"][1]["run"] == "old"
    other_seed = {**previous, "settings": {"n_sprites": 500, "seed": 1}}
    assert [r["label"] for r in merge(record("new", ("ddim-8", "ok", 5.0)), other_seed)["points"]] == ["ddim-8"]


def test_judge_features_are_the_layer_before_the_head() -> None:
    import torch

    from benchmarks.quality_classifier import SpriteClassifier

    torch.manual_seed(0)
    model = SpriteClassifier(hidden=128).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        features = model.embed(x)
        assert features.shape == (4, 128) and torch.equal(model(x), model.head(features))
    # without a hidden layer the judge of benchmarks.quality keeps its parameters (and cached weights' keys)
    assert not any(key.startswith("hidden") for key in SpriteClassifier().state_dict())
