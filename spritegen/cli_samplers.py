"""Which sampler a `spritegen` command runs, checked before sampling, and the call that runs it.

One place maps `--sampler` (contract.SAMPLERS) to the runtime's methods, so `sample`, `compare`
and `mix` accept the same samplers with the same options. The default is the export's fitted
few-step sampler ("fast") when the export has one: it beats DDIM-25 in quality with fewer network
calls on the bundled model (docs/samplers.md has the measurement); else DDIM, as before.
"""

from __future__ import annotations

from typing import Any

from spritegen.contract import DDPM_SAVE_RATE, SAMPLERS, ddim_pairs
from spritegen.errors import InputError, UsageError


def default_sampler(runtime: Any) -> str:
    """"fast" when the export (with --server: the service, spritegen.remote) has a fitted few-step
    sampler, else "ddim" (module doc)."""
    manifest = getattr(runtime, "manifest", None)
    fitted = getattr(manifest, "fast", None) if manifest is not None else getattr(runtime, "fitted", None)
    return "fast" if fitted is not None else "ddim"


def check_run(runtime: Any, sampler: str, *, n: int | None, eta: float | None, rate: int | None) -> int | None:
    """Everything the run would refuse, refused now; the steps it takes (None for DDPM, whose
    kept states follow contract.ddpm_keeps)."""
    if not hasattr(runtime, sampler):
        raise UsageError(f"--sampler {sampler} is not offered here; use one of "
                         f"{', '.join(name for name in SAMPLERS if hasattr(runtime, name))}")
    if sampler == "ddim":
        n = runtime.check_ddim(n=n, eta=eta or 0.0, save_rate=rate)
        return len(ddim_pairs(runtime.timesteps, n))
    if sampler == "dpmpp":
        return len(runtime.check_dpmpp(n=n, eta=eta or 0.0, save_rate=rate)) - 1
    if sampler == "fast":
        runtime.check_fast(save_rate=rate)  # what is not about --n (no fitted sampler, --gif with --server) first
        try:
            return len(runtime.check_fast(n=n, save_rate=rate)[0]) - 1
        except InputError as exc:  # an n the export was not fitted for: a usage error (exit 2)
            raise UsageError(f"--n: {exc}") from None
    return None


def trajectory_rate(sampler: str) -> int:
    """save_rate of a trajectory GIF: every step, or DDPM's course rate."""
    return DDPM_SAVE_RATE if sampler == "ddpm" else 1


def run(runtime: Any, sampler: str, context: Any, *, n: int | None, eta: float | None, **kwargs: Any) -> Any:
    """runtime.<sampler>(context, ...) with the options that sampler takes (contract.SAMPLERS)."""
    spec = SAMPLERS[sampler]
    options = dict(kwargs)
    if spec.takes_n:
        options["n"] = n
    if spec.takes_eta:
        options["eta"] = eta or 0.0
    return getattr(runtime, sampler)(context, **options)
