"""spritegen.export: everything that needs torch.

The course's model (with its pinned shortcut), checkpoint sources, the eager reference
samplers that every exported path is compared with, and the exporters. The names below
are imported on first use, so `spritegen.export.staging` and the CLI's --help stay
torch-free and fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"ContextUnet": "spritegen.export.model", "LoadedCheckpoint": "spritegen.export.checkpoint",
         "load_checkpoint": "spritegen.export.checkpoint", "load_model": "spritegen.export.checkpoint"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spritegen.export' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
