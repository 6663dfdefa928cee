"""Search's two stages under the shared contract (``shelfwise.features.retrieval``): the keyword and
the semantic retriever, and the fusion ranker that blends them and says why each hit is there.

    query = SearchQuery(parsed, tokens, allowed=mask, vector=vector)
    kw = KeywordRetriever(engine.keyword).retrieve(query, 200)
    dense = DenseRetriever(engine.dense, min_similarity=0.2).retrieve(query, 200)
    ranked = FusionRanker(engine.keyword, semantic, config, method="blend", trust=1.0, fetch=200).rank(
        query, [kw, dense]
    )

``SearchEngine.search`` runs these; ids are the index's slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

import numpy as np

from shelfwise.features.retrieval import Candidates, Ranked, union_of
from shelfwise.search.dense import DenseIndex
from shelfwise.search.fusion import adaptive_alpha, blend, feedback_terms, reciprocal_rank_fusion
from shelfwise.search.keyword import KeywordIndex
from shelfwise.search.query import ParsedQuery
from shelfwise.search.scoring import top_k

WORDS, MEANING, ANY = "matches your words", "close in meaning to your words", "matches the query"


class FusionConfig(Protocol):
    """What fusion reads of the engine's ``SearchConfig`` (documented there)."""

    @property
    def fusion(self) -> str: ...

    @property
    def alpha(self) -> float: ...

    @property
    def model_alpha(self) -> float: ...

    @property
    def long_shift(self) -> float: ...

    @property
    def low_agreement(self) -> float: ...

    @property
    def low_confidence(self) -> float: ...

    @property
    def backoff_alpha(self) -> float: ...

    @property
    def class_alpha(self) -> dict[str, float]: ...

    @property
    def rrf_k(self) -> int: ...

    @property
    def feedback(self) -> int: ...

    @property
    def feedback_weight(self) -> float: ...

    @property
    def term_feedback(self) -> int: ...

    @property
    def term_feedback_docs(self) -> int: ...

    @property
    def term_feedback_weight(self) -> float: ...

    @property
    def dense_floor(self) -> float: ...


@dataclass(frozen=True)
class SearchQuery:
    """One query as the stages see it: the parsed query, its analysed words, the slots the filters
    allow (a boolean per slot) and, for the semantic side, its unit vector."""

    parsed: ParsedQuery
    tokens: list[str]
    allowed: np.ndarray
    vector: np.ndarray | None = None


class KeywordRetriever:
    """BM25F over the keyword index: the best ``k`` allowed matches, and every allowed match."""

    name = "bm25"

    def __init__(self, index: KeywordIndex) -> None:
        self.index = index

    def retrieve(self, query: SearchQuery, k: int) -> Candidates:
        slots, scores = self.index.match(query.tokens)
        keep = query.allowed[slots]
        matched, scores = slots[keep], scores[keep]
        best = top_k(scores, k, ties=matched)
        return Candidates(self.name, matched[best], scores[best], matched=matched)


A = TypeVar("A")
B = TypeVar("B")
# independent rounds to remote shards, issued together: each request waits on one thread here
_ROUNDS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="shelfwise-search-rounds")


def together(first: Callable[[], A], second: Callable[[], B], *, overlap: bool) -> tuple[A, B]:
    """Two independent steps' results. With ``overlap`` (both wait on other processes: shards held
    by Ray actors), ``first`` runs in a worker thread while ``second`` runs here, so the request
    waits one round trip instead of two; otherwise one after the other, in this thread."""
    if not overlap:
        return first(), second()
    pending = _ROUNDS.submit(first)
    b = second()
    return pending.result(), b


class DenseRetriever:
    """Nearest neighbours of the query vector among the allowed slots, above ``min_similarity``."""

    name = "dense"

    def __init__(self, index: DenseIndex, *, min_similarity: float) -> None:
        self.index = index
        self.min_similarity = min_similarity

    def retrieve(self, query: SearchQuery, k: int) -> Candidates:
        if query.vector is None:
            raise ValueError("the semantic retriever needs the query's vector")
        slots, sims = self.index.search(query.vector, k, query.allowed)
        keep = sims >= self.min_similarity
        return Candidates(self.name, slots[keep], sims[keep])


