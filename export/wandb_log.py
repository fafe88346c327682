"""--log-to-wandb: the export directory as a W&B `model` artifact, with lineage to its source.

Online, the run `use_artifact`s the source artifact, so W&B draws the edge from the
trained model to the exported one. Offline (the default unless the user is logged in,
or WANDB_MODE=offline), W&B refuses use_artifact, so the source's provenance (name,
version, digest, sha256) is written into the new artifact's metadata instead, which
it is online too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spritegen.errors import ExportError

ARTIFACT_NAME = "SpriteGen-onnx"
PROJECT = "dlai_sprite_diffusion"  # the course's project
JOB_TYPE = "export"


def wandb_mode() -> str:
    """WANDB_MODE if set, else online when credentials exist (checked without prompting), else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    import wandb

    try:
        return "online" if wandb.login(prompt=False, verify=False) else "offline"
    except Exception:  # no settings dir, broken netrc: treat as not logged in
        return "offline"


def _metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a W&B user filters exports by; the full manifest travels inside the artifact."""
    return {
        "format": manifest["format"],
        "source": {k: v for k, v in manifest["provenance"].items() if k != "run_config"},
        "hyperparameters": manifest["model"]["hyperparameters"],
        "class_names": manifest["class_names"],
        "schedule": {k: manifest["schedule"][k] for k in ("timesteps", "beta1", "beta2")},
        "opset": manifest["opset"],
        "ddim_loop_steps": manifest["ddim_loop_steps"],
        "shortcut": manifest["shortcut"],
        "files": {name: entry["sha256"] for name, entry in manifest["files"].items()},
        "validation": {name: {"max_abs": c["max_abs"], "tolerance": c["tolerance"]}
                       for name, c in manifest["validation"]["files"].items()},
    }


def log_export(directory: Path, manifest: dict[str, Any], *, name: str = ARTIFACT_NAME,
               project: str = PROJECT) -> str:
    """Log `directory` as a new version of artifact `name`; return 'name (mode, run dir)'."""
    import wandb

    mode = wandb_mode()
    source = manifest["provenance"]
    try:
        run = wandb.init(project=project, job_type=JOB_TYPE, mode=mode,
                         config={"source": source.get("artifact") or source.get("path"), "opset": manifest["opset"]})
        with run:
            if mode == "online" and source.get("kind") == "wandb":
                run.use_artifact(source["artifact"], type="model")  # the lineage edge
            artifact = wandb.Artifact(name, type="model", metadata=_metadata(manifest),
                                      description="SpriteGen ONNX/TorchScript export (spritegen-export)")
            artifact.add_dir(str(directory))
            run.log_artifact(artifact)
            run_dir = run.dir
    except Exception as exc:
        raise ExportError(f"the export in {directory} is complete, but logging it to W&B failed "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                          "rerun with --log-to-wandb after `wandb login`, or set WANDB_MODE=offline") from None
    return f"{name} ({mode}, run files in {run_dir})"
