"""Neighbourhood models: item-KNN and user-KNN, cosine similarity with shrinkage.

``sim(a, b) = co(a, b) / (sqrt(n_a · n_b) + shrinkage)``: shrinkage damps similarities that rest
on a handful of shared shoppers. Item-KNN keeps each item's ``neighbours`` best neighbours and
scores a shopper by summing the neighbours of their history; user-KNN finds the ``neighbours``
shoppers most like this one (a new shopper's session works the same way: fold-in for free).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, Recommender, csr_rows
from shelfwise.recommend.memory import COO_ENTRY, CSR_ENTRY, MatrixShape


def keep_top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row of a CSR matrix."""
    m = sp.csr_matrix(m)
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= n:
        return m
    data, indices, indptr = [], [], [0]
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        d, i = m.data[lo:hi], m.indices[lo:hi]
        if hi - lo > n:
            pick = np.argpartition(-d, n - 1)[:n]
            d, i = d[pick], i[pick]
        data.append(d)
        indices.append(i)
        indptr.append(indptr[-1] + len(d))
    out = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=m.shape)
    out.sort_indices()
    return out


def cosine_shrunk(
    co: sp.csr_matrix, norms_a: np.ndarray, norms_b: np.ndarray, shrinkage: float
) -> sp.csr_matrix:
    co = sp.coo_matrix(co)
    denom = np.sqrt(norms_a[co.row] * norms_b[co.col]) + shrinkage
    data = np.divide(co.data, denom, out=np.zeros_like(co.data, dtype=np.float32), where=denom > 0)
    return sp.csr_matrix((data.astype(np.float32), (co.row, co.col)), shape=co.shape)


# popularity's weight in a score: breaks ties only (a shrunk cosine vote is ~1e-3 and up)
TIE_BREAK = 1e-6


class ItemKNNConfig(ModelConfig):
    # 10 chosen on a validation split inside Online Retail's training period (NDCG@10 0.0709 at 100,
    # 0.0768 at 50, 0.0900 at 20, 0.0961 at 10, 0.0926 at 5); checked out of sample on REES46 and
    # Amazon Beauty (benchmarks/results/trust.json notes)
    neighbours: int = Field(default=10, ge=1, description="neighbours of each item a shopper is scored by")
    similar_neighbours: int = Field(
        default=100, ge=1, description="neighbours kept per item for its similar-items list"
    )
    shrinkage: float = Field(default=10.0, ge=0)


