"""Learning to rank: LightGBM LambdaRank over the engine's candidates.

Features per (query, candidate): the fused keyword score and each field's BM25, the cosine
similarity, their ranks, the share of query terms found in the title, popularity, price (log) and
the shopper's brand affinity and price fit. Trained from graded judgments (``qrels``) or from
logged searches turned into grades (purchase 3, cart 2, click 1). The model is saved as
LightGBM's text format plus JSON, never pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shelfwise.core.errors import ConfigError
from shelfwise.search.personal import UserAffinity
from shelfwise.search.query import ParsedQuery

if TYPE_CHECKING:  # pragma: no cover
    from shelfwise.search.engine import SearchEngine

FEATURES = (
    "bm25",
    "dense",
    "bm25_rank",
    "dense_rank",
    "title",
    "brand",
    "category",
    "description",
    "attributes",
    "title_coverage",
    "popularity",
    "log_price",
    "has_price",
    "query_terms",
    "brand_affinity",
    "price_fit",
)


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("learning to rank needs lightgbm", hint="pip install lightgbm") from exc
    return lightgbm


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[order] = np.arange(1, len(values) + 1)
    return np.log1p(ranks)


class LambdaRanker:
    """A LambdaRank model the engine uses in ``mode="ltr"`` (set ``engine.ranker``)."""

    def __init__(self, *, n_estimators: int = 150, learning_rate: float = 0.05, num_leaves: int = 15) -> None:
        self.params = {
            "objective": "lambdarank",
            "n_estimators": n_estimators,
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_child_samples": 10,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.9,
            "verbose": -1,
            "n_jobs": 1,  # OpenMP threads spin-wait: on a busy 2-core machine one thread is ~20x faster
            "random_state": 7,
        }
        self.booster: Any = None

    # --- features -------------------------------------------------------------------------------

    def features(
        self,
        engine: SearchEngine,
        parsed: ParsedQuery,
        slots: np.ndarray,
        sources: Mapping[str, np.ndarray],
        *,
        user: UserAffinity | None = None,
    ) -> np.ndarray:
        n = len(slots)
        tokens = engine.analyzer.tokens(parsed.text)
        x = np.zeros((n, len(FEATURES)), dtype=np.float32)
        if n == 0:
            return x
        bm25 = np.asarray(sources.get("bm25", np.zeros(n)), dtype=np.float32)
        dense = np.asarray(sources.get("dense", np.zeros(n)), dtype=np.float32)
        x[:, 0], x[:, 1] = bm25, dense
        x[:, 2], x[:, 3] = _ranks(bm25), _ranks(dense)
        fields = engine.keyword.field_scores(tokens, slots)
        for j, name in enumerate(("title", "brand", "category", "description", "attributes"), start=4):
            if name in fields:
                x[:, j] = fields[name]
        qset = set(tokens)
        for i, slot in enumerate(slots):
            item = engine._items[int(slot)]
            if item is None:
                continue
            if qset:
                title = set(engine.analyzer.tokens(item.title))
                x[i, 9] = len(qset & title) / len(qset)
            x[i, 10] = engine._popularity[int(slot)]
            if item.price:
                x[i, 11], x[i, 12] = math.log1p(item.price), 1.0
            if user is not None:
                x[i, 14], x[i, 15] = user.brand_affinity(item), user.price_fit(item)
        x[:, 13] = len(tokens)
        return x

    def candidates(
        self, engine: SearchEngine, query: str, *, depth: int, user: UserAffinity | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(slots, features) the engine would re-rank for ``query``."""
        parsed = engine.understanding.parse(query)
        mask, _ = engine._filter_mask(parsed, None)
        mode = "hybrid" if engine.config.dense else "bm25"
        slots, _, sources, _ = engine._candidates(parsed, mask, mode, depth, None)
        return slots, self.features(engine, parsed, slots, sources, user=user)

    # --- training and scoring -------------------------------------------------------------------

    def fit(
        self,
        engine: SearchEngine,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        depth: int = 100,
        progress: Callable[[int, int], None] | None = None,
    ) -> LambdaRanker:
        lgb = _lightgbm()
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        groups: list[int] = []
        ids = engine.item_ids_by_slot()
        todo = [(q, t) for q, t in queries.items() if q in qrels]
        for i, (qid, text) in enumerate(todo, 1):
            slots, x = self.candidates(engine, text, depth=depth)
            if progress and (i % 20 == 0 or i == len(todo)):
                progress(i, len(todo))
            if len(slots) < 2:
                continue
            grades = qrels[qid]
            y = np.array([grades.get(ids[int(s)], 0) for s in slots], dtype=np.int32)
            if y.max() == 0:
                continue
            xs.append(x)
            ys.append(y)
            groups.append(len(slots))
        if not groups:
            raise ConfigError("no training query has a judged item among its candidates")
        model = lgb.LGBMRanker(**self.params)
        model.fit(np.vstack(xs), np.concatenate(ys), group=groups)
        self.booster = model.booster_
        return self

    def score(
        self,
        engine: SearchEngine,
        parsed: ParsedQuery,
        slots: np.ndarray,
        sources: Mapping[str, np.ndarray],
        *,
        user: UserAffinity | None = None,
    ) -> np.ndarray:
        if self.booster is None:
            raise ConfigError("the ranker is not trained", hint="call fit() first")
        x = self.features(engine, parsed, slots, sources, user=user)
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ranker.txt").write_text(self.booster.model_to_string())
        (directory / "ranker.json").write_text(json.dumps({"features": FEATURES, "params": self.params}))

    @classmethod
    def load(cls, directory: Path) -> LambdaRanker:
        lgb = _lightgbm()
        meta = json.loads((directory / "ranker.json").read_text())
        if tuple(meta["features"]) != FEATURES:
            raise ConfigError(f"{directory}: ranker was trained on other features; retrain it")
        ranker = cls()
        ranker.params = meta["params"]
        ranker.booster = lgb.Booster(model_str=(directory / "ranker.txt").read_text())
        return ranker


