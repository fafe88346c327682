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
from spritegen.export.wandb_log import ARTIFACT_NAME, wandb_mode
from tests.conftest import course_state_dict, make_random_model


def test_offline_run_logs_the_export_as_a_model_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    checkpoint = tmp_path / "context_model.pth"
    torch.save(course_state_dict(make_random_model(seed=9, config=ModelConfig(n_feat=8))), checkpoint)
    out = tmp_path / "export"

    main([str(checkpoint), "--out", str(out), "--log-to-wandb", "--quiet"])
    wandb.teardown()  # the run's log is written by wandb-core asynchronously; this waits for it

    assert wandb_mode() == "offline"
    assert f"logged W&B artifact {ARTIFACT_NAME} (offline" in capsys.readouterr().out
    logs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    record = logs[0].read_bytes()
    assert ARTIFACT_NAME.encode() in record and b"model" in record
    checkpoint_sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert checkpoint_sha.encode() in record  # the source's provenance, in the artifact metadata
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    for name in [*manifest["files"], MANIFEST_FILE]:
        assert name.encode() in record, f"{name} missing from the logged artifact"
