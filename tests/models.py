"""Torch-side test models and checkpoints: seeded random ContextUnets in the course's format.

Kept out of conftest so that collecting the suite imports no torch: a test module that
needs these imports them (and torch) itself, and the no-torch inner loop stays light.
"""

from __future__ import annotations

import torch

from spritegen.contract import ModelConfig
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet

# A course run's config as W&B stores it (the training lesson's SimpleNamespace): the
# hyperparameters live here, never in the .pth (the course saves a bare state_dict).
COURSE_RUN_CONFIG = {"n_epoch": 32, "batch_size": 100, "lrate": 1e-3, "timesteps": 500, "beta1": 1e-4,
                     "beta2": 0.02, "height": 16, "n_feat": 64, "n_cfeat": 5, "device": "cuda",
                     "save_dir": "./data/weights/"}


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


# The small ContextUnet of conftest's tiny_export (and the parity matrix's "tiny" checkpoint): the
# course's sprites, classes and schedule (every graph's inputs and outputs as the course model's),
# an eighth of its features, so each network call costs a small fraction of the course model's.
TINY_CONFIG = ModelConfig(n_feat=8)
TINY_SEED = 8


def write_tiny_checkpoint(path) -> None:
    """The tiny model's weights (TINY_CONFIG, seeded TINY_SEED) as a bare state_dict at `path`."""
    torch.save(make_random_model(seed=TINY_SEED, config=TINY_CONFIG).state_dict(), path)

