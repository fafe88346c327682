"""spritegen: ship the SpriteGen diffusion model without torch.

`spritegen.contract` holds the facts every part shares (class names, model and
schedule hyperparameters, export file names and IO contract); `spritegen.export`
needs torch, `spritegen.runtime` needs only numpy and onnxruntime.
"""

__version__ = "0.2.0"
