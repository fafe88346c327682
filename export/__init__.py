"""spritegen.export: everything that needs torch.

The course's model (with its pinned shortcut), checkpoint sources, the eager reference
samplers that every exported path is compared with, and the exporters.
"""

from spritegen.export.checkpoint import LoadedCheckpoint, load_checkpoint, load_model
from spritegen.export.model import ContextUnet

__all__ = ["ContextUnet", "LoadedCheckpoint", "load_checkpoint", "load_model"]
