"""Click models fitted to served lists and their clicks, compared on held-out sessions.

A shopper simulator needs a click model; which one matters (under the position-based model a
visit's expected clicks are the list's DCG, under the cascade model at most one click per list).
This module fits the three standard ones to logged impressions (Chuklin, Markov & de Rijke, *Click
Models for Web Search*, 2015) and picks the one with the highest held-out log-likelihood:

- ``position`` (PBM, Craswell et al. 2008): ``P(C_r) = gamma_r * alpha_item``, clicks independent;
  fitted by EM.
- ``cascade`` (Craswell et al. 2008): scan top-down, click the first attractive item and stop; a
  session with two clicks is impossible under it. Closed-form maximum likelihood.
- ``dependent`` (DCM, Guo, Liu & Wang 2009): scan top-down, after a click at rank r go on with
  probability ``lambda_r``; fitted by EM.

Every model's held-out log-likelihood is the exact one (the DCM's includes the chance the shopper
went on after the last click and found nothing). Probabilities are floored at ``FLOOR`` so an
event a model rules out (a second click under the cascade) costs ``log(FLOOR)``, not infinity.

    >>> log = ClickLog(items=np.array([[0, 1, 2]] * 4), clicks=np.array([[1, 0, 0]] * 4, bool))
    >>> fit_position(log).gamma.shape
    (3,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODELS = ("position", "cascade", "dependent")
FLOOR = 1e-6
PRIOR = 0.1  # pseudo-clicks and pseudo-skips per item (a Beta(0.1, 0.1) prior): unseen items are 0.5


@dataclass(frozen=True)
class ClickLog:
    """Served lists of one length ``k``: ``items`` (sessions, k) integer item indices, ``clicks``
    (sessions, k) booleans."""

    items: np.ndarray
    clicks: np.ndarray

    def __post_init__(self) -> None:
        if self.items.shape != self.clicks.shape or self.items.ndim != 2:
            raise ValueError(
                f"items {self.items.shape} and clicks {self.clicks.shape} must be (sessions, k) alike"
            )

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, idx: np.ndarray) -> ClickLog:
        return ClickLog(self.items[idx], self.clicks[idx])


@dataclass(frozen=True)
class FittedClickModel:
    """A fitted click model: per-item attraction (``alpha``, indexed by item), and ``gamma`` (PBM's
    examination per rank) or ``lam`` (DCM's continuation after a click per rank)."""

    name: str
    alpha: np.ndarray
    default_alpha: float
    gamma: np.ndarray | None = None
    lam: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def _alpha(self, items: np.ndarray) -> np.ndarray:
        known = (items >= 0) & (items < len(self.alpha))
        a = self.alpha[np.clip(items, 0, len(self.alpha) - 1)]
        return np.where(known & np.isfinite(a), a, self.default_alpha)

    def session_log_likelihood(self, log: ClickLog) -> np.ndarray:
        """Log-likelihood of each session's clicks (natural log), shape (sessions,)."""
        a = np.clip(self._alpha(log.items), FLOOR, 1 - FLOOR)
        c = log.clicks
        k = c.shape[1]
        if self.name == "position":
            assert self.gamma is not None
            p = np.clip(self.gamma[None, :k] * a, FLOOR, 1 - FLOOR)
            return np.where(c, np.log(p), np.log1p(-p)).sum(1)
        ranks = np.arange(k)[None, :]
        n_clicks = c.sum(1)
        last = np.where(n_clicks > 0, k - 1 - np.argmax(c[:, ::-1], axis=1), -1)
        before = ranks <= last[:, None]  # slots up to the last click: surely examined
        ll = np.where(before, np.where(c, np.log(a), np.log1p(-a)), 0.0).sum(1)
        tail_none = np.where(ranks > last[:, None], np.log1p(-a), 0.0).sum(1)  # log prod(1 - a) after
        if self.name == "cascade":
            lam = np.zeros(k)
        else:
            assert self.lam is not None
            lam = np.clip(self.lam[:k], FLOOR, 1 - FLOOR)
        # clicks before the last one: the shopper went on after each (prob lam_r each)
        went_on = np.where(c & (ranks < last[:, None]), np.log(np.maximum(lam[None, :], FLOOR)), 0.0).sum(1)
        lam_last = lam[np.maximum(last, 0)]
        stop_or_none = np.log(np.maximum((1 - lam_last) + lam_last * np.exp(tail_none), FLOOR))
        return np.where(n_clicks > 0, ll + went_on + stop_or_none, tail_none)

    def rules_out(self, log: ClickLog) -> np.ndarray:
        """Sessions this model gives probability zero (scored at the floor): a second click under
        the cascade model; none under PBM or DCM, whose probabilities are never zero."""
        if self.name == "cascade":
            return log.clicks.sum(1) > 1
        return np.zeros(len(log), bool)

    def click_probability_curve(self, k: int) -> np.ndarray:
        """P(click) at each rank for an item of average attraction: the model's position effect."""
        a = float(np.nanmean(self.alpha)) if np.isfinite(self.alpha).any() else self.default_alpha
        if self.name == "position":
            assert self.gamma is not None
            return self.gamma[:k] * a
        lam = np.zeros(k) if self.name == "cascade" else np.asarray(self.lam)[:k]
        looking = np.cumprod(np.concatenate([[1.0], 1 - (1 - lam[:-1]) * a]))
        return looking * a


def _beta_mean(clicks: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Posterior mean attraction; NaN for an item never examined in training (the model's
    ``default_alpha`` stands in for it)."""
    return np.where(shown > 0, (clicks + PRIOR) / (shown + 2 * PRIOR), np.nan)


def fit_position(log: ClickLog, *, n_items: int | None = None, iterations: int = 200) -> FittedClickModel:
    """PBM by expectation-maximisation (Chuklin et al. 2015, section 4.2)."""
    n_items = n_items or int(log.items.max()) + 1
    k = log.items.shape[1]
    c = log.clicks.astype(np.float64)
    flat_items = log.items.ravel()
    shown = np.bincount(flat_items, minlength=n_items).astype(np.float64)
    alpha = np.full(n_items, 0.5)
    gamma = np.linspace(1.0, 0.5, k)
    for _ in range(iterations):
        a = alpha[log.items]
        g = gamma[None, :]
        denom = np.maximum(1 - g * a, FLOOR)
        attracted = c + (1 - c) * a * (1 - g) / denom  # P(A = 1 | C)
        examined = c + (1 - c) * g * (1 - a) / denom  # P(E = 1 | C)
        alpha = _beta_mean(np.bincount(flat_items, weights=attracted.ravel(), minlength=n_items), shown)
        alpha = np.nan_to_num(alpha, nan=0.5)
        gamma = examined.mean(0)
    alpha = np.where(shown > 0, alpha, np.nan)
    total_alpha = float(c.sum() / max(1.0, float(gamma.sum()) * len(c)))
    return FittedClickModel(
        "position",
        alpha=alpha,
        default_alpha=min(max(total_alpha, FLOOR), 1 - FLOOR),
        gamma=gamma,
        params={"gamma": [round(float(x), 4) for x in gamma]},
    )


def fit_cascade(log: ClickLog, *, n_items: int | None = None) -> FittedClickModel:
    """Cascade model: an item's attraction is its clicks over the times it was at or above the
    session's first click (or anywhere in a session without clicks)."""
    n_items = n_items or int(log.items.max()) + 1
    c = log.clicks
    k = c.shape[1]
    has = c.any(1)
    first = np.where(has, np.argmax(c, axis=1), k - 1)
    seen = np.arange(k)[None, :] <= first[:, None]
    first_click = c & (np.arange(k)[None, :] == first[:, None])
    clicks = np.bincount(log.items[first_click], minlength=n_items).astype(np.float64)
    shown = np.bincount(log.items[seen], minlength=n_items).astype(np.float64)
    return FittedClickModel(
        "cascade",
        alpha=_beta_mean(clicks, shown),
        default_alpha=float((clicks.sum() + PRIOR) / (shown.sum() + 2 * PRIOR)),
    )


def fit_dependent(log: ClickLog, *, n_items: int | None = None, iterations: int = 100) -> FittedClickModel:
    """DCM by expectation-maximisation: the latent variable is whether the shopper went on after
    the session's last click (and so examined, and skipped, every slot below it). Guo, Liu &
    Wang's closed form instead treats every slot below the last click as unseen, which biases
    ``lambda`` down (towards the cascade), so it is only the starting point here."""
    n_items = n_items or int(log.items.max()) + 1
    c = log.clicks
    k = c.shape[1]
    ranks = np.arange(k)[None, :]
    has = c.any(1)
    last = np.where(has, k - 1 - np.argmax(c[:, ::-1], axis=1), -1)
    sure = ranks <= np.where(has, last, k - 1)[:, None]  # examined whatever the latent state
    below = has[:, None] & (ranks > last[:, None])  # examined only if the shopper went on
    clicks = np.bincount(log.items[c], minlength=n_items).astype(np.float64)
    sure_shown = np.bincount(log.items[sure], minlength=n_items).astype(np.float64)
    clicks_at = c.sum(0).astype(np.float64)
    went_on_sure = (c & (ranks < last[:, None])).sum(0).astype(np.float64)
    last_at = np.maximum(last, 0)
    alpha = _beta_mean(clicks, sure_shown)
    lam = 1 - (np.bincount(last[has], minlength=k) + PRIOR) / (clicks_at + 2 * PRIOR)
    for _ in range(iterations):
        a = np.clip(np.nan_to_num(alpha[log.items], nan=0.5), 0, 1 - FLOOR)
        skip_all = np.exp(np.where(below, np.log1p(-a), 0.0).sum(1))
        lam_l = lam[last_at]
        w = np.where(has, lam_l * skip_all / np.maximum((1 - lam_l) + lam_l * skip_all, FLOOR), 0.0)
        shown = sure_shown + np.bincount(
            log.items[below], weights=np.broadcast_to(w[:, None], c.shape)[below], minlength=n_items
        )
        alpha = _beta_mean(clicks, shown)
        lam = (went_on_sure + np.bincount(last_at[has], weights=w[has], minlength=k) + PRIOR) / (
            clicks_at + 2 * PRIOR
        )
    return FittedClickModel(
        "dependent",
        alpha=alpha,
        default_alpha=float((clicks.sum() + PRIOR) / (sure_shown.sum() + 2 * PRIOR)),
        lam=lam,
        params={"lambda": [round(float(x), 4) for x in lam], "clicks_at_rank": [int(x) for x in clicks_at]},
    )


FITTERS = {"position": fit_position, "cascade": fit_cascade, "dependent": fit_dependent}


def compare_click_models(
    train: ClickLog, test: ClickLog, *, models: Sequence[str] = MODELS
) -> dict[str, Any]:
    """Fit each model on ``train``, score on ``test``; the best is the highest held-out mean
    log-likelihood per session. ``margin_se`` is the standard error of the per-session difference
    between the best and the runner-up (paired over the same test sessions), so ``margin / se``
    says how clearly the data separates them."""
    n_items = int(max(train.items.max(), test.items.max())) + 1
    per_session: dict[str, np.ndarray] = {}
    fitted: dict[str, FittedClickModel] = {}
    for name in models:
        fitted[name] = FITTERS[name](train, n_items=n_items)
        per_session[name] = fitted[name].session_log_likelihood(test)
    k = test.items.shape[1]
    scores = {
        name: {
            "log_likelihood_per_session": float(ll.mean()),
            # per-slot perplexity (Chuklin et al. 2015): 2^(-mean log2 P(observed click at a slot)),
            # computed here from the joint session likelihood spread over its k slots
            "perplexity": float(2 ** (-ll.mean() / np.log(2) / k)),
            "impossible_sessions": int(fitted[name].rules_out(test).sum()),
            **fitted[name].params,
        }
        for name, ll in per_session.items()
    }
    ranked = sorted(per_session, key=lambda m: -per_session[m].mean())
    best = ranked[0]
    out: dict[str, Any] = {
        "best": best,
        "models": scores,
        "train_sessions": len(train),
        "test_sessions": len(test),
        "k": k,
        "fitted": fitted,
    }
    if len(ranked) > 1:
        diff = per_session[best] - per_session[ranked[1]]
        out["runner_up"] = ranked[1]
        out["margin"] = float(diff.mean())
        out["margin_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return out


def split_sessions(log: ClickLog, *, test_share: float = 0.3, seed: int = 0) -> tuple[ClickLog, ClickLog]:
    """Random session split (use a time split when the log's order is time)."""
    idx = np.random.default_rng(seed).permutation(len(log))
    cut = round(len(log) * (1 - test_share))
    return log.take(np.sort(idx[:cut])), log.take(np.sort(idx[cut:]))


def generate_log(
    model: str,
    *,
    sessions: int,
    alpha: np.ndarray,
    k: int = 10,
    gamma: np.ndarray | None = None,
    lam: float | np.ndarray = 0.5,
    seed: int = 0,
) -> ClickLog:
    """Sessions drawn from a known click model: each list is ``k`` distinct items drawn uniformly
    from ``alpha``'s items, shown in random order (so position and item are not confounded)."""
    rng = np.random.default_rng(seed)
    n_items = len(alpha)
    items = np.argsort(rng.random((sessions, n_items)), axis=1)[:, :k]
    a = alpha[items]
    if model == "position":
        g = gamma if gamma is not None else 1.0 / np.log2(np.arange(2, k + 2))
        return ClickLog(items, rng.random(a.shape) < g[None, :k] * a)
    lam_r = np.zeros(k) if model == "cascade" else np.broadcast_to(np.asarray(lam, np.float64), (k,))
    clicks = np.zeros(a.shape, bool)
    looking = np.ones(sessions, bool)
    for r in range(k):
        hit = looking & (rng.random(sessions) < a[:, r])
        clicks[:, r] = hit
        looking &= ~hit | (rng.random(sessions) < lam_r[r])
    return ClickLog(items, clicks)


def log_from_impressions(
    impressions: Sequence[Any], clicks: Sequence[tuple[str, int]], *, k: int = 10
) -> tuple[ClickLog, list[str]]:
    """Build a ``ClickLog`` from served lists (objects with ``answer_id`` and ``items``, in time
    order) and attributed clicks (``(answer_id, position)``, position 1-based as shown). Lists
    shorter than ``k`` are left out; longer ones are cut to their top ``k``. Returns the log and the
    item ids (column ``i`` of ``items`` is ``ids[i]``)."""
    clicked: dict[str, set[int]] = {}
    for answer, pos in clicks:
        if pos is not None and 1 <= int(pos) <= k:
            clicked.setdefault(answer, set()).add(int(pos) - 1)
    index: dict[str, int] = {}
    rows: list[list[int]] = []
    marks: list[list[bool]] = []
    for imp in impressions:
        if len(imp.items) < k:
            continue
        rows.append([index.setdefault(str(item), len(index)) for item in list(imp.items)[:k]])
        got = clicked.get(imp.answer_id, set())
        marks.append([r in got for r in range(k)])
    ids = list(index)
    if not rows:
        return ClickLog(np.zeros((0, k), np.int64), np.zeros((0, k), bool)), ids
    return ClickLog(np.asarray(rows, np.int64), np.asarray(marks, bool)), ids


def logged_click_log(
    store: Any,
    *,
    k: int = 10,
    placement: str | None = None,
    since: int | None = None,
    keep: Callable[[Any], bool] | None = None,
) -> ClickLog:
    """A store's served lists (of ``placement``, from ``since``; those ``keep`` accepts) and their
    attributed clicks as a ``ClickLog`` of length-``k`` lists (``log_from_impressions``)."""
    from shelfwise.store.impressions import clicked_positions, iter_impressions

    served = [
        imp for imp in iter_impressions(store, placement=placement, since=since) if keep is None or keep(imp)
    ]
    clicked = clicked_positions(store, [imp.answer_id for imp in served])
    pairs = [(answer, pos) for answer, positions in clicked.items() for pos in positions]
    return log_from_impressions(served, pairs, k=k)[0]


def simulator_settings(fitted: FittedClickModel) -> dict[str, Any]:
    """``SimulatorConfig`` fields that make the shopper simulator click like ``fitted``: the PBM's
    examination curve (scaled so rank 1 is 1; the simulator sets the attraction level itself),
    the cascade, or the DCM (examination 1 until the shopper stops; its per-rank lambda averaged
    over the ranks, weighted by their clicks, the last rank left out as unidentified)."""
    if fitted.name == "position":
        assert fitted.gamma is not None
        g = fitted.gamma / max(float(fitted.gamma[0]), FLOOR)
        return {"click_model": "position", "examination": [round(float(x), 4) for x in np.minimum(g, 1.0)]}
    if fitted.name == "cascade":
        return {"click_model": "cascade"}
    assert fitted.lam is not None
    weights = np.asarray(fitted.params.get("clicks_at_rank", np.ones(len(fitted.lam))), np.float64)[:-1]
    lam = float(np.average(fitted.lam[:-1], weights=weights)) if weights.sum() > 0 else 0.5
    return {
        "click_model": "dependent",
        "continuation": round(lam, 4),
        "examination": [1.0] * len(fitted.lam),
    }


def choose_click_model(log: ClickLog, *, test_share: float = 0.3) -> dict[str, Any]:
    """Split ``log`` by time (its first ``1 - test_share`` of sessions train, the rest test), compare
    the click models on the held-out part, and return the comparison with the winner's simulator
    settings (``settings``) and a one-line ``reason``; the fitted objects are dropped so the result
    is JSON."""
    if len(log) < 20:
        raise ValueError(
            f"{len(log)} served lists with at least {log.items.shape[1]} items: too few to fit a click "
            "model on (need 20)"
        )
    cut = round(len(log) * (1 - test_share))
    result = compare_click_models(log.take(np.arange(cut)), log.take(np.arange(cut, len(log))))
    fitted = result.pop("fitted")
    best = result["best"]
    result["settings"] = simulator_settings(fitted[best])
    lls = result["models"]
    result["reason"] = (
        f"fitted: highest held-out log-likelihood per session on the last {result['test_sessions']:,} of "
        f"{len(log):,} served lists ("
        + ", ".join(f"{m} {lls[m]['log_likelihood_per_session']:.4f}" for m in lls)
        + (
            f"; margin over {result['runner_up']} {result['margin']:.4f} ± {result['margin_se']:.4f} s.e.)"
            if "runner_up" in result
            else ")"
        )
    )
    return result
