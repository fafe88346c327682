"""`spritegen`: make sprites from an export, torch-free (sample, compare, mix).

Every command samples through `spritegen.runtime.Sampler`; pictures are written only
after sampling succeeded, each through a temporary file renamed at the end. Bad input
prints one `error: ...` line and exits 1 (typer's own usage errors exit 2).

Without --export-dir, commands use a cached export of the bundled demo checkpoint in
the user's cache directory, keyed by the checkpoint's sha256, and create it on first
use (that once needs torch, via spritegen.export). More commands (e.g. `bench`) plug in
with `@app.command()` on this `app`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import netrc
import os
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spritegen.contract import CHECKPOINT_FILE, MANIFEST_FILE
from spritegen.errors import ExportDirError, InputError, SpriteGenError

app = typer.Typer(help="Make SpriteGen sprites with ONNX Runtime (no torch needed).", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)
err = Console(stderr=True)
WANDB_PROJECT = "dlai_sprite_diffusion"


class SamplerName(str, Enum):
    ddim = "ddim"
    ddpm = "ddpm"


class Impl(str, Enum):
    step = "step"
    unet = "unet"
    loop = "loop"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


ExportDir = typer.Option(None, "--export-dir", "-e", envvar="SPRITEGEN_EXPORT_DIR", file_okay=False,
                         help="Export directory from spritegen-export (default: a cached export of the bundled model).")
ProviderOpt = typer.Option("auto", "--provider", help="auto (CUDA if available), cuda or cpu.")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: all cores).")
SpinOpt = typer.Option(True, "--spin/--no-spin", help="ONNX Runtime threads spin-wait between ops: fastest on "
                       "free cores; --no-spin when other busy work shares them.")
ImplOpt = typer.Option(None, "--impl", help="Step implementation: step (fused graph; the fp32 default), unet "
                       "(network + numpy update; the only one for fp16/int8) or loop (whole-DDIM graph, its fixed n "
                       "only).")
PrecisionOpt = typer.Option(Precision.fp32, "--precision", help="Network precision: fp32, or fp16/int8 when the "
                            "export has unet_fp16.onnx/unet_int8.onnx (int8: faster on CPU, sprites differ).")
SeedOpt = typer.Option(None, "--seed", min=0, help="Seed in [0, 2^64) of the portable noise, docs/noise.md "
                       "(default: a fresh one, printed).")
GuidanceOpt = typer.Option(0.0, "--guidance", "-w", min=0.0, help="Classifier-free guidance weight (0 = off).")
ScaleOpt = typer.Option(8, "--scale", min=1, max=64, help="Pixels per sprite pixel in pictures.")


# ------------------------------------------------------------------ commands
@app.command()
def sample(
    export_dir: Optional[Path] = ExportDir,
    sampler: SamplerName = typer.Option(SamplerName.ddim, "--sampler", help="ddim (fast) or ddpm (T steps)."),
    n: int = typer.Option(25, "--n", help="DDIM steps (1..T)."),
    eta: float = typer.Option(0.0, "--eta", min=0.0, max=1.0, help="DDIM stochasticity (0 = deterministic)."),
    classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Comma-separated class names, or "
                                          "'unconditional' (default: every class)."),
    num: int = typer.Option(6, "--num", min=1, help="Sprites per class."),
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("sprites.png"), "--out", "-o", help="Grid PNG to write."),
    gif: Optional[Path] = typer.Option(None, "--gif", help="Also write the denoising trajectory as a GIF."),
    npy: Optional[Path] = typer.Option(None, "--npy", help="Also write the sprites as a float32 (B,C,H,W) .npy."),
    scale: int = ScaleOpt,
    provider: str = ProviderOpt,
    threads: Optional[int] = ThreadsOpt,
    impl: Optional[Impl] = ImplOpt,
    precision: Precision = PrecisionOpt,
    spin: bool = SpinOpt,
    server: Optional[str] = typer.Option(None, "--server", help="Sample on a running `spritegen serve` at "
                                         "host:port or grpc://host:port (same seed, same grid as a local run)."),
) -> None:
    """Make sprites and save a labelled grid (rows: classes), optionally a trajectory GIF and raw arrays."""
    from spritegen.runtime import images
    with _errors():
        _check_outputs(out, gif, npy)
        runtime = _remote(server) if server else _open(export_dir, provider, threads, impl, spin, precision)
        names = _class_list(classes, runtime.class_names)
        context = [None if name == "unconditional" else name for name in names for _ in range(num)]
        seed = _seed(seed)
        rate = (1 if sampler is SamplerName.ddim else 20) if gif else None
        with _progress(f"{sampler.value}") as progress:
            kwargs = dict(seed=seed, guidance=guidance, save_rate=rate, progress=progress)
            result = (runtime.ddim(context, n=n, eta=eta, **kwargs) if sampler is SamplerName.ddim
                      else runtime.ddpm(context, **kwargs))
        sprites, kept = result if rate else (result, None)
        written = [images.save_png(images.grid(images.sprite_rows(sprites, names, num), scale=scale), out)]
        if gif:
            start = runtime.noise(len(context), seed)  # x_T: the trajectory starts from pure noise
            frames = [images.grid(images.sprite_rows(frame, names, num), scale=scale) for frame in (start, *kept)]
            written.append(images.save_gif(frames, gif))
        if npy:
            written.append(images.save_npy(sprites, npy))
        _report(written, f"{len(context)} sprites, {sampler.value}, seed {seed}")


@app.command()
def compare(
    export_dir: Optional[Path] = ExportDir,
    n: int = typer.Option(25, "--n", help="DDIM steps (1..T)."),
    eta: float = typer.Option(0.0, "--eta", min=0.0, max=1.0, help="DDIM stochasticity."),
    classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Comma-separated class names (default: all)."),
    num: int = typer.Option(6, "--num", min=1, help="Sprites per class."),
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("samplers_battle.png"), "--out", "-o", help="Table PNG to write."),
    wandb_log: bool = typer.Option(True, "--wandb/--no-wandb", help="Log the table to W&B (offline unless "
                                   "logged in)."),
    project: str = typer.Option(WANDB_PROJECT, "--project", help="W&B project."),
    scale: int = typer.Option(4, "--scale", min=1, max=64, help="Pixels per sprite pixel in the PNG."),
    provider: str = ProviderOpt,
    threads: Optional[int] = ThreadsOpt,
    impl: Optional[Impl] = ImplOpt,
    precision: Precision = PrecisionOpt,
    spin: bool = SpinOpt,
) -> None:
    """The samplers battle: the same noise through DDPM (T steps) and DDIM (n steps), side by side."""
    from spritegen.runtime import images
    with _errors():
        _check_outputs(out)
        runtime = _open(export_dir, provider, threads, impl, spin, precision)
        names = _class_list(classes, runtime.class_names)
        labels = [name for name in names for _ in range(num)]
        context = [None if name == "unconditional" else name for name in labels]
        seed = _seed(seed)
        noise = runtime.noise(len(labels), seed)  # the x_T both samplers start from
        seconds = {}
        with _progress("ddpm") as progress:
            start = time.perf_counter()
            ddpm = runtime.ddpm(context, noise=noise, seed=seed, guidance=guidance, progress=progress)
            seconds["ddpm"] = time.perf_counter() - start
        with _progress("ddim") as progress:
            start = time.perf_counter()
            ddim = runtime.ddim(context, n=n, eta=eta, noise=noise, seed=seed, guidance=guidance, progress=progress)
            seconds["ddim"] = time.perf_counter() - start
        header = ["input noise", f"ddpm ({runtime.timesteps} steps, {seconds['ddpm']:.2f} s)",
                  f"ddim ({n} steps, {seconds['ddim']:.2f} s)", "class"]
        rows = [[noise[k], ddpm[k], ddim[k], labels[k]] for k in range(len(labels))]
        table = images.grid(rows, header=header, scale=scale, normalise_columns=(0,))
        written = [images.save_png(table, out)]
        _report(written, f"ddpm {seconds['ddpm']:.2f} s, ddim {seconds['ddim']:.2f} s, seed {seed}")
        if wandb_log:
            _log_battle(project, noise, ddpm, ddim, labels, seconds,
                        {"seed": seed, "ddim_n": n, "eta": eta, "guidance": guidance, "impl": runtime.impl,
                         "precision": runtime.precision, "provider": runtime.provider, "timesteps": runtime.timesteps})


@app.command()
def mix(
    export_dir: Optional[Path] = ExportDir,
    start: Optional[str] = typer.Option("hero", "--from", help="Class at the top of the ramp ('' for no ramp)."),
    end: str = typer.Option("food", "--to", help="Class at the bottom of the ramp."),
    steps: int = typer.Option(5, "--steps", min=0, help="Rows in the ramp from --from to --to."),
    blend: Optional[list[str]] = typer.Option(None, "--blend", "-b", help="Extra row, e.g. hero=1,food=0.6 "
                                              "(repeatable)."),
    num: int = typer.Option(6, "--num", min=1, help="Columns: sprites per row, same noise down a column."),
    sampler: SamplerName = typer.Option(SamplerName.ddim, "--sampler", help="ddim or ddpm."),
    n: int = typer.Option(25, "--n", help="DDIM steps (1..T)."),
    seed: Optional[int] = SeedOpt,
    guidance: float = GuidanceOpt,
    out: Path = typer.Option(Path("mix.png"), "--out", "-o", help="Grid PNG to write."),
    scale: int = ScaleOpt,
    provider: str = ProviderOpt,
    threads: Optional[int] = ThreadsOpt,
    impl: Optional[Impl] = ImplOpt,
    precision: Precision = PrecisionOpt,
    spin: bool = SpinOpt,
) -> None:
    """Blended contexts: a ramp between two classes plus your blends; each column shares its noise."""
    from spritegen.runtime import images
    from spritegen.runtime.context import describe, parse_blend
    with _errors():
        _check_outputs(out)
        runtime = _open(export_dir, provider, threads, impl, spin, precision)
        names = runtime.class_names
        blends = [{start: 1 - w, end: w} for w in np.linspace(0, 1, steps)] if start and steps else []
        blends += [parse_blend(text, names) for text in blend or []]
        if not blends:
            raise InputError("nothing to mix: give --steps > 0 with --from/--to, or at least one --blend")
        rows = runtime.context(blends)  # validates names and weights before any sampling
        context = np.repeat(rows, num, axis=0)  # (R*num, K): row r holds blend r
        seed = _seed(seed)
        # One seed per sprite (docs/noise.md section 4): column k draws from seed + k, so a
        # column shares x_T and every step's noise down all blends.
        seeds = [(seed + k) % 2 ** 64 for k in range(num)] * len(rows)
        with _progress(sampler.value) as progress:
            if sampler is SamplerName.ddim:
                sprites = runtime.ddim(context, n=n, seed=seeds, guidance=guidance, progress=progress)
            else:
                sprites = runtime.ddpm(context, seed=seeds, guidance=guidance, progress=progress)
        labels = [describe(row, names) for row in rows]
        written = [images.save_png(images.grid(images.sprite_rows(sprites, labels, num), scale=scale), out)]
        _report(written, f"{len(rows)} blends x {num} noises, {sampler.value}, seed {seed}")


# ------------------------------------------------------------------ helpers
@contextmanager
def _errors() -> Iterator[None]:
    """SpriteGenError -> `error: <message>` on stderr and exit 1, no traceback."""
    try:
        yield
    except SpriteGenError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


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


def _check_outputs(*paths: Optional[Path]) -> None:
    """Refuse unwritable outputs before any sampling, so a failure writes nothing."""
    for path in filter(None, paths):
        if path.is_dir():
            raise InputError(f"output {path} is a directory; give a file name")
        if not path.parent.is_dir():
            raise InputError(f"directory {path.parent} does not exist; create it or choose another --out")
        if not os.access(path.parent, os.W_OK):
            raise InputError(f"directory {path.parent} is not writable")


def _class_list(classes: Optional[str], valid: tuple[str, ...]) -> list[str]:
    """--classes 'hero,food' -> ['hero', 'food'], checked; default: every class."""
    if classes is None:
        return list(valid)
    names = [c.strip().lower() for c in classes.split(",") if c.strip()]
    if not names:
        raise InputError(f"--classes names no class; valid classes: {', '.join(valid)}, unconditional")
    for name in names:
        if name not in valid and name != "unconditional":
            raise InputError(f"unknown class {name!r}; valid classes: {', '.join(valid)}, unconditional")
    return names


def _seed(seed: Optional[int]) -> int:
    return secrets.randbits(32) if seed is None else seed


def _open(export_dir: Optional[Path], provider: str, threads: Optional[int], impl: Optional[Impl], spin: bool,
          precision: Precision):
    from spritegen.runtime import Sampler
    directory = export_dir if export_dir is not None else default_export()
    with warnings.catch_warnings(record=True) as caught:  # e.g. provider auto falling back to the CPU
        warnings.simplefilter("always", RuntimeWarning)
        sampler = Sampler.load(directory, provider=provider, threads=threads, impl=impl.value if impl else None,
                               spin=spin, precision=precision.value)
    for warning in caught:
        err.print(f"warning: {warning.message}", markup=False, highlight=False, soft_wrap=True)
    return sampler


def _remote(server: str):
    from spritegen.client import Client, RemoteSampler
    return RemoteSampler(Client(server))


# ------------------------------------------------- the bundled model's export
def cache_dir() -> Path:
    """Where spritegen caches exports: $SPRITEGEN_CACHE_DIR, else the platform's user cache."""
    if os.environ.get("SPRITEGEN_CACHE_DIR"):
        return Path(os.environ["SPRITEGEN_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spritegen"


def bundled_checkpoint() -> Path:
    """The demo checkpoint shipped in spritegen.export, found without importing it (torch)."""
    spec = importlib.util.find_spec("spritegen.export")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "demo" / CHECKPOINT_FILE if locations else None
    if path is None or not path.is_file():
        raise ExportDirError("no --export-dir given and the bundled demo checkpoint is missing; pass "
                             "--export-dir DIR (made with spritegen-export)")
    return path


def default_export() -> Path:
    """The cached export of the bundled checkpoint, created on first use (needs torch once)."""
    checkpoint = bundled_checkpoint()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    target = cache_dir() / "exports" / digest[:16]
    if (target / MANIFEST_FILE).is_file():
        return target
    try:
        from spritegen.export.exporter import export  # lazy: torch is needed only here
    except ImportError as exc:
        raise ExportDirError(f"no --export-dir given and no cached export of the bundled model in {target}; "
                             f"creating it needs the export extra ({exc.name or 'torch'} is missing): pip install "
                             "'spritegen[export]', or pass --export-dir") from None
    err.print(f"creating the bundled model's export in {target} (once)...", markup=False, soft_wrap=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    export(None, target, say=lambda message: err.print(f"  {message}", markup=False, soft_wrap=True))
    return target


# ------------------------------------------------------------------ W&B
def _wandb_mode() -> Optional[str]:
    """None when WANDB_MODE says what to do, else online if logged in (key or netrc), else offline."""
    if os.environ.get("WANDB_MODE"):
        return None
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


def _log_battle(project: str, noise: np.ndarray, ddpm: np.ndarray, ddim: np.ndarray, labels: list[str],
                seconds: dict[str, float], config: dict) -> None:
    """The seed's `samplers_battle` run: a wandb.Table input_noise, ddpm, ddim, class (+ timings)."""
    from spritegen.runtime.images import to_pixels
    try:
        import wandb
    except ImportError:
        err.print("warning: wandb is not installed, so the table was not logged (pip install wandb, "
                  "or pass --no-wandb)", markup=False, soft_wrap=True)
        return
    try:
        with wandb.init(project=project, job_type="samplers_battle", config=config, mode=_wandb_mode()) as run:
            table = wandb.Table(columns=["input_noise", "ddpm", "ddim", "class", "ddpm_seconds", "ddim_seconds"])
            for k, label in enumerate(labels):
                table.add_data(wandb.Image(to_pixels(noise[k], normalise=True)), wandb.Image(to_pixels(ddpm[k])),
                               wandb.Image(to_pixels(ddim[k])), label, seconds["ddpm"], seconds["ddim"])
            run.log({"samplers_table": table})
            run.summary.update({f"{name}_seconds": value for name, value in seconds.items()})
            where = run.url or run.dir
    except Exception as exc:  # wandb raises many types (network, auth, settings)
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise SpriteGenError(f"W&B logging failed ({first}); the PNG was written; rerun with --no-wandb "
                             "or fix W&B") from None
    typer.echo(f"logged the samplers table to W&B: {where}")


# Serving (spritegen.serving; pytriton and tritonclient are imported only when they run).
from spritegen.serving.commands import serve, triton_repo  # noqa: E402

app.command()(serve)
app.command("triton-repo")(triton_repo)

if __name__ == "__main__":
    app()
