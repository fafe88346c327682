"""`spritegen-export`: turn a checkpoint into a validated ONNX/TorchScript export directory.

Usage errors (an unknown option, `--opset abc`, a second SOURCE) print typer's usage
message and exit 2. Every other mistake (bad source or config, unwritable --out, failed
validation, a full disk) ends as one `error: ...` line on stderr and exit 1, never a
traceback; Ctrl-C and SIGTERM remove the half-written staging directory and exit 130.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from spritegen import __version__
from spritegen.contract import DDIM_DEFAULT_STEPS, MANIFEST_FILE
from spritegen.errors import SpriteGenError, UsageError
from spritegen.export.model import SHORTCUT_SEED_MAX
from spritegen.export.onnx_export import DEFAULT_OPSET, OPSETS

# rich_markup_mode=None: plain help, where a flag shows as `--fp16`, not `--fp16 <bool>` (which
# reads as if `--fp16 true` were valid: that `true` would be taken as SOURCE).
app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0], no_args_is_help=False, rich_markup_mode=None)
INTERRUPTED = "error: interrupted; nothing was written"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the staging cleanup like Ctrl-C


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"spritegen-export {__version__}")
        raise typer.Exit()


def _bound(check: dict[str, Any]) -> str:
    """The check's bounded metric, its value and its real tolerance."""
    if check.get("bound", "max_abs") == "rel_rms":
        return f"rel RMS {check['rel_rms']:.2e} <= {check['tolerance']:g}"
    return f"max abs {check['max_abs']:.2e} <= {check['tolerance']:g}"


def _report(result: Any) -> None:
    manifest = result.manifest
    typer.echo(f"exported to {result.directory} in {result.seconds:.1f} s")
    for name, entry in manifest["files"].items():
        typer.echo(f"  {name:<16} {entry['bytes'] / 1e6:7.2f} MB  sha256 {entry['sha256'][:12]}")
    typer.echo(f"  {MANIFEST_FILE}")
    provenance = manifest["provenance"]
    typer.echo(f"checkpoint sha256 {provenance['checkpoint_sha256']}; run config: {provenance['config']['origin']}")
    typer.echo("validation vs eager PyTorch (the bounded error, then max abs / max rel for reference):")
    for name, check in manifest["validation"]["files"].items():
        typer.echo(f"  {name:<16} {_bound(check):<26} ({check['max_abs']:.2e} / {check['max_rel']:.2e})  "
                   f"vs {check['reference']}")


@app.command()
def export_command(
    source: Optional[str] = typer.Argument(
        None, metavar="SOURCE",
        help="Checkpoint: W&B artifact name (entity/project/SpriteGen:v3), a .pth state_dict, or an artifact "
             "directory holding context_model.pth (and its config.json). Omit it for the bundled demo."),
    out: Path = typer.Option(Path("spritegen-export"), "--out", "-o",
                             help="Export directory; an existing export there is replaced whole (a symlink is "
                                  "followed)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Run config (JSON: n_feat, timesteps, beta1, beta2, ...) of SOURCE; needed for a "
                               "bare .pth trained with a non-default schedule. Wins over SOURCE's own."),
    opset: int = typer.Option(DEFAULT_OPSET, help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1}."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write unet_fp16.onnx (fp16 compute, fp32 IO)."),
    int8: bool = typer.Option(False, "--int8", help="Also write unet_int8.onnx (int8 QDQ, calibrated; fp32 IO): "
                              "~1.4x faster per call on CPUs with VNNI; sprites differ from fp32's (docs/export.md)."),
    shortcut_seed: int = typer.Option(
        0, min=0, max=SHORTCUT_SEED_MAX,
        help="Seed of init_conv's pinned 1x1 shortcut when the checkpoint lacks it (course checkpoints)."),
    loop_steps: int = typer.Option(DDIM_DEFAULT_STEPS, help="DDIM steps baked into ddim_loop.onnx."),
    fit: bool = typer.Option(False, "--fit", help="Fit the few-step sampler (spritegen sample --sampler fast) to "
                             "this checkpoint: step indices for 4-10 network calls, data-free (docs/samplers.md). "
                             "The bundled demo ships its fit."),
    fit_seconds: float = typer.Option(600.0, "--fit-seconds", min=10.0, max=86400.0,
                                      help="Time bound of --fit after its teacher runs (the best tables so far are "
                                           "kept)."),
    log_to_wandb: bool = typer.Option(
        False, "--log-to-wandb",
        help="Log the export as a W&B model artifact (SpriteGen-onnx); offline unless you are logged in."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors and the export path."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Export SOURCE to ONNX (network, fused DDPM/DDIM/DPM-Solver++ steps, whole DDIM loop) and TorchScript,
    validate every file against eager PyTorch, and write manifest.json."""
    try:
        _run(source, out, config, opset, fp16, int8, shortcut_seed, loop_steps, log_to_wandb, quiet, fit, fit_seconds)
    except SpriteGenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        raise typer.Exit(130) from None


def _run(source: str | None, out: Path, config: Path | None, opset: int, fp16: bool, int8: bool,
         shortcut_seed: int, loop_steps: int, log_to_wandb: bool, quiet: bool, fit: bool = False,
         fit_seconds: float = 600.0) -> None:
    from spritegen.export.exporter import export  # torch import: after --help

    say = (lambda message: None) if quiet else (lambda message: typer.echo(message))
    result = export(source, out, opset=opset, fp16=fp16, int8=int8, shortcut_seed=shortcut_seed,
                    loop_steps=loop_steps, config=config, fit=fit, fit_seconds=fit_seconds, say=say)
    if quiet:
        typer.echo(str(result.directory))
    else:
        _report(result)
    if log_to_wandb:
        from spritegen.export.wandb_log import log_export

        where = log_export(result.directory, result.manifest, quiet=quiet)
        say(f"logged W&B artifact {where}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: typer's usage message and exit 2 for usage errors, one `error:` line
    and exit 1 for SpriteGenError, 130 on interrupt (module doc)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        app(args=argv, prog_name="spritegen-export")  # standalone: typer prints usage errors, exits 2
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise  # success returns, so main() can be called from Python too
    except KeyboardInterrupt:  # before or after the command ran (imports, parsing)
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
