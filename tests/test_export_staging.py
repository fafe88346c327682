"""The export swap (export/staging.py) with real processes: concurrent exporters, kills at random
moments, another exporter's live staging, symlinked and overlong --out.

These exercise staged_directory on small directories (the swap does not care what it moves),
so each process costs milliseconds; test_export_errors.py runs real exports through it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spritegen.contract import MANIFEST_FILE, MANIFEST_FORMAT
from spritegen.errors import ExportError
from spritegen.export.staging import lock_path, remove_stale, resolve_target, staged_directory

FILES = 12  # files per fake export: a torn swap would show a mix or a gap


def _fill(directory: Path, tag: str) -> None:
    """A fake export: a manifest of our format and FILES files, every one naming `tag`."""
    for k in range(FILES):
        (directory / f"part{k}.onnx").write_text(tag)
    (directory / MANIFEST_FILE).write_text(json.dumps({"format": MANIFEST_FORMAT, "tag": tag}))


def _previous(directory: Path) -> Path:
    """A stand-in for an earlier export at `directory`."""
    directory.mkdir()
    _fill(directory, "previous")
    return directory


def _complete_tag(directory: Path) -> str:
    """The tag of the complete fake export at `directory` (assertion error if torn or missing)."""
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    tags = {(directory / f"part{k}.onnx").read_text() for k in range(FILES)}
    assert tags == {manifest["tag"]}, f"torn export: {tags} vs {manifest['tag']}"
    return manifest["tag"]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def _export_at_barrier(target: str, tag: str, barrier) -> None:
    with staged_directory(Path(target)) as staging:
        _fill(staging, tag)
        barrier.wait(timeout=60)  # every exporter reaches the swap together


@pytest.mark.fast
def test_concurrent_exporters_all_succeed_and_out_stays_complete(tmp_path: Path) -> None:
    target = _previous(tmp_path / "out")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    procs = [context.Process(target=_export_at_barrier, args=(str(target), f"p{k}", barrier)) for k in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]  # nobody lost the race with "Directory not empty"
    assert _complete_tag(target) in {f"p{k}" for k in range(4)}
    assert _leftovers(tmp_path) == []


_SWAP_LOOP = """
import json, sys
from pathlib import Path
from spritegen.export.staging import staged_directory
from tests.test_export_staging import _fill
target, k = Path(sys.argv[1]), 0
print("ready", flush=True)
while True:
    with staged_directory(target) as staging:
        _fill(staging, f"it{k}")
    k += 1
"""


def test_exporter_killed_at_random_moments_never_leaves_out_missing_or_torn(tmp_path: Path) -> None:
    target = _previous(tmp_path / "out")
    rng = random.Random(0)
    root = Path(__file__).resolve().parents[1]
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _SWAP_LOOP, str(target)], cwd=root,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))  # mid-write, mid-swap or mid-cleanup: wherever it lands
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _complete_tag(target)  # complete at every kill
    with staged_directory(target) as staging:  # the next export reclaims what the killed ones left
        _fill(staging, "last")
    assert _complete_tag(target) == "last"
    assert _leftovers(tmp_path) == []


_HOLD_STAGING = """
import sys
from pathlib import Path
from spritegen.export.staging import staged_directory
with staged_directory(Path(sys.argv[1])) as staging:
    print(staging, flush=True)
    sys.stdin.read()  # live until the test closes our stdin
"""


def test_live_staging_is_kept_whatever_its_name_and_dead_ones_go(tmp_path: Path) -> None:
    """Liveness is the owner's lock, not a PID: a staging named after our own live PID but
    unlocked is reclaimed; another process's locked one survives (as it would in another PID
    namespace, where its PID means nothing here)."""
    target = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_STAGING, str(target)], cwd=root,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        unlocked = tmp_path / f".out.partial-somehost-00000000-{os.getpid()}-deadbeef"
        unlocked.mkdir()
        (unlocked / "junk").write_text("x")
        remove_stale(target)
        assert live.is_dir() and not unlocked.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0 and target.is_dir() and not live.exists()


def test_interrupted_two_rename_swap_is_repaired_by_the_next_export(tmp_path: Path) -> None:
    """Where RENAME_EXCHANGE is unsupported, a kill between the two renames leaves --out missing
    and the previous export at `<staging>-old`, unlocked: the next exporter puts it back."""
    target = tmp_path / "out"
    aside = tmp_path / ".out.partial-host-00000000-1-cafe-old"
    aside.mkdir()
    _fill(aside, "previous")
    remove_stale(target)
    assert _complete_tag(target) == "previous" and _leftovers(tmp_path) == []


def test_symlinked_out_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "exports" / "v1"
    real.parent.mkdir()
    _previous(real)
    link = tmp_path / "current"
    link.symlink_to(real)
    with staged_directory(resolve_target(link)) as staging:
        _fill(staging, "new")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert _complete_tag(link) == "new"
    assert _leftovers(tmp_path) == [] and _leftovers(real.parent) == []


def test_dangling_symlink_and_overlong_names_are_one_line(tmp_path: Path) -> None:
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ExportError, match="is a symlink to .*nowhere, which does not exist") as info:
        resolve_target(link)
    assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match="File name too long"):
        resolve_target(tmp_path / ("x" * 300))
    long_name = tmp_path / ("y" * 250)  # legal, but its staging name must be shortened to stay legal
    with staged_directory(resolve_target(long_name)) as staging:
        _fill(staging, "long")
    assert _complete_tag(long_name) == "long"
    assert len(lock_path(long_name).name) < 255 and not lock_path(long_name).exists()  # unlinked when done


def test_replacing_a_non_export_or_a_file_is_refused(tmp_path: Path) -> None:
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "cat.jpg").write_text("meow")
    with pytest.raises(ExportError, match="not a spritegen export"):
        with staged_directory(precious):
            pass
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        with staged_directory(afile):
            pass
    assert (precious / "cat.jpg").read_text() == "meow" and _leftovers(tmp_path) == []
