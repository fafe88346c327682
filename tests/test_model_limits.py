"""One table of model limits (spritegen.contract.MODEL_LIMITS): what the exporter accepts, the
runtime loads, and nothing else.

Before, the runtime kept its own bounds: a 2-channel checkpoint exported and validated,
then Sampler.load refused the export and said to re-export it.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from spritegen.contract import IMAGE_CHANNELS, MODEL_LIMITS, ModelConfig
from spritegen.runtime.manifest_fields import FieldError, model_config

COURSE = ModelConfig()


def _exporter_accepts(config: ModelConfig) -> bool:
    try:
        config.validate()
    except ValueError:
        return False
    return True


def _runtime_accepts(config: ModelConfig) -> bool:
    try:
        model_config({"model": {"hyperparameters": config.to_dict()}})
    except FieldError:
        return False
    return True


def _edges() -> list[ModelConfig]:
    """The course's config with each field at, just inside and just outside its limits, and
    at the architecture's edges (multiples of 8 and 4, every channel count up to the limit)."""
    configs = []
    for name, (low, high) in MODEL_LIMITS.items():
        values = {low - 1, low, low + 1, high - 1, high, high + 1, *range(low, min(high, low + 9) + 1)}
        configs += [dataclasses.replace(COURSE, **{name: value}) for value in sorted(values)]
    return configs


@pytest.mark.fast
@pytest.mark.parametrize("config", _edges(), ids=lambda c: "-".join(map(str, dataclasses.astuple(c))))
def test_runtime_accepts_exactly_what_the_exporter_accepts(config: ModelConfig) -> None:
    assert _runtime_accepts(config) == _exporter_accepts(config)


@pytest.mark.fast
def test_every_channel_count_in_the_limits_is_a_picture_or_refused_by_both() -> None:
    low, high = MODEL_LIMITS["in_channels"]
    for channels, feat in itertools.product(range(low, high + 1), (8, 64)):
        config = ModelConfig(in_channels=channels, n_feat=feat)
        assert _exporter_accepts(config) == (channels in IMAGE_CHANNELS) == _runtime_accepts(config), channels


@pytest.mark.parametrize("channels", [1, 2])
def test_a_checkpoint_the_exporter_accepts_loads_in_the_runtime(channels: int, tmp_path: Path) -> None:
    """A real tiny export end to end: grey exports and samples; 2 channels is refused by the
    exporter itself (one line naming the field), not after export by the runtime."""
    import torch

    from spritegen.errors import SpriteGenError
    from spritegen.export.exporter import export
    from spritegen.runtime import Sampler
    from tests.models import make_random_model

    config = ModelConfig(in_channels=channels, n_feat=8)
    path = tmp_path / "context_model.pth"
    torch.save(make_random_model(seed=5, config=config).state_dict(), path)
    if channels not in IMAGE_CHANNELS:
        with pytest.raises(SpriteGenError, match="in_channels must be one of"):
            export(path, tmp_path / "export")
        assert not (tmp_path / "export").exists()
        return
    sampler = Sampler.load(export(path, tmp_path / "export").directory, provider="cpu", threads=1)
    sprites = sampler.ddim(["hero"], n=2, seed=7)
    assert sprites.shape == (1, channels, 16, 16) and abs(sprites).max() <= 1
