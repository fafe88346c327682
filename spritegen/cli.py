"""`spritegen`: make sprites from an export, torch-free (sample, compare, mix).

Every command samples through `spritegen.runtime.Sampler`. Everything that can be
checked is checked before sampling (which can take minutes): option values (typer's
usage errors exit 2), the batch against --max-batch, picture sizes, and every output
path (spritegen.cli_outputs: format from the extension, distinct files, writable
regular targets). Pictures are written only after sampling succeeded, each through
spritegen.files (temporary file renamed at the end). Bad input prints one
`error: ...` line and exits 1.

Without --export-dir, commands use a cached export of the bundled demo checkpoint
(spritegen.cache), created on first use and rebuilt when damaged (that needs torch,
via spritegen.export). More commands plug in with `@app.command()` on this `app`.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spritegen import __version__, wandb_env
from spritegen.cache import check_cached_precision, damaged, default_export
from spritegen import cli_samplers
from spritegen.cli_checks import Output, check_batch, check_outputs, sampler_options, trajectory_states
from spritegen.cli_options import RuntimeOptions, err, errors, runtime_options
from spritegen.contract import NOISE, SAMPLERS, UNCONDITIONAL
from spritegen.errors import ExportDirError, InputError, SpriteGenError, first_line
from spritegen.runtime import limits

app = typer.Typer(help="Make SpriteGen sprites with ONNX Runtime (no torch needed).", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)


SamplerName = Enum("SamplerName", {name: name for name in SAMPLERS}, type=str)  # contract.SAMPLERS
SAMPLER_HELP = "; ".join(f"{spec.name}: {spec.doc}" for spec in SAMPLERS.values())


SeedOpt = typer.Option(None, "--seed", min=0, max=(1 << NOISE.seed_bits) - 1, help="Seed in [0, 2^64) of the portable noise, "
                       "docs/noise.md (default: a fresh one, printed).")
GuidanceOpt = typer.Option(0.0, "--guidance", "-w", min=0.0, max=limits.MAX_GUIDANCE,
                           help="Classifier-free guidance weight (0 = off).")
ScaleOpt = typer.Option(8, "--scale", min=1, max=limits.MAX_SCALE, help="Pixels per sprite pixel in pictures.")
StepsOpt = typer.Option(None, "--n", help="Network calls of ddim, dpmpp or fast, 1..T (default: the sampler's own; "
                        "with --impl loop, the loop graph's).")
EtaOpt = typer.Option(None, "--eta", min=0.0, max=1.0, help="Stochasticity of ddim or dpmpp (default 0 = "
                      "deterministic).")
SamplerOpt = typer.Option(None, "--sampler", help=f"{SAMPLER_HELP}. Default: fast when the export has it, else ddim.")
PICTURES = ("png", "gif")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spritegen {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                      help="Print the version and exit.")) -> None:
    """Make SpriteGen sprites with ONNX Runtime (no torch needed)."""


# ------------------------------------------------------------------ commands
@app.command()
@runtime_options
def sample(
    sampler: Optional[SamplerName] = SamplerOpt,
    n: Optional[int] = StepsOpt,
    eta: Optional[float] = EtaOpt,
    classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Comma-separated class names, or "
                                          f"'{UNCONDITIONAL}' (default: every class)."),
    num: int = typer.Option(6, "--num", min=1, help="Sprites per class."),
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("sprites.png"), "--out", "-o", help="Grid to write: .png or .gif, or .npy (the "
                             "sprites as float32 (B,C,H,W))."),
    gif: Optional[Path] = typer.Option(None, "--gif", help="Also write the denoising trajectory as a .gif."),
    npy: Optional[Path] = typer.Option(None, "--npy", help="Also write the sprites as a float32 (B,C,H,W) .npy."),
    scale: int = ScaleOpt,
    options: RuntimeOptions = RuntimeOptions(),
    server: Optional[str] = typer.Option(None, "--server", help="Sample on a running `spritegen serve` at "
                                         "host:port or grpc://host:port (same seed, same grid as a local run)."),
) -> None:
    """Make sprites and save a labelled grid (rows: classes), optionally a trajectory GIF and raw arrays."""
    from spritegen.runtime import images
    with errors():
        if sampler is not None:
            sampler_options(sampler.value, n=n, eta=eta)
        check_outputs([Output("--out", out, (*PICTURES, "npy"))] + ([Output("--gif", gif, ("gif",))] if gif else [])
                      + ([Output("--npy", npy, ("npy",))] if npy else []))
        runtime = _remote(server, options.max_batch) if server is not None else _open(options)
        chosen = sampler.value if sampler is not None else cli_samplers.default_sampler(runtime)
        sampler_options(chosen, n=n, eta=eta)
        names = _class_list(classes, runtime.class_names)
        rate = cli_samplers.trajectory_rate(chosen) if gif else None
        # with --server too, against what the service publishes: nothing is sent before these pass
        check_batch(len(names) * num, runtime, f"--num {num} x {len(names)} classes")
        steps = cli_samplers.check_run(runtime, chosen, n=n, eta=eta, rate=rate)
        frames = 1 + trajectory_states(runtime.timesteps, steps, rate) if gif else 1
        images.check_grid(len(names), num, scale, runtime.image_shape[1:], frames)
        context = [None if name == UNCONDITIONAL else name for name in names for _ in range(num)]
        seed = _seed(seed)
        with _progress(chosen) as progress:
            result = cli_samplers.run(runtime, chosen, context, n=n, eta=eta, seed=seed, guidance=guidance,
                                      save_rate=rate, progress=progress)
        sprites, kept = result if rate else (result, None)
        written = [_save(out, sprites, lambda: images.grid(images.sprite_rows(sprites, names, num), scale=scale))]
        if gif:
            start = runtime.noise(len(context), seed)  # x_T: the trajectory starts from pure noise
            frames = [images.grid(images.sprite_rows(frame, names, num), scale=scale) for frame in (start, *kept)]
            written.append(images.save_gif(frames, gif))
        if npy:
            written.append(images.save_npy(sprites, npy))
        _report(written, f"{len(context)} sprites, {chosen}, seed {seed}")


@app.command()
@runtime_options
def compare(
    n: Optional[int] = StepsOpt,
    eta: Optional[float] = EtaOpt,
    classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Comma-separated class names (default: all)."),
    num: int = typer.Option(6, "--num", min=1, help="Sprites per class."),
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("samplers_battle.png"), "--out", "-o", help="Table to write (.png or .gif)."),
    wandb_log: bool = typer.Option(True, "--wandb/--no-wandb", metavar="", help="Log the table to W&B (offline "
                                   "unless logged in)."),
    project: str = typer.Option(wandb_env.PROJECT, "--project", help="W&B project."),
    scale: int = typer.Option(4, "--scale", min=1, max=limits.MAX_SCALE, help="Pixels per sprite pixel in the PNG."),
    options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """The samplers battle: the same noise through DDPM (T steps), DDIM (n steps), DPM-Solver++ and the
    export's fitted few-step sampler (when it has one), side by side."""
    from spritegen.runtime import images
    with errors():
        check_outputs([Output("--out", out, PICTURES)])
        runtime = _open(options)
        names = _class_list(classes, runtime.class_names)
        check_batch(len(names) * num, runtime, f"--num {num} x {len(names)} classes")
        # (sampler, --n, --eta): --n and --eta configure DDIM, the course's half of the battle
        battle = [("ddpm", None, None), ("ddim", n, eta), ("dpmpp", None, None)]
        battle += [("fast", None, None)] if cli_samplers.default_sampler(runtime) == "fast" else []
        calls = {name: cli_samplers.check_run(runtime, name, n=steps, eta=noise_eta, rate=None) or runtime.timesteps
                 for name, steps, noise_eta in battle}  # every check before the DDPM run, which takes T steps
        images.check_grid(len(names) * num, len(battle) + 1, scale, runtime.image_shape[1:])
        labels = [name for name in names for _ in range(num)]
        context = [None if name == UNCONDITIONAL else name for name in labels]
        seed = _seed(seed)
        noise = runtime.noise(len(labels), seed)  # the x_T every sampler starts from
        sprites, seconds = {}, {}
        for name, steps, noise_eta in battle:
            with _progress(name) as progress:
                start = time.perf_counter()
                sprites[name] = cli_samplers.run(runtime, name, context, n=steps, eta=noise_eta, noise=noise,
                                                 seed=seed, guidance=guidance, progress=progress)
                seconds[name] = time.perf_counter() - start
        header = ["input noise", *(f"{name} ({calls[name]} calls, {seconds[name]:.2f} s)" for name in sprites), "class"]
        rows = [[noise[k], *(result[k] for result in sprites.values()), labels[k]] for k in range(len(labels))]
        written = [_save(out, None, lambda: images.grid(rows, header=header, scale=scale, normalise_columns=(0,)))]
        _report(written, ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items()) + f", seed {seed}")
        if wandb_log:
            _log_battle(project, noise, sprites, labels, seconds,
                        {"seed": seed, "ddim_n": calls["ddim"], "eta": eta or 0.0, "guidance": guidance,
                         "calls": calls, "impl": runtime.impl, "precision": runtime.precision,
                         "provider": runtime.provider, "timesteps": runtime.timesteps})


