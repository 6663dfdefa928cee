"""Model cards (Mitchell et al. 2019) for registry versions: what the model is for, what data it
learnt from, how it was measured, how fairly it shares exposure and how it stands up to shilling.

``build_card`` returns the card as a dict; ``card_markdown`` renders it for people. The registry
keeps both beside a version's ``version.json`` (``model_card.json``, ``MODEL_CARD.md``).
"""

from __future__ import annotations

import time
from typing import Any

from shelfwise.evaluation.fairness import fairness_figures
from shelfwise.features.splits import Split

INTENDED_USE = {
    "default": "ranking products for a shopper of this shop from their own past events "
    "(recommendations on the home page, 'for you' rails, e-mails)",
    "bought-together": "items to add to a basket that holds a given item",
    "popular": "lists for shoppers the shop knows nothing about, and fallbacks",
    "hybrid": "ranking products for a shopper from their past events, with reasons grounded in the "
    "ranker's TreeSHAP attributions",
}
LIMITS = (
    "Trained on one shop's past events: it learns that shop's popularity and may under-expose new "
    "and niche items (see the exposure figures).",
    "Not for decisions with legal or similarly significant effects on a person (credit, employment, "
    "pricing per person).",
    "Shoppers who turned personalisation off are not in the training data and get anonymous lists.",
)


def build_card(
    *,
    version: str,
    model_name: str,
    config: dict[str, Any],
    data_window: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    fairness: dict[str, Any] | None,
    robustness: dict[str, Any] | None,
    privacy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    family = "popular" if model_name in ("popular", "trending") else model_name
    return {
        "version": version,
        "model": model_name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "intended_use": INTENDED_USE.get(family, INTENDED_USE["default"]),
        "limitations": list(LIMITS),
        "config": config,
        "data_window": data_window,
        "evaluation": {k: v for k, v in evaluation.items() if k != "gate"},
        "metrics": metrics,
        "fairness": fairness or {"measured": False},
        "robustness": robustness or {"measured": False},
        "privacy": privacy
        or {
            "user_ids": "pseudonymised (HMAC-SHA256) at ingest; erasure removes a shopper from every version",
            "differential_privacy": bool(config.get("dp_epsilon")),
        },
    }


def card_fairness(model: Any, split: Split, *, k: int = 10) -> dict[str, Any]:
    """Exposure figures of the evaluated model's top-``k`` lists on the held-out shoppers."""
    return {"measured": True, **fairness_figures(model, split, k=k)}


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, int | float) else "n/a"


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people."""
    m = card["metrics"]
    w = card["data_window"]
    lines = [
        f"# Model card: {card['version']}",
        "",
        f"**Model**: `{card['model']}` · **created** {card['created_at']}",
        "",
        f"**Intended use**: {card['intended_use']}.",
        "",
        "## Limitations",
        *[f"- {x}" for x in card["limitations"]],
        "",
        "## Data",
        f"- events {w.get('events', '?'):,}, shoppers {w.get('users', '?'):,}, items {w.get('items', '?'):,}"
        if isinstance(w.get("events"), int)
        else f"- {w}",
        f"- window: {w.get('min_ts')} … {w.get('max_ts')} (ms since epoch)",
        "",
        "## Held-out metrics (temporal split)",
        *[f"- {k}: {v}" for k, v in m.items() if isinstance(v, int | float) and "@" in k],
        "",
        "## Fairness of exposure (top-10 of held-out shoppers)",
    ]
    fair = card["fairness"]
    if not fair.get("measured"):
        lines.append("- not measured")
    for kind in ("brand", "seller", "price_band", "new"):
        rep = fair.get(kind)
        if not rep:
            continue
        if not rep.get("available"):
            lines.append(f"- {kind}: not in this catalogue")
            continue
        shares = ", ".join(
            f"{g['group']} {_pct(g['exposure_share'])} (catalogue {_pct(g['catalogue_share'])})"
            for g in rep["groups"]
        )
        lines.append(f"- {kind}: exposure gap {rep['exposure_gap']} — {shares}")
    if fair.get("measured"):
        any_kind = next((fair[k] for k in ("brand", "price_band", "new") if k in fair), {})
        lines.append(f"- item exposure Gini: {any_kind.get('item_exposure_gini', 'n/a')}")
    lines += ["", "## Robustness to shilling"]
    rob = card["robustness"]
    if not rob.get("measured"):
        lines.append(f"- not measured{': ' + rob['reason'] if rob.get('reason') else ''}")
    else:
        lines += [
            f"- attack: {rob['attack']} ({rob['fake_accounts']} fake accounts, {rob['targets']} targets)",
            f"- exposure lift without defence {_pct(rob['attack_exposure_lift_without_defence'])}, "
            f"with defence {_pct(rob['attack_exposure_lift_with_defence'])}",
            f"- detection precision {rob['detection']['precision']:.3f}, "
            f"recall {rob['detection']['recall']:.3f}",
            f"- defence `{rob.get('defence', 'accounts')}`: NDCG@10 change {rob['ndcg_change']} vs the "
            f"undefended model on the attacked data, {rob.get('ndcg_change_vs_clean')} vs a model that "
            f"never saw the attack, {rob.get('ndcg_change_without_attack')} on the real data alone",
        ]
    lines += ["", "## Privacy", *[f"- {k}: {v}" for k, v in card["privacy"].items()], ""]
    return "\n".join(lines)