class FusionRanker:
    """Keyword and semantic candidates, one ranking: ``blend`` mixes min-max normalised scores with
    a weight chosen per query (``adaptive`` fusion, scaled by ``trust`` in the semantic side on this
    catalogue) and, with pseudo-relevance feedback, searches once more from the best first hits;
    ``rrf`` is reciprocal rank fusion. Every ranked slot keeps both sides' scores."""

    def __init__(
        self,
        keyword: KeywordIndex,
        semantic: DenseRetriever,
        config: FusionConfig,
        *,
        method: Literal["blend", "rrf"] = "blend",
        trust: float = 1.0,
        fetch: int = 200,
        doc_tokens: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.keyword, self.semantic, self.config = keyword, semantic, config
        self.method, self.trust, self.fetch = method, trust, fetch
        self.doc_tokens = doc_tokens  # a slot's analysed words, for term feedback (None: off)

    def rank(self, query: SearchQuery, candidates: Sequence[Candidates]) -> Ranked:
        by_source = {c.source: c for c in candidates}
        kw_top = by_source["bm25"].ids if "bm25" in by_source else np.zeros(0, dtype=np.int64)
        d_slots = by_source["dense"].ids if "dense" in by_source else np.zeros(0, dtype=np.int64)
        union = union_of(candidates)
        if len(union) == 0:
            return Ranked(union, np.zeros(0, dtype=np.float32))
        cfg, vector = self.config, query.vector
        assert vector is not None, "fusion needs the query's vector"
        overlap = self.keyword.remote and self.semantic.index.remote
        kw, sims = self._both_scores(query.tokens, vector, union, overlap)
        if self.method == "rrf":
            fused = reciprocal_rank_fusion([kw_top.tolist(), d_slots.tolist()], k=cfg.rrf_k)
            scores = np.array([fused.get(int(s), 0.0) for s in union], dtype=np.float32)
        else:
            alpha = cfg.alpha
            if cfg.fusion == "adaptive":
                alpha, _ = adaptive_alpha(
                    kw,
                    sims,
                    tokens=query.tokens,
                    words=len(query.parsed.text.split()),
                    alpha=cfg.alpha,
                    model_alpha=cfg.model_alpha,
                    long_shift=cfg.long_shift,
                    low_agreement=cfg.low_agreement,
                    low_confidence=cfg.low_confidence,
                    backoff_alpha=cfg.backoff_alpha,
                    class_alpha=cfg.class_alpha,
                )
                alpha = 1.0 - (1.0 - alpha) * self.trust
            scores = blend(kw, sims, alpha=alpha, dense_floor=cfg.dense_floor)
            if cfg.feedback > 0 and cfg.feedback_weight > 0 and alpha < 1.0:
                # Pseudo-relevance feedback (Rocchio in embedding space): move the query vector towards
                # the centroid of the first pass's best items, search again, fuse again. Products of
                # one kind cluster, so the second pass finds more of the kind the query asked for.
                first = union[np.argsort(-scores, kind="stable")[: cfg.feedback]]
                moved = vector + cfg.feedback_weight * self.semantic.index.vectors[first].mean(axis=0)
                vector = (moved / max(float(np.linalg.norm(moved)), 1e-9)).astype(np.float32)
                again = self.semantic.retrieve(replace(query, vector=vector), self.fetch)
                union = np.unique(np.concatenate([kw_top, again.ids]))
                kw, sims = self._both_scores(query.tokens, vector, union, overlap)
                scores = blend(kw, sims, alpha=alpha, dense_floor=cfg.dense_floor)
            if cfg.term_feedback > 0 and cfg.term_feedback_weight > 0 and self.doc_tokens is not None:
                scores = self._term_feedback(query, union, scores, kw, sims, alpha)
        order = np.argsort(-scores, kind="stable")
        return Ranked(union[order], scores[order], {"bm25": kw[order], "dense": sims[order]})

    def _both_scores(
        self, tokens: list[str], vector: np.ndarray, union: np.ndarray, overlap: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keyword scores and cosines of ``union``: two rounds, issued together to remote shards."""
        return together(
            lambda: self.keyword.score_slots(tokens, union),
            lambda: self.semantic.index.similarities(vector, union),
            overlap=overlap,
        )

    def _term_feedback(
        self,
        query: SearchQuery,
        union: np.ndarray,
        scores: np.ndarray,
        kw: np.ndarray,
        sims: np.ndarray,
        alpha: float,
    ) -> np.ndarray:
        """Blend again with the keyword side widened by the first pass's best documents' words
        (``feedback_terms``): ``kw / max + term_feedback_weight * expansion / max``."""
        cfg = self.config
        assert self.doc_tokens is not None
        top = np.argsort(-scores, kind="stable")[: cfg.term_feedback_docs]
        terms = feedback_terms(
            [self.doc_tokens(int(s)) for s in union[top]],
            scores[top].tolist(),
            query=query.tokens,
            doc_freq=self.keyword.doc_freq,
            n_docs=max(self.keyword.n_main, 1),
            k=cfg.term_feedback,
        )
        if not terms:
            return scores
        extra = self.keyword.weighted_score_slots(terms, union)
        kmax, emax = float(kw.max()) if len(kw) else 0.0, float(extra.max())
        if emax <= 0:
            return scores
        widened = (kw / kmax if kmax > 0 else kw) + cfg.term_feedback_weight * extra / emax
        return blend(widened.astype(np.float32), sims, alpha=alpha, dense_floor=cfg.dense_floor)

    def explain(self, query: SearchQuery, ranked: Ranked) -> list[str]:
        return reasons(ranked.sources, len(ranked))


def reasons(sources: dict[str, np.ndarray], n: int) -> list[str]:
    """Why each hit is there, from the sources' scores: its words matched, or its meaning did."""
    kw = sources.get("bm25", np.zeros(n))
    dense = sources.get("dense", np.zeros(n))
    return [WORDS if k > 0 else MEANING if d > 0 else ANY for k, d in zip(kw, dense, strict=True)]