@app.command()
@runtime_options
def mix(
    start: Optional[str] = typer.Option("hero", "--from", help="Class at the top of the ramp ('' for no ramp)."),
    end: str = typer.Option("food", "--to", help="Class at the bottom of the ramp."),
    steps: int = typer.Option(5, "--steps", min=0, help="Rows in the ramp from --from to --to."),
    blend: Optional[list[str]] = typer.Option(None, "--blend", "-b", help="Extra row, e.g. hero=1,food=0.6 "
                                              "(repeatable)."),
    num: int = typer.Option(6, "--num", min=1, help="Columns: sprites per row, same noise down a column."),
    sampler: Optional[SamplerName] = SamplerOpt,
    n: Optional[int] = StepsOpt,
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("mix.png"), "--out", "-o", help="Grid to write: .png or .gif, or .npy (the "
                             "sprites)."),
    scale: int = ScaleOpt,
    options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """Blended contexts: a ramp between two classes plus your blends; each column shares its noise."""
    from spritegen.runtime import images
    from spritegen.runtime.context import describe, parse_blend
    with errors():
        if sampler is not None:
            sampler_options(sampler.value, n=n, eta=None)
        check_outputs([Output("--out", out, (*PICTURES, "npy"))])
        runtime = _open(options)
        chosen = sampler.value if sampler is not None else cli_samplers.default_sampler(runtime)
        sampler_options(chosen, n=n, eta=None)
        names = runtime.class_names
        ramp = steps if start else 0
        check_batch((ramp + len(blend or [])) * num, runtime, f"{ramp + len(blend or [])} rows x --num {num}")
        if ramp and start.strip().lower() == end.strip().lower():
            raise InputError(f"--from and --to both name {start!r}; a ramp needs two different classes")
        blends = [{start: 1 - w, end: w} for w in np.linspace(0, 1, ramp)]
        blends += [parse_blend(text, names) for text in blend or []]
        if not blends:
            raise InputError("nothing to mix: give --steps > 0 with --from/--to, or at least one --blend")
        rows = runtime.context(blends)  # validates names and weights before any sampling
        cli_samplers.check_run(runtime, chosen, n=n, eta=None, rate=None)
        images.check_grid(len(rows), num, scale, runtime.image_shape[1:])
        context = np.repeat(rows, num, axis=0)  # (R*num, K): row r holds blend r
        seed = _seed(seed)
        # One seed per sprite (docs/noise.md section 4): column k draws from seed + k, so a
        # column shares x_T and every step's noise down all blends.
        seeds = [(seed + k) % (1 << NOISE.seed_bits) for k in range(num)] * len(rows)
        with _progress(chosen) as progress:
            sprites = cli_samplers.run(runtime, chosen, context, n=n, eta=None, seed=seeds, guidance=guidance,
                                       progress=progress)
        labels = [describe(row, names) for row in rows]
        written = [_save(out, sprites, lambda: images.grid(images.sprite_rows(sprites, labels, num), scale=scale))]
        _report(written, f"{len(rows)} blends x {num} noises, {chosen}, seed {seed}")


