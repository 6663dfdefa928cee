"""Online metrics from the impression log and the attribution rows: per placement, model version
and experiment arm, with delta-method confidence intervals.

The unit of analysis is the shopper (a guest: their session; an answer with neither: itself),
because a shopper's sessions and clicks are not independent of each other; every metric is a
ratio of per-shopper sums, so its interval comes from the delta method (Kohavi et al. 2020):

- ``ctr``: attributed clicks / impressions
- ``add_to_cart_rate``: attributed carts / impressions
- ``conversion``: sessions with an attributed purchase / sessions served
- ``revenue_per_session``: attributed revenue / sessions served

    >>> rows = online_metrics(store, placement="home")            # doctest: +SKIP
    >>> rows[0]["metrics"]["ctr"]                                  # doctest: +SKIP
    {'value': 0.041, 'se': 0.002, 'low': 0.037, 'high': 0.045, 'n': 5210}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from shelfwise.evaluation.experiments import ratio_ci
from shelfwise.store.base import Store
from shelfwise.store.tables import attributions, impressions

GROUPS = ("placement", "version", "experiment", "arm")
METRICS = {
    "ctr": ("clicks", "impressions"),
    "add_to_cart_rate": ("carts", "impressions"),
    "conversion": ("converted_sessions", "sessions"),
    "revenue_per_session": ("revenue", "sessions"),
}
COUNTS = ("impressions", "sessions", "clicks", "carts", "purchases", "converted_sessions", "revenue")


def _unit(table: sa.Table) -> Any:
    return sa.func.coalesce(table.c.user_id, table.c.session_id, table.c.answer_id)


def _session(table: sa.Table) -> Any:
    return sa.func.coalesce(table.c.session_id, table.c.answer_id)


def unit_sums(
    store: Store,
    *,
    placement: str | None = None,
    experiment: str | None = None,
    since: int | None = None,
    until: int | None = None,
    by: Sequence[str] = GROUPS,
) -> dict[tuple[Any, ...], dict[str, np.ndarray]]:
    """Per group (the columns ``by``) and unit: impressions, sessions, clicks, carts, purchases,
    converted sessions and revenue, as aligned arrays (plus ``unit``: the unit ids)."""
    for col in by:
        if col not in GROUPS:
            raise ValueError(f"cannot group by {col!r}; one of {GROUPS}")

    def filtered(q: Any, table: sa.Table) -> Any:
        if placement is not None:
            q = q.where(table.c.placement == placement)
        if experiment is not None:
            q = q.where(table.c.experiment == experiment)
        if since is not None:
            q = q.where(table.c.ts >= since)
        if until is not None:
            q = q.where(table.c.ts < until)
        return q

    ik = [impressions.c[c] for c in by]
    iq = filtered(
        sa.select(
            *ik,
            _unit(impressions).label("unit"),
            sa.func.count().label("impressions"),
            sa.func.count(sa.distinct(_session(impressions))).label("sessions"),
        ).group_by(*ik, _unit(impressions)),
        impressions,
    )
    ak = [attributions.c[c] for c in by]
    t = attributions.c.type

    def n_of(kind: str) -> Any:
        return sa.func.sum(sa.case((t == kind, 1), else_=0))

    aq = filtered(
        sa.select(
            *ak,
            _unit(attributions).label("unit"),
            n_of("click").label("clicks"),
            n_of("cart").label("carts"),
            n_of("purchase").label("purchases"),
            sa.func.count(sa.distinct(sa.case((t == "purchase", _session(attributions)), else_=None))).label(
                "converted_sessions"
            ),
            sa.func.coalesce(sa.func.sum(attributions.c.revenue), 0.0).label("revenue"),
        )
        .where(attributions.c.status == "attributed")
        .group_by(*ak, _unit(attributions)),
        attributions,
    )
    width = len(by)
    units: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        for r in conn.execute(iq):
            units.setdefault(tuple(r[:width]), {})[r.unit] = [float(r.impressions), float(r.sessions)] + [
                0.0
            ] * 5
        for r in conn.execute(aq):
            # an event credited to an answer whose impression is outside the period is left out
            row = units.get(tuple(r[:width]), {}).get(r.unit)
            if row is not None:
                row[2:] = [
                    float(r.clicks),
                    float(r.carts),
                    float(r.purchases),
                    float(r.converted_sessions),
                    float(r.revenue),
                ]
    out: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for key, per_unit in units.items():
        m = np.asarray(list(per_unit.values()), np.float64).reshape(-1, len(COUNTS))
        arrays = {name: m[:, i] for i, name in enumerate(COUNTS)}
        arrays["unit"] = np.asarray(list(per_unit.keys()), dtype=object)
        out[key] = arrays
    return out


def metrics_of(sums: dict[str, np.ndarray], *, confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Each metric of one group's per-unit sums, with its delta-method interval."""
    return {
        name: ratio_ci(sums[num], sums[den], confidence=confidence) for name, (num, den) in METRICS.items()
    }


