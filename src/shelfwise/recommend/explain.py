"""Explanations a shopper can read, from the hybrid ranker's own attributions.

LightGBM's ``pred_contrib=True`` gives TreeSHAP values (Lundberg et al. 2020): per recommended item,
each feature's additive share of the ranker's score. Features are grouped into *reasons*
(``reason_of``): the reason of the feature with the largest SHAP value is stated (then, if the data
cannot back it, the reason whose features add the most), in words
built from the shopper's own data ("you bought 2 items in Lanterns", "popular this week", "cheaper
than what you usually pay"). A reason that the data cannot back (no category, no price) is skipped
for the next one. Shopper-level features (how active the shopper is) are the same for every
candidate of one shopper, so they never explain why *this* item: they are left out of the choice.

``fidelity`` measures how often the stated reason is the group of the single feature with the
largest SHAP value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from shelfwise.features.dataset import NO_CODE
from shelfwise.recommend.base import ModelError, csr_rows
from shelfwise.recommend.hybrid import ATTENTION_FEATURES, ITEM_FEATURES, USER_FEATURES, HybridRecommender

# retriever label (the model name, "-" as "_") → reason
RETRIEVER_REASON = {
    "ease": "history",
    "itemknn": "history",
    "als": "history",
    "bpr": "history",
    "sasrec": "history",
    "two_tower": "history",
    "userknn": "similar_shoppers",
    "bought_together": "bought_together",
    "popular": "popular",
    "popular_decay": "popular_recent",
    "trending": "popular_recent",
    "popular_category": "category",
    "content_tfidf": "content",
    "content_embed": "content",
}
FEATURE_REASON = {
    "n_retrievers": "history",
    "item_popularity": "popular",
    "item_events": "popular",
    "item_conversion": "popular",
    "item_decay_popularity": "popular_recent",
    "item_recent_7d": "popular_recent",
    "item_recent_30d": "popular_recent",
    "item_trend": "popular_recent",
    "item_last_sale_days": "popular_recent",
    "item_age_days": "new",
    "item_price": "price",
    "item_log_price": "price",
    "price_fit": "price",
    "user_median_price": "price",
    "category_affinity": "category",
    "category_recency_days": "category",
    "brand_affinity": "brand",
    "din_als": "recent_items",
    "max_sim_als": "recent_items",
    "din_text": "content",
    "max_sim_text": "content",
}
SHOPPER_FEATURES = tuple(f for f in USER_FEATURES if f.startswith("user_") and f != "user_median_price")
_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def reason_of(feature: str) -> str:
    """The reason group of a feature of ``HybridRecommender``'s stage 2."""
    if feature in FEATURE_REASON:
        return FEATURE_REASON[feature]
    if feature in SHOPPER_FEATURES:
        return "shopper"
    label = feature.rsplit("_", 1)[0]
    base = label.rstrip("0123456789").rstrip("_")
    return RETRIEVER_REASON.get(base, "history")


@dataclass
class Attribution:
    """One recommended item, its TreeSHAP contributions and the reason stated for it."""

    item: str
    score: float
    base_value: float
    reason: str
    reason_group: str
    top_feature: str
    contributions: dict[str, float] = field(default_factory=dict)
    features: dict[str, float | None] = field(default_factory=dict)
    groups: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item": self.item,
            "score": self.score,
            "reason": self.reason,
            "reason_group": self.reason_group,
            "top_feature": self.top_feature,
            "agrees": reason_of(self.top_feature) == self.reason_group,
        }
        if full:
            out.update(
                base_value=self.base_value,
                groups=self.groups,
                contributions=self.contributions,
                features=self.features,
            )
        return out


def _count(n: int) -> str:
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


