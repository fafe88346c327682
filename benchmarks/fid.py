"""Frechet distance between two sets of feature vectors (the "FID" of Heusel et al. 2017), numpy only.

Each set is summarised by a Gaussian: mean mu and covariance S of its (N, D) features.
The Frechet (2-Wasserstein) distance between the two Gaussians is

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The usual code takes scipy.linalg.sqrtm(S1 @ S2), a non-symmetric product whose square
root can come back complex or inaccurate. Here the trace term is computed from
symmetric matrices only: S1^1/2 from S1's eigendecomposition (eigh, negative rounding
eigenvalues clipped to 0), then M = S1^1/2 S2 S1^1/2, which is symmetric positive
semi-definite and has the same eigenvalues as S1 S2, so tr(sqrt(M)) = sum of sqrt of
eigvalsh(M) (again clipped at 0). Everything in float64.

With N samples the estimate is biased upwards (a finite sample's covariance is noisy):
compare distances only at the same N, and read them against the floor measured between
two disjoint real sets of that N (benchmarks.sampler_quality reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    """mean (D,) and covariance (D, D) of a feature set, float64."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> "Gaussian":
        """Fit to (N, D) features, N >= 2 (the unbiased covariance, divisor N - 1)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
        return cls(x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (rounding negatives clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """d^2 between two Gaussians (module doc), >= 0."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature widths differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    root = _psd_sqrt(a.cov)
    middle = root @ b.cov @ root  # symmetric PSD, eigenvalues those of S1 S2
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    d2 = float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt)
    return max(d2, 0.0)  # rounding can leave -1e-12 for identical sets


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between two (N, D) feature sets."""
    return frechet_distance(Gaussian.of(features_a), Gaussian.of(features_b))
