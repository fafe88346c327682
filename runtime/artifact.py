"""Export directories from W&B: `wandb:ENTITY/PROJECT/NAME:ALIAS` names an export artifact.

`spritegen-export --log-to-wandb` logs the export directory as a `model` artifact;
`Sampler.load("wandb:...")` and `spritegen serve wandb:...` download it here with the
wandb client (no torch) and then open it like any export, so the manifest's sha256 of
every graph is checked on what was downloaded. wandb stays optional: without it a W&B
name is refused with one line. W&B is reached only through `wandb.Api`, the seam tests
replace, with the client's own calls: api.artifact(name, type="model").download().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from spritegen.errors import ExportDirError, first_line

PREFIX = "wandb:"
ARTIFACT_TYPE = "model"  # the type spritegen-export logs exports as


def is_artifact(source: object) -> bool:
    """Whether `source` names a W&B export artifact (the `wandb:` prefix) rather than a path."""
    return isinstance(source, str) and source.startswith(PREFIX)


def download_export(source: str, api_factory: Callable[[], Any] | None = None) -> Path:
    """The local directory of W&B export artifact `source` (wandb:ENTITY/PROJECT/NAME:ALIAS)."""
    name = source[len(PREFIX):]
    hint = f"download it with `wandb artifact get {name}` and pass the directory"
    if name.count("/") > 2 or ":" not in name or not all(name.replace(":", "/").split("/")):
        raise ExportDirError(f"{source!r} is not a W&B artifact name; write wandb:ENTITY/PROJECT/NAME:ALIAS "
                             "(for example wandb:me/dlai_sprite_diffusion/SpriteGen-onnx:latest)")
    if api_factory is None:
        try:
            import wandb
        except ImportError:
            raise ExportDirError(f"{source!r} is a W&B artifact but wandb is not installed: pip install wandb, "
                                 f"or {hint}") from None
        api_factory = wandb.Api
    try:
        api = api_factory()
    except Exception as exc:  # wandb raises many types for "no key" / "no network"
        raise ExportDirError(f"cannot reach W&B to fetch {name!r} (not logged in or no network: "
                             f"{first_line(exc)}); {hint}") from None
    try:
        artifact = api.artifact(name, type=ARTIFACT_TYPE)
        directory = Path(artifact.download())
    except Exception as exc:
        message = first_line(exc)
        if any(word in message.lower() for word in ("not found", "does not exist", "no such", "404")):
            raise ExportDirError(f"W&B artifact {name!r} not found ({message}); check the "
                                 "entity/project/name:alias spelling") from None
        raise ExportDirError(f"cannot download W&B artifact {name!r} ({message}); {hint}") from None
    return directory

