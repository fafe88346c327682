"""The course's ContextUnet, with its init_conv shortcut pinned.

Architecture and state_dict key names follow the course exactly (DeepLearning.AI's "How
Diffusion Models Work", whose training lesson saves `context_model.pth`), so course
checkpoints load strictly; tests/test_model.py pins the key names. The one change is the
upstream quirk: the course builds init_conv's 1x1 shortcut inside forward with fresh
random weights on every call, so its output is not a function of its inputs and no
exported graph could reproduce it. Here the shortcut is a registered module
(`init_conv.shortcut`), loaded from the checkpoint when present, else drawn
deterministically from `shortcut_seed` (see `pinned_shortcut_`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spritegen.contract import ModelConfig

SHORTCUT_KEYS = ("init_conv.shortcut.weight", "init_conv.shortcut.bias")
SHORTCUT_SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; non-negative int64 is portable


class ResidualConvBlock(nn.Module):
    """Two (conv3x3, BatchNorm, GELU) layers, optionally residual with a /1.414 scale."""

    def __init__(self, in_channels: int, out_channels: int, is_res: bool = False) -> None:
        super().__init__()
        self.same_channels = in_channels == out_channels
        self.is_res = is_res
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        # The course creates this inside forward on every call; we pin it (module doc).
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, 1, 0) if is_res and not self.same_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.conv2(self.conv1(x))
        if not self.is_res:
            return x2
        skip = x if self.shortcut is None else self.shortcut(x)
        return (skip + x2) / 1.414


class UnetDown(nn.Module):
    """Two residual blocks then 2x max-pooling: (B, i, h, w) -> (B, o, h/2, w/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            ResidualConvBlock(in_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetUp(nn.Module):
    """Concatenate the skip, 2x transposed conv, two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
            ResidualConvBlock(out_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    """Linear, GELU, Linear on a flattened (-1, input_dim) input."""

    def __init__(self, input_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.model = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(-1, self.input_dim))


class ContextUnet(nn.Module):
    """eps(x, t, c): the course's conditional U-Net noise predictor."""

    def __init__(self, in_channels: int = 3, n_feat: int = 64, n_cfeat: int = 5, height: int = 16) -> None:
        super().__init__()
        self.config = ModelConfig(in_channels=in_channels, n_feat=n_feat, n_cfeat=n_cfeat, height=height)
        self.in_channels, self.n_feat, self.n_cfeat, self.h = in_channels, n_feat, n_cfeat, height

        self.init_conv = ResidualConvBlock(in_channels, n_feat, is_res=True)
        self.down1 = UnetDown(n_feat, n_feat)
        self.down2 = UnetDown(n_feat, 2 * n_feat)
        self.to_vec = nn.Sequential(nn.AvgPool2d(4), nn.GELU())
        self.timeembed1 = EmbedFC(1, 2 * n_feat)
        self.timeembed2 = EmbedFC(1, 1 * n_feat)
        self.contextembed1 = EmbedFC(n_cfeat, 2 * n_feat)
        self.contextembed2 = EmbedFC(n_cfeat, 1 * n_feat)
        self.up0 = nn.Sequential(
            nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, height // 4, height // 4),
            nn.GroupNorm(8, 2 * n_feat),
            nn.ReLU(),
        )
        self.up1 = UnetUp(4 * n_feat, n_feat)
        self.up2 = UnetUp(2 * n_feat, n_feat)
        self.out = nn.Sequential(
            nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1),
            nn.GroupNorm(8, n_feat),
            nn.ReLU(),
            nn.Conv2d(n_feat, in_channels, 3, 1, 1),
        )

    @classmethod
    def from_config(cls, config: ModelConfig) -> "ContextUnet":
        return cls(config.in_channels, config.n_feat, config.n_cfeat, config.height)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W); t: (B,), (B,1,1,1) or (1,1,1,1) holding i/T; c: (B, K) or None (zeros)."""
        if c is None:
            c = torch.zeros(x.shape[0], self.n_cfeat, dtype=x.dtype, device=x.device)
        x0 = self.init_conv(x)  # (B, F, H, W)
        d1 = self.down1(x0)  # (B, F, H/2, W/2)
        d2 = self.down2(d1)  # (B, 2F, H/4, W/4)
        h = self.to_vec(d2)  # (B, 2F, 1, 1)

        ce1 = self.contextembed1(c).view(-1, self.n_feat * 2, 1, 1)
        te1 = self.timeembed1(t).view(-1, self.n_feat * 2, 1, 1)  # one t row broadcasts over B
        ce2 = self.contextembed2(c).view(-1, self.n_feat, 1, 1)
        te2 = self.timeembed2(t).view(-1, self.n_feat, 1, 1)

        u1 = self.up0(h)  # (B, 2F, H/4, W/4)
        u2 = self.up1(ce1 * u1 + te1, d2)  # (B, F, H/2, W/2)
        u3 = self.up2(ce2 * u2 + te2, d1)  # (B, F, H, W)
        return self.out(torch.cat((u3, x0), 1))  # (B, C, H, W)


def pinned_shortcut_(conv: nn.Conv2d, seed: int) -> None:
    """Fill `conv` as PyTorch initialises a new Conv2d, but from a private seeded generator.

    nn.Conv2d.reset_parameters uses kaiming_uniform_(a=sqrt(5)) for the weight and
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias; both bounds equal 1/sqrt(fan_in).
    A CPU torch.Generator (Mersenne Twister) gives the same draws on every machine.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SHORTCUT_SEED_MAX:
        raise ValueError(f"the shortcut seed must be an integer in 0..{SHORTCUT_SEED_MAX}, got {seed!r}")
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    bound = 1.0 / math.sqrt(fan_in)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        weight = torch.empty(conv.weight.shape).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(conv.bias.shape).uniform_(-bound, bound, generator=generator)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