class ItemKNNRecommender(Recommender):
    name = "itemknn"
    Config = ItemKNNConfig
    config: ItemKNNConfig

    def _fit_bytes(self, shape: MatrixShape) -> int:
        # XᵀX (CSR), its COO copy and the shrunk cosine, then the top-k rows
        kept = self.config.neighbours + self.config.similar_neighbours
        return shape.co_occurrences() * (12 + COO_ENTRY + 12) + 12 * shape.n_items * kept

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        x = sp.csr_matrix(matrix, dtype=np.float32)
        co = sp.csr_matrix(x.T @ x)
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.asarray(x.sum(axis=0)).ravel()
        sim = cosine_shrunk(co, norms, norms, self.config.shrinkage)
        wide = keep_top_per_row(sim, max(self.config.neighbours, self.config.similar_neighbours))
        self.similar = wide  # row i: the items most like i (similar items)
        # ties (above all the many items a short history gives no vote) are broken by popularity in
        # what the model learns from (so events a defence dropped do not count), far below any vote
        pop = np.asarray(x.sum(axis=0)).ravel()
        top = float(pop.max(initial=0.0))
        self.tie_break = (TIE_BREAK * pop / top if top > 0 else np.zeros_like(pop)).astype(np.float32)
        # row i: the few neighbours a shopper's history item votes for: a long tail of weak
        # neighbours adds noise to a shopper's scores
        self.sim = (
            wide
            if self.config.neighbours >= self.config.similar_neighbours
            else keep_top_per_row(wide, self.config.neighbours)
        )
        self.sim_by_target()  # built with the model, not by the first request

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        scores = np.asarray((histories @ self.sim).toarray(), dtype=np.float32)
        scores += self.tie_break[None, :]
        return scores

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similar[items].toarray(), dtype=np.float32)

    def sim_by_target(self) -> sp.csr_matrix:
        """``sim`` transposed (row j: the items that have j among their neighbours, with the
        similarity), built once per ``sim`` (at fit and load): the reasons read the few rows of the
        items shown, not the rows of a whole history (1,791 items × 100 neighbours for the longest
        Online Retail shopper)."""
        cached = self.__dict__.get("_sim_by_target")
        if cached is None or cached[0] is not self.sim:
            cached = (self.sim, sp.csr_matrix(self.sim.T))
            self._sim_by_target = cached
        return cached[1]

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        # per item: the history item with its largest positive similarity to it, the earliest in
        # ``history`` on ties; read off the items' columns of ``sim`` (rows of its transpose)
        history = np.asarray(history, np.int64)
        items = np.asarray(items, np.int64)
        best_from = np.full(len(items), -1, np.int64)
        uniq, last_rev = np.unique(items[::-1], return_index=True)
        cols = csr_rows(self.sim_by_target(), uniq)
        group = np.repeat(np.arange(len(uniq)), np.diff(cols.indptr))
        first_at = np.full(self.sim.shape[0], -1, np.int64)
        h_items, h_first = np.unique(history, return_index=True)
        first_at[h_items] = h_first
        place = first_at[cols.indices]
        hit = np.flatnonzero((place >= 0) & (cols.data > 0))
        if len(hit):
            group, place, vals = group[hit], place[hit], cols.data[hit]
            order = np.lexsort((place, -vals, group))
            first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
            # an item listed twice is answered at its last place (as the loop this replaces did)
            last = len(items) - 1 - last_rev
            best_from[last[group[first]]] = history[place[first]]
        return [f"similar to {self._label(int(b))}" if b >= 0 else self.reason_default for b in best_from]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "sim_data": self.sim.data,
            "sim_indices": self.sim.indices,
            "sim_indptr": self.sim.indptr,
            "sim_shape": np.array(self.sim.shape),
            "tie_break": self.tie_break,
            **(
                {}
                if self.similar is self.sim
                else {
                    "similar_data": self.similar.data,
                    "similar_indices": self.similar.indices,
                    "similar_indptr": self.similar.indptr,
                    "similar_shape": np.array(self.similar.shape),
                }
            ),
        }

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        shape = tuple(int(x) for x in a["sim_shape"])
        self.sim = sp.csr_matrix((a["sim_data"], a["sim_indices"], a["sim_indptr"]), shape=shape)
        self.tie_break = (
            np.asarray(a["tie_break"], np.float32) if "tie_break" in a else np.zeros(shape[1], np.float32)
        )
        # an artefact saved before the two lists were told apart has the one
        self.similar = (
            sp.csr_matrix((a["similar_data"], a["similar_indices"], a["similar_indptr"]), shape=shape)
            if "similar_data" in a
            else self.sim
        )
        self.sim_by_target()  # built at load, not by the first request


class UserKNNConfig(ModelConfig):
    neighbours: int = Field(default=50, ge=1)
    shrinkage: float = Field(default=10.0, ge=0)


class UserKNNRecommender(Recommender):
    name = "userknn"
    Config = UserKNNConfig
    config: UserKNNConfig
    reason_default = "liked by shoppers like you"

    def _fit_bytes(self, shape: MatrixShape) -> int:
        return 3 * shape.nnz * CSR_ENTRY  # the matrix and its transpose: scoring does the rest per batch

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        self.x = sp.csr_matrix(matrix, dtype=np.float32)
        self.user_norms = np.asarray(self.x.sum(axis=1)).ravel().astype(np.float32)
        self.x_t = sp.csr_matrix(self.x.T)

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        h = sp.csr_matrix(histories, dtype=np.float32)
        h.data[:] = 1
        co = sp.csr_matrix(h @ self.x_t)  # rows × training users
        rows = np.repeat(np.arange(h.shape[0]), np.diff(co.indptr))
        own = np.diff(h.indptr).astype(np.float32)
        denom = np.sqrt(own[rows] * self.user_norms[co.indices]) + self.config.shrinkage
        co.data = np.divide(co.data, denom, out=np.zeros_like(co.data), where=denom > 0)
        # a known user is not their own neighbour
        self_hits = users[rows] == co.indices
        co.data[self_hits] = 0
        co.eliminate_zeros()
        sims = keep_top_per_row(co, self.config.neighbours)
        return np.asarray((sims @ self.x).toarray(), dtype=np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        # items bought by the same shoppers, cosine-normalised
        cols = self.x_t[items]
        co = (cols @ self.x).toarray()
        pop = np.asarray(self.x.sum(axis=0)).ravel()
        own = pop[items][:, None]
        return (co / (np.sqrt(own * pop[None, :]) + self.config.shrinkage)).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}  # the training matrix is the model, and the base class saves it as history

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.x = sp.csr_matrix(self.state.history, dtype=np.float32)
        self.user_norms = np.asarray(self.x.sum(axis=1)).ravel().astype(np.float32)
        self.x_t = sp.csr_matrix(self.x.T)
