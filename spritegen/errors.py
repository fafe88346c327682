"""Error types whose message is the one line a user sees.

Every failure that bad input can cause raises a `SpriteGenError` whose message says
what is wrong and what to do; the CLIs print it alone and exit non-zero, so users
never see a traceback for their own mistakes.
"""


class SpriteGenError(Exception):
    """Base class: a user-facing failure with a one-line, actionable message."""


class CheckpointError(SpriteGenError):
    """A checkpoint source could not be resolved, downloaded, or loaded."""


class ExportError(SpriteGenError):
    """An export could not be written or failed its validation."""


class ExportDirError(SpriteGenError):
    """An export directory is missing, foreign, corrupted, or tampered with."""


class InputError(SpriteGenError):
    """A sampling request (context, noise, steps, batch) is malformed."""


class UsageError(InputError):
    """A command-line option combination the command does not take (a sampler's option it has no
    use for, a call count the export's fitted sampler was not fitted for): the CLIs exit 2 with
    their usage line, as for typer's own usage errors."""


class OutputError(SpriteGenError):
    """A result (picture, array, export) could not be written where the user asked."""


def shown(value: object, limit: int = 60) -> str:
    """`value`'s repr on one line and at most `limit` characters: how a value the caller
    passed appears in a message (an ndarray's repr spans lines, a hostile list megabytes)."""
    try:
        text = " ".join(repr(value).split())
    except Exception:  # a hostile __repr__
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when empty): how a
    library's multi-line error becomes part of one of our one-line messages."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
