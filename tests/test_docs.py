"""Every repository path a doc cites exists (README.md, docs/*.md).

Two kinds of citation are checked: markdown link targets (relative to the doc's folder,
as a reader's browser resolves them) and `code` spans that name a path under one of the
repository's tracked top-level folders or files (relative to the repository root). A
package path such as spritegen/runtime/noise.py is not a repository path (the file is
runtime/noise.py) and is refused too; build outputs (build/, node_modules/) are not
tracked and not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")
TOP = {path.name for path in REPO.iterdir() if path.name not in {"build", ".git", ".venv"}
       and not path.name.endswith(".egg-info")}
NOT_TRACKED = ("node_modules/", "build/")


def _expand(text: str) -> list[str]:
    """`a/b.hpp/.cpp` (docs' shorthand for a header and its source) -> both; `path:line` and
    `file.py::test` -> the file; a trailing glob stays a glob."""
    text = text.split("::")[0].rstrip(".,;:")
    text = re.sub(r":\d+(-\d+)?$", "", text)
    shorthand = re.fullmatch(r"(.+)\.(\w+)/\.(\w+)", text)
    if shorthand:
        stem, first, second = shorthand.groups()
        return [f"{stem}.{first}", f"{stem}.{second}"]
    return [text]


def _exists(path: Path) -> bool:
    return any(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else path.exists()


def cited(doc: Path) -> list[tuple[str, Path]]:
    """(citation as written, the path it names) for every path-like citation in `doc`."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for target in LINK.findall(text):
        if "://" not in target and not target.startswith("mailto:"):
            found.append((target, (doc.parent / target)))
    for span in CODE.findall(text):
        for path in _expand(span):
            first = path.split("/")[0]
            if first in TOP and ("/" in path or (REPO / first).is_file()) and not any(n in path for n in NOT_TRACKED):
                found.append((span, REPO / path))
    return found


@pytest.mark.fast
@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_cited_path_exists(doc: Path) -> None:
    missing = sorted({f"{written} -> {path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path}"
                      for written, path in cited(doc) if not _exists(path)})
    assert not missing, f"{doc.name} cites paths that do not exist: {missing}"


@pytest.mark.fast
def test_a_wrong_citation_is_reported(tmp_path: Path) -> None:
    """Both kinds are parsed and a missing path is caught (a regex matching nothing would pass every doc)."""
    doc = tmp_path / "doc.md"
    doc.write_text("[gone](nowhere.md), [here](doc.md), `runtime/nowhere.py`, `runtime/noise.py`, "
                   "`spritegen/runtime/noise.py`, `build/cpp/x`, `examples/cpp/noise.hpp/.cpp`\n")
    missing = sorted(written for written, path in cited(doc) if not _exists(path))
    assert missing == ["nowhere.md", "runtime/nowhere.py", "spritegen/runtime/noise.py"]
    assert len(cited(REPO / "README.md")) > 10