def online_metrics(
    store: Store,
    *,
    placement: str | None = None,
    experiment: str | None = None,
    since: int | None = None,
    until: int | None = None,
    by: Sequence[str] = GROUPS,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """One row per group: its labels, totals and metrics with intervals."""
    rows = []
    for key, sums in sorted(
        unit_sums(store, placement=placement, experiment=experiment, since=since, until=until, by=by).items(),
        key=lambda kv: tuple("" if v is None else str(v) for v in kv[0]),
    ):
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "units": int(sums["impressions"].size),
                "totals": {c: float(sums[c].sum()) if c == "revenue" else int(sums[c].sum()) for c in COUNTS},
                "metrics": metrics_of(sums, confidence=confidence),
            }
        )
    return rows


# --- Prometheus -----------------------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def metric_samples(rows: Iterable[dict[str, Any]]) -> list[Sample]:
    """Gauge samples ``(name, labels, value)`` of ``online_metrics`` rows: each metric's value and
    interval bounds (``shelfwise_online_ctr{placement,version,experiment,arm,bound}``) and the
    totals (``shelfwise_online_impressions``, …). Undefined values (NaN) are left out."""
    out: list[Sample] = []
    for row in rows:
        labels = {g: "" if row.get(g) is None else str(row[g]) for g in GROUPS if g in row}
        for name, m in row["metrics"].items():
            for bound in ("value", "low", "high"):
                v = float(m[bound])
                if np.isfinite(v):
                    out.append((f"shelfwise_online_{name}", {**labels, "bound": bound}, v))
        for name, v in row["totals"].items():
            out.append((f"shelfwise_online_{name}", labels, float(v)))
    return out


class SamplesCollector:
    """A prometheus_client collector of gauge samples ``(name, labels, value)``, recomputed at most
    every ``ttl`` seconds (a scrape must not scan the store each time). E.g. drift alerts:
    ``registry.register(SamplesCollector(lambda: drift_samples(drift_report(store)), ttl=3600))``."""

    def __init__(self, compute: Callable[[], list[Sample]], *, ttl: float = 60.0) -> None:
        self.compute = compute
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._samples: list[Sample] = []

    def samples(self) -> list[Sample]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._samples = list(self.compute())
                self._at = time.monotonic()
            return list(self._samples)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[tuple[str, tuple[str, ...]], Any] = {}
        for name, labels, value in self.samples():
            key = (name, tuple(labels))
            fam = families.get(key)
            if fam is None:
                fam = families[key] = GaugeMetricFamily(
                    name, name.removeprefix("shelfwise_").replace("_", " "), labels=list(labels)
                )
            fam.add_metric(list(labels.values()), value)
        yield from families.values()


class OnlineMetricsCollector(SamplesCollector):
    """Online metrics as gauges: ``registry.register(OnlineMetricsCollector(lambda:
    online_metrics(store, since=now_ms() - 7 * DAY_MS, by=("placement", "version", "arm"))))``."""

    def __init__(self, compute: Callable[[], list[dict[str, Any]]], *, ttl: float = 60.0) -> None:
        super().__init__(lambda: metric_samples(compute()), ttl=ttl)
