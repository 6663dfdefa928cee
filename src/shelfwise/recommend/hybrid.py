"""Hybrid two-stage recommendation: several retrievers propose candidates, a LightGBM LambdaRank
model orders them.

**Stage 1** — every retriever (EASE, item-KNN, ALS, time-decayed popularity, bought-together,
content… any registered model) scores all items for the shopper; the union of each one's top
``candidates`` items not already in the history is the candidate set. The shopper's own history
items join it too, so ``exclude_seen=False`` can bring them back.

**Stage 2** — one feature row per (shopper, candidate): each retriever's score, its rank and the
score over the shopper's best; how many retrievers proposed it; the shopper (events, distinct items,
days since the last event, active days, affinity for the candidate's category and brand, days since
they last bought in its category, price fit ``|log price − log median price paid|``); the item
(popularity, conversion rate, price, recent and time-decayed popularity, trend, days since its first
and last sale); and a **DIN-style attention score** (Zhou et al. 2018, "Deep Interest Network"):
the candidate attends over the shopper's last ``recent_items`` items, ``w = softmax(s · e_c·e_j)``,
and the feature is ``Σ_j w_j e_c·e_j``, once with ALS item factors and once with text vectors, beside
the plain maximum similarity. LambdaRank (``objective="lambdarank"``, one thread, deterministic)
learns the order.

**No leakage**: ``_fit(train)`` cuts ``train`` again by time (the last ``label_fraction`` of its events
are labels: items new to the shopper, as in the evaluation), fits the retrievers on the part before,
builds candidates and features from that part only, trains the ranker on them; then refits the
retrievers and features on the whole of ``train`` for serving.

Every result names the retriever that ranked it highest ("similar to X", "bought together with X",
"popular lately"…). Items outside the candidates keep a finite score below every candidate, ordered by
the first retriever, so filters that exclude most candidates still fill a page.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import NO_CODE, Dataset
from shelfwise.features.profiles import DAY_MS, item_profiles
from shelfwise.features.splits import temporal_split
from shelfwise.recommend.base import ModelConfig, Recommender, csr_rows, serving_threads
from shelfwise.recommend.memory import MatrixShape
from shelfwise.recommend.registry import model_from_config, register_model

# below the worst candidate: LightGBM scores live far inside ±1e3
OUTSIDE = -1.0e3
# ranks are exact down to this depth, and this value below it (a full sort per row costs more)
RANK_DEPTH = 1000
# requests this small keep which retriever ranked each candidate best, for their reasons
REASON_ROWS = 32
DEFAULT_RETRIEVERS: tuple[dict[str, Any], ...] = (
    {"model": "ease"},
    # as a retriever item-KNN keeps the 100 neighbours the hybrid was measured with (its own default,
    # 10, ranks better alone but feeds the ranker fewer candidates; not re-measured in the hybrid)
    {"model": "itemknn", "neighbours": 100},
    {"model": "als"},
    {"model": "popular-decay"},
    {"model": "content-tfidf"},
)  # user-KNN and bought-together added nothing on Online Retail (NDCG@10 0.1526 with, 0.1539 without)


class HybridConfig(ModelConfig):
    retrievers: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(r) for r in DEFAULT_RETRIEVERS],
        description="stage 1: model configs, each proposes its top `candidates` items",
    )
    candidates: int = Field(default=100, ge=1, description="candidates per retriever")
    label_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of the training events (the latest) used as labels"
    )
    recent_items: int = Field(default=10, ge=1, description="L: the recent items the attention looks at")
    attention_scale: float = Field(default=5.0, gt=0, description="inverse temperature of the attention")
    text_dims: int = Field(default=64, ge=2, description="TF-IDF vectors are reduced to this many (SVD)")
    rounds: int = Field(default=400, ge=1, description="LambdaRank boosting rounds (at most)")
    learning_rate: float = Field(default=0.05, gt=0)
    leaves: int = Field(default=31, ge=2)
    min_data_in_leaf: int = Field(default=50, ge=1)
    early_stopping: int = Field(default=40, ge=0, description="rounds without gain on held-out users")
    valid_share: float = Field(default=0.15, ge=0, lt=1, description="label users held out for stopping")
    max_train_users: int = Field(default=5_000, ge=1, description="label shoppers sampled to train")
    seed: int = 0


# --- features -------------------------------------------------------------------------------------
ITEM_FEATURES = (
    "item_popularity",
    "item_events",
    "item_conversion",
    "item_price",
    "item_log_price",
    "item_decay_popularity",
    "item_recent_7d",
    "item_recent_30d",
    "item_trend",
    "item_age_days",
    "item_last_sale_days",
)
USER_FEATURES = (
    "user_events",
    "user_items",
    "user_recency_days",
    "user_active_days",
    "user_median_price",
    "price_fit",
    "category_affinity",
    "brand_affinity",
    "category_recency_days",
)
ATTENTION_FEATURES = ("din_als", "max_sim_als", "din_text", "max_sim_text")
RETRIEVER_FEATURES = ("score", "rank", "relative")


def _share(counts: np.ndarray) -> np.ndarray:
    total = float(counts.sum())
    return counts / total if total > 0 else counts.astype(np.float64)


def item_feature_matrix(ds: Dataset, now_ms: int) -> np.ndarray:
    """``ITEM_FEATURES`` for every item (rows), from ``ds`` only: popularity is a share of the
    period's shoppers/events, so the ranker sees the same scale on a shorter or longer period."""
    prof = item_profiles(ds, now_ms=now_ms)
    age = (now_ms - ds.ts) / DAY_MS
    n_users = max(int((np.bincount(ds.users, minlength=ds.n_users) > 0).sum()), 1)
    recent7 = np.bincount(ds.items[age < 7], minlength=ds.n_items).astype(np.float64)
    before7 = np.bincount(ds.items[(age >= 7) & (age < 14)], minlength=ds.n_items).astype(np.float64)
    recent30 = np.bincount(ds.items[age < 30], minlength=ds.n_items).astype(np.float64)
    decay = np.bincount(ds.items, weights=np.power(0.5, age / 14.0), minlength=ds.n_items)
    first = np.full(ds.n_items, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, ds.items, ds.ts)
    first_days = np.where(first == np.iinfo(np.int64).max, np.nan, (now_ms - first) / DAY_MS)
    last_days = np.where(np.isinf(prof.last_seen_days), np.nan, prof.last_seen_days)
    price = prof.price.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_price = np.where(price > 0, np.log(price), np.nan)
    cols = [
        prof.popularity / n_users,
        _share(prof.events.astype(np.float64)),
        prof.conversion_rate,
        price,
        log_price,
        _share(decay),
        _share(recent7),
        _share(recent30),
        (recent7 + 1.0) / (before7 + 1.0),
        first_days,
        last_days,
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def _recent_items(ds: Dataset, length: int) -> np.ndarray:
    """Each user's last ``length`` distinct items, most recent first, -1 padded."""
    out = np.full((ds.n_users, length), -1, np.int32)
    for u, hist in enumerate(ds.histories()):
        if not len(hist):
            continue
        rev = hist[::-1]
        _, first = np.unique(rev, return_index=True)
        picked = rev[np.sort(first)][:length]
        out[u, : len(picked)] = picked
    return out


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at ``query`` keys (sorted ``keys``); NaN where absent."""
    out = np.full(len(query), np.nan, np.float32)
    if not len(keys):
        return out
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    hit = keys[pos] == query
    out[hit] = values[pos[hit]]
    return out


def _row_medians(h: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Median of ``values`` over each row's columns (NaN values ignored; NaN for empty rows)."""
    rows = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
    v = values[h.indices]
    ok = ~np.isnan(v)
    rows, v = rows[ok], v[ok]
    out = np.full(h.shape[0], np.nan)
    if not len(v):
        return out
    order = np.lexsort((v, rows))
    rows, v = rows[order], v[order]
    counts = np.bincount(rows, minlength=h.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = (v[lo] + v[hi]) / 2.0
    return out


def _attention(
    emb: np.ndarray, cand_rows: np.ndarray, cand_items: np.ndarray, recent: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """DIN-style attention of each candidate over its row's recent items: (attended sim, max sim)."""
    n = len(cand_items)
    att = np.full(n, np.nan, np.float32)
    best = np.full(n, np.nan, np.float32)
    if not n:
        return att, best
    step = max(1, (1 << 22) // max(recent.shape[1] * emb.shape[1], 1))
    for lo in range(0, n, step):
        r = cand_rows[lo : lo + step]
        e_c = emb[cand_items[lo : lo + step]]  # pairs × d
        if r[0] == r[-1]:  # one shopper (rows are sorted): their recent items' vectors, not a copy per pair
            rec = np.broadcast_to(recent[r[0]], (len(r), recent.shape[1]))
            e_r = np.broadcast_to(emb[np.maximum(recent[r[0]], 0)], (len(r), recent.shape[1], emb.shape[1]))
        else:
            rec = recent[r]  # pairs × L
            e_r = emb[np.maximum(rec, 0)]  # pairs × L × d
        valid = rec >= 0
        sims = np.einsum("pd,pld->pl", e_c, e_r)
        logits = np.where(valid, scale * sims, -np.inf)
        has = valid.any(axis=1)
        logits[~has] = 0.0
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        a = (w * np.where(valid, sims, 0.0)).sum(axis=1)
        m = np.where(valid, sims, -np.inf).max(axis=1)
        att[lo : lo + step] = np.where(has, a, np.nan)
        best[lo : lo + step] = np.where(has, m, np.nan)
    return att, best


def _ranks(masked: np.ndarray, depth: int) -> np.ndarray:
    """0-based rank of every item in each row (best first), exact down to ``depth``, ``depth`` below."""
    n_rows, n = masked.shape
    d = min(depth, n)
    if n_rows == 1:  # a request's one shopper: the same partition and stable sort on the row itself
        neg = -masked[0]
        top1 = np.argpartition(neg, d - 1)[:d] if d < n else np.arange(n)
        rank1 = np.full((1, n), d, np.int32)
        rank1[0, top1[np.argsort(neg[top1], kind="stable")]] = np.arange(d, dtype=np.int32)
        return rank1
    top = np.argpartition(-masked, d - 1, axis=1)[:, :d] if d < n else np.tile(np.arange(n), (n_rows, 1))
    order = np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1, kind="stable")
    rank = np.full((n_rows, n), d, np.int32)
    rank[np.arange(n_rows)[:, None], np.take_along_axis(top, order, axis=1)] = np.arange(d, dtype=np.int32)
    return rank


def _stack_columns(parts: list[np.ndarray], n: int) -> np.ndarray:
    """``np.column_stack(parts).astype(np.float32)``, written column by column into one float32
    matrix: the same values (a float64 column rounds to float32 once either way) without the
    float64 intermediate a float64 column promotes the whole stack to, nor the copies."""
    width = sum(1 if p.ndim == 1 else p.shape[1] for p in parts)
    x = np.empty((n, width), np.float32)
    j = 0
    for p in parts:
        if p.ndim == 1:
            x[:, j] = p
            j += 1
        else:
            x[:, j : j + p.shape[1]] = p
            j += p.shape[1]
    return x


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, np.float32)


def _text_embedding(vectors: Any, dims: int, seed: int) -> np.ndarray:
    """Dense unit text vectors: as they are, or a randomised SVD (Halko et al. 2011, two power
    iterations) of sparse TF-IDF rows — a few dense products, unlike ARPACK's many sparse ones."""
    if not sp.issparse(vectors):
        return _unit_rows(np.asarray(vectors, np.float32))
    m = sp.csr_matrix(vectors, dtype=np.float64)
    k = min(dims, *m.shape)
    if k < 1 or m.nnz == 0:
        return np.zeros((m.shape[0], 1), np.float32)
    rng = np.random.default_rng(seed)
    y = m @ rng.standard_normal((m.shape[1], min(k + 10, m.shape[1])))
    for _ in range(2):
        q, _ = np.linalg.qr(y)
        q, _ = np.linalg.qr(m.T @ q)
        y = m @ q
    q, _ = np.linalg.qr(y)
    u, s, _ = np.linalg.svd(np.asarray(m.T @ q).T, full_matrices=False)
    return _unit_rows((q @ u[:, :k]) * s[:k])


@dataclass
class Stage:
    """Retrievers and the features they need, fitted on one period (inner or whole training part)."""

    retrievers: list[Recommender]
    labels: list[str]
    items: np.ndarray  # n_items × ITEM_FEATURES
    recent: np.ndarray  # n_users × L, most recent first
    user_stats: np.ndarray  # n_users × 4: events, distinct items, recency days, active days
    cat_keys: np.ndarray  # user * n_categories + category, sorted
    cat_days: np.ndarray  # days since the user's last event in that category
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # "als"/"text" → unit item vectors

    @property
    def feature_names(self) -> list[str]:
        per = [f"{lab}_{f}" for lab in self.labels for f in RETRIEVER_FEATURES]
        return [*per, "n_retrievers", *ITEM_FEATURES, *USER_FEATURES, *ATTENTION_FEATURES]


def _labels(configs: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in configs:
        name = str(c.get("model", "?")).replace("-", "_")
        label = name if name not in out else f"{name}_{len(out)}"
        out.append(label)
    return out


class HybridRecommender(Recommender):
    name = "hybrid"
    Config = HybridConfig
    config: HybridConfig

    def _fit_bytes(self, shape: MatrixShape) -> int:
        # the retrievers are fitted twice (before the labels, then on everything) but one set at a time;
        # then candidate features for the sampled label shoppers
        own = sum(model_from_config(r).fit_bytes(shape) for r in self.config.retrievers)
        features = self.config.max_train_users * self.config.candidates * len(self.config.retrievers) * 400
        return own + features

    # --- building a stage ----------------------------------------------------------------------
    def _build_stage(self, ds: Dataset, retrievers: list[Recommender] | None = None) -> Stage:
        c = self.config
        if retrievers is None:
            retrievers = [model_from_config(r) for r in c.retrievers]
            for r in retrievers:
                r.fit(ds)
        now = int(ds.ts.max()) if len(ds) else 0
        counts = np.bincount(ds.users, minlength=ds.n_users).astype(np.float32)
        last = np.full(ds.n_users, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(last, ds.users, ds.ts)
        recency = np.where(counts > 0, (now - last) / DAY_MS, np.nan).astype(np.float32)
        days = np.unique(np.stack([ds.users.astype(np.int64), ds.ts // DAY_MS]), axis=1)
        active = np.bincount(days[0], minlength=ds.n_users).astype(np.float32)
        distinct = np.diff(ds.matrix().indptr).astype(np.float32)
        attrs = ds.item_attributes
        n_cat = max(len(attrs.category_names), 1)
        cats = attrs.category[ds.items].astype(np.int64)
        has = cats != NO_CODE
        keys = ds.users[has].astype(np.int64) * n_cat + cats[has]
        cat_last = np.full(0, 0, np.int64)
        ukeys = np.unique(keys)
        if len(ukeys):
            cat_last = np.full(len(ukeys), np.iinfo(np.int64).min, np.int64)
            np.maximum.at(cat_last, np.searchsorted(ukeys, keys), ds.ts[has])
        stage = Stage(
            retrievers=retrievers,
            labels=_labels(c.retrievers),
            items=item_feature_matrix(ds, now),
            recent=_recent_items(ds, c.recent_items),
            user_stats=np.stack([counts, distinct, recency, active], axis=1),
            cat_keys=ukeys,
            cat_days=((now - cat_last) / DAY_MS).astype(np.float32)
            if len(ukeys)
            else np.empty(0, np.float32),
        )
        self._add_embeddings(stage)
        return stage

    def _add_embeddings(self, stage: Stage) -> None:
        for r in stage.retrievers:
            if "als" not in stage.embeddings and hasattr(r, "item_factors") and r.name == "als":
                stage.embeddings["als"] = _unit_rows(r.item_factors)
            if "text" not in stage.embeddings and hasattr(r, "item_vectors"):
                stage.embeddings["text"] = _text_embedding(
                    r.item_vectors(), self.config.text_dims, self.config.seed
                )

    # --- stage 1 -------------------------------------------------------------------------------
    def _retrieve(
        self, stage: Stage, histories: sp.csr_matrix, users: np.ndarray, *, with_history: bool
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Every retriever's dense scores, and the candidates as (row, item) pairs."""
        n_rows = histories.shape[0]
        h_rows = np.repeat(np.arange(n_rows), np.diff(histories.indptr))
        h_cols = histories.indices
        n = self.n_items
        k = min(self.config.candidates, n)
        scores, picks = [], []
        for r in stage.retrievers:
            s = np.asarray(r._score(histories, users), dtype=np.float32)
            masked = s.copy()
            masked[h_rows, h_cols] = -np.inf
            top = (
                np.argpartition(-masked, k - 1, axis=1)[:, :k]
                if k < n
                else np.tile(np.arange(n), (n_rows, 1))
            )
            picks.append(top)
            scores.append(s)
        cand = np.concatenate(picks, axis=1)
        rows = np.repeat(np.arange(n_rows), cand.shape[1])
        flat = cand.ravel().astype(np.int64)
        if with_history:
            rows = np.concatenate([rows, h_rows])
            flat = np.concatenate([flat, h_cols.astype(np.int64)])
        key = np.unique(rows.astype(np.int64) * n + flat)
        return scores, key // n, key % n

    def candidates(self, users: list[str]) -> list[list[str]]:
        """Stage 1 alone (the shop's ids; a stranger has no history, so popularity and the like
        speak for them): the candidate items, unordered."""
        st = self.state
        dense = st.user_map.to_internal(users, strict=False)
        with serving_threads(len(dense)):
            _, rows, items = self._retrieve(
                self.stage, csr_rows(st.history, dense), dense, with_history=False
            )
        bounds = np.searchsorted(rows, np.arange(len(users) + 1))
        return [self.item_map.to_external(items[bounds[i] : bounds[i + 1]]) for i in range(len(users))]

    # --- stage 2 features ---------------------------------------------------------------------
    def _features(
        self,
        stage: Stage,
        histories: sp.csr_matrix,
        users: np.ndarray,
        scores: list[np.ndarray],
        rows: np.ndarray,
        items: np.ndarray,
        sessions: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The feature rows of the (row, item) pairs, and which retriever ranked each pair best.
        ``sessions`` gives new shoppers' items in time order (the attention reads the latest)."""
        n_rows = histories.shape[0]
        h = sp.csr_matrix(histories, dtype=np.float32)
        h.data[:] = 1
        h_rows = np.repeat(np.arange(n_rows), np.diff(h.indptr))
        k = self.config.candidates
        cols: list[np.ndarray] = []
        proposed = np.zeros(len(items), np.float32)
        all_ranks = []
        for s in scores:
            masked = s.copy()
            masked[h_rows, h.indices] = -np.inf
            best = masked.max(axis=1)
            sc = s[rows, items]
            rk = _ranks(masked, RANK_DEPTH)[rows, items].astype(np.float32)
            all_ranks.append(rk)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(best[rows] > 0, sc / best[rows], np.nan)
            cols += [sc, rk, rel.astype(np.float32)]
            proposed += rk < k
        cols.append(proposed)
        item_block = stage.items[items]
        # shoppers: stored stats for known users, the history alone for a new shopper
        stats = np.full((n_rows, 4), np.nan, np.float32)
        known = users >= 0
        if known.any():
            stats[known] = stage.user_stats[users[known]]
        counts = np.diff(h.indptr).astype(np.float32)
        stats[~known, 0] = counts[~known]
        stats[~known, 1] = counts[~known]
        stats[~known, 2] = 0.0
        stats[~known, 3] = 1.0
        attrs = self.state.attributes
        median = _row_medians(h, attrs.price.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            price_fit = np.abs(item_block[:, ITEM_FEATURES.index("item_log_price")] - np.log(median[rows]))
        cat_aff = self._affinity(h, attrs.category, len(attrs.category_names), rows, items)
        brand_aff = self._affinity(h, attrs.brand, len(attrs.brand_names), rows, items)
        n_cat = max(len(attrs.category_names), 1)
        cat = attrs.category[items].astype(np.int64)
        cat_days = np.full(len(items), np.nan, np.float32)
        has_cat = cat != NO_CODE
        u_rows = users[rows]
        k_known = has_cat & (u_rows >= 0)
        cat_days[k_known] = _lookup(stage.cat_keys, stage.cat_days, u_rows[k_known] * n_cat + cat[k_known])
        k_new = has_cat & (u_rows < 0)  # a new shopper's session is happening now
        cat_days[k_new] = np.where(cat_aff[k_new] > 0, 0.0, np.nan)
        # attention over the recent items: stored order for known users, the history for new ones
        recent = np.full((n_rows, self.config.recent_items), -1, np.int32)
        if known.any():
            recent[known] = stage.recent[users[known]]
        for r in np.flatnonzero(~known):
            if sessions is not None:
                latest = sessions[r][::-1]
                _, first = np.unique(latest, return_index=True)
                items_r = latest[np.sort(first)][: self.config.recent_items]
            else:  # a set, no order: any L of them
                items_r = h.indices[h.indptr[r] : h.indptr[r + 1]][: self.config.recent_items]
            recent[r, : len(items_r)] = items_r
        att = []
        for source in ("als", "text"):
            emb = stage.embeddings.get(source)
            if emb is None:
                att += [np.full(len(items), np.nan, np.float32)] * 2
            else:
                att += list(_attention(emb, rows, items, recent, self.config.attention_scale))
        user_block = [stats[rows], median[rows], price_fit, cat_aff, brand_aff, cat_days]
        x = _stack_columns([*cols, item_block, *user_block, *att], len(items))
        return x, np.argmin(np.stack(all_ranks), axis=0)

    @staticmethod
    def _affinity(
        h: sp.csr_matrix, codes: np.ndarray, n_codes: int, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Share of each row's history items in the candidate's category (or brand); NaN if unknown.

        Counted from the history's codes (sorted row-code keys), not through a one-hot matrix of
        every item built per call: the same integer counts and float32 division, a fraction of
        the work for the few rows a request has."""
        out = np.full(len(items), np.nan, np.float32)
        if not n_codes:
            return out
        h_rows = np.repeat(np.arange(h.shape[0], dtype=np.int64), np.diff(h.indptr))
        h_codes = codes[h.indices]
        coded = h_codes != NO_CODE
        keys, counts = np.unique(h_rows[coded] * n_codes + h_codes[coded], return_counts=True)
        totals = np.bincount(h_rows[coded], minlength=h.shape[0]).astype(np.float32)
        ok = codes[items] != NO_CODE
        vals = _lookup(
            keys, counts.astype(np.float32), rows[ok].astype(np.int64) * n_codes + codes[items[ok]]
        )
        vals = np.nan_to_num(vals, nan=0.0)  # no history item in that code: a share of 0
        tot = totals[rows[ok]]
        out[ok] = np.divide(vals, tot, out=np.zeros_like(vals), where=tot > 0)
        return out

    # --- fitting ------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        started = time.perf_counter()
        inner = temporal_split(dataset, test_fraction=c.label_fraction)
        label_users = inner.test_users
        self.booster_text = ""
        self.fit_info: dict[str, Any] = {"label_users": len(label_users)}
        if len(label_users) >= 2 and len(inner.train):
            stage = self._build_stage(inner.train)
            self._train_ranker(stage, inner.train.matrix(), inner.test, label_users)
        self.fit_info["ranker_seconds"] = round(time.perf_counter() - started, 3)
        self.stage = self._build_stage(dataset)

    def _train_ranker(
        self, stage: Stage, history: sp.csr_matrix, labels: sp.csr_matrix, users: np.ndarray
    ) -> None:
        import lightgbm as lgb

        c = self.config
        rng = np.random.default_rng(c.seed)
        if len(users) > c.max_train_users:
            users = np.sort(rng.choice(users, c.max_train_users, replace=False))
        feats, y, groups = [], [], []
        step = max(1, (1 << 23) // max(self.n_items, 1) // max(len(stage.retrievers), 1))
        for lo in range(0, len(users), step):
            u = users[lo : lo + step]
            hist = sp.csr_matrix(history[u])
            scores, rows, items = self._retrieve(stage, hist, u, with_history=False)
            feats.append(self._features(stage, hist, u, scores, rows, items)[0])
            y.append(np.asarray(labels[u[rows], items]).ravel().astype(np.float32))
            groups.append(np.bincount(rows, minlength=len(u)))
        x = np.concatenate(feats)
        label = np.concatenate(y)
        group = np.concatenate(groups)
        # a shopper whose new items no retriever proposed teaches the ranker nothing
        starts = np.concatenate([[0], np.cumsum(group)[:-1]])
        positives = np.add.reduceat(label, starts) if len(label) else np.zeros(0)
        keep_group = (positives > 0) & (group > 0)
        self.fit_info.update(
            candidates_per_user=float(group.mean()) if len(group) else 0.0,
            label_recall=float(positives.sum() / max(labels[users].nnz, 1)),
            train_groups=int(keep_group.sum()),
            train_rows=int(group[keep_group].sum()),
        )
        if keep_group.sum() < 2:
            return
        row_keep = np.repeat(keep_group, group)
        x, label, group = x[row_keep], label[row_keep], group[keep_group]
        n_groups = len(group)
        perm = rng.permutation(n_groups)
        n_valid = round(c.valid_share * n_groups) if c.early_stopping else 0
        valid_g = np.zeros(n_groups, bool)
        valid_g[perm[:n_valid]] = True
        row_valid = np.repeat(valid_g, group)
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": c.learning_rate,
            "num_leaves": c.leaves,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": 0.9,
            "lambdarank_truncation_level": 20,
            "num_threads": 1,
            "deterministic": True,
            "force_row_wise": True,
            "seed": c.seed,
            "verbosity": -1,
        }
        names = stage.feature_names
        train_set = lgb.Dataset(x[~row_valid], label[~row_valid], group=group[~valid_g], feature_name=names)
        callbacks: list[Any] = []
        valid_sets = []
        if n_valid >= 2:
            valid_sets = [
                lgb.Dataset(x[row_valid], label[row_valid], group=group[valid_g], reference=train_set)
            ]
            callbacks.append(lgb.early_stopping(c.early_stopping, verbose=False))
        booster = lgb.train(
            params, train_set, num_boost_round=c.rounds, valid_sets=valid_sets, callbacks=callbacks
        )
        best = booster.best_iteration or c.rounds
        self.booster_text = booster.model_to_string(num_iteration=best)
        self.fit_info["rounds"] = int(best)
        if valid_sets:
            self.fit_info["valid_ndcg@10"] = float(booster.best_score["valid_0"]["ndcg@10"])
        gains = booster.feature_importance("gain", iteration=best)
        top = np.argsort(-gains)[:12]
        self.fit_info["top_features"] = {names[i]: round(float(gains[i]), 1) for i in top}

    # --- scoring ------------------------------------------------------------------------------
    @property
    def booster(self) -> Any:
        cached = self.__dict__.get("_booster")
        if cached is None and self.booster_text:
            import lightgbm as lgb

            cached = lgb.Booster(model_str=self.booster_text)
            self._booster = cached
        return cached

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return self._score_block(histories, np.asarray(users, np.int64))

    def _score_to_rank(
        self, histories: sp.csr_matrix, users: np.ndarray, allowed: np.ndarray, exclude: sp.csr_matrix | None
    ) -> np.ndarray:
        # the ranker runs only on candidates that can be shown: an item already bought (the history
        # joins the candidates) or unavailable gets -inf from ``_rank`` whatever it scores here
        return self._score_block(histories, np.asarray(users, np.int64), allowed=allowed, exclude=exclude)

    def _score_sessions(self, sessions: list[np.ndarray]) -> np.ndarray:
        rows = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
        cols = np.concatenate(sessions) if sessions else np.empty(0, np.int64)
        hist = sp.csr_matrix(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sessions), self.n_items)
        )
        hist.sum_duplicates()
        hist.data[:] = 1
        return self._score_block(hist, np.full(len(sessions), -1, np.int64), sessions=sessions)

    def _score_block(
        self,
        histories: sp.csr_matrix,
        users: np.ndarray,
        sessions: list[np.ndarray] | None = None,
        *,
        allowed: np.ndarray | None = None,
        exclude: sp.csr_matrix | None = None,
    ) -> np.ndarray:
        """Ranker scores of each row's candidates, the rest below them. Candidates outside
        ``allowed`` or among the ``exclude`` pairs are not scored (they keep the outside score):
        a pair's score never depends on the other pairs, so the others' do not change."""
        stage = self.stage
        h = sp.csr_matrix(histories, dtype=np.float32)
        scores, rows, items = self._retrieve(stage, h, users, with_history=True)
        if allowed is not None or exclude is not None:
            keep = allowed[items] if allowed is not None else np.ones(len(items), bool)
            if exclude is not None and exclude.nnz:
                n = np.int64(self.n_items)
                ex_rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
                keep &= ~np.isin(rows * n + items, ex_rows * n + exclude.indices)
            rows, items = rows[keep], items[keep]
        first = scores[0]
        lo = first.min(axis=1, keepdims=True)
        span = first.max(axis=1, keepdims=True) - lo
        out = OUTSIDE + np.divide(first - lo, span, out=np.zeros_like(first), where=span > 0)
        x, best = self._features(stage, h, users, scores, rows, items, sessions)
        if not len(items):
            pred = np.zeros(0)
        elif self.booster is not None:
            pred = self.booster.predict(x, num_threads=1)
        else:  # too little data to learn an order: reciprocal-rank fusion of the retrievers
            pred = self._fusion(stage, h, scores, rows, items)
        out[rows, items] = pred
        if len(users) <= REASON_ROWS:
            self._remember(h, rows, items, best)
        return out.astype(np.float32)

    def _remember(self, h: sp.csr_matrix, rows: np.ndarray, items: np.ndarray, best: np.ndarray) -> None:
        """Keep, per history, which retriever ranked each candidate best (this thread, last call)."""
        bounds = np.searchsorted(rows, np.arange(h.shape[0] + 1))
        memo = {}
        for r in range(h.shape[0]):
            key = np.sort(h.indices[h.indptr[r] : h.indptr[r + 1]]).astype(np.int64).tobytes()
            lo, hi = bounds[r], bounds[r + 1]
            memo[key] = (items[lo:hi], best[lo:hi])  # items ascending within a row
        self._memo.last = memo

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the per-thread memo and the parsed booster behind."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_memo_local", "_booster")}

    @property
    def _memo(self) -> threading.local:
        memo = self.__dict__.get("_memo_local")
        if memo is None:
            memo = self.__dict__.setdefault("_memo_local", threading.local())
        return memo

    def _fusion(
        self, stage: Stage, h: sp.csr_matrix, scores: list[np.ndarray], rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        total = np.zeros(len(items))
        for s in scores:
            order = np.argsort(-s, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(s.shape[1])[None, :], axis=1)
            total += 1.0 / (60.0 + rank[rows, items])
        return total

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        """The reason of the retriever that ranked each item highest for this history."""
        if not len(history) or not len(items):
            return [self.reason_default] * len(items)
        known = getattr(self._memo, "last", {}).get(np.sort(history).astype(np.int64).tobytes())
        best = np.zeros(len(items), np.int64)
        hit = np.zeros(len(items), bool)
        if known is not None:
            cand, who = known
            pos = np.minimum(np.searchsorted(cand, items), max(len(cand) - 1, 0))
            if len(cand):
                hit = cand[pos] == items
            best[hit] = who[pos[hit]]
        if known is None or not hit.all():  # not scored on this thread just now: rank again
            h = sp.csr_matrix(
                (np.ones(len(history), np.float32), (np.zeros(len(history), np.int64), history)),
                shape=(1, self.n_items),
            )
            ranks = []
            for r in self.stage.retrievers:
                s = np.asarray(r._score(h, np.array([-1])), dtype=np.float32)[0]
                ranks.append((s[None, :] > s[items][:, None]).sum(axis=1))
            fresh = np.argmin(np.stack(ranks), axis=0)  # ties: the first retriever listed
            best = fresh if known is None else np.where(hit, best, fresh)
        out = [""] * len(items)
        for j in np.unique(best):
            pick = np.flatnonzero(best == j)
            for p, reason in zip(pick, self.stage.retrievers[j]._reasons(history, items[pick]), strict=True):
                out[p] = reason
        return out

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """Item to item: the mean normalised similarity of the retrievers that have one."""
        total = np.zeros((len(items), self.n_items), np.float32)
        for r in self.stage.retrievers:
            s = np.asarray(r._similar_scores(items), dtype=np.float32)
            top = np.abs(s).max(axis=1, keepdims=True)
            total += np.divide(s, top, out=np.zeros_like(s), where=top > 0)
        return total

    # --- artifacts ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        st = self.stage
        out: dict[str, np.ndarray] = {
            "ranker": np.frombuffer(self.booster_text.encode(), np.uint8),
            "items": st.items,
            "recent": st.recent,
            "user_stats": st.user_stats,
            "cat_keys": st.cat_keys,
            "cat_days": st.cat_days,
        }
        for i, r in enumerate(st.retrievers):
            out.update({f"r{i}_{k}": v for k, v in r._arrays().items()})
        return out

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.booster_text = a["ranker"].tobytes().decode()
        self.__dict__.pop("_booster", None)
        parent = self.state
        retrievers = []
        for i, cfg in enumerate(self.config.retrievers):
            r = model_from_config(cfg)
            # the retrievers learnt from the hybrid's own training events: they share its state
            r._state = replace(parent, meta={})
            prefix = f"r{i}_"
            r._set_arrays({k.removeprefix(prefix): v for k, v in a.items() if k.startswith(prefix)})
            retrievers.append(r)
        self.stage = Stage(
            retrievers=retrievers,
            labels=_labels(self.config.retrievers),
            items=a["items"],
            recent=a["recent"],
            user_stats=a["user_stats"],
            cat_keys=a["cat_keys"],
            cat_days=a["cat_days"],
        )
        self._add_embeddings(self.stage)


register_model("hybrid", HybridRecommender)
