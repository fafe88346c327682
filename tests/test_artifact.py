"""W&B export artifacts (`wandb:ENTITY/PROJECT/NAME:ALIAS`) at the wandb.Api seam: a fake Api
stands in for the unreachable server; the runtime's calls behind it are the real client's."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spritegen.cli import app
from spritegen.errors import ExportDirError
from spritegen.runtime import Sampler

NAME = "me/dlai_sprite_diffusion/SpriteGen-onnx:production"


class FakeArtifact:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def download(self) -> str:
        return str(self.directory)


class FakeApi:
    """wandb.Api's answer for one artifact; records the calls the runtime made."""

    calls: list = []
    artifacts: dict = {}

    def __init__(self) -> None:
        pass

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:  # noqa: A002 (wandb's name)
        FakeApi.calls.append((name, type))
        if name not in FakeApi.artifacts:
            raise ValueError(f"artifact '{name}' not found in 'me/dlai_sprite_diffusion'")
        return FakeArtifact(FakeApi.artifacts[name])


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch, export_dir: Path, tmp_path: Path) -> type[FakeApi]:
    import wandb

    downloaded = tmp_path / "artifacts" / "SpriteGen-onnx-v3"
    shutil.copytree(export_dir, downloaded)
    FakeApi.calls, FakeApi.artifacts = [], {NAME: downloaded}
    monkeypatch.setattr(wandb, "Api", FakeApi)
    return FakeApi


def test_sampler_loads_a_wandb_export(fake_wandb: type[FakeApi], export_dir: Path) -> None:
    remote = Sampler.load(f"wandb:{NAME}", provider="cpu")
    assert fake_wandb.calls == [(NAME, "model")]
    assert remote.manifest.directory == fake_wandb.artifacts[NAME]
    local = Sampler.load(export_dir, provider="cpu")
    assert np.array_equal(remote.ddim(["hero"], n=3, seed=1), local.ddim(["hero"], n=3, seed=1))


def test_a_tampered_download_is_refused(fake_wandb: type[FakeApi]) -> None:
    unet = fake_wandb.artifacts[NAME] / "unet.onnx"
    unet.write_bytes(unet.read_bytes()[:-1] + b"\0")
    with pytest.raises(ExportDirError, match="does not match its manifest"):
        Sampler.load(f"wandb:{NAME}", provider="cpu", open_all=True)


@pytest.mark.parametrize(
    ("source", "pattern"),
    [("wandb:me/dlai_sprite_diffusion/Nope:latest", "not found.*entity/project/name:alias"),
     ("wandb:justaname", "is not a W&B artifact name")],
)
def test_serve_refuses_bad_wandb_names_in_one_line(fake_wandb: type[FakeApi], source: str, pattern: str) -> None:
    result = CliRunner().invoke(app, ["serve", source, "--http-port", "18000"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert __import__("re").search(pattern, result.output), result.output


def test_unreachable_wandb_and_missing_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    def no_key() -> None:
        raise RuntimeError("api_key not configured (no-tty). call wandb.login(key=[your_api_key])")

    monkeypatch.setattr(wandb, "Api", no_key)
    with pytest.raises(ExportDirError, match="not logged in or no network.*wandb artifact get"):
        Sampler.load(f"wandb:{NAME}")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ExportDirError, match="wandb is not installed: pip install wandb"):
        Sampler.load(f"wandb:{NAME}")
