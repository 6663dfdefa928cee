"""BM25 keyword retrieval with per-field weights and incremental updates.

The main segment is one ``bm25s`` index per field (numba backend when numba is installed); an
item's score is the weighted sum of its field scores. Items added after the build go into a small
delta segment scored at query time with the main segment's statistics, so they are searchable at
once; removed items are masked by the caller. ``compact()`` (done by the engine when the delta
grows past a fraction of the main segment, and before saving) folds the delta into a new main segment.

Scores are addressed by *slot*: the engine's dense integer id of a stored item version.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from shelfwise.core.errors import ConfigError
from shelfwise.features.text import Analyzer, AnalyzerConfig
from shelfwise.search.documents import TEXT_FIELDS

DEFAULT_WEIGHTS: Final[dict[str, float]] = {
    "title": 3.0,
    "brand": 1.0,  # Flipkart-style titles repeat the brand: a higher weight counts it twice
    "category": 1.5,
    "description": 0.4,
    "attributes": 0.8,
}


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("keyword search needs bm25s", hint="pip install bm25s") from exc
    return bm25s


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


class _FieldSegment:
    """One field's main-segment bm25s index plus the statistics the delta segment borrows."""

    def __init__(self, retriever: Any, n_docs: int, avgdl: float) -> None:
        self.retriever = retriever
        self.n_docs = n_docs
        self.avgdl = avgdl
        indptr = np.asarray(retriever.scores["indptr"])
        self.df = np.diff(indptr)  # documents holding each token id
        self.vocab: dict[str, int] = retriever.vocab_dict

    def scores(self, tokens: Sequence[str]) -> np.ndarray | None:
        ids = [self.vocab[t] for t in tokens if t in self.vocab]
        if not ids:
            return None
        return np.asarray(self.retriever.get_scores_from_ids(ids), dtype=np.float32)

    def doc_freq(self, token: str) -> int:
        tid = self.vocab.get(token)
        return 0 if tid is None else int(self.df[tid])


