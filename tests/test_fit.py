"""The few-step sampler's fitted step indices (export/fit.py): what a fit returns, what the
manifest carries, and that the runtime reads back exactly that."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spritegen.contract import FAST_KEY, GRAPHS, MANIFEST_FILE, ModelConfig, ScheduleConfig, dpmpp_indices
from spritegen.export.fit import DEMO_FIT_FILE, _Problem, fast_section, fit_indices, shipped_section
from spritegen.runtime import Sampler
from spritegen.runtime.manifest_fields import fast_sampler


def test_a_small_fit_returns_valid_tables_whose_loss_it_reports(export_dir: Path) -> None:
    """On conftest's tiny export: the fit's mechanics, not its gains."""
    solver_step = export_dir / GRAPHS["solver_step"].file
    fits = fit_indices(solver_step, ModelConfig(), ScheduleConfig(), calls=(2, 3), seconds=20, sprites=7,
                       teacher_steps=20)
    assert [f.n for f in fits] == [2, 3]
    problem = _Problem(solver_step, ModelConfig(), ScheduleConfig(), 20261204, 7, 20)  # the fitting noises
    for fit in fits:
        assert fit.indices[0] == 500 and fit.indices[-1] == 0 and len(fit.indices) == fit.n + 1
        assert fit.evaluations >= 1
        assert fit.loss == pytest.approx(problem.loss(fit.indices), rel=1e-6)  # the loss it reports is the table's
        assert fit.loss <= problem.loss(dpmpp_indices(500, fit.n))  # never worse than where it started
        assert fit.held_out <= fit.held_out_uniform  # nor, on held-out noises, than the evenly spaced table
    section = fast_section(fits)
    parsed = fast_sampler({FAST_KEY: json.loads(json.dumps(section))}, 500)  # through JSON, as in a manifest
    assert parsed.indices == {f.n: f.indices for f in fits} and parsed.default_n == 3


def test_the_shipped_fit_is_for_the_bundled_checkpoint_only(bundled_export: Path) -> None:
    shipped = json.loads(DEMO_FIT_FILE.read_text())
    manifest = json.loads((bundled_export / MANIFEST_FILE).read_text())
    assert manifest[FAST_KEY] == shipped["section"]  # the bundled export carries it
    assert shipped_section("0" * 64, ScheduleConfig()) is None
    assert shipped_section(shipped["checkpoint_sha256"], ScheduleConfig(timesteps=400)) is None
    errors = shipped["section"]["fit"]["errors"]
    # a shipped table is never worse on the held-out noises than the evenly spaced one (export/fit.py)
    assert all(e["held_out"] <= e["held_out_evenly_spaced"] for e in errors.values())


def test_fast_runs_the_shipped_tables(bundled_sampler: Sampler) -> None:
    sampler = bundled_sampler
    fast = sampler.manifest.fast
    assert fast is not None and fast.default_n in fast.indices
    for n, indices in fast.indices.items():
        assert np.array_equal(sampler.fast(["spell"], n=n, seed=2),
                              sampler.dpmpp(["spell"], indices=indices, eta=fast.eta, seed=2))
