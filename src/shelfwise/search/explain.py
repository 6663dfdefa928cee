"""Why a search result ranks where it does: TreeSHAP contributions of the LambdaRank ranker
(``pred_contrib=True``) over its features, grouped into reasons a shopper can read.

The reason of the feature with the largest SHAP value is stated when the result's own data backs
it (a brand reason needs a brand that matched, a price reason a price, "popular" some sales, a
personal reason a shopper); otherwise the next reason by what its features add up to. Query-level
features (the query's length) are the same for every result of one query and never explain
why *this* result. ``search_fidelity`` measures how often the stated reason is the top feature's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from shelfwise.core.errors import ConfigError
from shelfwise.search.ltr import FEATURES, LambdaRanker
from shelfwise.search.personal import UserAffinity

if TYPE_CHECKING:  # pragma: no cover
    from shelfwise.search.engine import SearchEngine

SEARCH_REASON = {
    "bm25": "words",
    "bm25_rank": "words",
    "title": "words",
    "title_coverage": "words",
    "description": "words",
    "attributes": "words",
    "query_terms": "query",
    "dense": "meaning",
    "dense_rank": "meaning",
    "brand": "brand",
    "category": "category",
    "popularity": "popular",
    "log_price": "price",
    "has_price": "price",
    "brand_affinity": "personal",
    "price_fit": "personal",
}


def explain_search(
    engine: SearchEngine,
    ranker: LambdaRanker,
    query: str,
    *,
    k: int = 10,
    depth: int = 100,
    user: UserAffinity | None = None,
) -> list[dict[str, Any]]:
    """The ranker's top-``k`` for ``query`` with each feature's SHAP value, the reason stated and
    whether it is the group of the top feature (query-level features excepted: they are the same
    for every result of one query)."""
    if ranker.booster is None:
        raise ConfigError("the ranker is not trained", hint="call fit() first")
    slots, x = ranker.candidates(engine, query, depth=depth, user=user)
    if not len(slots):
        return []
    pred = np.asarray(ranker.booster.predict(x), np.float64)
    order = np.argsort(-pred, kind="stable")[:k]
    contrib = np.asarray(ranker.booster.predict(x[order], pred_contrib=True))
    ids = engine.item_ids_by_slot()
    groups = np.array([SEARCH_REASON[f] for f in FEATURES])
    usable = groups != "query"
    terms = " ".join(engine.analyzer.tokens(engine.understanding.parse(query).text)[:4])
    col = {f: j for j, f in enumerate(FEATURES)}
    out = []
    for row, p in zip(contrib, order, strict=True):
        phi = row[:-1]
        top = FEATURES[int(np.flatnonzero(usable)[np.argmax(phi[usable])])]
        totals: dict[str, float] = {}
        for g, v in zip(groups, phi, strict=True):
            if g != "query":
                totals[g] = totals.get(g, 0.0) + float(v)
        item = engine._items[int(slots[p])]
        brand = f" {item.brand}" if item is not None and item.brand else ""
        f = x[p]
        backed = {
            "words": f[col["bm25"]] > 0 or f[col["title_coverage"]] > 0,
            "meaning": f[col["dense"]] > 0,
            "brand": f[col["brand"]] > 0 and item is not None and bool(item.brand),
            "category": f[col["category"]] > 0,
            "popular": f[col["popularity"]] > 0,
            "price": f[col["has_price"]] > 0,
            "personal": user is not None and (f[col["brand_affinity"]] > 0 or f[col["price_fit"]] > 0),
        }
        words = {
            "words": f"matches “{terms}” in its title and description",
            "meaning": f"close in meaning to “{query}”",
            "brand": f"its brand{brand} matches “{query}”",
            "category": f"in a category that matches “{query}”",
            "popular": "popular with shoppers",
            "price": "its price fits what you asked for",
            "personal": (
                f"{item.brand}, a brand you like"
                if item is not None and item.brand and f[col["brand_affinity"]] > 0
                else "in the price range you usually buy"
            ),
        }
        first = SEARCH_REASON[top]
        group = next(
            (g for g, _ in sorted(totals.items(), key=lambda kv: (kv[0] != first, -kv[1])) if backed[g]),
            "none",
        )
        out.append(
            {
                "item": ids[int(slots[p])],
                "score": float(pred[p]),
                "reason": words.get(group, f"matches “{query}”"),
                "reason_group": group,
                "top_feature": top,
                "agrees": group == first,
                "base_value": float(row[-1]),
                "contributions": {f: round(float(v), 6) for f, v in zip(FEATURES, phi, strict=True)},
                "groups": {g: round(v, 6) for g, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            }
        )
    return out


def search_fidelity(
    engine: SearchEngine, ranker: LambdaRanker, queries: Mapping[str, str], *, k: int = 10, depth: int = 100
) -> dict[str, Any]:
    """Share of the top-``k`` results of ``queries`` whose stated reason is the reason of their
    top SHAP feature, with the reasons stated and the top features' groups counted."""
    rows = [r for text in queries.values() for r in explain_search(engine, ranker, text, k=k, depth=depth)]
    stated = Counter(r["reason_group"] for r in rows)
    tops = Counter(SEARCH_REASON[r["top_feature"]] for r in rows)
    return {
        "queries": len(queries),
        "items": len(rows),
        "fidelity": sum(r["agrees"] for r in rows) / len(rows) if rows else None,
        "reason_groups": dict(stated.most_common()),
        "top_feature_groups": dict(tops.most_common()),
    }
