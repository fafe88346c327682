"""Measured errors and their tolerances: the records validation writes into the manifest.

max_abs = max |out - ref|; max_rel = max_abs / max |ref| (relative to the output's
range; element-wise ratios explode where the reference crosses zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerances:
    """Absolute tolerances, each with its reason (docs/export.md has measured errors)."""

    eps: float = 1e-4  # fp32 network: ORT/TorchScript kernels reorder float32 sums, ~1e-6 seen
    sample: float = 1e-3  # a whole fp32 sampler chain (DDIM-25, DDPM-T) on the clipped sample
    fp16_eps: float = 3e-2  # fp16 weights/activations: unit roundoff 4.9e-4 over ~20 layers on O(1) eps

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One file's validation against its reference."""

    file: str
    reference: str
    max_abs: float
    max_rel: float
    tolerance: float
    cases: int

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.tolerance

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"{self.file:<15} vs {self.reference:<28} max abs {self.max_abs:.2e}  rel {self.max_rel:.2e}"
                f"  (tol {self.tolerance:.0e}, {self.cases} cases) {verdict}")


def compare(file: str, reference: str, refs: list[np.ndarray], outs: list[np.ndarray], tolerance: float) -> Check:
    """Max abs / rel error over paired arrays (NaN anywhere counts as infinitely wrong)."""
    diffs = [np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)) for r, o in zip(refs, outs)]
    max_abs = max(float(np.nan_to_num(d, nan=np.inf).max()) for d in diffs)
    scale = max(float(np.abs(r).max()) for r in refs) or 1.0
    return Check(file, reference, max_abs, max_abs / scale, tolerance, len(refs))
