"""A shopper simulator fitted to real purchases, with known click and purchase probabilities, so
online estimates (A/B, interleaving, off-policy) can be checked against the truth offline.

What is fitted from the data (a ``Dataset``: a store's events or a public file):

- item popularity: distinct buyers per item (log, standardised);
- shopper-item affinity: a truncated SVD of the buyer×item matrix (a shopper's taste is a real
  customer's factor row; shoppers are drawn from the real customers with replacement);
- visits per shopper: the empirical distribution of distinct active days per customer.

What is assumed, not fitted (Online Retail logs no impressions, so there is nothing to fit them on):
the position-based click model of Craswell et al. (WSDM 2008) with examination ``1/log2(rank+1)``
(the DCG discount), attraction ``sigmoid(base + w_pop*pop + w_aff*clip(affinity))`` with ``base``
set so a shopper's top-10 retrieved items draw ``target_ctr`` on average, and a purchase given a
click with probability ``conversion``. Those numbers are in :class:`SimulatorConfig`. None of the
data sets at hand (Online Retail, REES46, OTTO, Taobao) logs served lists, so neither the examination
curve nor the click model can be fitted; the click model is a choice (position, cascade, or the
dependent click model in between), and interleaving-versus-A/B figures depend on it: under the
position model a visit's expected clicks are the list's DCG, fully order-sensitive, while under the
cascade model P(a click) = 1 - prod(1 - r_i) does not depend on the order at all.

    >>> sim = ShopperSimulator.fit(dataset)                      # doctest: +SKIP
    >>> shoppers = sim.sample_shoppers(1_000, rng)               # doctest: +SKIP
    >>> p_click = sim.click_probabilities(shoppers, lists)       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import brentq
from scipy.sparse.linalg import svds


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factors: int = Field(16, ge=2, le=128, description="SVD rank of shopper-item affinity")
    target_ctr: float = Field(
        0.05, gt=0, lt=1, description="mean attraction of a shopper's top-10 retrieved items (sets the base)"
    )
    affinity_clip: float = Field(3.0, gt=0, description="affinity clipped to ±this many std devs")
    popularity_weight: float = Field(0.5, description="logit per standard deviation of log popularity")
    affinity_weight: float = Field(1.0, description="logit per standard deviation of affinity")
    conversion: float = Field(0.3, gt=0, le=1, description="P(purchase | click)")
    max_visits: int = Field(20, ge=1, description="cap on visits per shopper")
    click_model: Literal["position", "cascade", "dependent"] = Field(
        "position",
        description="position: each slot clicked independently, P = examination × attraction "
        "(Craswell et al. 2008's position model); cascade: the shopper scans top-down and clicks "
        "the first attractive item, then stops (their cascade model); dependent: the position "
        "model's examination, but after a click the shopper goes on down the list only with "
        "probability `continuation` (the dependent click model's λ, Guo, Liu & Wang, WSDM 2009): "
        "1 is the position model, 0 stops at the first click",
    )
    continuation: float = Field(
        0.5, ge=0, le=1, description="P(go on after a click), used by the dependent click model only"
    )
    examination: list[float] | None = Field(
        None,
        description="P(a shopper looks at rank r) for r = 1, 2, ... (a fitted curve); None: 1/log2(r+1) "
        "for the position and dependent models. The cascade model examines every rank until its click",
    )
    click_model_source: str = Field(
        "assumed", description="how the click model was chosen: assumed, given (--click-model) or fitted"
    )
    click_model_reason: str = Field("", description="why this click model, in a sentence")


def examination_of(config: SimulatorConfig, k: int) -> np.ndarray:
    """The examination curve of ranks 1..k under ``config`` (a fitted one extends by its last value)."""
    if config.click_model == "cascade":
        return np.ones(k)
    if config.examination is None:
        return examination(np.arange(1, k + 1))
    curve = np.asarray(config.examination, np.float64)
    return np.concatenate([curve, np.full(max(0, k - len(curve)), curve[-1])])[:k]


def examination(ranks: np.ndarray) -> np.ndarray:
    """P(a shopper looks at position ``rank`` (1-based)): ``1/log2(rank+1)``."""
    return 1.0 / np.log2(np.asarray(ranks, np.float64) + 1.0)


def continuation_of(config: SimulatorConfig) -> float:
    """P(the shopper goes on down the list after a click): 1 (position), 0 (cascade) or λ."""
    return {"position": 1.0, "cascade": 0.0}.get(config.click_model, config.continuation)


def chain_click_probs(q: np.ndarray, continuation: float) -> np.ndarray:
    """Marginal P(click) per slot (last axis) when slot j is clicked with probability ``q_j`` if the
    shopper is still looking, and a click ends the scan with probability ``1 - continuation``:
    ``P(c_j) = q_j prod_{i<j} (1 - (1 - continuation) q_i)``."""
    if continuation >= 1.0:
        return q
    still = np.cumprod(1 - (1 - continuation) * q, axis=-1)
    ones = np.ones((*q.shape[:-1], 1))
    return q * np.concatenate([ones, still[..., :-1]], axis=-1)


def draw_chain_clicks(p: np.ndarray, continuation: float, rng: np.random.Generator) -> np.ndarray:
    """One visit's clicks per row from the marginals ``p`` of :func:`chain_click_probs`: the
    per-slot chance while still looking is recovered as ``q_j = p_j / (1 - (1-λ) sum_{i<j} p_i)``."""
    if continuation >= 1.0:
        return rng.random(p.shape) < p
    looking_p = 1 - (1 - continuation) * (np.cumsum(p, axis=-1) - p)
    q = p / np.maximum(looking_p, 1e-300)
    clicks = np.zeros(p.shape, bool)
    looking = np.ones(p.shape[:-1], bool)
    for j in range(p.shape[-1]):
        c = looking & (rng.random(looking.shape) < q[..., j])
        clicks[..., j] = c
        looking &= ~c | (rng.random(looking.shape) < continuation)
    return clicks


@dataclass(frozen=True)
class Shoppers:
    """A sampled population: which real customer's taste each shopper has, and how often they visit."""

    taste: np.ndarray  # int, rows of the simulator's user factors
    visits: np.ndarray  # int >= 1

    def __len__(self) -> int:
        return int(self.taste.shape[0])