class _Phrases:
    """Words for each reason, from the shopper's history and the catalogue."""

    def __init__(self, model: HybridRecommender, history: np.ndarray, cart: np.ndarray) -> None:
        self.model, self.history, self.cart = model, history, cart
        self.attrs = model.state.attributes

    def title(self, i: int) -> str:
        text = self.attrs.text
        if text is not None and str(text[i]).strip():
            return str(text[i]).split(". ")[0][:60]
        return str(self.model.item_map.external[i])

    def __call__(self, group: str, item: int, x: dict[str, float | None]) -> str | None:
        a = self.attrs
        if group == "category" and a.category[item] != NO_CODE and len(self.history):
            same = int((a.category[self.history] == a.category[item]).sum())
            if same:
                plural = "s" if same > 1 else ""
                return f"you bought {_count(same)} item{plural} in {a.category_names[a.category[item]]}"
        if group == "brand" and a.brand[item] != NO_CODE and len(self.history):
            same = int((a.brand[self.history] == a.brand[item]).sum())
            if same:
                plural = "s" if same > 1 else ""
                return f"{a.brand_names[a.brand[item]]}, a brand you bought {_count(same)} time{plural}"
        if group == "price" and np.isfinite(a.price[item]):
            cheaper = [c for c in self.cart if np.isfinite(a.price[c]) and a.price[c] > a.price[item]]
            same_kind = [
                c for c in cheaper if a.category[c] == a.category[item] and a.category[item] != NO_CODE
            ]
            if same_kind:
                return f"cheaper than the {self.title(same_kind[0])} in your cart"
            paid = a.price[self.history] if len(self.history) else np.array([])
            paid = paid[np.isfinite(paid)]
            if len(paid):
                median = float(np.median(paid))
                if a.price[item] < 0.8 * median:
                    return "cheaper than what you usually pay"
                return "in the price range you usually buy"
        if group == "popular_recent":
            trend = x.get("item_trend")
            if trend is not None and np.isfinite(trend) and trend >= 2.0:
                return "trending: sales are rising this week"
            return "popular this week"
        if group == "popular":
            return "a best seller"
        if group == "new":
            age = x.get("item_age_days")
            if age is None or not np.isfinite(age) or age <= 30:
                return "new in the shop"
            return None
        if group in ("history", "recent_items", "content", "bought_together", "similar_shoppers"):
            return self._from_history(group, item)
        return None

    def _from_history(self, group: str, item: int) -> str | None:
        if not len(self.history):
            return None
        wanted = {
            "history": ("ease", "itemknn", "als", "bpr"),
            "recent_items": ("als", "content_tfidf", "content_embed", "itemknn"),
            "content": ("content_tfidf", "content_embed", "itemknn"),
            "bought_together": ("bought_together",),
            "similar_shoppers": ("userknn",),
        }[group]
        stage = self.model.stage
        for label, r in zip(stage.labels, stage.retrievers, strict=True):
            if label in wanted:
                text = r._reasons(self.history, np.array([item]))[0]
                if text.startswith(("similar to ", "bought together with ")):
                    ref = text.split(" ", 2)[-1] if text.startswith("similar") else text.split(" ", 3)[-1]
                    idx = self.model.item_map.index.get(ref)
                    name = self.title(idx) if idx is not None else ref
                    if group == "recent_items":
                        return f"like the {name} you looked at recently"
                    if group == "bought_together":
                        return f"often bought with the {name}"
                    return f"similar to the {name} you bought"
                if group == "similar_shoppers":
                    return "shoppers like you bought it"
        return None


