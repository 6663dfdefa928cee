"""Differential privacy for published aggregates: OpenDP's Laplace mechanism over count vectors,
and the contribution bound that gives them a known sensitivity.

The unit of privacy is one shopper. A count vector (sessions per category, buyers per item…) has
L1 sensitivity ``c`` once every shopper is limited to ``c`` rows (``bound_contributions``): adding
or removing one shopper moves the vector by at most ``c`` in L1. Laplace noise of scale
``c / ε`` then makes the release ε-DP (Dwork et al. 2006); OpenDP samples it exactly (discrete
Laplace for integers, Canonne–Kamath–Steinke 2020), which floating-point ``numpy`` noise does not.
Everything computed from a release afterwards (rates, rankings, top lists) is post-processing
and costs no further ε.

    >>> noisy = laplace_counts(np.array([120, 40, 3]), epsilon=1.0, sensitivity=1)   # doctest: +SKIP
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from shelfwise.core.errors import ConfigError


@lru_cache(maxsize=1)
def _opendp() -> Any:
    try:
        import opendp.prelude as dp
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("differential privacy needs opendp", hint="pip install opendp") from exc
    dp.enable_features("contrib")
    return dp


def laplace_scale(epsilon: float, sensitivity: float) -> float:
    """The Laplace scale that makes a query of this L1 sensitivity ε-DP."""
    if not epsilon > 0:
        raise ConfigError(f"ε must be positive, got {epsilon}")
    if not sensitivity > 0:
        raise ConfigError(f"sensitivity must be positive, got {sensitivity}")
    return float(sensitivity) / float(epsilon)


@lru_cache(maxsize=64)
def _measurement(kind: str, scale: float) -> Any:
    dp = _opendp()
    if kind == "int":
        space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    else:
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    return space >> dp.m.then_laplace(scale=scale)


def laplace_counts(counts: np.ndarray, *, epsilon: float, sensitivity: int) -> np.ndarray:
    """Integer counts plus discrete Laplace noise (OpenDP): ε-DP for an L1 sensitivity of
    ``sensitivity``. Negative noisy counts are kept (clip them after, as post-processing, if a
    reader needs non-negative values: clipping before would bias every small count upwards)."""
    scale = laplace_scale(epsilon, sensitivity)
    meas = _measurement("int", scale)
    spent = float(meas.map(int(sensitivity)))
    if spent > epsilon * (1 + 1e-9):  # the library's own privacy map must agree with ours
        raise ConfigError(f"OpenDP's privacy map gives ε={spent} for scale {scale}, above {epsilon}")
    values = [int(v) for v in np.asarray(counts).ravel()]
    if not values:
        return np.zeros(0, np.int64)
    return np.asarray(meas(values), np.int64).reshape(np.shape(counts))


def laplace_values(values: np.ndarray, *, epsilon: float, sensitivity: float) -> np.ndarray:
    """Real-valued sums (decayed counts…) plus Laplace noise (OpenDP, floating-point safe)."""
    scale = laplace_scale(epsilon, sensitivity)
    meas = _measurement("float", scale)
    spent = float(meas.map(float(sensitivity)))
    if spent > epsilon * (1 + 1e-9):
        raise ConfigError(f"OpenDP's privacy map gives ε={spent} for scale {scale}, above {epsilon}")
    flat = [float(v) for v in np.asarray(values, np.float64).ravel()]
    if not flat:
        return np.zeros(0, np.float64)
    return np.asarray(meas(flat), np.float64).reshape(np.shape(values))


def bound_contributions(owners: np.ndarray, max_per_owner: int, *, seed: int = 0) -> np.ndarray:
    """A mask keeping at most ``max_per_owner`` rows of each owner (a random choice of their rows,
    so a shopper's first rows are not favoured). Rows with owner ``-1`` (a guest with no id) are
    each their own owner and always kept."""
    owners = np.asarray(owners, np.int64)
    if max_per_owner < 1:
        raise ConfigError(f"contributions per shopper must be at least 1, got {max_per_owner}")
    n = len(owners)
    if not n:
        return np.zeros(0, bool)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), owners))
    sorted_owners = owners[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_owners)) + 1]
    run = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep_sorted = (run < max_per_owner) | (sorted_owners < 0)
    keep = np.zeros(n, bool)
    keep[order] = keep_sorted
    return keep


def private_quantile(values: np.ndarray, *, alpha: float, candidates: np.ndarray, epsilon: float) -> float:
    """One ε-DP quantile of ``values`` (one value per shopper) among ``candidates`` (chosen without
    looking at the data), by OpenDP's exponential-mechanism quantile (Smith 2011)."""
    dp = _opendp()
    cands = sorted({float(c) for c in np.asarray(candidates).ravel()})
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()

    def build(scale: float) -> Any:
        return space >> dp.m.then_private_quantile(dp.max_divergence(), cands, alpha, scale)

    scale = dp.binary_search_param(build, d_in=1, d_out=float(epsilon))
    clipped = np.clip(np.asarray(values, np.float64), cands[0], cands[-1])
    return float(build(scale)([float(v) for v in clipped]))
