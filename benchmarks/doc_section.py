"""Generated tables in hand-written docs: a section between two HTML-comment markers.

The benchmark that measures a table rewrites only the lines between its markers, so the
prose around it stays the author's and the table never drifts from the results file.
"""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, section: str, start: str, end: str) -> None:
    """Put `section` between the markers of `doc` (appended with them if absent), atomically."""
    text = doc.read_text() if doc.is_file() else ""
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    partial = doc.with_name(doc.name + ".partial")
    partial.write_text(text)
    partial.replace(doc)  # never a half-written doc
