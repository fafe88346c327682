"""--log-to-wandb: the export directory as a W&B `model` artifact, with lineage to its source.

Online, the run `use_artifact`s the source artifact, so W&B draws the edge from the
trained model to the exported one. Offline (the default unless the user is logged in,
or WANDB_MODE=offline), W&B refuses use_artifact, so the source's provenance (name,
version, digest, checkpoint_sha256) is written into the new artifact's metadata instead, which
it is online too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spritegen.errors import ExportError, first_line
from spritegen.wandb_env import PROJECT, resolve_mode

ARTIFACT_NAME = "SpriteGen-onnx"
JOB_TYPE = "export"


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
        "validation": {name: {"bound": c.get("bound", "max_abs"), "max_abs": c["max_abs"], "rel_rms": c.get("rel_rms"),
                              "tolerance": c["tolerance"]}
                       for name, c in manifest["validation"]["files"].items()},
    }


def log_export(directory: Path, manifest: dict[str, Any], *, name: str = ARTIFACT_NAME,
               project: str = PROJECT, quiet: bool = False) -> str:
    """Log `directory` as a new version of artifact `name`; return 'name (mode, run dir)'.
    `quiet` silences wandb's own banner and console capture (spritegen-export -q)."""
    mode = resolve_mode()
    try:
        import wandb
    except ImportError:
        raise ExportError(f"the export in {directory} is complete, but --log-to-wandb needs wandb: "
                          'pip install "spritegen[export]"') from None
    source = manifest["provenance"]
    settings = wandb.Settings(silent=True, console="off") if quiet else None
    try:
        if settings is not None:
            wandb.setup(settings=settings)  # artifact messages read the process-wide setup, not init's
        run = wandb.init(project=project, job_type=JOB_TYPE, mode=mode, settings=settings,
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
                          f"({first_line(exc)}); "
                          "rerun with --log-to-wandb after `wandb login`, or set WANDB_MODE=offline") from None
    return f"{name} ({mode}, run files in {run_dir})"
