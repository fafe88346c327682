"""--log-to-wandb with the real wandb client in offline mode (no server, no mock).

The offline run's transaction log (run-*.wandb) must hold the SpriteGen-onnx model
artifact, its metadata (the source's provenance, since use_artifact is refused
offline) and an entry per exported file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import wandb

from spritegen.contract import MANIFEST_FILE, ModelConfig
from spritegen.export.cli import main
from spritegen.export.wandb_log import ARTIFACT_NAME
from spritegen.wandb_env import resolve_mode
from tests.models import course_state_dict, make_random_model


def test_offline_run_logs_the_export_as_a_model_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture) -> None:
    """-q: the export path is all that is printed, wandb's banner included (captured at the fd
    level, where wandb's own processes write)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    checkpoint = tmp_path / "context_model.pth"
    torch.save(course_state_dict(make_random_model(seed=9, config=ModelConfig(n_feat=8))), checkpoint)
    out = tmp_path / "export"

    main([str(checkpoint), "--out", str(out), "--log-to-wandb", "--quiet"])
    wandb.teardown()  # the run's log is written by wandb-core asynchronously; this waits for it

    assert resolve_mode() == "offline"
    captured = capfd.readouterr()
    assert captured.out.strip() == str(out.absolute())
    assert "wandb" not in captured.err.lower(), captured.err
    logs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    record = logs[0].read_bytes()
    assert ARTIFACT_NAME.encode() in record and b"model" in record
    checkpoint_sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert checkpoint_sha.encode() in record  # the source's provenance, in the artifact metadata
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    for name in [*manifest["files"], MANIFEST_FILE]:
        assert name.encode() in record, f"{name} missing from the logged artifact"
