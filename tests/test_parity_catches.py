"""The parity matrix catches a graph broken on purpose, in its sampled form as in its old one.

The per-call ("eps") replay of a long chain checks an even sample of its calls
(parity_matrix.REPLAY_CALLS) instead of every one. Here a DDPM-500 case runs on copies of
the tiny export with one graph broken, and the case must fail both with the sampled replay
and with the old every-call replay:
- a whole-graph defect (one weight of unet.onnx moved): eps fails in both forms;
- a defect at one step the sample skips (ddpm_step.onnx's eps coefficient at i = 250):
  the every-call replay fails on eps, the sampled one passes eps, and the case still fails
  on its trajectory, which compares every state of the chain.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from spritegen.contract import MANIFEST_FILE
from spritegen.export.checkpoint import load_model
from spritegen.files import sha256_file
from tests import parity_matrix
from tests.parity_matrix import Case, Export, Matrix
from tests.test_parity import tolerance

CASE = Case("tiny", "ddpm", 500, 1, "one-hot", 0.0, 0.0, ("unet", "ddpm_step"))
ISOLATED_STEP = 250  # i; not among replayed(500)'s steps (checked below)


def _edit_initializer(path: Path, name: str, edit: Callable[[np.ndarray], None]) -> None:
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.name == name:
            array = numpy_helper.to_array(tensor).copy()
            edit(array)
            tensor.CopyFrom(numpy_helper.from_array(array, name))
            onnx.save(model, str(path))
            return
    raise AssertionError(f"{path.name} has no initializer {name}")


def _first_conv_weight(path: Path) -> str:
    model = onnx.load(str(path))
    return next(t.name for t in model.graph.initializer if len(t.dims) == 4)


def _rehash(directory: Path, name: str) -> None:
    """The manifest names the edited file's new hash and size (so the runtime loads it: the
    defect is the graph's, not a tampered file the runtime would refuse)."""
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["files"][name] = {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def _break_unet(directory: Path) -> str:
    path = directory / "unet.onnx"
    _edit_initializer(path, _first_conv_weight(path), lambda w: w.reshape(-1).__setitem__(0, w.reshape(-1)[0] + 0.5))
    return "unet.onnx"


def _break_one_step(directory: Path) -> str:
    _edit_initializer(directory / "ddpm_step.onnx", "ddpm_eps_coef", lambda c: c.__setitem__(ISOLATED_STEP, 2 * c[ISOLATED_STEP]))
    return "ddpm_step.onnx"


@pytest.fixture(scope="module")
def tiny_model(tiny_export: Path):
    return load_model(tiny_export.parent / "context_model.pth")


def _failures(directory: Path, model, path: str, every_call: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """{quantity: error} of the quantities of `path` on CASE that exceed their tolerance."""
    monkeypatch.setattr(parity_matrix, "REPLAY_CALLS", 10**6 if every_call else parity_matrix.REPLAY_CALLS)
    matrix = Matrix(lambda checkpoint: Export(directory, model))
    errors = {q: matrix.measure(CASE, path, q).max_abs for q in CASE.quantities(path)}
    return {q: e for q, e in errors.items() if e > tolerance(CASE, path, q)[0]}


@pytest.mark.parametrize("breaker, path", [(_break_unet, "unet"), (_break_one_step, "ddpm_step")],
                         ids=["whole-graph", "one-step"])
def test_a_broken_graph_fails_the_sampled_and_the_every_call_form(tiny_export: Path, tiny_model, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, breaker, path: str) -> None:
    assert 500 - ISOLATED_STEP not in parity_matrix.replayed(500)  # the sample really skips that step
    directory = tmp_path / "broken"
    shutil.copytree(tiny_export, directory)
    _rehash(directory, breaker(directory))
    clean = _failures(tiny_export, tiny_model, path, every_call=False, monkeypatch=monkeypatch)
    sampled = _failures(directory, tiny_model, path, every_call=False, monkeypatch=monkeypatch)
    every_call = _failures(directory, tiny_model, path, every_call=True, monkeypatch=monkeypatch)
    print(f"{breaker.__name__}: sampled form fails {sampled}, every-call form fails {every_call}")
    assert not clean, f"the unbroken export fails: {clean}"
    assert sampled and every_call
    assert "eps" in every_call and "trajectory" in sampled
