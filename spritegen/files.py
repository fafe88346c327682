"""Safe file IO for every part of spritegen: atomic writes and bounded reads of untrusted files.

One home for two rules the project keeps everywhere:

- Writes are all-or-nothing: data goes to a temporary file beside the target, then one
  `os.replace` puts it in place, so a reader (or a crash) never sees half a file. Only a
  regular file (or nothing) may stand at the target: a symlink, FIFO or device there is
  refused instead of being replaced, so `--out /dev/stdout` or a planted link to a system
  file cannot turn a picture write into damage elsewhere.
- Reads of files that came from elsewhere (export graphs, manifests, configs) refuse
  non-regular files (a FIFO would block forever, /dev/zero never ends) and files larger
  than the caller's bound, before reading a byte.

Nothing here changes process-wide state: the umask is read from /proc (setting it to read
it, as os.umask forces, races with other threads creating files).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from spritegen.errors import OutputError, SpriteGenError

_HEX_DIGITS = frozenset("0123456789abcdef")

_DEFAULT_UMASK = 0o022


def umask() -> int:
    """The process umask, read without changing it (Linux /proc), else the common 022."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _DEFAULT_UMASK


def check_writable_target(path: Path) -> None:
    """OutputError unless `path` is absent or a regular file in an existing directory."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode) else "a special file"
        raise OutputError(f"refusing to write {path}: it is {kind}, not a regular file; choose another path")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {path.parent} does not exist; create it first")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The file gets the permissions a plain open() would give (mkstemp's are owner-only).
    OutputError (one line) when the target is not writable or the disk refuses the data.
    """
    path = Path(path)
    check_writable_target(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """`data` to `path`, all or nothing (see atomic_write)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """UTF-8 `text` to `path`, all or nothing (see atomic_write)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks (a large file never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_sha256(value: object) -> bool:
    """Whether `value` is a sha256 as sha256_file writes it (64 lowercase hex digits): what a
    manifest, a graph's metadata or a student's config may record, checked before it is trusted."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX_DIGITS


def read_regular_file(path: str | Path, max_bytes: int, error: type[SpriteGenError], what: str) -> bytes:
    """The bytes of `path`, refusing a non-regular file or one over `max_bytes` before reading.

    The file is opened non-blocking (a FIFO cannot hang the open), checked with fstat on the
    opened descriptor (no swap between check and read), and read at most max_bytes + 1 bytes.
    `error` is the SpriteGenError type raised, `what` names the file in its one line.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{what} {path} is missing") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file (a device, FIFO or directory); refusing to read it")
        if info.st_size > max_bytes:
            raise error(f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} allowed; "
                        "it is not what it claims to be")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{what} {path} grew past {max_bytes} bytes while being read; refusing it")
    return data