class KeywordIndex:
    """Field-weighted BM25 over slots ``0..n-1`` (main) plus later slots (delta)."""

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        analyzer: Analyzer | None = None,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        unknown = set(self.weights) - set(TEXT_FIELDS)
        if unknown:
            raise ConfigError(f"unknown search fields {sorted(unknown)}", hint=f"fields: {TEXT_FIELDS}")
        self.analyzer = analyzer or Analyzer()
        self.k1, self.b = k1, b
        self.backend = "numba" if numba_available() else "numpy"
        self.n_main = 0
        self._fields: dict[str, _FieldSegment] = {}
        # delta: field -> token -> [(slot, tf, doc_len)]
        self._delta: dict[str, dict[str, list[tuple[int, int, int]]]] = {f: {} for f in self.weights}
        self._delta_len: dict[str, int] = {f: 0 for f in self.weights}
        self.delta_slots: list[int] = []

    # --- building -------------------------------------------------------------------------------

    def build(self, docs: Sequence[Mapping[str, str]]) -> None:
        """Index ``docs`` as slots ``0..len(docs)-1``; the delta segment is emptied."""
        bm25s = _bm25s()
        self.n_main = len(docs)
        self._fields = {}
        for field in self.weights:
            tokenized = [self.analyzer.tokens(d.get(field, "")) for d in docs]
            vocab: dict[str, int] = {}
            ids = [[vocab.setdefault(t, len(vocab)) for t in toks] for toks in tokenized]
            lengths = [len(t) for t in tokenized]
            if not sum(lengths):
                continue  # a field no document has (e.g. no descriptions): nothing to score
            retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene", backend=self.backend)
            retriever.index((ids, vocab), show_progress=False)
            retriever.vocab_dict = vocab
            avgdl = (sum(lengths) / len(lengths)) if lengths else 1.0
            self._fields[field] = _FieldSegment(retriever, len(docs), max(avgdl, 1e-9))
        self._delta = {f: {} for f in self.weights}
        self._delta_len = {f: 0 for f in self.weights}
        self.delta_slots = []

    def add(self, slot: int, doc: Mapping[str, str]) -> None:
        """Make one document searchable now, in the delta segment."""
        for field in self.weights:
            tokens = self.analyzer.tokens(doc.get(field, ""))
            counts = Counter(tokens)
            postings = self._delta[field]
            for token, tf in counts.items():
                postings.setdefault(token, []).append((slot, tf, len(tokens)))
            self._delta_len[field] += len(tokens)
        self.delta_slots.append(slot)

    # --- scoring --------------------------------------------------------------------------------

    def query_tokens(self, text: str) -> list[str]:
        return self.analyzer.tokens(text)

    def scores(self, tokens: Sequence[str], n_slots: int) -> np.ndarray:
        """Score of every slot for the query terms (0 for no match)."""
        out = np.zeros(n_slots, dtype=np.float32)
        if not tokens:
            return out
        main = out[: self.n_main]
        for field, weight in self.weights.items():
            seg = self._fields.get(field)
            if seg is None or weight == 0:
                continue
            s = seg.scores(tokens)
            if s is not None:
                main += weight * s
        if self.delta_slots:
            self._delta_scores(tokens, out)
        return out

    def field_scores(self, tokens: Sequence[str], slots: np.ndarray) -> dict[str, np.ndarray]:
        """Unweighted BM25 of each field for the given slots (features for learning to rank)."""
        n = int(slots.max()) + 1 if len(slots) else 0
        out: dict[str, np.ndarray] = {}
        for field in self.weights:
            full = np.zeros(max(n, self.n_main), dtype=np.float32)
            seg = self._fields.get(field)
            s = seg.scores(tokens) if seg is not None and tokens else None
            if s is not None:
                full[: self.n_main] = s
            if self.delta_slots and tokens:
                self._delta_scores(tokens, full, only=field)
            out[field] = full[slots] if len(slots) else np.zeros(0, dtype=np.float32)
        return out

    def _delta_scores(self, tokens: Sequence[str], out: np.ndarray, *, only: str | None = None) -> None:
        k1, b = self.k1, self.b
        n_delta = len(self.delta_slots)
        for field, w in self.weights.items():
            if only is not None and field != only:
                continue
            weight = 1.0 if only is not None else w
            postings = self._delta[field]
            seg = self._fields.get(field)
            n = (seg.n_docs if seg else 0) + n_delta
            avgdl = seg.avgdl if seg else max(self._delta_len[field] / n_delta, 1e-9)
            for token in tokens:
                hits = postings.get(token)
                if not hits:
                    continue
                df = (seg.doc_freq(token) if seg else 0) + len(hits)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                for slot, tf, dl in hits:
                    if slot < len(out):
                        # bm25s's lucene variant has no (k1 + 1) factor; match it exactly
                        out[slot] += weight * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    # --- persistence ----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """``.npy`` + JSON (bm25s's own layout, one folder per field); call after compaction."""
        if self.delta_slots:
            raise ConfigError("save a compacted keyword index", hint="call SearchEngine.compact() first")
        directory.mkdir(parents=True, exist_ok=True)
        for field, seg in self._fields.items():
            seg.retriever.save(str(directory / field), show_progress=False)
        meta = {
            "weights": self.weights,
            "k1": self.k1,
            "b": self.b,
            "n_main": self.n_main,
            "avgdl": {f: s.avgdl for f, s in self._fields.items()},
            "analyzer": self.analyzer.config.model_dump(),
        }
        (directory / "keyword.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        bm25s = _bm25s()
        meta = json.loads((directory / "keyword.json").read_text())
        index = cls(
            weights=meta["weights"],
            analyzer=Analyzer(AnalyzerConfig(**meta["analyzer"])),
            k1=meta["k1"],
            b=meta["b"],
        )
        index.n_main = meta["n_main"]
        for field in meta["avgdl"]:
            retriever = bm25s.BM25.load(str(directory / field), allow_pickle=False, show_progress=False)
            if index.backend == "numba":
                retriever.backend = "numba"
                retriever.compile(activate_numba=True, warmup=False)
            index._fields[field] = _FieldSegment(retriever, index.n_main, meta["avgdl"][field])
        return index
