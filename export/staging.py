"""Write an export directory all-or-nothing: stage beside the target, then swap it in atomically.

(No torch here: the swap is plain files, so tests and tools can drive it in light processes.)

Names, all in --out's parent (one filesystem, so every rename is atomic):

- `.<name>.lock`: a lock file, flock'ed (exclusively) by an exporter while it cleans up stale
  stagings, creates its own, and swaps (milliseconds); the holder unlinks it when done (see
  out_lock), so it outlives only a killed holder, and is then simply reused.
- `.<name>.partial-<host>-<boot>-<pid>-<random>`: one exporter's staging directory. Its owner
  holds an flock on the directory itself for as long as it lives, so "is the owner alive?"
  is answered by the kernel, not by a PID, which names another process in another PID
  namespace (two containers sharing a volume) or after PID reuse. The host, boot id and PID
  in the name are for people reading `ls -a`; no decision reads them.

The swap, under the lock: on Linux `renameat2(RENAME_EXCHANGE)` exchanges the staging
directory and --out in one step, so --out names a complete export at every instant, then
the previous export (now at the staging name) is deleted. Where the exchange is unsupported
(not Linux, or a filesystem that refuses it) two renames are used: --out aside to
`<staging>-old`, the staging in; a process killed between the two leaves --out missing and
the previous export at `-old`, which the next export to the same --out puts back before it
starts. docs/export.md ("Concurrent exports") states what is and is not guaranteed.

An existing --out is replaced only when it is a previous export (or empty): we never delete a
directory the user did not get from us. A --out that is a symlink to a directory is
followed: the directory it points to is swapped and the link keeps pointing at the export.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spritegen.contract import MANIFEST_FILE, MANIFEST_FORMAT
from spritegen.errors import ExportError
from spritegen.files import read_regular_file

# An export's manifest is ~0.1 MB (three schedule arrays of T + 1 floats at T <= 10000 is ~0.6 MB).
MAX_MANIFEST_BYTES = 16 << 20
LOCK_TIMEOUT_S = 300.0  # a swap takes milliseconds; a lock held this long belongs to a stuck process
_POLL_S = 0.05
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_NAME_MAX = 100  # characters of --out's name kept in the hidden names (NAME_MAX is 255 bytes)


def _base(target: Path) -> str:
    """--out's name as used in the hidden names: shortened (with a hash) when long."""
    name = target.name
    if len(name.encode()) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return name.encode()[:_NAME_MAX - 13].decode("utf-8", "ignore") + "~" + digest


def _partial_prefix(target: Path) -> str:
    return f".{_base(target)}.partial-"


def lock_path(target: Path) -> Path:
    return target.parent / f".{_base(target)}.lock"


def _owner() -> str:
    """host-boot-pid-random: unique per exporter, and readable (module doc)."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:32] or "host"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        boot = "noboot"
    return f"{host}-{boot}-{os.getpid()}-{secrets.token_hex(4)}"


def _lstat_mode(path: Path, what: str) -> int | None:
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ExportError(f"cannot use {what} {str(path)[:200]!r}: {getattr(exc, 'strerror', None) or exc}") from None


def resolve_target(out: str | Path) -> Path:
    """The absolute --out, with a symlink followed to the directory it names (module doc)."""
    path = Path(os.path.abspath(Path(out).expanduser()))
    mode = _lstat_mode(path, "--out")
    if mode is None or not stat.S_ISLNK(mode):
        return path
    real = Path(os.path.realpath(path))
    real_mode = _lstat_mode(real, "--out's link target")
    if real_mode is None:
        raise ExportError(f"--out {path} is a symlink to {real}, which does not exist; create that directory "
                          "or pass a real path")
    if stat.S_ISLNK(real_mode):
        raise ExportError(f"--out {path} is a symlink loop; pass a real directory path")
    return real


def read_manifest(directory: Path) -> dict | None:
    """The manifest of `directory` if it is a spritegen export, else None (also for a manifest
    that is not a regular file, is oversized, or nests too deeply to parse)."""
    try:
        data = read_regular_file(Path(directory) / MANIFEST_FILE, MAX_MANIFEST_BYTES, ExportError, "manifest")
        manifest = json.loads(data)
    except (ExportError, ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def check_target(target: Path) -> None:
    """Raise ExportError when `target` cannot be (re)placed by an export."""
    mode = _lstat_mode(target, "--out")
    if mode is None:
        return
    if stat.S_ISLNK(mode):
        raise ExportError(f"--out {target} became a symlink during the export; refusing to replace it")
    if not stat.S_ISDIR(mode):
        raise ExportError(f"--out {target} is a file; pass a directory path")
    try:
        empty = not os.listdir(target)
    except OSError as exc:
        raise ExportError(f"cannot read --out {target}: {exc.strerror or exc}") from None
    if not empty and read_manifest(target) is None:
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


def _flock(fd: int, path: Path, target: Path, deadline: float) -> bool:
    """Wait for the exclusive flock of `fd`; False on a filesystem without flock."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ExportError(f"another export to {target} has held {path} for {LOCK_TIMEOUT_S:.0f} s; "
                                  "wait for it, or stop it and retry") from None
            time.sleep(_POLL_S)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            return False  # exports there are not serialised (docs/export.md)


