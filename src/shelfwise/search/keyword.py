"""BM25 keyword retrieval with per-field weights and incremental updates.

The main segment is one ``bm25s`` index per field (numba backend when numba is installed). At
build time the fields' precomputed BM25 weights are merged into one term-major matrix, each
field's weights multiplied by its field weight, so a query is scored by adding a few rows of one
matrix (``shelfwise.search.scoring``) instead of one pass per field; the per-field indexes stay for
field-level features (learning to rank) and for the statistics the delta segment borrows.

Items added after the build go into a small delta segment scored at query time with the main
segment's statistics, so they are searchable at once; removed items are masked by the caller.
``compact()`` (done by the engine when the delta grows past a fraction of the main segment, and
before saving) folds the delta into a new main segment.

Scores are addressed by *slot*: the engine's dense integer id of a stored item version.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from shelfwise.core.errors import ConfigError
from shelfwise.features.text import Analyzer, AnalyzerConfig
from shelfwise.search.analysis import make_analyzer
from shelfwise.search.documents import TEXT_FIELDS
from shelfwise.search.scoring import TermMatrix, top_k

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
        sc = retriever.scores
        self.matrix = TermMatrix(self.vocab, sc["indptr"], sc["indices"], sc["data"], n_docs)

    def doc_freq(self, token: str) -> int:
        tid = self.vocab.get(token)
        return 0 if tid is None else int(self.df[tid])


class KeywordIndex:
    """Field-weighted BM25 over slots ``0..n-1`` (main) plus later slots (delta)."""

    read_only = False  # True for a sharded index's keyword side (``shelfwise.search.shards``)
    remote = False  # True when its shards answer from other processes (Ray actors): calls wait, not compute

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        analyzer: Analyzer | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        scoring: Literal["fields", "bm25f"] = "fields",
    ) -> None:
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        if scoring not in ("fields", "bm25f"):
            raise ConfigError(f"unknown keyword scoring {scoring!r}", hint="fields or bm25f")
        self.scoring = scoring
        unknown = set(self.weights) - set(TEXT_FIELDS)
        if unknown:
            raise ConfigError(f"unknown search fields {sorted(unknown)}", hint=f"fields: {TEXT_FIELDS}")
        self.analyzer = analyzer or Analyzer()
        self.k1, self.b = k1, b
        self.backend = "numba" if numba_available() else "numpy"
        self.n_main = 0
        self._fields: dict[str, _FieldSegment] = {}
        self._merged: TermMatrix | None = None
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
        field_ids: dict[str, tuple[dict[str, int], list[list[int]]]] = {}
        for field in self.weights:
            tokenized = [self.analyzer.tokens(d.get(field, "")) for d in docs]
            vocab: dict[str, int] = {}
            ids = [[vocab.setdefault(t, len(vocab)) for t in toks] for toks in tokenized]
            lengths = [len(t) for t in tokenized]
            if not sum(lengths):
                continue  # a field no document has (e.g. no descriptions): nothing to score
            field_ids[field] = (vocab, ids)
            retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene", backend=self.backend)
            retriever.index((ids, vocab), show_progress=False)
            retriever.vocab_dict = vocab
            avgdl = (sum(lengths) / len(lengths)) if lengths else 1.0
            self._fields[field] = _FieldSegment(retriever, len(docs), max(avgdl, 1e-9))
        if self.scoring == "bm25f":
            self._merged = self._bm25f_matrix(field_ids)
        else:
            self._merge()
        self._delta = {f: {} for f in self.weights}
        self._delta_len = {f: 0 for f in self.weights}
        self.delta_slots = []

    def _merge(self) -> None:
        parts = []
        for field, seg in self._fields.items():
            sc = seg.retriever.scores
            parts.append((self.weights[field], seg.vocab, sc["indptr"], sc["indices"], sc["data"]))
        self._merged = TermMatrix.merge(parts, self.n_main)

    def _bm25f_matrix(self, field_ids: Mapping[str, tuple[dict[str, int], list[list[int]]]]) -> TermMatrix:
        """BM25F over this index's own documents (``bm25f_matrix`` with local statistics)."""
        avgdl = {f: self._fields[f].avgdl for f in field_ids}
        return bm25f_matrix(field_ids, self.weights, avgdl, k1=self.k1, b=self.b, n=self.n_main)

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

    def match(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every slot (main and delta) with a positive score, and its score, in no particular order."""
        if not tokens or (self._merged is None and not self.delta_slots):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._merged is not None:
            slots, scores = self._merged.match(self._merged.term_ids(tokens))
        else:
            slots, scores = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        if self.delta_slots:
            extra = self._delta_match(tokens)
            if extra:
                slots = np.concatenate([slots, np.fromiter(extra, dtype=np.int32, count=len(extra))])
                scores = np.concatenate([scores, np.fromiter(extra.values(), np.float32, len(extra))])
        return slots.astype(np.int64), scores

    def top(self, tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best slots and their scores, best first."""
        slots, scores = self.match(tokens)
        best = top_k(scores, k, ties=slots)
        return slots[best], scores[best]

    def score_slots(self, tokens: Sequence[str], slots: np.ndarray) -> np.ndarray:
        """The score of each given slot (0 where no query term occurs in it)."""
        slots = np.asarray(slots, dtype=np.int64)
        out = np.zeros(len(slots), dtype=np.float32)
        if not tokens or len(slots) == 0:
            return out
        main = slots < self.n_main
        if self._merged is not None and main.any():
            out[main] = self._merged.score_slots(self._merged.term_ids(tokens), slots[main])
        if self.delta_slots and not main.all():
            extra = self._delta_match(tokens)
            for i in np.flatnonzero(~main):
                out[i] = extra.get(int(slots[i]), 0.0)
        return out

    def doc_freq(self, token: str) -> int:
        """How many main-segment documents hold ``token`` in any weighted field (0: unknown)."""
        m = self._merged
        if m is None or token not in m.vocab:
            return 0
        row = m.vocab[token]
        return int(m.indptr[row + 1] - m.indptr[row])

    def weighted_score_slots(self, weights: Mapping[str, float], slots: np.ndarray) -> np.ndarray:
        """``sum_t weight_t * score(t)`` over the given slots: a query whose words carry weights
        (the expansion terms of pseudo-relevance feedback)."""
        out = np.zeros(len(slots), dtype=np.float32)
        for token, weight in weights.items():
            out += np.float32(weight) * self.score_slots([token], slots)
        return out

    def scores(self, tokens: Sequence[str], n_slots: int) -> np.ndarray:
        """Score of every slot for the query terms (0 for no match)."""
        out = np.zeros(n_slots, dtype=np.float32)
        slots, scores = self.match(tokens)
        keep = slots < n_slots
        out[slots[keep]] = scores[keep]
        return out

    def field_scores(self, tokens: Sequence[str], slots: np.ndarray) -> dict[str, np.ndarray]:
        """Unweighted BM25 of each field for the given slots (features for learning to rank)."""
        slots = np.asarray(slots, dtype=np.int64)
        main = slots < self.n_main
        out: dict[str, np.ndarray] = {}
        for field in self.weights:
            values = np.zeros(len(slots), dtype=np.float32)
            seg = self._fields.get(field)
            if seg is not None and tokens and main.any():
                values[main] = seg.matrix.score_slots(seg.matrix.term_ids(tokens), slots[main])
            if self.delta_slots and tokens and not main.all():
                extra = self._delta_match(tokens, only=field)
                for i in np.flatnonzero(~main):
                    values[i] = extra.get(int(slots[i]), 0.0)
            out[field] = values
        return out

    def _delta_match(self, tokens: Sequence[str], *, only: str | None = None) -> dict[int, float]:
        """Scores of the delta segment's slots (weighted sum over fields, or one field unweighted)."""
        if only is None and self.scoring == "bm25f":
            return self._delta_bm25f(tokens)
        k1, b = self.k1, self.b
        n_delta = len(self.delta_slots)
        out: dict[int, float] = {}
        for field, w in self.weights.items():
            if only is not None and field != only:
                continue
            weight = 1.0 if only is not None else w
            if weight == 0:
                continue
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
                    # bm25s's lucene variant has no (k1 + 1) factor; match it exactly
                    value = weight * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))
                    out[slot] = out.get(slot, 0.0) + value
        return out

    def _delta_bm25f(self, tokens: Sequence[str]) -> dict[int, float]:
        """BM25F of the delta segment's slots with the main segment's statistics."""
        n = self.n_main + len(self.delta_slots)
        merged = self._merged
        out: dict[int, float] = {}
        for token in tokens:  # a repeated query word counts again, as in the main segment
            tf: dict[int, float] = {}
            for field, w in self.weights.items():
                hits = self._delta[field].get(token)
                if not hits or w <= 0:
                    continue
                seg = self._fields.get(field)
                avgdl = seg.avgdl if seg else max(self._delta_len[field] / len(self.delta_slots), 1e-9)
                for slot, count, dl in hits:
                    tf[slot] = tf.get(slot, 0.0) + w * count / (1 - self.b + self.b * dl / avgdl)
            if not tf:
                continue
            df = len(tf)
            if merged is not None and token in merged.vocab:
                row = merged.vocab[token]
                df += int(merged.indptr[row + 1] - merged.indptr[row])
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for slot, value in tf.items():
                out[slot] = out.get(slot, 0.0) + idf * value / (self.k1 + value)
        return out

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
            "scoring": self.scoring,
        }
        if self.scoring == "bm25f" and self._merged is not None:
            # BM25F is not a sum of the per-field indexes: its matrix is saved as it is
            m = self._merged
            for name in ("indptr", "indices", "data"):
                np.save(directory / f"bm25f_{name}.npy", getattr(m, name), allow_pickle=False)
            terms = sorted(m.vocab, key=m.vocab.__getitem__)
            (directory / "bm25f_terms.json").write_text(json.dumps(terms, ensure_ascii=False))
        (directory / "keyword.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        bm25s = _bm25s()
        meta = json.loads((directory / "keyword.json").read_text())
        index = cls(
            weights=meta["weights"],
            analyzer=make_analyzer(AnalyzerConfig(**meta["analyzer"])),
            k1=meta["k1"],
            b=meta["b"],
            scoring=meta.get("scoring", "fields"),
        )
        index.n_main = meta["n_main"]
        for field in meta["avgdl"]:
            retriever = bm25s.BM25.load(str(directory / field), allow_pickle=False, show_progress=False)
            if index.backend == "numba":
                retriever.backend = "numba"
                retriever.compile(activate_numba=True, warmup=False)
            index._fields[field] = _FieldSegment(retriever, index.n_main, meta["avgdl"][field])
        if index.scoring == "bm25f":
            terms = json.loads((directory / "bm25f_terms.json").read_text())
            arrays = [
                np.load(directory / f"bm25f_{n}.npy", allow_pickle=False)
                for n in ("indptr", "indices", "data")
            ]
            index._merged = TermMatrix({t: i for i, t in enumerate(terms)}, *arrays, index.n_main)
        else:
            index._merge()
        return index


def bm25f_matrix(
    field_ids: Mapping[str, tuple[dict[str, int], list[list[int]]]],
    weights: Mapping[str, float],
    avgdl: Mapping[str, float],
    *,
    k1: float,
    b: float,
    n: int,
    df: Mapping[str, int] | None = None,
    n_docs: int | None = None,
) -> TermMatrix:
    """BM25F (Robertson, Zaragoza & Taylor 2004): per term and document, the fields' term
    frequencies, each length-normalised within its field and multiplied by the field weight,
    are summed *before* one saturation, ``idf * tf / (k1 + tf)``, with one document frequency
    over all fields. Summing per-field BM25 scores instead (``scoring="fields"``) pays a term
    once per field it occurs in, so a word repeated in title, category and attributes
    outranks a document that matches more of the query's words.

    ``field_ids``: per field, (vocabulary, each document's token ids). The statistics (``avgdl``
    per field, ``n`` documents, ``df`` per term) are the documents' own by default; a shard of a
    partitioned index passes the whole catalogue's (``shelfwise.search.shards``), so its weights
    equal the unpartitioned index's to the bit; ``n_docs`` is then its own document count."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    for field_vocab, _ in field_ids.values():
        for term in field_vocab:
            vocab.setdefault(term, len(vocab))
    rows_n = n if n_docs is None else n_docs
    total = sp.csr_matrix((rows_n, max(len(vocab), 1)), dtype=np.float64)
    for field, (field_vocab, ids) in field_ids.items():
        weight = weights[field]
        if weight <= 0:
            continue
        to_global = np.empty(len(field_vocab), dtype=np.int64)
        for term, tid in field_vocab.items():
            to_global[tid] = vocab[term]
        lengths = np.fromiter((len(d) for d in ids), dtype=np.float64, count=rows_n)
        rows = np.repeat(np.arange(rows_n), lengths.astype(np.int64))
        cols = to_global[np.fromiter((t for d in ids for t in d), dtype=np.int64, count=int(lengths.sum()))]
        tf = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=total.shape)
        tf.sum_duplicates()
        norm = 1.0 - b + b * lengths / avgdl[field]
        total = total + sp.diags(weight / norm) @ tf
    term_major = total.T.tocsr()
    term_major.sort_indices()
    if df is None:
        dfs = np.diff(term_major.indptr).astype(np.float64)
    else:
        terms = sorted(vocab, key=vocab.__getitem__)
        dfs = np.fromiter((df.get(t, 0) for t in terms), dtype=np.float64, count=len(terms))
        if len(dfs) < term_major.shape[0]:  # the placeholder column of an empty vocabulary
            dfs = np.concatenate([dfs, np.zeros(term_major.shape[0] - len(dfs))])
    idf = np.log(1.0 + (n - dfs + 0.5) / (dfs + 0.5))
    tf = term_major.data
    term_major.data = np.repeat(idf, np.diff(term_major.indptr)) * tf / (k1 + tf)
    return TermMatrix(vocab, term_major.indptr, term_major.indices, term_major.data, rows_n)
