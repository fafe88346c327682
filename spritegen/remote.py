"""`RemoteSampler`: what `spritegen sample --server URL` needs of a Sampler, answered by a running
service. The same seeds give the same sprites (and so the same grid) as a local run, and the
same checks (batch, steps, fitted call counts, picture size) run, with the runtime's wording,
before anything is sent. Needs the runtime (`spritegen[runtime]`) for those checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spritegen.client import Client, Context, Seeds, ServerError
from spritegen.contract import FAST_KEY, dpmpp_indices
from spritegen.errors import ExportDirError, InputError
from spritegen.serving.schema import FITTED


class RemoteSampler:
    """The runtime Sampler's sampling methods (ddim, ddpm, dpmpp, fast) and their checks, over `client`."""

    def __init__(self, client: Client, max_batch: int) -> None:
        from spritegen.runtime.manifest_fields import fast_sampler

        self.client, self.max_batch = client, max_batch
        self.class_names = client.class_names  # asks the server: a down one fails here, at once
        self.timesteps = client.schema.timesteps
        self.image_shape = client.schema.image
        try:  # the served export's fitted sampler (runtime.manifest_fields.FastSampler), read as a manifest's
            self.fitted = fast_sampler({FAST_KEY: client.published.fast}, self.timesteps)
        except ValueError as exc:
            raise ServerError(f"the service at {client.url} publishes a broken fast sampler ({exc})") from None

    def _defaults(self, sampler: str) -> dict[str, Any]:
        return self.client.published.defaults[sampler]

    def check_ddim(self, *, n: int | None = None, eta: float = 0.0, save_rate: int | None = None) -> int:
        """The steps `ddim` runs; InputError for what the service would refuse (and for --gif)."""
        from spritegen.runtime.checks import check_number, check_steps  # the runtime's wording

        _no_intermediates(save_rate)
        check_number(eta, "eta", upper=1.0)
        return check_steps(self._defaults("ddim")["n"] if n is None else n, self.timesteps)

    def check_dpmpp(self, *, n: int | None = None, eta: float = 0.0, save_rate: int | None = None) -> tuple[int, ...]:
        """The step indices `dpmpp` runs, as Sampler.check_dpmpp says them."""
        from spritegen.runtime.checks import check_number, check_steps

        _no_intermediates(save_rate)
        check_number(eta, "eta", upper=1.0)
        n = self._defaults("dpmpp")["n"] if n is None else n
        return tuple(dpmpp_indices(self.timesteps, check_steps(n, self.timesteps, "DPM-Solver++")))

    def check_fast(self, *, n: int | None = None, save_rate: int | None = None) -> tuple[tuple[int, ...], float]:
        """(step indices, eta) of `fast`, as Sampler.check_fast says them: ExportDirError when the
        service serves no fitted sampler, InputError for a call count it was not fitted for."""
        _no_intermediates(save_rate)
        if self.fitted is None:
            raise ExportDirError(self.client.not_served(FITTED))
        return self.fitted.table(n), self.fitted.eta

    def ddim(self, context: Context, *, n: int | None = None, eta: float = 0.0, seed: Seeds = None,
             guidance: float | None = None, save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.ddim(context, n=n, eta=eta, seed=seed, guidance=guidance).sprites, progress)

    def ddpm(self, context: Context, *, seed: Seeds = None, guidance: float | None = None,
             save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.ddpm(context, seed=seed, guidance=guidance).sprites, progress)

    def dpmpp(self, context: Context, *, n: int | None = None, eta: float = 0.0, seed: Seeds = None,
              guidance: float | None = None, save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.dpmpp(context, n=n, eta=eta, seed=seed, guidance=guidance).sprites, progress)

    def fast(self, context: Context, *, n: int | None = None, seed: Seeds = None, guidance: float | None = None,
             save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.fast(context, n=n, seed=seed, guidance=guidance).sprites, progress)


def _no_intermediates(save_rate: int | None) -> None:
    if save_rate is not None:
        raise InputError("the service returns final sprites only, so --gif needs a local run: drop --server or --gif")


def _done(sprites: np.ndarray, progress: Any) -> np.ndarray:
    if progress is not None:
        progress(1, 1)
    return sprites
