"""The two-stage contract search and recommendation share (DESIGN.md): retrievers propose
candidates that carry their source; a ranker orders the union and explains every result.

    kw = keyword.retrieve(query, 200)          # Candidates(source="bm25", ids=..., scores=...)
    dense = semantic.retrieve(query, 200)      # Candidates(source="dense", ...)
    ranked = fusion.rank(query, [kw, dense])   # Ranked: ids best first, each source's score kept
    ranked.reasons = fusion.explain(query, ranked)

Ids are the engine's dense integer ids (a search index's slots, a recommender's item codes);
external ids never enter here. What a query is depends on the engine (parsed words, a vector and
a filter mask for search; a shopper's history for recommendations), so both protocols are generic
in it. ``tests/contract/test_retrieval_contract.py`` runs one suite over every implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

Q_contra = TypeVar("Q_contra", contravariant=True)


@dataclass(frozen=True)
class Candidates:
    """What one retriever proposes: ``ids`` best first with their ``scores``, and who proposed
    them (``source``). ``matched``: every id the retriever matched before it kept the best (a
    keyword index knows them all, and facets count them); None when it cannot say."""

    source: str
    ids: np.ndarray
    scores: np.ndarray
    matched: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or self.ids.shape != self.scores.shape:
            raise ValueError(f"{self.source}: ids and scores must be 1-D and aligned")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Ranked:
    """A ranker's answer: ``ids`` best first with their final ``scores``; ``sources`` holds each
    retriever's own score for every ranked id (0 where it did not propose it), so every result can
    say where it came from; ``reasons`` is filled by ``Ranker.explain``."""

    ids: np.ndarray
    scores: np.ndarray
    sources: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class Retriever(Protocol[Q_contra]):
    """Stage 1: cheap, wide. ``name`` is the ``source`` of every candidate it returns."""

    @property
    def name(self) -> str: ...

    def retrieve(self, query: Q_contra, k: int) -> Candidates:
        """At most ``k`` distinct ids, best first, scores not increasing."""
        ...


class Ranker(Protocol[Q_contra]):
    """Stage 2: orders the union of the candidates, and says why each result is there."""

    def rank(self, query: Q_contra, candidates: Sequence[Candidates]) -> Ranked:
        """Ids drawn from ``candidates`` only, each once, best first."""
        ...

    def explain(self, query: Q_contra, ranked: Ranked) -> list[str]:
        """One reason a shopper can read per ranked id, in the same order."""
        ...


def union_of(candidates: Sequence[Candidates]) -> np.ndarray:
    """Every id any retriever proposed, once, ascending."""
    if not candidates:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([c.ids.astype(np.int64) for c in candidates]))
