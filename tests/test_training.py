"""The trainer: the forward process is DDPM's (with the square root), training learns,
resuming is exact, W&B (real, offline) records the course's config keys and artifact,
and the bundled demo checkpoint loads and agrees with its config."""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path
from typing import Iterator

import pytest
import torch

from spritegen.contract import CHECKPOINT_FILE, ModelConfig
from spritegen.export.checkpoint import BUNDLED_DIR, load_checkpoint, load_model
from spritegen.export.model import SHORTCUT_KEYS
from spritegen.training.config import TrainConfig
from spritegen.training.run import STATE_FILE, TrainingError, train
from spritegen.training.trainer import Trainer, draw_batch, load_data, perturb

TINY = TrainConfig(model=ModelConfig(n_feat=16), steps=6, batch_size=20, dataset_size=100,
                   checkpoint_every=2, log_every=2)


@pytest.mark.fast
def test_forward_process_has_the_square_root() -> None:
    """With x0 = 0 the noise coefficient is sqrt(1 - ab) (0.8 at ab = 0.36), not the course's 1 - ab."""
    noise = torch.ones(1, 3, 16, 16)
    x_t = perturb(torch.zeros_like(noise), noise, torch.tensor([0.36]))
    torch.testing.assert_close(x_t, torch.full_like(noise, 0.8))  # float32 rounding only
    x_t = perturb(noise, torch.zeros_like(noise), torch.tensor([0.36]))
    torch.testing.assert_close(x_t, torch.full_like(noise, 0.6))


@pytest.mark.fast
def test_batches_are_a_function_of_the_step() -> None:
    images, labels = load_data(TINY)
    config = TrainConfig(batch_size=4000, dataset_size=100)
    a, b = draw_batch(images, labels, 3, config), draw_batch(images, labels, 3, config)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.t, b.t) and torch.equal(a.c, b.c)
    assert not torch.equal(a.noise, draw_batch(images, labels, 4, config).noise)
    assert int(a.t.min()) >= 1 and int(a.t.max()) <= config.schedule.timesteps
    dropped = float((a.c.sum(1) == 0).float().mean())
    assert abs(dropped - 0.2) < 0.03, dropped  # 4000 draws: 3 sigma of a Bernoulli(0.2) mean is 0.019


@pytest.mark.parametrize("bf16,channels_last", [(True, False), (False, False), (True, True)])
def test_loss_is_finite_and_decreases_on_a_fixed_batch(bf16: bool, channels_last: bool) -> None:
    images, labels = load_data(TINY)
    trainer = Trainer(TrainConfig(model=ModelConfig(n_feat=16), steps=10_000, batch_size=20, dataset_size=100,
                                  bf16=bf16, channels_last=channels_last))
    batch = draw_batch(images, labels, 0, trainer.config)
    losses = [trainer.step(batch) for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict, Path]]:
    """TINY trained in one go with real W&B in offline mode (WANDB_DIR in a temp dir)."""
    root = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DIR", str(root / "wandb-dir"))
        env.setenv("WANDB_SILENT", "true")
        published = train(TINY, root / "full")
    yield root / "full", published, root / "wandb-dir"


def test_run_publishes_weights_and_config(offline_run: tuple[Path, dict, Path]) -> None:
    out, published, _ = offline_run
    assert json.loads((out / "config.json").read_text()) == published
    assert published["steps_done"] == TINY.steps and published["final_loss"] > 0
    loaded = load_checkpoint(out)
    assert loaded.shortcut_from_checkpoint and loaded.config == TINY.model
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert all(k in state for k in SHORTCUT_KEYS)


def test_resume_continues_exactly(offline_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """Pause at step 3, resume: the weights equal the uninterrupted run's, bit for bit
    (batches are seeded per step and Adam/EMA state is restored)."""
    full, _, _ = offline_run
    assert train(TINY, tmp_path, wandb_mode="disabled", stop_at=3) is None
    assert torch.load(tmp_path / STATE_FILE, weights_only=True)["trainer"]["step"] == 3
    with pytest.raises(TrainingError, match="--resume"):
        train(TINY, tmp_path, wandb_mode="disabled")
    with pytest.raises(TrainingError, match="other settings"):
        train(TrainConfig(**{**TINY.__dict__, "lrate": 5e-4}), tmp_path, wandb_mode="disabled", resume=True)
    train(TINY, tmp_path, wandb_mode="disabled", resume=True)
    resumed = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    uninterrupted = torch.load(full / CHECKPOINT_FILE, weights_only=True)
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_resume_without_a_run_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(TINY, tmp_path, wandb_mode="disabled", resume=True)


def _wandb_records(path: str) -> Iterator[object]:
    """Records of a .wandb transaction log (LevelDB log format: 32 KiB blocks of
    checksum(4) length(2) type(1) chunks after a 7-byte ':W&B' header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, parts = Path(path).read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7]) if left >= 7 else (0, 0)
        if kind == 0:  # block trailer padding
            pos += left
            continue
        parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def test_wandb_offline_run_records_config_loss_and_model_artifact(offline_run: tuple[Path, dict, Path]) -> None:
    _, published, wandb_dir = offline_run
    (log,) = glob.glob(str(wandb_dir / "wandb" / "offline-run-*" / "*.wandb"))
    config, artifacts, history_keys = {}, [], set()
    for record in _wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "artifact":
            artifacts.append(record.artifact)
        elif kind == "history":
            history_keys |= {i.key or "/".join(i.nested_key) for i in record.history.item}
    for key in ("n_feat", "n_cfeat", "height", "timesteps", "beta1", "beta2", "batch_size", "lrate",
                "n_epoch", "steps", "data_seed"):
        assert config[key] == published[key], key
    assert "loss" in history_keys, history_keys
    (artifact,) = artifacts
    assert artifact.type == "model" and artifact.name == f"{published['wandb_run_id']}_context_model"
    assert [entry.path for entry in artifact.manifest.contents] == [CHECKPOINT_FILE]


@pytest.mark.skipif(not (BUNDLED_DIR / CHECKPOINT_FILE).is_file(), reason="demo weights not trained yet")
def test_bundled_checkpoint_loads_and_matches_its_config() -> None:
    config = json.loads((BUNDLED_DIR / "config.json").read_text())
    loaded = load_checkpoint(None)
    assert loaded.shortcut_from_checkpoint  # trained shortcut shipped, not a seeded stand-in
    assert loaded.config == ModelConfig.from_dict(config)
    assert config["steps_done"] == config["steps"] and config["forward_process"].startswith("sqrt(ab)")
    model = load_model(None)
    assert not model.training
    for module in model.modules():  # BatchNorm stats were trained, not left at the defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.num_batches_tracked > 0 and not torch.all(module.running_var == 1)
    with torch.no_grad():
        eps = model(torch.randn(2, 3, 16, 16), torch.full((2,), 0.5), torch.eye(5)[:2])
    assert eps.shape == (2, 3, 16, 16) and torch.isfinite(eps).all()
