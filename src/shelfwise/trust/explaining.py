"""Explanations and model cards for a registry version: what the admin explain endpoint and the
model-card page call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shelfwise.recommend.base import Recommendation, Recommender
from shelfwise.recommend.explain import attribute, history_attribution
from shelfwise.recommend.hybrid import HybridRecommender
from shelfwise.registry.versions import ModelRegistry, RegistryError
from shelfwise.store.base import Store
from shelfwise.store.consent import get_consent
from shelfwise.store.identities import canonical


def _version(registry: ModelRegistry, version: str | None) -> str:
    chosen = version or registry.active
    if chosen is None:
        raise RegistryError("no active model version", hint="train one with `shelfwise models train`")
    return chosen


def explain_user(
    registry: ModelRegistry,
    store: Store,
    user_id: str,
    *,
    version: str | None = None,
    k: int = 10,
    items: Sequence[str] | None = None,
    cart: Sequence[str] = (),
) -> dict[str, Any]:
    """Full attribution (every feature's TreeSHAP value, the reason groups, the stated reason) of
    a hybrid version's top-``k`` for a shopper (the store's pseudonym; aliases resolve)."""
    chosen = _version(registry, version)
    loaded = registry.load(chosen)
    shopper = canonical(store, user_id)
    if get_consent(store, shopper).no_personalisation:
        return {"version": chosen, "user_id": shopper, "personalised": False, "items": []}
    atts = attribute(loaded.recommender, shopper, items=items, k=k, cart=cart)  # type: ignore[arg-type]
    return {
        "version": chosen,
        "user_id": shopper,
        "personalised": True,
        "items": [a.to_dict(full=True) for a in atts],
    }


def explain(
    registry: ModelRegistry,
    store: Store,
    recommendation: Recommendation,
    user_id: str | None = None,
    *,
    version: str | None = None,
    cart: Sequence[str] = (),
) -> dict[str, Any]:
    """What the admin explain endpoint returns for a recommendation already served: for each of its
    items, in its order, the full TreeSHAP attribution (every feature's value and contribution,
    the reason groups, the top feature, whether the stated reason agrees with it), the reason
    served beside the one the attribution states, and the items the ranker no longer has among
    its candidates (the model moved on, or the item came from a fallback) under ``missing``."""
    who = user_id or recommendation.user
    out = explain_user(registry, store, who, version=version, items=recommendation.items, cart=cart)
    served = dict(zip(recommendation.items, recommendation.reasons, strict=False))
    for row in out["items"]:
        row["served_reason"] = served.get(row["item"])
    found = {row["item"] for row in out["items"]}
    out["missing"] = [item for item in recommendation.items if item not in found]
    out["fidelity"] = sum(row["agrees"] for row in out["items"]) / len(out["items"]) if out["items"] else None
    return out


def explain_served(
    model: Recommender,
    served: Recommendation,
    *,
    source: str,
    history: Sequence[str],
    item: str | None = None,
    cart: Sequence[str] = (),
    top: int = 10,
) -> dict[str, Any]:
    """Why a served answer holds what it holds, in its order (the admin explain endpoint).

    ``served``: the answer as the shopper got it (items, scores, reasons, after the placement's
    rules); ``history``: the items the model folded in for them (stored history, live session,
    context). Per explained item (``item``, or every served one): its served position, score and
    reason, the neighbours above and below it, and the attribution — TreeSHAP over the ranker's
    features for the hybrid (``attribute``), else each history item's share of the score
    (``history_attribution``: exact for item-KNN and EASE) with the item's rank among everything the
    model could have shown. A non-personal answer (a fallback, consent off) has no attribution: its
    ``source`` says where it came from."""
    wanted = [item] if item is not None else list(served.items)
    position = {it: i for i, it in enumerate(served.items)}
    rows: dict[str, dict[str, Any]] = {}
    for it in wanted:
        at = position.get(it)
        rows[it] = {
            "item": it,
            "served": at is not None,
            "position": at + 1 if at is not None else None,
            "served_score": served.scores[at] if at is not None else None,
            "served_reason": served.reasons[at] if at is not None else None,
            "above": (
                {"item": served.items[at - 1], "score": served.scores[at - 1]}
                if at is not None and at > 0
                else None
            ),
            "below": (
                {"item": served.items[at + 1], "score": served.scores[at + 1]}
                if at is not None and at + 1 < len(served.items)
                else None
            ),
        }
    method = "none"
    if source == "personalised" or (source == "session" and history):
        if isinstance(model, HybridRecommender) and model.booster is not None:
            method = "treeshap"
            for a in attribute(model, served.user, items=wanted, cart=cart):
                rows[a.item]["attribution"] = a.to_dict(full=True)
        else:
            method = "history"
            for h in history_attribution(model, history, wanted, top=top):
                rows[h.item]["attribution"] = h.to_dict()
    for row in rows.values():
        row.setdefault("attribution", None)
    return {
        "source": source,
        "method": method,
        "history_items": len(history),
        "items": list(rows.values()),
    }


def model_card(registry: ModelRegistry, version: str | None = None) -> tuple[dict[str, Any], str]:
    """A version's model card (JSON) and its markdown."""
    chosen = _version(registry, version)
    info = registry.info(chosen)
    assert info.path is not None
    try:
        card = json.loads((info.path / "model_card.json").read_text())
        markdown = (info.path / "MODEL_CARD.md").read_text()
    except FileNotFoundError:
        raise RegistryError(
            f"version {chosen!r} has no model card", hint="versions trained before model cards have none"
        ) from None
    return card, markdown
