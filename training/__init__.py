"""spritegen.training: procedural sprites and the trainer of the bundled demo checkpoint.

`make_sprites` needs numpy only; the trainer (`python -m spritegen.training`) needs the
`export` extra (torch, wandb).
"""

from spritegen.training.sprites import make_sprites

__all__ = ["make_sprites"]
