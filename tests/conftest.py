"""Shared fixtures. Session-scoped where building is costly, so the suite fits CI's budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spritegen.contract import ModelConfig
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet


def make_random_model(seed: int = 1234, config: ModelConfig = ModelConfig()) -> ContextUnet:
    """A ContextUnet with seeded random weights and non-trivial BatchNorm statistics.

    Default BatchNorm stats (mean 0, var 1) would hide a wrong folding of BN into the
    convolutions, so they are randomised too.
    """
    torch.manual_seed(seed)
    model = ContextUnet.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return model.eval()


def course_state_dict(model: ContextUnet) -> dict[str, torch.Tensor]:
    """The state_dict as the course saves it: no pinned shortcut keys."""
    return {k: v for k, v in model.state_dict().items() if k not in SHORTCUT_KEYS}


@pytest.fixture(scope="session")
def course_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course-format checkpoint file (random weights, no shortcut key)."""
    path = tmp_path_factory.mktemp("course") / "context_model.pth"
    torch.save(course_state_dict(make_random_model()), path)
    return path
