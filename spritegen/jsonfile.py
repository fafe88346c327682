"""JSON from files that came from elsewhere (manifests, run configs): bounded depth, one-line errors.

Python's json parser recurses once per nesting level, so a 200000-deep `[[[[...` raises
RecursionError (or worse, in a thread with a small stack) instead of a parse error. The
depth is therefore measured first, by a linear scan that skips string literals, and a
document nested deeper than the caller allows is refused before it is parsed. Pair with
`spritegen.files.read_regular_file` to bound the size as well.
"""

from __future__ import annotations

import json
import re
from typing import Any

from spritegen.errors import SpriteGenError, first_line

MAX_DEPTH = 32  # far above any document spritegen writes (manifest: 6 levels), far below the recursion limit
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote, a bracket


def nesting_depth(data: bytes, stop_above: int | None = None) -> int:
    """The deepest bracket nesting of a JSON text outside string literals, in one linear pass
    (a regex over whole strings backtracks quadratically on hostile input); stops early once
    deeper than `stop_above`. A malformed text gets a best guess."""
    depth = deepest = 0
    in_string = False
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or token[0] == 0x5C:  # inside a string, or an escape pair outside one
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    break
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes, error: type[SpriteGenError], what: str, max_depth: int = MAX_DEPTH) -> Any:
    """`data` (UTF-8 JSON) parsed; `error` with one line naming `what` when it is not UTF-8, not
    JSON, nested deeper than `max_depth`, or holds NaN/Infinity (not JSON, though Python writes them)."""
    depth = nesting_depth(data, stop_above=max_depth)
    if depth > max_depth:
        raise error(f"{what} is nested more than {max_depth} levels deep; "
                    "it is not a file spritegen wrote")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text (byte {exc.start}); it is not a file spritegen wrote") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON ({first_line(exc)})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
