"""ContextUnet: course key names, pinned shortcut, accepted t shapes."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch

from spritegen.contract import ModelConfig
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet, pinned_shortcut_
from tests.models import course_state_dict, make_random_model

# A few of the course's exact state_dict keys (as its training lesson saves them): loading course checkpoints strictly needs them.
COURSE_KEYS = [
    "init_conv.conv1.0.weight", "init_conv.conv1.1.running_var", "init_conv.conv2.1.num_batches_tracked",
    "down1.model.0.conv1.0.weight", "down2.model.1.conv2.0.bias", "timeembed1.model.0.weight",
    "contextembed2.model.2.bias", "up0.0.weight", "up0.1.weight", "up1.model.0.weight",
    "up2.model.2.conv2.1.bias", "out.0.weight", "out.1.bias", "out.3.weight",
]


def test_state_dict_has_course_keys_plus_pinned_shortcut() -> None:
    keys = set(ContextUnet().state_dict())
    assert set(COURSE_KEYS) <= keys
    assert {k for k in keys if "shortcut" in k} == set(SHORTCUT_KEYS)


@pytest.mark.parametrize("t_shape", [(4,), (4, 1, 1, 1), (1, 1, 1, 1)])
def test_t_shapes_agree(t_shape: tuple[int, ...]) -> None:
    model = make_random_model()
    x, c = torch.randn(4, 3, 16, 16), torch.eye(5)[:4]
    t_value = 0.37
    with torch.no_grad():
        reference = model(x, torch.full((4,), t_value), c)
        got = model(x, torch.full(t_shape, t_value), c)
    assert got.shape == (4, 3, 16, 16)
    # 1e-6: a broadcast (1, 1) time row runs the embedding GEMM at another size, which
    # may round differently in the last float32 bit; any real shape bug is O(1).
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)


def test_missing_context_means_zero_context() -> None:
    model = make_random_model()
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, None), model(x, t, torch.zeros(2, 5)), rtol=0, atol=0)


def test_output_is_a_function_of_its_inputs() -> None:
    """The upstream quirk drew a new shortcut each call; ours gives identical outputs."""
    model = make_random_model()
    x, t, c = torch.randn(2, 3, 16, 16), torch.rand(2), torch.eye(5)[:2]
    with torch.no_grad():
        first = model(x, t, c)
        torch.randn(100)  # moving the global RNG must not matter
        assert torch.equal(first, model(x, t, c))


def _shortcut_digest(seed: int) -> str:
    conv = torch.nn.Conv2d(3, 64, 1)
    pinned_shortcut_(conv, seed)
    data = torch.cat([conv.weight.flatten(), conv.bias]).detach().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def test_pinned_shortcut_is_identical_across_processes() -> None:
    code = ("import torch; torch.manual_seed(99); from tests.test_model import _shortcut_digest; "
            "print(_shortcut_digest(0))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == _shortcut_digest(0)
    assert _shortcut_digest(1) != _shortcut_digest(0)


def test_pinned_shortcut_follows_pytorch_conv_init_bounds() -> None:
    conv = torch.nn.Conv2d(3, 64, 1)
    pinned_shortcut_(conv, 0)
    bound = 1 / math.sqrt(3)  # fan_in = 3 * 1 * 1
    for tensor in (conv.weight, conv.bias):
        assert tensor.abs().max() <= bound
        assert tensor.abs().max() > 0.9 * bound  # uses the whole range, as U(-b, b) does
    assert abs(float(conv.weight.mean())) < 0.1


def test_from_config_round_trip() -> None:
    config = ModelConfig(in_channels=3, n_feat=32, n_cfeat=3, height=16)
    model = ContextUnet.from_config(config)
    assert model.config == config
    assert set(course_state_dict(model)) | set(SHORTCUT_KEYS) == set(model.state_dict())
