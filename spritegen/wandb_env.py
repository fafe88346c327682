"""W&B settings every part of spritegen shares: the project name and one rule for online/offline.

Imports nothing from wandb, so the torch-free runtime and the CLIs can decide before paying
for wandb's import (and so a machine without wandb gets a clear error only when it logs).
"""

from __future__ import annotations

import netrc
import os
from typing import Any, Callable
from urllib.parse import urlparse

from spritegen.errors import first_line

PROJECT = "dlai_sprite_diffusion"  # the course's W&B project: runs, models and exports land here
MODES = ("auto", "online", "offline", "disabled")
_DEFAULT_HOST = "https://api.wandb.ai"


def logged_in() -> bool:
    """True when W&B credentials exist: WANDB_API_KEY, or a netrc entry ($NETRC or ~/.netrc)
    for the W&B host ($WANDB_BASE_URL). Checked without prompting and without the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or _DEFAULT_HOST).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str = "auto") -> str:
    """The W&B mode to run in. "auto": $WANDB_MODE when it names a mode, else online when
    logged in, else offline (so a machine without credentials never blocks on a login prompt)."""
    if mode not in MODES:
        raise ValueError(f"W&B mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":  # wandb's old spelling of offline
        return "offline"
    return "online" if logged_in() else "offline"


def fetch_artifact(name: str, kind: str, error: type[Exception], hint: str,
                   api_factory: Callable[[], Any] | None = None) -> Any:
    """The W&B artifact `name` of type `kind`, through `wandb.Api` (the seam tests replace).

    Every failure is one line of type `error`: wandb missing, no credentials or network (with
    `hint`, what to do instead), an unknown name. The runtime (export artifacts) and the
    exporter (model artifacts) both fetch this way, so both say the same things.
    """
    if api_factory is None:
        try:
            import wandb
        except ImportError:
            raise error(f"{name!r} is a W&B artifact but wandb is not installed: pip install wandb, "
                        f"or {hint}") from None
        api_factory = wandb.Api
    try:
        api = api_factory()
    except Exception as exc:  # wandb raises many types for "no key" / "no network"
        raise error(f"cannot reach W&B to fetch {name!r} (not logged in or no network: "
                    f"{first_line(exc)}); {hint}") from None
    try:
        return api.artifact(name, type=kind)
    except Exception as exc:
        message = first_line(exc)
        if any(word in message.lower() for word in ("not found", "does not exist", "no such", "404")):
            raise error(f"W&B artifact {name!r} not found ({message}); check the "
                        "entity/project/name:alias spelling") from None
        raise error(f"cannot fetch W&B artifact {name!r} ({message}); {hint}") from None