@contextmanager
def out_lock(target: Path) -> Iterator[None]:
    """Hold the exclusive flock of `target`'s lock file (module doc).

    The holder unlinks the file when done, so nothing is left beside --out; a waiter that
    then gets the lock of the unlinked file sees that the path no longer names its file
    and starts over on the path's new one (the usual lock-file-with-unlink protocol).
    """
    path = lock_path(target)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ExportError(f"cannot create the lock file {path} ({exc.strerror or exc}); "
                              "choose a writable --out") from None
        try:
            locked = _flock(fd, path, target, deadline)
            mine = os.fstat(fd)
            current = os.stat(path, follow_symlinks=False)
            if not locked or (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass  # unlinked by the previous holder: start over
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # releases the lock


def _try_lock_dir(path: Path) -> int | None:
    """An fd holding the flock of directory `path`, or None if its owner lives (or it cannot be locked)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live exporter, or no flock here: never reclaim on doubt
        os.close(fd)
        return None
    return fd


def remove_stale(target: Path) -> None:
    """Reclaim stagings of `target` whose owner is gone (call under out_lock).

    A dead owner's `-old` directory is the previous export of an interrupted two-rename swap:
    it is put back as --out when --out is missing, else deleted; any other is deleted.
    """
    prefix = _partial_prefix(target)
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in sorted(names):
        path = target.parent / name
        mode = _lstat_mode(path, "staging directory")
        if mode is None or not stat.S_ISDIR(mode):
            continue
        fd = _try_lock_dir(path)
        if fd is None:
            continue
        try:
            if name.endswith("-old") and _lstat_mode(target, "--out") is None and read_manifest(path) is not None:
                os.rename(path, target)
            else:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, target: Path) -> None:
    """Put `staging` at `target` (call under out_lock); the previous export ends at `staging`'s
    name (exchange) or is deleted (fallback), so the caller's cleanup of `staging` removes it."""
    check_target(target)  # it may have changed while we exported
    if _lstat_mode(target, "--out") is None:
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return
    old = staging.with_name(staging.name + "-old")
    os.rename(target, old)  # crash window: --out is missing until the next line (module doc)
    try:
        os.rename(staging, target)
    except BaseException:  # even Ctrl-C here: put the previous export back
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes `target`, on any failure it vanishes."""
    target = Path(target)
    check_target(target)
    _make_parent(target)
    # The name is fixed before the directory exists, so an interrupt at any point
    # (even inside mkdir) is followed by the removal of exactly this path.
    staging = target.parent / f"{_partial_prefix(target)}{_owner()}"
    held: int | None = None
    try:
        with out_lock(target):
            remove_stale(target)
            try:
                staging.mkdir()
            except OSError as exc:
                raise ExportError(f"cannot write to {target.parent} ({exc.strerror or exc}); "
                                  "choose a writable --out") from None
            held = _try_lock_dir(staging)  # ours, until we are done or dead
        yield staging
        with out_lock(target):
            try:
                _swap_in(staging, target)
            except OSError as exc:
                raise ExportError(f"cannot put the export in place at {target} ({exc.strerror or exc}); "
                                  "the previous export, if any, is unchanged") from None
            shutil.rmtree(staging, ignore_errors=True)  # the previous export, after an exchange
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if held is not None:
            with contextlib.suppress(OSError):
                os.close(held)