def cross_validated_runs(
    engine: SearchEngine,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    folds: int = 5,
    k: int = 100,
    seed: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, list[str]], float, list[dict[str, Any]]]:
    """Train on ``folds - 1`` parts of the queries, rank the held-out part; every query is ranked by
    a model that never saw it. Returns the runs, the ranking QPS and per-fold notes."""
    import time

    judged = sorted(q for q in queries if q in qrels)
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(judged))
    parts = [order[i::folds] for i in range(folds)]
    runs: dict[str, list[str]] = {}
    seconds = 0.0
    notes = []
    for f, held in enumerate(parts):
        train = {q: queries[q] for q in order if q not in set(held)}
        ranker = LambdaRanker().fit(engine, train, qrels)
        engine.ranker = ranker
        started = time.perf_counter()
        for qid in held:
            runs[qid] = engine.search(queries[qid], k=k, mode="ltr", facets=False).item_ids
        seconds += time.perf_counter() - started
        notes.append({"fold": f, "train_queries": len(train), "test_queries": len(held)})
        if progress:
            progress(f + 1, folds)
    qps = sum(len(p) for p in parts) / seconds if seconds else float("inf")
    return runs, qps, notes


def grades_from_events(events: Sequence[Any]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and grades from logged searches: an item clicked (1), carted (2) or bought (3) after a
    search in the same session counts for that search's query (``context["query"]``)."""
    grade_of = {"click": 1, "view": 1, "cart": 2, "purchase": 3}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    last_query: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.ts):
        session = event.session_id or event.user_id or ""
        kind = str(event.type)
        if kind == "search":
            text = str(event.context.get("query") or "").strip().lower()
            if text:
                qid = "q" + hashlib.sha1(text.encode()).hexdigest()[:12]
                queries.setdefault(qid, text)
                last_query[session] = qid
        elif kind in grade_of and event.item_id and session in last_query:
            qid = last_query[session]
            grades = qrels.setdefault(qid, {})
            grades[event.item_id] = max(grades.get(event.item_id, 0), grade_of[kind])
    return queries, qrels
