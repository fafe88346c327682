"""Measured errors and their tolerances: the records validation writes into the manifest.

max_abs = max |out - ref|; max_rel = max_abs / max |ref| (relative to the output's
range; element-wise ratios explode where the reference crosses zero); rel_rms =
sqrt(sum (out - ref)^2 / sum ref^2). Every check bounds max_abs except int8's, whose
rounding is a few percent of each value by design, so it bounds rel_rms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerances:
    """Tolerances, absolute unless the name says rel_rms, each with its reason
    (docs/export.md has measured errors)."""

    eps: float = 1e-4  # fp32 network: ORT/TorchScript kernels reorder float32 sums, ~1e-6 seen
    sample: float = 1e-3  # a whole fp32 sampler chain (DDIM-25, DDPM-T) on the clipped sample
    fp16_eps: float = 3e-2  # fp16 weights/activations: unit roundoff 4.9e-4 over ~20 layers on O(1) eps
    # int8 network, rel_rms on held-out DDIM trajectory states: measured 5.7% on the trained
    # demo, 9.6% on a random-weight course-format model; a broken calibration or a wrongly
    # quantized op gives O(1), so 15% separates them with margin
    int8_eps_rel_rms: float = 0.15

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
    rel_rms: float = 0.0
    bound: str = "max_abs"  # the error `tolerance` bounds: "max_abs" or "rel_rms"

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.error() <= self.tolerance

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}

    def error(self) -> float:
        """The measured value of the metric `tolerance` bounds."""
        return self.max_abs if self.bound == "max_abs" else self.rel_rms

    def failure(self) -> str:
        """One clause of the validation error: the metric by name, its value, its real tolerance."""
        metric = "max abs error" if self.bound == "max_abs" else "relative RMS error"
        return f"{self.file} {metric} {self.error():.3g} > {self.tolerance:g} vs {self.reference}"


def compare(file: str, reference: str, refs: list[np.ndarray], outs: list[np.ndarray], tolerance: float,
            bound: str = "max_abs") -> Check:
    """Errors over paired arrays (NaN anywhere counts as infinitely wrong); `tolerance` bounds `bound`."""
    diffs = [np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)) for r, o in zip(refs, outs)]
    max_abs = max(float(np.nan_to_num(d, nan=np.inf).max()) for d in diffs)
    scale = max(float(np.abs(r).max()) for r in refs) or 1.0
    squares = sum(float((np.asarray(r, np.float64) ** 2).sum()) for r in refs) or 1.0
    rel_rms = float(np.sqrt(sum(float((d ** 2).sum()) for d in diffs) / squares))
    return Check(file, reference, max_abs, max_abs / scale, tolerance, len(refs), rel_rms, bound)
