"""Content-based recommendation: items as vectors of their title, description, category and brand,
and a shopper as the mean of the vectors of what they bought. The one family here that can
recommend a **cold item** (in the catalogue, no events yet): it needs only the item's text.

Two kinds of vectors:

- ``content-tfidf``: TF-IDF over the same analyser search uses (``features.text``: English stems and
  Chinese words), plus one token per category level and brand; sublinear tf, smoothed idf, rows
  L2-normalised, kept sparse;
- ``content-embed``: all-MiniLM-L6-v2 sentence embeddings of the same text (``features.embeddings``;
  PyTorch loads only when such a model is fitted).

A shopper's score for item j is ``mean_i cos(v_i, v_j)`` over their history items i (the mean
vector's dot product: linear, so a whole batch of users is two sparse products). Reasons name the
history item most like the recommended one: "similar to X".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import NO_CODE, Dataset, ItemAttributes
from shelfwise.features.text import Analyzer
from shelfwise.recommend.base import ModelConfig, Recommender, csr_rows
from shelfwise.recommend.memory import MatrixShape

CATEGORY_SEPARATOR = " > "
DENSE_PROFILE_ROWS = 64  # up to this many shoppers, profiles are dense vectors (vocabulary-sized)


def item_documents(attrs: ItemAttributes) -> list[str]:
    """One plain text per item: title/description, then category path and brand."""
    n = len(attrs.available)
    texts = attrs.text.tolist() if attrs.text is not None else [""] * n
    out = []
    for i in range(n):
        parts = [texts[i]]
        if attrs.category[i] != NO_CODE:
            parts.append(str(attrs.category_names[attrs.category[i]]))
        if attrs.brand[i] != NO_CODE:
            parts.append(str(attrs.brand_names[attrs.brand[i]]))
        out.append(". ".join(p for p in parts if p))
    return out


def _attribute_tokens(attrs: ItemAttributes, i: int) -> list[str]:
    """Exact-match tokens for the category path (every level) and the brand."""
    out = []
    if attrs.category[i] != NO_CODE:
        path = str(attrs.category_names[attrs.category[i]]).split(CATEGORY_SEPARATOR)
        out += ["cat:" + CATEGORY_SEPARATOR.join(path[: d + 1]).lower() for d in range(len(path))]
    if attrs.brand[i] != NO_CODE:
        out.append("brand:" + str(attrs.brand_names[attrs.brand[i]]).lower())
    return out


def tfidf_matrix(
    docs: Sequence[Sequence[str]], *, min_df: int = 1, max_df: float = 1.0, sublinear_tf: bool = True
) -> sp.csr_matrix:
    """Documents (token lists) → L2-normalised TF-IDF rows (float32 CSR), idf = ln((1+n)/(1+df)) + 1.

    >>> m = tfidf_matrix([["red", "mug"], ["red", "lantern"], ["mug"]])
    >>> m.shape, round(float((m[0] @ m[2].T).toarray()[0, 0]), 3)
    ((3, 3), 0.707)
    """
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, tokens in enumerate(docs):
        for t in tokens:
            rows.append(r)
            cols.append(vocab.setdefault(t, len(vocab)))
    n = len(docs)
    counts = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (np.array(rows, np.int64), np.array(cols, np.int64))),
        shape=(n, len(vocab)),
    )
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=len(vocab))
    keep = (df >= min_df) & (df <= max_df * n)
    counts = sp.csr_matrix(counts[:, np.flatnonzero(keep)])
    df = df[keep]
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    if sublinear_tf:
        counts.data = 1.0 + np.log(counts.data)
    m = sp.csr_matrix(counts @ sp.diags(idf))
    return _normalise_rows(m)


def _normalise_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    out = sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)
    out.eliminate_zeros()
    return out


def _dense(out: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


class ContentConfig(ModelConfig):
    min_df: int = Field(default=2, ge=1, description="tfidf: terms in fewer items are dropped")
    max_df: float = Field(default=0.5, gt=0, le=1, description="tfidf: terms in a larger share are dropped")
    popularity_tiebreak: float = Field(
        default=1e-4, ge=0, description="weight of normalised popularity added to order equal similarities"
    )


class ContentRecommender(Recommender):
    """``content-tfidf``; ``ContentEmbedRecommender`` (``content-embed``) differs only in its vectors."""

    name = "content-tfidf"
    Config = ContentConfig
    config: ContentConfig
    vectors_kind: ClassVar[Literal["tfidf", "embed"]] = "tfidf"

    # --- vectors -----------------------------------------------------------------------------
    def _fit_bytes(self, shape: MatrixShape) -> int:
        if self.vectors_kind == "embed":  # 384 float32 per item, the encoder and its batches
            return shape.n_items * 384 * 4 * 2 + 600_000_000
        return shape.n_items * 4_000  # tokens, then a TF-IDF row of a few hundred terms per item

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        attrs = self.state.attributes
        if self.vectors_kind == "tfidf":
            analyzer = Analyzer()
            texts = attrs.text.tolist() if attrs.text is not None else [""] * self.n_items
            docs = [analyzer.tokens(t) + _attribute_tokens(attrs, i) for i, t in enumerate(texts)]
            self.vectors: sp.csr_matrix | np.ndarray = tfidf_matrix(
                docs, min_df=self.config.min_df, max_df=self.config.max_df
            )
        else:
            from shelfwise.features.embeddings import embed_texts

            self.vectors = embed_texts(item_documents(attrs))
        top = float(self.state.popularity.max(initial=0.0))
        self.pop = (self.state.popularity / top if top > 0 else self.state.popularity).astype(np.float32)

    def _sims(self, rows: np.ndarray | sp.csr_matrix, items: np.ndarray | None = None) -> np.ndarray:
        """Cosine of the given row vectors with every item (or with ``items``)."""
        v = self.vectors if items is None else self.vectors[items]
        return _dense(rows @ v.T)

    def item_vectors(self) -> sp.csr_matrix | np.ndarray:
        """Unit vectors, one row per item (zero rows for items with no text or attributes)."""
        return self.vectors

    # --- scoring -----------------------------------------------------------------------------
    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        h = sp.csr_matrix(histories, dtype=np.float32)
        h.data[:] = 1
        counts = np.diff(h.indptr).astype(np.float32)
        counts[counts == 0] = 1
        profile = h @ self.vectors  # the summed history vector; divided by the count below
        if sp.issparse(profile) and h.shape[0] > DENSE_PROFILE_ROWS:
            scores = self._sims(sp.csr_matrix(profile))
        else:  # a few rows: a dense profile makes scoring one sparse matrix-vector product
            dense = profile.toarray() if sp.issparse(profile) else np.asarray(profile)
            scores = np.asarray(self.vectors @ dense.T, dtype=np.float32).T
        scores /= counts[:, None]
        return scores + self.config.popularity_tiebreak * self.pop[None, :]

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self._sims(self.vectors[items])

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        if sp.issparse(self.vectors):  # the same rows as fancy indexing, without its checks
            v = self.vectors
            block = _dense(csr_rows(v, np.asarray(history)) @ csr_rows(v, np.asarray(items)).T)
        else:
            block = self._sims(self.vectors[history], items)  # history × items
        best = block.argmax(axis=0)
        return [
            f"similar to {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    # --- artifacts ---------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        v = self.vectors
        if sp.issparse(v):
            v = sp.csr_matrix(v)
            return {
                "vec_data": v.data,
                "vec_indices": v.indices,
                "vec_indptr": v.indptr,
                "vec_shape": np.array(v.shape, np.int64),
                "pop": self.pop,
            }
        return {"vectors": np.asarray(v, np.float32), "pop": self.pop}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        if "vectors" in a:
            self.vectors = a["vectors"]
        else:
            self.vectors = sp.csr_matrix(
                (a["vec_data"], a["vec_indices"], a["vec_indptr"]),
                shape=tuple(int(x) for x in a["vec_shape"]),
            )
        self.pop = a["pop"]


class ContentEmbedRecommender(ContentRecommender):
    """Sentence embeddings (all-MiniLM-L6-v2) instead of TF-IDF; PyTorch loads when it is fitted."""

    name = "content-embed"
    vectors_kind = "embed"
