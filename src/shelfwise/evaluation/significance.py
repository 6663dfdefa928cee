"""Uncertainty: bootstrap confidence intervals over users, and a paired test between two models
evaluated on the same users (sign-flip randomisation test on per-user differences, which makes no
normality assumption, with a bootstrap interval for the mean difference).

    >>> rng = np.random.default_rng(0)
    >>> a = rng.random(500); b = a + 0.05
    >>> paired_test(b, a, seed=0)["p_value"] < 0.01
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bootstrap_ci(
    values: np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean, resampling users with replacement."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, (1 << 22) // max(values.size, 1))  # bound memory: ~4M draws at a time
    for start in range(0, n_resamples, chunk):
        n = min(chunk, n_resamples - start)
        idx = rng.integers(0, values.size, size=(n, values.size))
        means[start : start + n] = values[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_test(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Is model A's per-user metric different from B's on the same users? Two-sided.

    Returns the mean difference A−B, its bootstrap interval, and the p-value of a sign-flip
    randomisation test (under H0 each user's difference is as likely positive as negative).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same users: {a.shape} vs {b.shape}")
    d = a - b
    observed = float(d.mean()) if d.size else 0.0
    rng = np.random.default_rng(seed)
    nz = d[d != 0]
    if nz.size == 0:
        p = 1.0
    else:
        extreme = 0
        chunk = max(1, (1 << 22) // nz.size)
        for start in range(0, n_resamples, chunk):
            n = min(chunk, n_resamples - start)
            signs = rng.integers(0, 2, size=(n, nz.size), dtype=np.int8) * 2 - 1
            sims = (signs * nz).sum(axis=1) / d.size
            extreme += int((np.abs(sims) >= abs(observed) - 1e-12).sum())
        p = (extreme + 1) / (n_resamples + 1)
    lo, hi = bootstrap_ci(d, n_resamples=min(n_resamples, 2000), confidence=confidence, seed=seed)
    return {
        "mean_a": float(a.mean()) if a.size else 0.0,
        "mean_b": float(b.mean()) if b.size else 0.0,
        "diff": observed,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": float(p),
        "users": int(d.size),
        "test": "paired sign-flip randomisation",
    }
