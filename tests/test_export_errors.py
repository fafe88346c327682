"""spritegen-export's failure paths: one line, non-zero exit, nothing half-written, old export kept.

These use a tiny ContextUnet (n_feat=8) so each export costs about a second; the
full-size parity lives in test_export.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.models import make_random_model
from spritegen.contract import MANIFEST_FILE, MANIFEST_FORMAT, ModelConfig, ScheduleConfig, ddim_pairs
from spritegen.errors import ExportError
from spritegen.export.checks import Tolerances
from spritegen.export.cli import main
from spritegen.export.exporter import export
from spritegen.export.graphs import DdimBody
from spritegen.export.loop_graph import as_loop, unroll
from spritegen.export.onnx_export import DDIM_BODY, to_onnx
from spritegen.export.staging import staged_directory

TINY = ModelConfig(n_feat=8)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint that keeps its pinned shortcut (so the manifest says from_checkpoint)."""
    path = tmp_path_factory.mktemp("tiny") / "context_model.pth"
    torch.save(make_random_model(seed=3, config=TINY).state_dict(), path)
    return path


def _previous_export(path: Path) -> Path:
    """A stand-in for an earlier export: a manifest of our format and one marker file."""
    path.mkdir(parents=True)
    (path / MANIFEST_FILE).write_text(json.dumps({"format": MANIFEST_FORMAT}))
    (path / "old-marker").write_text("old")
    return path


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def test_tiny_export_succeeds_and_replaces_the_old_one_whole(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = _previous_export(tmp_path / "export")
    said: list[str] = []
    result = export(tiny_checkpoint, out, say=said.append)
    assert not (out / "old-marker").exists()  # replaced whole, not merged
    validating = next(line for line in said if line.startswith("validating unet"))
    assert validating == "validating unet.onnx, unet.ts against eager PyTorch"  # only what was written
    assert result.manifest["shortcut"]["from_checkpoint"] is True
    assert result.manifest["model"]["hyperparameters"]["n_feat"] == 8
    assert _leftovers(tmp_path) == []


def test_failed_validation_leaves_nothing_and_keeps_the_old_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = _previous_export(tmp_path / "export")
    with pytest.raises(ExportError, match=r"validation failed: .*unet\.onnx max abs error"):
        export(tiny_checkpoint, out, tolerances=Tolerances(eps=0.0))  # float32 reordering is never exactly 0
    assert (out / "old-marker").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_validation_without_previous_export_leaves_no_directory(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        export(tiny_checkpoint, tmp_path / "new", tolerances=Tolerances(eps=0.0))
    assert list(tmp_path.iterdir()) == []


def test_staging_removes_itself_on_any_exception(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(tmp_path / "out") as staging:
            (staging / "half-written.onnx").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_two_real_exports_to_one_out_both_succeed_and_out_verifies(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """End to end through the CLI: two exporters racing to one --out (one export each, run at
    once) both exit 0, and --out is one complete export whose manifest hashes verify. A T = 50
    schedule (the artifact's config.json) keeps the DDPM chain validation short."""
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    shutil.copy(tiny_checkpoint, artifact / "context_model.pth")
    (artifact / "config.json").write_text(json.dumps({"timesteps": 50}))
    out = tmp_path / "export"
    command = [sys.executable, "-m", "spritegen.export.cli", str(artifact), "--out", str(out), "-q",
               "--loop-steps", "5"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-500:] for _, err in results]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert manifest["schedule"]["timesteps"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "export"]  # no staging, no lock file left


def test_sigterm_mid_export_leaves_nothing(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-m", "spritegen.export.cli", str(tiny_checkpoint), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not _leftovers(tmp_path) and proc.poll() is None:  # no clock: a busy machine only takes longer
        time.sleep(0.05)  # wait until the staging directory exists: the export is under way
    assert proc.poll() is None, "export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted; nothing was written"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["/no/such/context_model.pth"], "neither an existing file or directory nor a W&B artifact"),
    (["--opset", "99"], "unknown opset 99"),
    (["--loop-steps", "0"], "--loop-steps must be in 1..500"),
])
def test_bad_input_is_one_line_and_exit_1(tiny_checkpoint: Path, tmp_path: Path, capsys, args, message) -> None:
    argv = args if args[0].startswith("/") else [str(tiny_checkpoint), *args]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root ignores permission bits, not file-vs-directory
    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_checkpoint), "--out", str(blocker / "sub" / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and err[0].startswith("error: cannot create")


def test_out_that_is_not_an_export_is_never_replaced(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    precious = tmp_path / "my-photos"
    precious.mkdir()
    (precious / "cat.jpg").write_text("meow")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_checkpoint), "--out", str(precious)])
    assert exit_info.value.code == 1
    assert "not a spritegen export" in capsys.readouterr().err
    assert (precious / "cat.jpg").read_text() == "meow"


def test_help_explains_every_option_and_shows_flags_as_flags(capsys) -> None:
    main(["--help"])  # exit 0: main() returns, as on success
    text = capsys.readouterr().out
    for option in ("--out", "--config", "--opset", "--fp16", "--shortcut-seed", "--loop-steps", "--log-to-wandb",
                   "--version"):
        assert option in text
    for flag in ("--fp16", "--int8", "--log-to-wandb", "--quiet", "--version"):
        line = next(line for line in text.splitlines() if flag in line)
        assert "<bool>" not in line and "bool" not in line.split(flag, 1)[1].split("  ")[0], line


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "No such option: --bogus"),
    (["--opset", "abc"], "Invalid value for '--opset'"),
    (["one.pth", "two.pth"], "unexpected extra argument"),
    (["--shortcut-seed", str(2**70)], "Invalid value for '--shortcut-seed'"),
    (["--shortcut-seed", "-1"], "Invalid value for '--shortcut-seed'"),
])
@pytest.mark.fast
def test_usage_errors_print_usage_and_exit_2(tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "Usage: spritegen-export" in captured.err and message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert list(tmp_path.iterdir()) == []


def test_version(capsys) -> None:
    from spritegen import __version__

    main(["--version"])
    assert capsys.readouterr().out.strip() == f"spritegen-export {__version__}"


def test_unrolled_and_loop_graphs_agree() -> None:
    """The two ddim_loop constructions compute the same sampler (docs/export.md compares their speed)."""
    model = make_random_model(seed=4, config=TINY)
    body = to_onnx(DdimBody(model, ScheduleConfig()), DDIM_BODY, TINY, opset=20, groups=2)
    pairs = ddim_pairs(500, 5)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    feed = {"x": x, "c": np.eye(5, dtype=np.float32)[:3], "w": np.zeros(1, np.float32)}
    outs = [ort.InferenceSession(build(body, pairs).SerializeToString(), providers=["CPUExecutionProvider"])
            .run(None, feed)[0] for build in (unroll, as_loop)]
    assert np.abs(outs[0] - outs[1]).max() <= 1e-5  # same float32 ops; ORT may fuse differently per graph
