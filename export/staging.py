"""Write an export directory all-or-nothing: stage beside the target, then swap it in.

The staging directory `.<name>.partial-<pid>-<random>` sits in the target's parent,
so the final rename stays on one filesystem. A failure or Ctrl-C removes it; a
SIGKILL cannot, so the next export removes stagings whose process is gone. An
existing target is replaced only when it is a previous export (or empty): we never
delete a directory the user did not get from us.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spritegen.errors import ExportError
from spritegen.export.manifest import read_manifest


def _partial_prefix(target: Path) -> str:
    return f".{target.name}.partial-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: Path) -> None:
    """Delete stagings of `target` left by killed exports (their pid is gone)."""
    prefix = _partial_prefix(target)
    for path in target.parent.glob(prefix + "*"):
        pid_text = path.name[len(prefix):].split("-", 1)[0]
        if path.is_dir() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def check_target(target: Path) -> None:
    """Raise ExportError when `target` cannot be (re)placed by an export."""
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {target} is a file; pass a directory path")
    if target.is_dir() and any(target.iterdir()) and read_manifest(target) is None:
        raise ExportError(f"--out {target} exists and is not a spritegen export; refusing to replace it "
                          "(pass a new or empty directory)")


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {target.parent} for --out ({exc.strerror or exc}); "
                          "choose a writable location") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write to {target.parent} (permission denied); choose a writable --out")


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes `target`, on any failure it vanishes."""
    check_target(target)
    _make_parent(target)
    remove_stale(target)
    # The name is fixed before the directory exists, so an interrupt at any point
    # (even inside mkdir) is followed by the removal of exactly this path.
    staging = target.parent / f"{_partial_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        try:
            staging.mkdir()
        except OSError as exc:
            raise ExportError(f"cannot write to {target.parent} ({exc.strerror or exc}); "
                              "choose a writable --out") from None
        yield staging
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, target: Path) -> None:
    """Rename staging to target; a previous export is moved aside first and removed after."""
    check_target(target)  # it may have changed while we exported
    old = None
    if target.exists():
        old = target.parent / f"{_partial_prefix(target)}{os.getpid()}-old"
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:  # even Ctrl-C here: put the previous export back
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