# ------------------------------------------------------------------ helpers
@contextmanager
def _progress(label: str) -> Iterator:
    """A rich progress bar on stderr; yields the sampler's progress(done, total) callback."""
    bar = Progress(TextColumn(f"{label:>5}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True)
    task = bar.add_task(label, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _report(paths: list[Path], summary: str) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")
    typer.echo(summary)


def _remote(server: str, max_batch: int):
    from spritegen.client import Client
    from spritegen.remote import RemoteSampler
    return RemoteSampler(Client(server), max_batch)


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def _save(path: Path, sprites: Optional[np.ndarray], picture) -> Path:
    """Write `path` in the format its extension names (checked before sampling by check_outputs):
    the picture `picture()` builds, as PNG or a one-frame GIF, or the sprites as .npy."""
    from spritegen.runtime import images
    kind = Output("--out", path, (*PICTURES, "npy")).format
    if kind == "npy":
        return images.save_npy(sprites, path)
    return images.save_png(picture(), path) if kind == "png" else images.save_gif([picture()], path)


def _class_list(classes: Optional[str], valid: tuple[str, ...]) -> list[str]:
    """--classes 'hero,food' -> ['hero', 'food'] (spelled as the export spells them); default: every class."""
    if classes is None:
        return list(valid)
    by_key = {name.lower(): name for name in valid}
    keys = [c.strip().lower() for c in classes.split(",") if c.strip()]
    if not keys:
        raise InputError(f"--classes names no class; valid classes: {', '.join(valid)}, {UNCONDITIONAL}")
    for key in keys:
        if key not in by_key and key != UNCONDITIONAL:
            raise InputError(f"unknown class {key!r}; valid classes: {', '.join(valid)}, {UNCONDITIONAL}")
    return [by_key.get(key, key) for key in keys]


def _seed(seed: Optional[int]) -> int:
    return secrets.randbits(32) if seed is None else seed


def _open(runtime: RuntimeOptions):
    """The Sampler on --export-dir, else on the bundled model's cached export (rebuilt once when damaged)."""
    options = runtime.sampler_options()
    if runtime.export_dir is not None:
        return _load(runtime.export_dir, options)
    directory = default_export(_say)
    check_cached_precision(directory, runtime.precision.value)
    try:
        return _load(directory, options)
    except ExportDirError as exc:
        if not damaged(directory):
            raise
        _say(f"the cached export {directory} is damaged ({exc})")
        return _load(default_export(_say, rebuild=True), options)


def _load(directory, options: dict):
    """Sampler.load, its warnings (e.g. provider auto falling back to the CPU) one line each on stderr."""
    from spritegen.runtime import Sampler
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        sampler = Sampler.load(directory, **options)
    for warning in caught:
        err.print(f"warning: {warning.message}", markup=False, highlight=False, soft_wrap=True)
    return sampler


# ------------------------------------------------------------------ W&B
def _log_battle(project: str, noise: np.ndarray, sprites: dict[str, np.ndarray], labels: list[str],
                seconds: dict[str, float], config: dict) -> None:
    """The seed's `samplers_battle` run: a wandb.Table input_noise, one column per sampler (ddpm, ddim,
    ...), class, then each sampler's seconds."""
    from spritegen.runtime.images import to_pixels
    try:
        import wandb
    except ImportError:
        err.print("warning: wandb is not installed, so the table was not logged (pip install wandb, "
                  "or pass --no-wandb)", markup=False, soft_wrap=True)
        return
    try:
        mode = wandb_env.resolve_mode()
        with wandb.init(project=project, job_type="samplers_battle", config=config, mode=mode) as run:
            table = wandb.Table(columns=["input_noise", *sprites, "class", *(f"{name}_seconds" for name in sprites)])
            for k, label in enumerate(labels):
                table.add_data(wandb.Image(to_pixels(noise[k], normalise=True)),
                               *(wandb.Image(to_pixels(result[k])) for result in sprites.values()), label,
                               *(seconds[name] for name in sprites))
            run.log({"samplers_table": table})
            run.summary.update({f"{name}_seconds": value for name, value in seconds.items()})
            where = run.url or run.dir
    except Exception as exc:  # wandb raises many types (network, auth, settings)
        raise SpriteGenError(f"W&B logging failed ({first_line(exc)}); the PNG was written; rerun with --no-wandb "
                             "or fix W&B") from None
    typer.echo(f"logged the samplers table to W&B: {where}")


# Serving (spritegen.serving; pytriton and tritonclient are imported only when they run).
from spritegen.serving.commands import serve, triton_repo  # noqa: E402

app.command()(serve)
app.command("triton-repo")(triton_repo)

if __name__ == "__main__":
    app()
