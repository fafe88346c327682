"""The eager path of the cold-start figure: what a course user runs to get one sprite.

Fresh process: import torch, load the checkpoint, run the reference DDIM-25 sampler on
one sprite, write a PNG. `python -m benchmarks.eager_sample OUT.png [--checkpoint SRC]
[--n 25] [--seed 0]`. Kept minimal on purpose: it is the baseline that
`spritegen sample` is compared with, not a product command.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from spritegen.contract import DDIM_DEFAULT_STEPS
from spritegen.export.checkpoint import load_model
from spritegen.export.reference import sample_ddim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--n", type=int, default=DDIM_DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.checkpoint)
    cfg = model.config
    generator = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(1, cfg.in_channels, cfg.height, cfg.height, generator=generator)
    context = torch.zeros(1, cfg.n_cfeat)
    context[0, 0] = 1  # the first class (hero)
    sprite, _ = sample_ddim(model, noise, context, n=args.n)
    pixels = ((sprite[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).resize((cfg.height * 8, cfg.height * 8), Image.NEAREST).save(args.out)


if __name__ == "__main__":
    main()
