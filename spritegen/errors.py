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