def attribute(
    model: HybridRecommender,
    user: str,
    *,
    items: Sequence[str] | None = None,
    k: int = 10,
    cart: Sequence[str] = (),
) -> list[Attribution]:
    """TreeSHAP attributions and reasons for ``user``'s top-``k`` (or for ``items``, which must be
    among the ranker's candidates for them). The admin explain endpoint returns this in full."""
    if not isinstance(model, HybridRecommender):
        raise ModelError(f"explanations need the hybrid ranker, not {model.name!r}")
    if model.booster is None:
        raise ModelError("the hybrid has no trained ranker (too little data): nothing to attribute")
    st = model.state
    dense = st.user_map.to_internal([user], strict=False)
    h = sp.csr_matrix(csr_rows(st.history, dense), dtype=np.float32)
    history = h.indices.astype(np.int64)
    scores, rows, cand = model._retrieve(model.stage, h, dense, with_history=False)
    x, _ = model._features(model.stage, h, dense, scores, rows, cand)
    pred = model.booster.predict(x, num_threads=1)
    allowed = model.allowed_mask(None)[cand]
    if items is not None:
        want = model.item_map.to_internal(items, strict=False)
        pick = np.array(
            [int(np.flatnonzero(cand == w)[0]) for w in want if w >= 0 and (cand == w).any()], np.int64
        )
    else:
        order = np.argsort(-np.where(allowed, pred, -np.inf), kind="stable")
        pick = order[: min(k, int(allowed.sum()))]
    if not len(pick):
        return []
    contrib = model.booster.predict(x[pick], pred_contrib=True, num_threads=1)
    names = model.stage.feature_names
    cart_idx = model.item_map.to_internal(cart, strict=False)
    words = _Phrases(model, history, cart_idx[cart_idx >= 0])
    groups_of = np.array([reason_of(f) for f in names])
    out = []
    for row, p in zip(contrib, pick, strict=True):
        phi, bias = row[:-1], float(row[-1])
        feats = {f: (None if not np.isfinite(v) else float(v)) for f, v in zip(names, x[p], strict=True)}
        totals: dict[str, float] = {}
        for g, v in zip(groups_of, phi, strict=True):
            if g != "shopper":
                totals[g] = totals.get(g, 0.0) + float(v)
        mask = groups_of != "shopper"
        top_feature = names[int(np.flatnonzero(mask)[np.argmax(phi[mask])])]
        reason, group = "recommended for you", "none"
        # the top feature's reason first, then the others by what their features add up to
        first = reason_of(top_feature)
        ordered = sorted(totals.items(), key=lambda kv: (kv[0] != first, -kv[1]))
        for g, v in ordered:
            if v <= 0 and g != first:
                break
            text = words(g, int(cand[p]), feats)
            if text:
                reason, group = text, g
                break
        out.append(
            Attribution(
                item=str(model.item_map.external[cand[p]]),
                score=float(pred[p]),
                base_value=bias,
                reason=reason,
                reason_group=group,
                top_feature=top_feature,
                contributions={f: round(float(v), 6) for f, v in zip(names, phi, strict=True)},
                features=feats,
                groups={g: round(v, 6) for g, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            )
        )
    return out


def fidelity(attributions: Sequence[Sequence[Attribution]]) -> dict[str, float]:
    """Share of explained items whose stated reason is the group of their top SHAP feature."""
    flat = [a for per_user in attributions for a in per_user]
    agree = sum(reason_of(a.top_feature) == a.reason_group for a in flat)
    fallback = sum(a.reason_group == "none" for a in flat)
    return {
        "items": len(flat),
        "fidelity": agree / len(flat) if flat else 0.0,
        "no_reason_share": fallback / len(flat) if flat else 0.0,
    }


def retriever_reason_fidelity(
    model: HybridRecommender, users: Sequence[str], k: int = 10
) -> dict[str, float]:
    """The same agreement for the reasons served before (the retriever that ranked an item best):
    how often that retriever's reason group is the top SHAP feature's."""
    agree = total = 0
    for user in users:
        for a in attribute(model, user, k=k):
            rec = model.recommend([user], k=k)[0]
            if a.item not in rec.items:
                continue
            best_label = _best_retriever(model, user, a.item)
            total += 1
            agree += reason_of(f"{best_label}_score") == reason_of(a.top_feature)
    return {"items": total, "fidelity": agree / total if total else 0.0}


def _best_retriever(model: HybridRecommender, user: str, item: str) -> str:
    st = model.state
    dense = st.user_map.to_internal([user], strict=False)
    h = csr_rows(st.history, dense)
    i = int(model.item_map.to_internal([item])[0])
    ranks = []
    for r in model.stage.retrievers:
        s = np.asarray(r._score(h, dense), dtype=np.float32)[0]
        s[h.indices] = -np.inf
        ranks.append(int((s > s[i]).sum()))
    return model.stage.labels[int(np.argmin(ranks))]


@dataclass
class HistoryAttribution:
    """Why an item-based model scored an item as it did: each history item's share of the score.

    For a model whose score is linear in the shopper's history row (item-KNN: the sum of the
    history items' similarities to the item; EASE: ``h · B``) the shares add up to the score
    exactly (``additive``); for others (a fold-in of ALS, a sequence model) each share is the score
    the item gets from that one history item alone, and ``additive`` says they do not add up."""

    item: str
    score: float
    rank: int | None  # 1-based among the items the shopper may be shown; None when not allowed
    contributions: list[dict[str, Any]]
    additive: bool
    history_items: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "score": self.score,
            "model_rank": self.rank,
            "additive": self.additive,
            "history_items": self.history_items,
            "contributions": self.contributions,
        }


