"""What every `spritegen` command shares: its error handling and the runtime options.

Its own module (not spritegen.cli) so that spritegen.serving.commands can use the same
error handling without importing the CLI that registers it (no import loop).

`sample`, `compare` and `mix` open a Sampler with the same seven options; they are
declared once here (RUNTIME_OPTIONS) and added to a command by `runtime_options`, which
hands the command one RuntimeOptions (`options`) instead of seven parameters. The command line is
unchanged: typer sees the seven options in every command's signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional, get_type_hints

import typer
from rich.console import Console

from spritegen.errors import SpriteGenError, UsageError
from spritegen.runtime import limits

err = Console(stderr=True)


@contextmanager
def errors() -> Iterator[None]:
    """SpriteGenError -> `error: <message>` on stderr and exit 1, no traceback; a UsageError exits 2
    with the command's usage line, as typer's own usage errors do."""
    try:
        yield
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None  # typer prints the usage line and exits 2
    except SpriteGenError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


class Impl(str, Enum):
    step = "step"
    unet = "unet"
    loop = "loop"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@dataclass(frozen=True)
class RuntimeOptions:
    """How a command opens its Sampler (spritegen.cli._open)."""

    export_dir: Optional[Path] = None
    provider: str = "auto"
    threads: Optional[int] = None
    impl: Optional[Impl] = None
    precision: Precision = Precision.fp32
    spin: Optional[bool] = None
    max_batch: int = limits.MAX_BATCH

    def sampler_options(self) -> dict[str, Any]:
        """Sampler.load's keyword arguments (all but the export directory)."""
        return dict(provider=self.provider, threads=self.threads, impl=self.impl.value if self.impl else None,
                    spin=self.spin, precision=self.precision.value, max_batch=self.max_batch)


# The seven options as typer declares them, by RuntimeOptions field.
RUNTIME_OPTIONS: dict[str, Any] = {
    "export_dir": typer.Option(None, "--export-dir", "-e", envvar="SPRITEGEN_EXPORT_DIR", file_okay=False,
                               help="Export directory from spritegen-export (default: a cached export of the "
                                    "bundled model)."),
    "provider": typer.Option("auto", "--provider", help="auto (CUDA if available), cuda or cpu."),
    "threads": typer.Option(None, "--threads", min=1, max=limits.max_threads(),
                            help="ONNX Runtime intra-op threads (default: all cores)."),
    "impl": typer.Option(None, "--impl", help="Step implementation: step (fused graph; the fp32 default), unet "
                         "(network + numpy update; the only one for fp16/int8) or loop (whole-DDIM graph, its fixed "
                         "n only)."),
    "precision": typer.Option(Precision.fp32, "--precision", help="Network precision: fp32, or fp16/int8 when the "
                              "export has unet_fp16.onnx/unet_int8.onnx (int8: faster on CPU, sprites differ)."),
    "spin": typer.Option(None, "--spin/--no-spin", metavar="", help="Force ONNX Runtime's spin-waiting on or off "
                         "(default: automatic; docs/runtime.md)."),
    "max_batch": typer.Option(limits.MAX_BATCH, "--max-batch", min=1, help="Most sprites one run may sample (a "
                              "memory bound, checked before sampling)."),
}
_FIRST = ("export_dir",)  # listed first in --help; the rest where the command declares `options`


def runtime_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command(..., options: RuntimeOptions)` as a typer command taking the seven options."""
    own = list(inspect.signature(command, eval_str=True).parameters.values())
    types = get_type_hints(RuntimeOptions)
    added = {name: inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option,
                                     annotation=types[name]) for name, option in RUNTIME_OPTIONS.items()}

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        command(options=RuntimeOptions(**{name: kwargs.pop(name) for name in RUNTIME_OPTIONS}), **kwargs)

    first = [added[name] for name in _FIRST]
    rest = [parameter for name, parameter in added.items() if name not in _FIRST]
    at = [p.name for p in own].index("options")  # the rest take the place of `options` in --help
    parameters = first + own[:at] + rest + own[at + 1:]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
