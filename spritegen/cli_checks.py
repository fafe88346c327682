"""What a `spritegen` command checks before it samples anything.

Sampling can take minutes (DDPM at a large batch), so every request the sampler or the
writes would refuse afterwards is refused first: DDIM options given to DDPM, a sprite
count over --max-batch, and the output files. For those: the format each path's extension names (a picture
written as PNG bytes into `s.jpg` would lie about its content), two outputs that are
one file, and each path's target (a symlink, device or directory there is refused by
spritegen.files; a directory that refuses a new file, such as /proc, is found by
creating and removing a probe file in it).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


from spritegen.contract import DDPM_SAVE_RATE, SAMPLERS, ddpm_keeps
from spritegen.errors import InputError, OutputError, UsageError, first_line
from spritegen.files import check_writable_target

# What each extension writes: the three formats the commands produce.
FORMATS = {".png": "png", ".gif": "gif", ".npy": "npy"}


@dataclass(frozen=True)
class Output:
    """One file a command writes: its option, path and the formats that option may produce."""

    option: str
    path: Path
    allowed: tuple[str, ...]

    @property
    def format(self) -> str:
        return FORMATS[self.path.suffix.lower()]


def check_outputs(outputs: list[Output]) -> None:
    """OutputError (one line) unless every output can be written, in a format its extension
    names, to a distinct regular file; nothing is left behind by the check."""
    seen: dict[object, str] = {}
    for output in outputs:
        suffix = output.path.suffix.lower()
        if FORMATS.get(suffix) not in output.allowed:
            wanted = ", ".join(f".{f}" for f in output.allowed)
            raise OutputError(f"{output.option} {output.path}: unsupported extension {suffix or '(none)'!r}; "
                              f"{output.option} writes {wanted}")
        key = _identity(output.path)
        if key in seen:
            raise OutputError(f"{output.option} and {seen[key]} both name {output.path}; give each output its own file")
        seen[key] = output.option
        check_writable_target(output.path)
        _probe(output.path.parent, output.option)


def _identity(path: Path) -> object:
    """What makes two outputs one file: an existing file's (device, inode), so hard links and
    other spellings compare equal; else the path with its directories' symlinks resolved."""
    try:
        info = os.stat(path)
        return (info.st_dev, info.st_ino)
    except OSError:
        pass
    try:
        return path.parent.resolve() / path.name
    except (OSError, RuntimeError):  # a symlink loop: check_writable_target reports the path
        return path


def _probe(directory: Path, option: str) -> None:
    """Create and remove a file in `directory`: the only reliable test that a write will succeed
    (permission bits say nothing about /proc, read-only mounts or quotas; root passes os.access)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".spritegen-probe-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{option}: cannot create files in {directory} ({exc.strerror or first_line(exc)}); "
                          "choose another directory") from None
    os.close(fd)
    os.unlink(name)


def sampler_options(sampler: str, *, n: int | None, eta: float | None) -> None:
    """--n and --eta are refused, rather than silently ignored, by a sampler that does not take them
    (contract.SAMPLERS): DDPM always runs T steps, the fast sampler has its fitted eta."""
    spec = SAMPLERS[sampler]
    given = [name for name, value, takes in (("--n", n, spec.takes_n), ("--eta", eta, spec.takes_eta))
             if value is not None and not takes]
    if given:
        takers = [name for name, other in SAMPLERS.items() if all(
            (other.takes_n if flag == "--n" else other.takes_eta) for flag in given)]
        raise UsageError(f"--sampler {sampler} takes no {' or '.join(given)} ({spec.doc}); drop "
                         f"{'it' if len(given) == 1 else 'them'}, or use --sampler {' or '.join(takers)}")


def check_batch(count: int, runtime, what: str) -> None:
    """The run's sprite count against --max-batch, before any list or array of that size exists."""
    if count > runtime.max_batch:
        raise InputError(f"{what} = {count} sprites, more than --max-batch {runtime.max_batch}; ask for fewer, "
                         "or raise --max-batch")


def trajectory_states(timesteps: int, steps: int | None, rate: int | None) -> int:
    """States a trajectory GIF shows after x_T: every step of a run of `steps` steps, or (steps
    None) DDPM's kept ones."""
    if steps is not None:
        return steps
    return sum(ddpm_keeps(i, timesteps, rate or DDPM_SAVE_RATE) for i in range(1, timesteps + 1))
