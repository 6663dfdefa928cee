"""The zero-result and low-click query report: what shoppers searched for and did not find, or found
and did not click, from the search answers the service served (impressions, with their query and
how many items matched) and the clicks attributed to them (``store.impressions``).

A merchant acts on it from the merchant page: a synonym (the words the shop uses for what shoppers
typed) or a redirect (a page that answers the query). Each row says whether a synonym or redirect
already covers the query.

>>> report = query_report(store, days=30)          # doctest: +SKIP
>>> report["zero_result"][0]                       # doctest: +SKIP
{'query': 'lampshade', 'searches': 12, 'zero_results': 12, 'clicked': 0, 'ctr': 0.0, ...}
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shelfwise.core.clock import now_ms
from shelfwise.merchandising.search_rules import SearchSettings, normalise_query
from shelfwise.store.base import Store
from shelfwise.store.impressions import DAY_MS, search_query_stats

DEFINITIONS = {
    "zero_result": "queries whose answer matched no item, most often first",
    "low_click": (
        "queries that found items in at least min_searches searches, where at most max_ctr of those "
        "answers got an attributed click (a click that cited the answer's search_id and position)"
    ),
    "ctr": "answers with at least one attributed click / answers that found items",
}


def query_report(
    store: Store,
    *,
    days: float = 30.0,
    min_searches: int = 3,
    max_ctr: float = 0.1,
    limit: int = 50,
    settings: SearchSettings | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Zero-result and low-click queries of the last ``days`` days (``limit`` of each)."""
    if not days > 0:
        raise ValueError(f"days must be positive, not {days}")
    if min_searches < 1:
        raise ValueError(f"min_searches must be at least 1, not {min_searches}")
    if not 0 <= max_ctr <= 1:
        raise ValueError(f"max_ctr must be between 0 and 1, not {max_ctr}")
    now = now_ms() if now is None else now
    since = now - int(days * DAY_MS)
    rows = search_query_stats(store, since=since)
    covered = _covered(settings)
    for r in rows:
        found = r["searches"] - r["zero_results"]
        r["with_results"] = found
        r["ctr"] = round(r["clicked"] / found, 4) if found else None
        r["last_seen"] = dt.datetime.fromtimestamp(r["last_ts"] / 1000, tz=dt.UTC).isoformat(
            timespec="seconds"
        )
        r["managed"] = covered.get(r["query"], [])
    zero = sorted(
        (r for r in rows if r["zero_results"] > 0),
        key=lambda r: (-r["zero_results"], -r["searches"], r["query"]),
    )
    low = sorted(
        (
            r
            for r in rows
            if r["with_results"] >= min_searches and r["ctr"] is not None and r["ctr"] <= max_ctr
        ),
        key=lambda r: (r["ctr"], -r["with_results"], r["query"]),
    )
    return {
        "days": days,
        "since": dt.datetime.fromtimestamp(since / 1000, tz=dt.UTC).isoformat(timespec="seconds"),
        "min_searches": min_searches,
        "max_ctr": max_ctr,
        "queries": len(rows),
        "searches": sum(r["searches"] for r in rows),
        "zero_result_searches": sum(r["zero_results"] for r in rows),
        "zero_result": zero[:limit],
        "low_click": low[:limit],
        "definitions": DEFINITIONS,
    }


def _covered(settings: SearchSettings | None) -> dict[str, list[str]]:
    """Query → what search management already does for it (synonym terms, a redirect)."""
    out: dict[str, list[str]] = {}
    if settings is None:
        return out
    for s in settings.synonyms:
        for t in s.terms:
            out.setdefault(normalise_query(t), []).append(f"synonym: {' / '.join(s.terms)}")
    for r in settings.redirects:
        out.setdefault(r.query, []).append(f"redirect: {r.url}")
    return out
