"""Hostile checkpoints and run configs: each refused with one line naming the file and the field,
before any export work; none of them runs code, hangs, or allocates without bound.

Everything here loads a tiny ContextUnet (n_feat=8) or fails before building one, so the
module runs in seconds; the one export that writes (the full-disk case) is tiny too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from spritegen.contract import CHECKPOINT_FILE, TIMESTEPS_LIMITS, ModelConfig, ScheduleConfig
from spritegen.errors import CheckpointError, SpriteGenError
from spritegen.export.checkpoint import MAX_CHECKPOINT_BYTES, NO_CONFIG, load_checkpoint
from spritegen.export.cli import main
from spritegen.export.exporter import export
from spritegen.export.run_config import MAX_CONFIG_BYTES
from tests.models import course_state_dict, make_random_model

TINY = ModelConfig(n_feat=8)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return course_state_dict(make_random_model(seed=5, config=TINY))


def _one_line(exc_info: pytest.ExceptionInfo) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def _with(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state, key: value}


# ------------------------------------------------------------------ checkpoints
TENSOR_CASES: list[tuple[str, Callable[[dict[str, torch.Tensor]], dict[str, Any]], str]] = [
    ("int64", lambda s: _with(s, "out.3.bias", torch.ones(3, dtype=torch.int64)), r"'out\.3\.bias' is torch\.int64"),
    ("bool", lambda s: _with(s, "out.3.bias", torch.ones(3, dtype=torch.bool)), r"'out\.3\.bias' is torch\.bool"),
    ("complex", lambda s: _with(s, "out.3.bias", torch.ones(3, dtype=torch.complex64)),
     r"'out\.3\.bias' is torch\.complex64"),
    ("sparse", lambda s: _with(s, "out.3.weight", s["out.3.weight"].to_sparse()),
     r"'out\.3\.weight' is a torch\.sparse_coo"),
    ("meta", lambda s: _with(s, "out.3.bias", torch.empty(3, device="meta")), r"'out\.3\.bias' is a meta tensor"),
    ("nan", lambda s: _with(s, "out.0.weight",
                            s["out.0.weight"].clone().index_fill_(0, torch.tensor([1]), float("nan"))),
     r"'out\.0\.weight' holds NaN or infinite"),
    ("inf", lambda s: _with(s, "up0.1.bias", torch.full_like(s["up0.1.bias"], float("inf"))),
     r"'up0\.1\.bias' holds NaN or infinite"),
    ("float-count", lambda s: _with(s, "init_conv.conv1.1.num_batches_tracked", torch.tensor(1.5)),
     r"num_batches_tracked' is torch\.float32"),
]


@pytest.mark.parametrize("make, pattern", [(m, p) for _, m, p in TENSOR_CASES], ids=[c[0] for c in TENSOR_CASES])
def test_tensors_the_model_cannot_hold_unchanged_are_refused(tmp_path: Path, tiny_state, make, pattern) -> None:
    path = tmp_path / "bad.pth"
    torch.save(make(tiny_state), path)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    _one_line(info)


def test_float64_and_fp16_weights_are_floating_point_and_load(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "mixed.pth"
    torch.save({**tiny_state, "out.3.bias": tiny_state["out.3.bias"].double(),
                "out.3.weight": tiny_state["out.3.weight"].half()}, path)
    assert load_checkpoint(path).config == TINY


class _Runs:
    """A pickle payload: os.mkdir(marker) when unpickled (never, if loading is safe)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_refused_pickle_names_its_call_and_never_runs_it(tmp_path: Path, tiny_state) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({**tiny_state, "extra": _Runs(marker)}, path)
    with pytest.raises(CheckpointError, match=r"would call posix\.mkdir; refused: .*weights-only unpickler") as info:
        load_checkpoint(path)
    message = _one_line(info)
    assert "weights_only=False" not in message and "will likely succeed" not in message
    assert not marker.exists()


