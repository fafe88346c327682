"""W&B settings every part of spritegen shares: the project name and one rule for online/offline.

Imports nothing from wandb, so the torch-free runtime and the CLIs can decide before paying
for wandb's import (and so a machine without wandb gets a clear error only when it logs).
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

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
