"""Shared helpers of the browser tests: noise.js run by node through tests/web/noise_driver.mjs."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

DRIVER = Path(__file__).resolve().parent / "web" / "noise_driver.mjs"
NODE = shutil.which("node")


def run_node(cases: list[dict]) -> list:
    """noise_driver.mjs's answers to `cases` (its header lists the forms)."""
    result = subprocess.run([NODE, str(DRIVER)], input=json.dumps(cases), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def floats(encoded: str) -> np.ndarray:
    """float32 array from the driver's base64 of little-endian bytes."""
    return np.frombuffer(base64.b64decode(encoded), dtype="<f4").astype(np.float32)


def js_noise(seeds: str | list[str], streams: list[int], shape: tuple[int, ...]) -> list[np.ndarray]:
    """noise.js's batchNoise for each stream: one seed for the batch, or one per row (decimal strings)."""
    batch, per_row = shape[0], int(np.prod(shape[1:]))
    answers = run_node([{"seeds": seeds, "batch": batch, "stream": s, "per_row": per_row} for s in streams])
    return [floats(a).reshape(shape) for a in answers]