def test_special_oversized_and_unnameable_checkpoint_files_are_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(fifo)
    huge = tmp_path / "huge.pth"
    with open(huge, "wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse: no disk used, refused by its size alone
    with pytest.raises(CheckpointError, match="more than the"):
        load_checkpoint(huge)
    with pytest.raises(CheckpointError, match="File name too long") as info:
        load_checkpoint(tmp_path / ("a" * 300 + ".pth"))
    _one_line(info)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint("/dev/zero")


def test_shortcut_seed_beyond_64_bits_is_one_line(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError, match=r"--shortcut-seed must be an integer in 0\.\.") as info:
        load_checkpoint(path, shortcut_seed=2**70)
    _one_line(info)


# ------------------------------------------------------------------ run configs
def _artifact_dir(tmp_path: Path, state: dict[str, torch.Tensor], config: bytes | None) -> Path:
    directory = tmp_path / "artifact"
    directory.mkdir()
    torch.save(state, directory / CHECKPOINT_FILE)
    if config is not None:
        (directory / "config.json").write_bytes(config)
    return directory


CONFIG_CASES = [
    ("null-n_feat", json.dumps({"n_feat": None}).encode(), r"n_feat must be an integer, got None"),
    ("string-timesteps", json.dumps({"timesteps": "many"}).encode(), r"timesteps must be an integer, got 'many'"),
    ("bool-height", json.dumps({"height": True}).encode(), r"height must be an integer, got True"),
    ("nan-beta", b'{"beta1": NaN}', r"beta1 must be a finite number, got nan"),
    ("beta-order", json.dumps({"beta1": 0.5, "beta2": 0.1}).encode(), r"beta1 must not exceed beta2"),
    ("beta-one", json.dumps({"beta2": 1.0}).encode(), r"beta2 must be a number in \(0, 1\)"),
    ("list", b"[1, 2]", r"holds a JSON list, not an object"),
    ("not-utf8", b'{"n_feat": "\xff\xfe"}', r"is not UTF-8 text"),
    ("not-json", b'{"n_feat": 8,', r"is not valid JSON"),
    ("nested", b"[" * 200_000 + b"]" * 200_000, r"nests its JSON too deeply"),
    ("contradiction", json.dumps({"n_feat": 64}).encode(), r"n_feat=64 contradicts the checkpoint's weights"),
] + [(f"timesteps-{t}", json.dumps({"timesteps": t}).encode(),
      rf"timesteps must be an integer in {TIMESTEPS_LIMITS[0]}\.\.{TIMESTEPS_LIMITS[1]}, got {t}")
     for t in (0, -5, 10**7)]


@pytest.mark.parametrize("config, pattern", [(c, p) for _, c, p in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
@pytest.mark.fast
def test_malformed_run_config_is_one_line_naming_file_and_field(tmp_path: Path, tiny_state, config: bytes,
                                                                pattern: str) -> None:
    directory = _artifact_dir(tmp_path, tiny_state, config)
    with pytest.raises(CheckpointError, match=pattern) as info:
        export(directory, tmp_path / "out")
    message = _one_line(info)
    assert f"config.json of artifact directory {directory}" in message
    assert "--loop-steps" not in message
    assert not (tmp_path / "out").exists()


def test_oversized_run_config_is_refused_unread(tmp_path: Path, tiny_state) -> None:
    directory = _artifact_dir(tmp_path, tiny_state, None)
    with open(directory / "config.json", "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(CheckpointError, match="more than the") as info:
        load_checkpoint(directory)
    _one_line(info)


def test_config_beside_a_bare_pth_is_ignored_and_said_unless_named(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "weights.pth"
    torch.save(tiny_state, path)
    (tmp_path / "config.json").write_text(json.dumps({"timesteps": 1000, "n_feat": 8}))
    loaded = load_checkpoint(path)
    assert loaded.schedule == ScheduleConfig()  # T stays the course's 500
    assert loaded.provenance["config"] == {"origin": NO_CONFIG, "path": None}
    assert any("ignored" in note and "--config" in note for note in loaded.notes)
    named = load_checkpoint(path, config=tmp_path / "config.json")
    assert named.schedule.timesteps == 1000
    assert named.provenance["config"]["path"] == str(tmp_path / "config.json")
    assert named.provenance["run_config"]["timesteps"] == 1000


def test_artifact_directory_config_is_used_and_recorded(tmp_path: Path, tiny_state) -> None:
    directory = _artifact_dir(tmp_path, tiny_state, json.dumps({"timesteps": 400, "beta2": 0.03}).encode())
    loaded = load_checkpoint(directory)
    assert loaded.schedule == ScheduleConfig(timesteps=400, beta2=0.03)
    assert loaded.provenance["config"]["origin"] == f"config.json of artifact directory {directory}"


@pytest.mark.parametrize("config, pattern", [
    (b'{"timesteps": 0}', "config.json of artifact directory .*: timesteps must be an integer in 1..10000, got 0"),
    (b"\xff", "is not UTF-8 text"),
])
def test_cli_config_errors_are_one_line_exit_1(tmp_path: Path, tiny_state, capsys, config: bytes, pattern: str) -> None:
    directory = _artifact_dir(tmp_path, tiny_state, config)
    with pytest.raises(SystemExit) as exit_info:
        main([str(directory), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert re.search(pattern, err[0]), err[0]


# ------------------------------------------------------------------ a full disk
_FSIZE_EXPORT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from spritegen.export.cli import main
main(sys.argv[1:])
"""


def _tmpfs(path: Path) -> bool:
    """Mount a 64 KiB tmpfs at `path` (root only): a real ENOSPC for whatever is written there."""
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_disk_during_export_is_one_line_and_leaves_nothing(tmp_path: Path, tiny_state) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(tiny_state, checkpoint)
    disk = tmp_path / "disk"
    if _tmpfs(disk):
        try:
            with pytest.raises(SpriteGenError, match="No space left on device") as info:
                export(checkpoint, disk / "out")
            _one_line(info)
            assert list(disk.iterdir()) == []
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        return
    root = Path(__file__).resolve().parents[1]  # unprivileged: a file-size limit fails the same writes
    run = subprocess.run([sys.executable, "-c", _FSIZE_EXPORT, str(checkpoint), "--out", str(disk / "out")],
                         cwd=root, capture_output=True, text=True, timeout=300)
    err = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(err) == 1 and "File too large" in err[0], run.stderr[-2000:]
    assert list(disk.iterdir()) == []


def test_compressed_archive_records_are_refused_before_unpickling(tmp_path: Path, tiny_state) -> None:
    """torch.save stores records uncompressed; a deflated record could expand without bound."""
    plain = tmp_path / "plain.pth"
    torch.save(tiny_state, plain)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record))
    with pytest.raises(CheckpointError, match="holds compressed records") as info:
        load_checkpoint(bomb)
    _one_line(info)


@pytest.mark.parametrize("source, pattern", [
    ("", "empty string"),
    ("bad\0name.pth", "null byte"),
])
def test_unusable_source_strings_are_one_line(source: str, pattern: str) -> None:
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(source)
    _one_line(info)


def test_nul_in_out_or_config_is_one_line(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    with pytest.raises(SpriteGenError, match="null byte") as info:
        export(path, str(tmp_path / "o\0ut"))
    _one_line(info)
    with pytest.raises(CheckpointError, match="null byte"):
        load_checkpoint(path, config=str(tmp_path / "c\0.json"))
    with pytest.raises(CheckpointError, match="--config .* does not exist"):
        load_checkpoint(path, config=tmp_path / "missing.json")
