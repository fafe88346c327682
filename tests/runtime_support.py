"""Shared helpers for the runtime and CLI tests.

The export they sample from is conftest's session-scoped `bundled_export` (the bundled
demo checkpoint, exported once per session and shared with the parity suite): tests
must never alter it, so a test that corrupts an export works on `copy_export`'s copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_export(source: Path, target: Path) -> Path:
    """A private copy of an export directory, to corrupt or edit."""
    shutil.copytree(source, target)
    return target
