"""Recommendations that honour identity stitching and consent: what a request for one shopper
should call (``shelfwise serve`` wires it in phase 2 of issue 18)."""

from __future__ import annotations

from shelfwise.recommend.base import Filters, Recommendation, Recommender
from shelfwise.store.base import Store
from shelfwise.store.consent import get_consent
from shelfwise.store.identities import canonical

ANONYMOUS_REASON = "popular with shoppers (you turned personalisation off)"


def recommend_for(
    model: Recommender, store: Store, user_id: str, *, k: int = 10, filters: Filters | None = None
) -> Recommendation:
    """Top-``k`` for a shopper: an alias or stitched id answers as its shopper; a shopper who
    turned personalisation off gets what a stranger gets, and reasons that say why."""
    shopper = canonical(store, user_id)
    if get_consent(store, shopper).no_personalisation:
        rec = model.recommend_for_events([], k=k, filters=filters, who=user_id)
        return Recommendation(rec.user, rec.items, rec.scores, [ANONYMOUS_REASON] * len(rec.items))
    rec = model.recommend([shopper], k=k, filters=filters)[0]
    return Recommendation(user_id, rec.items, rec.scores, rec.reasons)
