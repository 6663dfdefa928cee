"""Drift between two windows of a shop's data: has what the model learnt from stopped describing
what shoppers do now?

Checks, each a number with a threshold (``DriftThresholds``):

- ``event_mix``: population stability index (PSI) of the event-type shares;
- ``item_popularity``: PSI of the share of events per item (the reference's 100 most active
  items, the rest pooled);
- ``new_item_share`` / ``gone_item_share``: catalogue churn: the current window's events on items
  the reference never saw; the reference's items the current window never saw;
- ``user_activity``: two-sample Kolmogorov-Smirnov statistic of events per shopper;
- ``exposure``: PSI of impressions per item (from the impression log), and ``coverage``: the
  share of the catalogue shown, both windows;
- ``score_drift(reference, current)``: KS of model scores, for a caller that has a model.

PSI thresholds 0.1 (watch) and 0.25 (act) are the credit-scoring convention (Siddiqi 2006);
a KS statistic above 0.1 with p < 0.01 is flagged.

    >>> psi({"view": 90, "cart": 10}, {"view": 90, "cart": 10})
    0.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from shelfwise.core.clock import now_ms
from shelfwise.store.base import Store
from shelfwise.store.impressions import iter_impressions

DAY_MS = 86_400_000
TOP_ITEMS = 100


class DriftThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psi_alert: float = Field(0.25, gt=0, description="PSI at or above this is drift")
    ks_alert: float = Field(
        0.1, gt=0, lt=1, description="KS statistic at or above this (and p < 0.01) is drift"
    )
    churn_alert: float = Field(
        0.3, gt=0, le=1, description="new or gone item share at or above this is drift"
    )
    coverage_drop_alert: float = Field(0.5, gt=0, le=1, description="coverage falling by this share is drift")


def psi(reference: Mapping[Any, float], current: Mapping[Any, float], *, eps: float = 1e-4) -> float:
    """Population stability index ``sum (c - r) ln(c / r)`` over the union of categories, shares
    floored at ``eps`` (a category absent on one side would make it infinite)."""
    keys = sorted(set(reference) | set(current), key=str)
    r = np.array([float(reference.get(k, 0.0)) for k in keys])
    c = np.array([float(current.get(k, 0.0)) for k in keys])
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    r = np.maximum(r / r.sum(), eps)
    c = np.maximum(c / c.sum(), eps)
    return round(float(np.sum((c - r) * np.log(c / r))), 12)


def ks(reference: Iterable[float], current: Iterable[float]) -> dict[str, float]:
    a, b = np.asarray(list(reference), np.float64), np.asarray(list(current), np.float64)
    if a.size < 2 or b.size < 2:
        return {"statistic": float("nan"), "p": float("nan")}
    r = stats.ks_2samp(a, b)
    return {"statistic": float(r.statistic), "p": float(r.pvalue)}


def score_drift(
    reference: Iterable[float], current: Iterable[float], *, thresholds: DriftThresholds | None = None
) -> dict[str, Any]:
    """KS of a model's scores in two windows (e.g. the top-10 scores of sampled shoppers)."""
    t = thresholds or DriftThresholds()
    r = ks(reference, current)
    return {**r, "threshold": t.ks_alert, "alert": bool(r["statistic"] >= t.ks_alert and r["p"] < 0.01)}


def _pooled(counts: Counter[Any], top: Iterable[Any]) -> dict[Any, float]:
    keep = set(top)
    out: dict[Any, float] = {k: float(v) for k, v in counts.items() if k in keep}
    out["__other__"] = float(sum(v for k, v in counts.items() if k not in keep))
    return out


def _window(store: Store, since: int, until: int) -> dict[str, Any]:
    inter = store.interactions(since=since, until=until)
    types = Counter(inter.type_names[t] for t in inter.types.tolist())
    item_ids = inter.item_ids[inter.items] if len(inter) else np.array([], dtype=object)
    items = Counter(item_ids.tolist())
    per_user = np.bincount(inter.users) if len(inter) else np.array([])
    shown = Counter(i for imp in iter_impressions(store, since=since, until=until) for i in imp.items)
    return {
        "events": len(inter),
        "types": types,
        "items": items,
        "per_user": per_user[per_user > 0],
        "shown": shown,
    }


def drift_report(
    store: Store,
    *,
    window_days: float = 7.0,
    now: int | None = None,
    thresholds: DriftThresholds | None = None,
) -> dict[str, Any]:
    """Compare the last ``window_days`` (current) with the ``window_days`` before (reference)."""
    t = thresholds or DriftThresholds()
    now = now_ms() if now is None else now
    width = int(window_days * DAY_MS)
    ref, cur = _window(store, now - 2 * width, now - width), _window(store, now - width, now)
    catalogue = max(len(store.item_ids()), 1)
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float, threshold: float, alert: bool | None = None, **extra: Any) -> None:
        ok = np.isfinite(value)
        checks[name] = {
            "value": value if ok else None,
            "threshold": threshold,
            "alert": bool(ok and (value >= threshold if alert is None else alert)),
            **extra,
        }

    check("event_mix", psi(ref["types"], cur["types"]), t.psi_alert)
    top = [i for i, _ in ref["items"].most_common(TOP_ITEMS)]
    check("item_popularity", psi(_pooled(ref["items"], top), _pooled(cur["items"], top)), t.psi_alert)
    cur_events = sum(cur["items"].values())
    new = (
        sum(v for i, v in cur["items"].items() if i not in ref["items"]) / cur_events
        if cur_events
        else float("nan")
    )
    gone = (
        sum(1 for i in ref["items"] if i not in cur["items"]) / len(ref["items"])
        if ref["items"]
        else float("nan")
    )
    check("new_item_share", new, t.churn_alert)
    check("gone_item_share", gone, t.churn_alert)
    activity = ks(ref["per_user"], cur["per_user"])
    check(
        "user_activity",
        activity["statistic"],
        t.ks_alert,
        alert=bool(activity["statistic"] >= t.ks_alert and activity["p"] < 0.01),
        p=activity["p"],
    )
    if ref["shown"] and cur["shown"]:
        shown_top = [i for i, _ in ref["shown"].most_common(TOP_ITEMS)]
        check(
            "exposure", psi(_pooled(ref["shown"], shown_top), _pooled(cur["shown"], shown_top)), t.psi_alert
        )
        ref_cov, cur_cov = len(ref["shown"]) / catalogue, len(cur["shown"]) / catalogue
        check(
            "coverage",
            cur_cov,
            t.coverage_drop_alert,
            alert=cur_cov < (1 - t.coverage_drop_alert) * ref_cov,
            reference=ref_cov,
        )
    return {
        "window_days": window_days,
        "reference": {"since": now - 2 * width, "until": now - width, "events": ref["events"]},
        "current": {"since": now - width, "until": now, "events": cur["events"]},
        "checks": checks,
        "alerts": sorted(k for k, v in checks.items() if v["alert"]),
        "thresholds": t.model_dump(),
    }


def drift_samples(report: dict[str, Any]) -> list[tuple[str, dict[str, str], float]]:
    """Gauge samples for /metrics: ``shelfwise_drift{check}`` (the value) and
    ``shelfwise_drift_alert{check}`` (1 when over its threshold)."""
    out = []
    for name, c in report["checks"].items():
        if c["value"] is not None:
            out.append(("shelfwise_drift", {"check": name}, float(c["value"])))
        out.append(("shelfwise_drift_alert", {"check": name}, 1.0 if c["alert"] else 0.0))
    return out