def history_attribution(
    model: Any,
    history: Sequence[str],
    items: Sequence[str],
    *,
    allowed: np.ndarray | None = None,
    top: int = 10,
    max_history: int = 500,
) -> list[HistoryAttribution]:
    """Each of ``items``' score for a shopper whose history is ``history`` (shop item ids, as the
    model folds them in), split over the history items (``HistoryAttribution``), with the item's
    rank among the ``allowed`` items (default: available ones) the shopper has not seen; the
    ``top`` history items by contribution are listed. Items the model does not know are skipped."""
    hist = model.item_map.to_internal(list(history), strict=False)
    hist = np.unique(hist[hist >= 0])[-max_history:]
    want = model.item_map.to_internal(list(items), strict=False)
    n = model.n_items
    row = sp.csr_matrix((np.ones(len(hist), np.float32), (np.zeros(len(hist), np.int64), hist)), shape=(1, n))
    full = np.asarray(model._score(row, np.array([-1])), np.float32)[0]
    mask = model.allowed_mask(None) if allowed is None else allowed.copy()
    mask[hist] = False
    per = np.zeros((len(hist), len(want)), np.float64)
    for lo in range(0, len(hist), 64):
        chunk = hist[lo : lo + 64]
        one_hot = sp.csr_matrix(
            (np.ones(len(chunk), np.float32), (np.arange(len(chunk)), chunk)), shape=(len(chunk), n)
        )
        scores = np.asarray(model._score(one_hot, np.full(len(chunk), -1)), np.float32)
        per[lo : lo + len(chunk)] = scores[:, np.maximum(want, 0)]
    out = []
    for j, (external, w) in enumerate(zip(items, want, strict=True)):
        if w < 0:
            continue
        score = float(full[w])
        shares = per[:, j]
        rank = int((full[mask] > score).sum()) + 1 if mask[w] else None
        order = np.argsort(-np.abs(shares), kind="stable")[:top]
        out.append(
            HistoryAttribution(
                item=str(external),
                score=score,
                rank=rank,
                contributions=[
                    {
                        "history_item": str(model.item_map.external[hist[o]]),
                        "contribution": round(float(shares[o]), 6),
                    }
                    for o in order
                    if shares[o] != 0
                ],
                additive=bool(np.isclose(shares.sum(), score, rtol=1e-3, atol=1e-5)),
                history_items=len(hist),
            )
        )
    return out


__all__ = [
    "ATTENTION_FEATURES",
    "ITEM_FEATURES",
    "Attribution",
    "HistoryAttribution",
    "attribute",
    "fidelity",
    "history_attribution",
    "reason_of",
    "retriever_reason_fidelity",
]
