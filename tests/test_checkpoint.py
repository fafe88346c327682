"""Checkpoint sources and their errors: W&B artifact (at the wandb.Api seam), file, directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from spritegen.contract import CHECKPOINT_FILE, ModelConfig
from spritegen.errors import CheckpointError
from spritegen.export import load_checkpoint, load_model
from spritegen.export.checkpoint import infer_config
from spritegen.export.model import SHORTCUT_KEYS
from tests.models import course_state_dict, make_random_model

ARTIFACT = "dlai-course/model-registry/SpriteGen:latest"


class FakeArtifact:
    """Stands in for a W&B server's answer; the loader's calls are the real client's calls."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory, self.config = directory, config
        self.version, self.digest = "v3", "d1g35t"

    def download(self) -> str:
        return str(self.directory)

    def logged_by(self) -> SimpleNamespace:
        return SimpleNamespace(config=self.config)


class FakeApi:
    def __init__(self, artifacts: dict[str, FakeArtifact], error: Exception | None = None) -> None:
        self.artifacts, self.error, self.calls = artifacts, error, []

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:  # noqa: A002 (wandb's name)
        self.calls.append((name, type))
        if self.error is not None:
            raise self.error
        if name not in self.artifacts:
            raise ValueError(f"artifact '{name}' not found in 'dlai-course/model-registry'")
        return self.artifacts[name]


@pytest.mark.fast
def test_course_format_checkpoint_loads_strictly_with_pinned_shortcut(course_checkpoint: Path) -> None:
    loaded = load_checkpoint(course_checkpoint, shortcut_seed=0)
    assert not loaded.shortcut_from_checkpoint
    assert loaded.config == ModelConfig()
    assert not loaded.model.training
    source = torch.load(course_checkpoint, weights_only=True)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
    other_seed = load_checkpoint(course_checkpoint, shortcut_seed=1).model.state_dict()
    assert not torch.equal(state[SHORTCUT_KEYS[0]], other_seed[SHORTCUT_KEYS[0]])


def test_checkpoint_with_shortcut_keeps_it(tmp_path: Path) -> None:
    model = make_random_model(seed=7)
    path = tmp_path / "full.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path, shortcut_seed=123)
    assert loaded.shortcut_from_checkpoint
    for key in SHORTCUT_KEYS:
        assert torch.equal(loaded.model.state_dict()[key], model.state_dict()[key])


@pytest.mark.parametrize("config", [ModelConfig(3, 32, 3, 16), ModelConfig(3, 16, 10, 28)])
def test_hyperparameters_inferred_from_shapes(tmp_path: Path, config: ModelConfig) -> None:
    model = make_random_model(config=config)
    assert infer_config(model.state_dict()) == config
    path = tmp_path / "model.pth"
    torch.save(course_state_dict(model), path)
    assert load_model(path).config == config


def test_directory_source_reads_run_config(tmp_path: Path) -> None:
    torch.save(course_state_dict(make_random_model(config=ModelConfig(n_feat=32))), tmp_path / CHECKPOINT_FILE)
    (tmp_path / "config.json").write_text(json.dumps({"n_feat": 32, "n_cfeat": 5, "height": 16, "lrate": 1e-3}))
    assert load_checkpoint(tmp_path).config == ModelConfig(n_feat=32)


def test_wandb_artifact_flow_is_the_courses(tmp_path: Path) -> None:
    model = make_random_model(config=ModelConfig(n_feat=32))
    torch.save(course_state_dict(model), tmp_path / CHECKPOINT_FILE)
    api = FakeApi({ARTIFACT: FakeArtifact(tmp_path, {"n_feat": 32, "n_cfeat": 5, "height": 16})})
    loaded = load_checkpoint(ARTIFACT, api_factory=lambda: api)
    assert api.calls == [(ARTIFACT, "model")]
    assert loaded.config.n_feat == 32
    assert loaded.provenance["kind"] == "wandb"
    assert (loaded.provenance["artifact"], loaded.provenance["version"]) == (ARTIFACT, "v3")
    assert loaded.provenance["digest"] == "d1g35t"
    assert loaded.provenance["checkpoint_sha256"] == hashlib.sha256((tmp_path / CHECKPOINT_FILE).read_bytes()).hexdigest()
    assert loaded.provenance["config"]["origin"] == f"the W&B run config of {ARTIFACT}"


def test_run_config_contradicting_weights_is_refused(tmp_path: Path) -> None:
    torch.save(course_state_dict(make_random_model()), tmp_path / CHECKPOINT_FILE)
    api = FakeApi({ARTIFACT: FakeArtifact(tmp_path, {"n_feat": 32, "n_cfeat": 5, "height": 16})})
    with pytest.raises(CheckpointError, match=r"W&B run config .*: n_feat=32 contradicts the checkpoint's weights "
                                              r"\(n_feat=64 from their shapes\)"):
        load_checkpoint(ARTIFACT, api_factory=lambda: api)


def _raise(exc: Exception):
    def factory():
        raise exc
    return factory


@pytest.mark.parametrize(
    ("api_factory", "pattern"),
    [
        (lambda: FakeApi({}), "not found"),
        (_raise(RuntimeError("api_key not configured (no-tty)")), "not logged in or no network.*wandb artifact get"),
        (lambda: FakeApi({}, error=ConnectionError("Max retries exceeded")), "cannot fetch.*wandb artifact get"),
    ],
    ids=["unknown-artifact", "not-logged-in", "no-network"],
)
def test_wandb_failures_are_one_clear_line(api_factory, pattern: str) -> None:
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(ARTIFACT, api_factory=api_factory)
    assert "\n" not in str(info.value)


def _save(path: Path, obj: Any) -> Path:
    torch.save(obj, path)
    return path


class Payload:
    """An arbitrary object: loading it would run code from the file."""


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: _save(p, [1, 2, 3]), "does not hold a state_dict"),
        (lambda p: _save(p, {"model": Payload()}), r"would call tests\.test_checkpoint\.Payload; refused: .*weights-only"),
        (lambda p: p.write_bytes(b"not a checkpoint at all") and p, "not a readable PyTorch checkpoint"),
        (lambda p: _save(p, {k: v for k, v in course_state_dict(make_random_model()).items()
                             if k != "out.3.bias"}), r"missing keys 'out.3.bias'"),
        (lambda p: _save(p, {**make_random_model().state_dict(), "extra.weight": torch.ones(1)}),
         r"unexpected keys 'extra.weight'"),
        (lambda p: _save(p, {**course_state_dict(make_random_model()), "out.3.bias": torch.ones(4)}),
         r"'out.3.bias' has shape \(4,\) but .* expects \(3,\)"),
    ],
    ids=["not-a-dict", "pickled-object", "garbage", "missing-key", "unexpected-key", "shape-mismatch"],
)
def test_bad_checkpoints_are_one_clear_line(tmp_path: Path, make, pattern: str) -> None:
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_missing_sources_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither an existing file"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match=f"holds no {CHECKPOINT_FILE}"):
        load_model(tmp_path)
