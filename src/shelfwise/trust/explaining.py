"""Explanations and model cards for a registry version: what the admin explain endpoint and the
model-card page call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shelfwise.recommend.base import Recommendation
from shelfwise.recommend.explain import attribute
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
