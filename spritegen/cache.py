"""The cached export of the bundled demo checkpoint that `spritegen` uses without --export-dir.

The cache lives in $SPRITEGEN_CACHE_DIR, else the platform's user cache, under
exports/<key>. The key names the checkpoint and its shipped fit (sha256) and the spritegen
version that made the export, so an upgrade whose graphs or manifest differ never reuses an export
written by another version, and a new bundled model never reuses the old one's.
Creating it needs torch once (spritegen.export); a damaged cached export is rebuilt
the same way (`rebuild=True`), or, without torch, the error says what to delete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from spritegen import __version__
from spritegen.contract import CHECKPOINT_FILE, MANIFEST_FILE, UNET_FILES
from spritegen.errors import ExportDirError, InputError, first_line

Say = Callable[[str], None]


def cache_dir() -> Path:
    """Where spritegen caches exports: $SPRITEGEN_CACHE_DIR, else the platform's user cache."""
    if os.environ.get("SPRITEGEN_CACHE_DIR"):
        return Path(os.environ["SPRITEGEN_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spritegen"


def bundled_checkpoint() -> Path:
    """The demo checkpoint shipped in spritegen.export, found without importing it (torch)."""
    spec = importlib.util.find_spec("spritegen.export")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "demo" / CHECKPOINT_FILE if locations else None
    if path is None or not path.is_file():
        raise ExportDirError("no --export-dir given and the bundled demo checkpoint is missing; pass "
                             "--export-dir DIR (made with spritegen-export)")
    return path


def cache_key(checkpoint: Path) -> str:
    """exports/<key>: the sha256 (16 hex) of the checkpoint and of its shipped few-step fit (fast.json
    beside it, which the export's manifest carries), and the spritegen version that exports it."""
    fit = checkpoint.parent / "fast.json"
    digest = hashlib.sha256(checkpoint.read_bytes() + (fit.read_bytes() if fit.is_file() else b"")).hexdigest()[:16]
    return f"{digest}-v{re.sub(r'[^0-9A-Za-z.]+', '_', __version__)}"


def cached_export_dir() -> Path:
    """Where the bundled model's export is (or will be) cached; ExportDirError when the cache
    directory is unusable (a file, or not creatable)."""
    root = cache_dir()
    for parent in (root, root / "exports"):
        if parent.exists() and not parent.is_dir():
            raise ExportDirError(f"the spritegen cache {parent} is not a directory; point SPRITEGEN_CACHE_DIR at a "
                                 "directory (or remove the file)")
    return root / "exports" / cache_key(bundled_checkpoint())


def default_export(say: Say | None = None, rebuild: bool = False) -> Path:
    """The cached export of the bundled checkpoint, created on first use or when `rebuild`
    (a damaged cache), which needs torch once. `say` reports progress (default: stderr)."""
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    target = cached_export_dir()
    if (target / MANIFEST_FILE).is_file() and not rebuild:
        return target
    try:
        from spritegen.export.exporter import export  # lazy: torch is needed only here
    except ImportError as exc:
        if rebuild:
            raise ExportDirError(f"the cached export {target} is damaged and rebuilding it needs the export extra "
                                 f"({exc.name or 'torch'} is missing): delete that directory and pip install "
                                 "'spritegen[export]', or pass --export-dir") from None
        raise ExportDirError(f"no --export-dir given and no cached export of the bundled model in {target}; "
                             f"creating it needs the export extra ({exc.name or 'torch'} is missing): pip install "
                             "'spritegen[export]', or pass --export-dir") from None
    say(f"rebuilding the damaged cached export in {target}..." if rebuild
        else f"creating the bundled model's export in {target} (once)...")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportDirError(f"cannot create the spritegen cache {target.parent} ({first_line(exc)}); point "
                             "SPRITEGEN_CACHE_DIR at a writable directory") from None
    export(None, target, say=lambda message: say(f"  {message}"))
    return target


def damaged(directory: Path) -> bool:
    """Whether a cached export fails its own checks (manifest, hashes, sizes, metadata), as
    opposed to lacking something one request needs."""
    from spritegen.runtime.manifest import load_manifest
    from spritegen.runtime.verify import check_files
    try:
        check_files(load_manifest(directory), keep=set())
    except ExportDirError:
        return True
    return False


def check_cached_precision(directory: Path, precision: str) -> None:
    """The cached export holds the fp32 network only: say how to get the others."""
    file = UNET_FILES[precision]
    if precision != "fp32" and not (directory / file).exists():
        raise InputError(f"--precision {precision} needs {file}, which the bundled model's cached export "
                         f"does not hold; make an export with spritegen-export --{precision} and pass it "
                         "with --export-dir")