@dataclass(frozen=True)
class ShopperSimulator:
    user_factors: np.ndarray  # (n_users, f)
    item_factors: np.ndarray  # (n_items, f)
    popularity: np.ndarray  # (n_items,) standardised log distinct buyers
    affinity_scale: float
    base_logit: float
    visit_values: np.ndarray  # empirical distribution of visits per customer
    visit_probs: np.ndarray
    config: SimulatorConfig
    meta: dict[str, Any]
    # the shop's ids of the fitted rows (real customers) and columns (items), so models trained on
    # the same data can score the simulator's shoppers (``simulated_experiments.model_agreement``)
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    @classmethod
    def fit(cls, dataset: Any, config: SimulatorConfig | None = None, *, seed: int = 0) -> ShopperSimulator:
        """Fit on a ``shelfwise.features.dataset.Dataset`` (purchases if it has any, else all events)."""
        config = config or SimulatorConfig()
        types = ["purchase"] if "purchase" in dataset.type_names else None
        m = dataset.matrix(types=types)
        buyers = np.asarray(m.getnnz(axis=1)) > 0
        items = np.asarray(m.getnnz(axis=0)) > 0
        user_ids = np.asarray(dataset.user_map.external)[buyers]
        item_ids = np.asarray(dataset.item_map.external)[items]
        m = m[buyers][:, items]
        if m.shape[0] < 10 or m.shape[1] < 10:
            raise ValueError(
                f"too little data to fit a shopper simulator: {m.shape[0]} buyers, {m.shape[1]} items "
                "(need at least 10 of each)"
            )
        k = min(config.factors, min(m.shape) - 1)
        rng = np.random.default_rng(seed)
        u, s, vt = svds(m.astype(np.float64), k=k, v0=rng.random(min(m.shape)))
        user_factors = u * np.sqrt(s)
        item_factors = vt.T * np.sqrt(s)
        log_pop = np.log1p(np.asarray(m.getnnz(axis=0), np.float64))
        popularity = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
        probe = user_factors[rng.integers(0, len(user_factors), 2_000)] @ item_factors.T
        scale = float(probe.std()) or 1.0
        # visits: distinct days with an event, per customer who bought
        mask = dataset.type_mask(types)
        days = dataset.ts[mask] // 86_400_000
        pairs = np.unique(np.stack([dataset.users[mask].astype(np.int64), days]), axis=1)
        per_user = np.bincount(pairs[0])
        per_user = np.minimum(per_user[per_user > 0], config.max_visits)
        values, counts = np.unique(per_user, return_counts=True)
        sim = cls(
            user_factors=user_factors,
            item_factors=item_factors,
            popularity=popularity,
            affinity_scale=scale,
            base_logit=0.0,
            visit_values=values,
            visit_probs=counts / counts.sum(),
            config=config,
            user_ids=user_ids,
            item_ids=item_ids,
            meta={
                "buyers": int(m.shape[0]),
                "items": int(m.shape[1]),
                "purchases": int(m.nnz),
                "factors": int(k),
                "mean_visits": float((values * counts).sum() / counts.sum()),
                "source": dataset.meta.get("source", "store"),
            },
        )
        shoppers = sim.sample_shoppers(2_000, rng)
        logits = sim.attraction_logits(shoppers, sim.candidates(shoppers, 10, rng))
        base = brentq(lambda b: float(np.mean(1 / (1 + np.exp(-(logits + b))))) - config.target_ctr, -40, 40)
        sim.meta["base_logit"] = float(base)
        return replace(sim, base_logit=float(base))

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def sample_shoppers(self, n: int, rng: np.random.Generator) -> Shoppers:
        taste = rng.integers(0, self.user_factors.shape[0], n)
        visits = rng.choice(self.visit_values, size=n, p=self.visit_probs)
        return Shoppers(taste=taste, visits=np.asarray(visits, np.int64))

    def attraction_logits(self, shoppers: Shoppers, items: np.ndarray) -> np.ndarray:
        """True attraction logits; ``items`` is (n_shoppers, m) item indices."""
        uf = self.user_factors[shoppers.taste]  # (n, f)
        aff = np.einsum("nf,nmf->nm", uf, self.item_factors[items]) / self.affinity_scale
        c = self.config
        aff = np.clip(aff, -c.affinity_clip, c.affinity_clip)
        return self.base_logit + c.popularity_weight * self.popularity[items] + c.affinity_weight * aff

    def attraction(self, shoppers: Shoppers, items: np.ndarray) -> np.ndarray:
        """P(click | examined) for each shopper and item."""
        return 1.0 / (1.0 + np.exp(-self.attraction_logits(shoppers, items)))

    def candidates(
        self, shoppers: Shoppers, n: int, rng: np.random.Generator, *, noise: float = 1.0
    ) -> np.ndarray:
        """A retrieval stage: each shopper's top ``n`` items by the true logit plus Gumbel noise
        of scale ``noise`` (a real retriever is imperfect). Returns (n_shoppers, n) item indices."""
        out = np.empty((len(shoppers), n), np.int64)
        c = self.config
        for start in range(0, len(shoppers), 2_000):
            stop = min(start + 2_000, len(shoppers))
            uf = self.user_factors[shoppers.taste[start:stop]]
            aff = np.clip((uf @ self.item_factors.T) / self.affinity_scale, -c.affinity_clip, c.affinity_clip)
            logits = c.affinity_weight * aff
            logits += c.popularity_weight * self.popularity
            logits += noise * rng.gumbel(size=logits.shape)
            out[start:stop] = np.argpartition(-logits, n - 1, axis=1)[:, :n]
        return out

    def click_probabilities(self, shoppers: Shoppers, lists: np.ndarray) -> np.ndarray:
        """P(click) at each slot of each shopper's list (one visit): examination × attraction; in
        the cascade model the chance the first (and only) click is there, ``r_j prod_{i<j}(1 - r_i)``."""
        attraction = self.attraction(shoppers, lists)
        if self.config.click_model == "cascade":
            before = np.cumprod(1 - attraction, axis=1)
            return attraction * np.concatenate([np.ones((len(lists), 1)), before[:, :-1]], axis=1)
        exam = examination_of(self.config, lists.shape[1])
        return chain_click_probs(exam[None, :] * attraction, continuation_of(self.config))

    def simulate(
        self, shoppers: Shoppers, lists: np.ndarray, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Clicks and purchases of one visit per shopper, with the probabilities they were drawn from."""
        p_click = self.click_probabilities(shoppers, lists)
        if self.config.click_model == "cascade":  # one draw per visit: at most one click
            cum = np.cumsum(p_click, axis=1)
            u = rng.random((len(lists), 1))
            first = (u >= cum).sum(1)
            clicks = (np.arange(lists.shape[1])[None, :] == first[:, None]) & (u < cum[:, -1:])
        else:
            clicks = draw_chain_clicks(p_click, continuation_of(self.config), rng)
        purchases = clicks & (rng.random(p_click.shape) < self.config.conversion)
        return {"p_click": p_click, "clicks": clicks, "purchases": purchases}
