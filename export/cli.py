"""`spritegen-export`: turn a checkpoint into a validated ONNX/TorchScript export directory.

Every user mistake (bad source, unwritable --out, unknown opset, failed validation)
ends as one `error: ...` line on stderr and a non-zero exit, never a traceback;
Ctrl-C and SIGTERM remove the half-written staging directory before exiting.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from spritegen.contract import DDIM_DEFAULT_STEPS, MANIFEST_FILE
from spritegen.errors import SpriteGenError
from spritegen.export.onnx_export import DEFAULT_OPSET, OPSETS

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0], no_args_is_help=False)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the staging cleanup like Ctrl-C


def _report(result: Any) -> None:
    manifest = result.manifest
    typer.echo(f"exported to {result.directory} in {result.seconds:.1f} s")
    for name, entry in manifest["files"].items():
        typer.echo(f"  {name:<16} {entry['bytes'] / 1e6:7.2f} MB  sha256 {entry['sha256'][:12]}")
    typer.echo(f"  {MANIFEST_FILE}")
    typer.echo("validation (max abs / rel error vs eager PyTorch):")
    for name, check in manifest["validation"]["files"].items():
        bound = (f"tol {check['tolerance']:.0e}" if check.get("bound", "max_abs") == "max_abs"
                 else f"rel rms {check['rel_rms']:.2e}, tol {check['tolerance']:.0e}")
        typer.echo(f"  {name:<16} {check['max_abs']:.2e} / {check['max_rel']:.2e}  {bound}  vs {check['reference']}")


@app.command()
def export_command(
    source: Optional[str] = typer.Argument(
        None, help="Checkpoint: W&B artifact name (entity/project/SpriteGen:v3), a .pth state_dict, or a "
                   "directory holding context_model.pth. Omit it for the bundled demo checkpoint."),
    out: Path = typer.Option(Path("spritegen-export"), "--out", "-o",
                             help="Export directory; an existing export there is replaced whole."),
    opset: int = typer.Option(DEFAULT_OPSET, help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1}."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write unet_fp16.onnx (fp16 compute, fp32 IO)."),
    int8: bool = typer.Option(False, "--int8", help="Also write unet_int8.onnx (int8 QDQ, calibrated; fp32 IO): "
                              "~1.4x faster per call on CPUs with VNNI; sprites differ from fp32's (docs/export.md)."),
    shortcut_seed: int = typer.Option(
        0, help="Seed of init_conv's pinned 1x1 shortcut when the checkpoint lacks it (course checkpoints)."),
    loop_steps: int = typer.Option(DDIM_DEFAULT_STEPS, help="DDIM steps baked into ddim_loop.onnx."),
    log_to_wandb: bool = typer.Option(
        False, "--log-to-wandb",
        help="Log the export as a W&B model artifact (SpriteGen-onnx); offline unless you are logged in."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors and the export path."),
) -> None:
    """Export SOURCE to ONNX (network, fused DDPM/DDIM steps, whole DDIM loop) and TorchScript,
    validate every file against eager PyTorch, and write manifest.json."""
    from spritegen.export.exporter import export  # torch import: after --help

    say = (lambda message: None) if quiet else (lambda message: typer.echo(message))
    result = export(source, out, opset=opset, fp16=fp16, int8=int8, shortcut_seed=shortcut_seed,
                    loop_steps=loop_steps, say=say)
    if quiet:
        typer.echo(str(result.directory))
    else:
        _report(result)
    if log_to_wandb:
        from spritegen.export.wandb_log import log_export

        where = log_export(result.directory, result.manifest)
        typer.echo(f"logged W&B artifact {where}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one `error:` line and exit 1 for SpriteGenError, 130 on interrupt."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        code = app(args=argv, standalone_mode=False)  # typer turns Ctrl-C into a returned 130 here
    except SpriteGenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("error: interrupted; nothing was written", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        raise
    if code == 130:
        typer.echo("error: interrupted; nothing was written", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
