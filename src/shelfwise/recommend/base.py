"""The ``Recommender`` protocol every model implements, and what it returns.

A model is fitted on a ``shelfwise.features.Dataset`` and then answers in the shop's ids:

    >>> model = model_from_config({"model": "ease", "l2": 300.0}).fit(train)      # doctest: +SKIP
    >>> model.recommend(["u1"], k=10, filters=Filters(categories=["Shoes"]))     # doctest: +SKIP

A subclass implements three things over dense ids:

- ``_fit(dataset, matrix)``: learn from the users×items training matrix;
- ``_score(histories, users)``: a dense (rows × items) score block for users given as history rows
  (a CSR block) and, when known, their dense ids (``-1`` for someone the model never saw: this is
  the fold-in path for a new shopper's session, no retraining);
- ``_arrays()`` / ``_set_arrays()``: its learned state as plain arrays (saved as ``.npy``).

A sequence model (SASRec…) also overrides ``_score_sessions`` to read a new shopper's items in
order, and registers itself with ``registry.register_model`` (or ``register_lazy`` to keep
PyTorch out of imports until asked for); evaluation needs only ``fit`` and ``score_users``.

``_reasons`` says why an item was recommended ("similar to X", "popular in Y"…). Everything else —
exclusion of what the user already has (per event type), the availability mask, filters, top-k,
save/load with checksums — lives here, so a new family (SASRec, two-tower…) only adds scoring.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.core.errors import ShelfwiseError
from shelfwise.features.dataset import NO_CODE, Dataset, IdMap, ItemAttributes
from shelfwise.recommend.memory import MatrixShape, check_memory, shared_bytes

ARTIFACT_VERSION = 1
METADATA = "metadata.json"

# How ``Recommender.load`` turns a saved config into an unfitted model. ``recommend.registry`` (which
# imports this module, and which the package imports first) installs ``model_from_config`` here, so
# this module never imports the registry back.
_model_factory: list[Callable[[dict[str, Any]], Recommender]] = []


def install_model_factory(factory: Callable[[dict[str, Any]], Recommender]) -> None:
    """Called once by ``recommend.registry``: the factory ``Recommender.load`` builds models with."""
    _model_factory[:] = [factory]


class ModelError(ShelfwiseError):
    """A model was asked for something it cannot do (not fitted, unknown model, bad artifact)."""

    exit_code = 2


class ModelConfig(BaseModel):
    """Settings every model shares. Subclasses add theirs; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    train_types: list[str] | None = Field(default=None, description="event types to learn from (None: all)")
    exclude_types: list[str] | None = Field(
        default=None,
        description="event types whose items are not recommended again to the same user (None: all); "
        "e.g. ['purchase'] keeps viewed items recommendable",
    )


class Filters(BaseModel):
    """What the shopper (or the page) restricts results to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: list[str] | None = None
    brands: list[str] | None = None
    price_min: float | None = None
    price_max: float | None = None
    exclude_items: list[str] | None = None


@dataclass(frozen=True)
class Recommendation:
    """Top items for one user (or one source item / cart), best first, each with its reason."""

    user: str
    items: list[str]
    scores: list[float]
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "items": [
                {"item": i, "score": s, "reason": r}
                for i, s, r in zip(self.items, self.scores, self.reasons, strict=True)
            ],
        }


@dataclass
class _State:
    """What every fitted model keeps besides its own arrays."""

    user_map: IdMap
    item_map: IdMap
    attributes: ItemAttributes
    history: sp.csr_matrix  # users × items, binary, the training events used for scoring
    seen: sp.csr_matrix  # users × items, binary, the events whose items are excluded
    popularity: np.ndarray  # float32, distinct training users per item
    meta: dict[str, Any] = field(default_factory=dict)


def _csr_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_data": m.data.astype(np.float32),
        f"{prefix}_indices": m.indices.astype(np.int32),
        f"{prefix}_indptr": m.indptr.astype(np.int64),
        f"{prefix}_shape": np.array(m.shape, np.int64),
    }


def _csr_from(prefix: str, a: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in a[f"{prefix}_shape"])
    return sp.csr_matrix((a[f"{prefix}_data"], a[f"{prefix}_indices"], a[f"{prefix}_indptr"]), shape=shape)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# the candidate path (``_top_k_candidates``) for rows this long and k this small relative to them
CANDIDATE_MIN_COLUMNS = 32_768
CANDIDATE_SAMPLE = 4_096
_SAMPLES: dict[int, np.ndarray] = {}


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row, best first, ties broken by lower column (stable); -inf never chosen
    (those slots hold -1). On a long row (a large catalogue) the exact answer comes from a few
    hundred candidates above a threshold instead of a partial sort of the whole row: an
    argpartition of 1M scores took ~10 ms here, one comparison pass and the candidates' sort <1 ms."""
    n = scores.shape[1]
    if n >= CANDIDATE_MIN_COLUMNS and k > 0 and k * 64 <= n and len(scores):
        return _top_k_candidates(scores, k)
    return _top_k_partition(scores, k)


def _top_k_candidates(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``_top_k_partition``'s answer. Each row's threshold is the j-th largest of its scores
    at a fixed random sample of ``CANDIDATE_SAMPLE`` columns, j chosen so that about 8k columns
    (at least ~4 sample-widths) score above it; the candidates are the columns scoring strictly
    above it. A row with at least k of them has its k-th best score above the threshold, so they
    hold its top k, ties at the k-th score included, and ``_top_k_partition`` over them (in column
    order, so ties still go to the lower column) ranks them. A row with fewer than k (unlikely by
    the sample's order statistics when scores differ; the rule when most scores are equal, as an
    item with no factors scores 0 against everything) is answered by ``_top_k_tied``."""
    n = scores.shape[1]
    sample = _SAMPLES.get(n)
    if sample is None:
        sample = np.sort(np.random.default_rng(0).choice(n, CANDIDATE_SAMPLE, replace=False))
        _SAMPLES[n] = sample
    m = len(sample)
    j = min(m, max(4, int(np.ceil(8 * k * m / n))))
    picked = scores[:, sample]
    threshold = np.partition(picked, m - j, axis=1)[:, m - j]
    above = scores > threshold[:, None]
    counts = np.count_nonzero(above, axis=1)
    short = np.flatnonzero((counts < k) | np.isnan(threshold))
    if len(short):
        above[short] = False  # too few candidates: answered one by one below
        counts[short] = 0
    rows, cols = np.nonzero(above)
    width = max(int(counts.max()), k)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(rows)) - starts[rows]
    cand_cols = np.zeros((len(scores), width), np.int64)
    cand_vals = np.full((len(scores), width), -np.inf, scores.dtype)
    cand_cols[rows, slot] = cols
    cand_vals[rows, slot] = scores[rows, cols]
    idx, vals = _top_k_partition(cand_vals, k)
    idx = np.where(idx >= 0, np.take_along_axis(cand_cols, np.maximum(idx, 0), axis=1), -1)
    for r in short.tolist():
        idx[r], vals[r] = _top_k_tied(scores[r], k, float(threshold[r]))
    return idx, vals


def _top_k_tied(row: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One row with fewer than k scores above ``threshold``: when at least k are at or above it,
    the k-th best score is the threshold itself, so the top k are the scores above it, ranked,
    then the lowest columns scoring exactly the threshold (most of a cold item's row: every score
    0). Otherwise (or a NaN or infinite threshold) the partial sort."""
    if np.isfinite(threshold):
        above = np.flatnonzero(row > threshold)
        tied = np.flatnonzero(row == threshold)
        if len(above) < k <= len(above) + len(tied):
            first, first_vals = _top_k_partition(row[above][None, :], len(above))
            cols = np.concatenate([above[first[0]], tied[: k - len(above)]])
            return cols, np.concatenate([first_vals[0], np.full(k - len(above), row.dtype.type(threshold))])
    idx, vals = _top_k_partition(row[None, :], k)
    return idx[0], vals[0]


def no_preference(row: np.ndarray) -> bool:
    """Whether a row of scores ranks nothing above anything else: every item that may be shown
    (not -inf) scores the same, or none may. A model's row for an item or session it knows nothing
    about (zero factors, an empty similarity row) looks like this; its top k would be the lowest
    item ids. The first 4,096 scores answer most rows without a pass over the whole row."""
    best = row.max() if len(row) else -np.inf
    if not np.isfinite(best):
        return True
    head = row[:4096]
    if not np.all((head == best) | np.isneginf(head)):
        return False
    return bool(np.all((row == best) | np.isneginf(row)))


def evidence_floor(row: np.ndarray) -> float | None:
    """The score most of a row's showable items share, when more than half of an evenly spaced
    sample of ~4,096 of them does (None otherwise): what an item-to-item row gives the items it has
    no evidence about (item-kNN's and EASE's 0, a warm item's cosine with the many items that have
    no factors). Items at or below it are not similar, only next in id order: a list ends there."""
    sample = row[:: max(1, len(row) // 4096)]
    sample = sample[~np.isneginf(sample)]
    if len(sample) < 32:  # a filter hides most items: sample the ones it shows
        shown = row[~np.isneginf(row)]
        sample = shown[:: max(1, len(shown) // 4096)]
    if len(sample) < 2:
        return None
    values, counts = np.unique(sample, return_counts=True)
    j = int(counts.argmax())
    return float(values[j]) if 2 * counts[j] > len(sample) else None


def _top_k_partition(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` by a partial sort of every row (argpartition): the reference, and the path for
    small catalogues."""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0), np.float32)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    if k < n:
        # argpartition picks an arbitrary subset of the items tied at the k-th score (it differs
        # between one row and a batch): take the lowest columns among them, as the order promises
        kth = vals.min(axis=1)
        tied = (scores == kth[:, None]).sum(axis=1) > (vals == kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(tied & ~np.isneginf(kth)):
            above = np.flatnonzero(scores[r] > kth[r])
            level = np.flatnonzero(scores[r] == kth[r])[: k - len(above)]
            part[r] = np.concatenate([above, level])
            vals[r] = scores[r, part[r]]
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.where(np.isneginf(vals), -1, idx)
    return idx, vals


def _weighted(train: Dataset, w: np.ndarray) -> sp.csr_matrix:
    """The users×items matrix with each pair's weight the largest of its events' (so a pair the
    defence trusts in one event and not in another keeps the trusted one)."""
    key = train.users.astype(np.int64) * train.n_items + train.items
    order = np.lexsort((-w, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    pick = order[first]
    m = sp.csr_matrix(
        (w[pick], (train.users[pick], train.items[pick])),
        shape=(train.n_users, train.n_items),
        dtype=np.float32,
    )
    m.eliminate_zeros()
    return m


def csr_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """The given rows of a CSR matrix as a new CSR block; a row id of -1 gives an empty row.

    Cheaper than ``matrix[rows]`` for the handful of rows a request asks for (no sparse fancy
    indexing, no format checks)."""
    rows = np.asarray(rows, np.int64)
    safe = np.where(rows >= 0, rows, 0)
    starts = matrix.indptr[safe]
    lengths = np.where(rows >= 0, matrix.indptr[safe + 1] - starts, 0)
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # position j of the block is element starts[r] + (j - indptr[r]) of the matrix
    take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
    indices, data = matrix.indices[take], matrix.data[take]
    out = sp.csr_matrix((len(rows), matrix.shape[1]), dtype=matrix.dtype)
    out.indptr, out.indices, out.data = indptr.astype(matrix.indptr.dtype), indices, data
    return out


_BLAS: list[Any] = []


@contextmanager
def serving_threads(rows: int) -> Iterator[None]:
    """One BLAS thread while scoring a few rows: a request's matrix-vector product is too small to
    share, and waking a second BLAS thread on a busy machine costs milliseconds at the tail."""
    if rows > 8:
        yield
        return
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


class Recommender(ABC):
    """Base of every model: see the module docstring for what a subclass provides."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    reason_default: ClassVar[str] = "popular overall"
    popular_fallback: ClassVar[bool] = True  # False for models that already score strangers well

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.Config(model=self.name, **overrides)
        elif overrides:
            config = self.Config(**{**config.model_dump(), **overrides})  # validated, unlike model_copy
        self.config = config
        self._state: _State | None = None

    # --- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None: ...

    @abstractmethod
    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores, ``histories.shape[0]`` × n_items. ``users[r]`` is -1 for fold-in."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...

    def _fit_bytes(self, shape: MatrixShape) -> int:
        """Peak bytes of this family's own fitting work (beyond ``shared_bytes``). Override it in
        every family whose fit grows faster than the events: the guard in ``fit`` relies on it."""
        return 8 * shape.n_items

    def _memory_note(self, shape: MatrixShape) -> tuple[str, str]:
        """What dominates the estimate, and what to do instead; shown when a fit is refused."""
        return "", "choose a lighter model (popular, itemknn or als) or `--model auto`"

    def fit_bytes(self, shape: MatrixShape) -> int:
        """Estimated peak bytes of ``fit`` on a training matrix of this shape."""
        return shared_bytes(shape) + self._fit_bytes(shape)

    def check_fits(self, shape: MatrixShape, *, budget: int | None = None) -> int:
        """Refuse (``MemoryRefusedError``) a fit that would not fit in memory; return the estimate."""
        need = self.fit_bytes(shape)
        what, hint = self._memory_note(shape)
        check_memory(self.name, need, shape, what=what, hint=hint, budget=budget)
        return need

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        """Why each of ``items`` was picked for a shopper with these history items (dense ids)."""
        return [self.reason_default] * len(items)

    def _score_to_rank(
        self, histories: sp.csr_matrix, users: np.ndarray, allowed: np.ndarray, exclude: sp.csr_matrix | None
    ) -> np.ndarray:
        """``_score`` for ``_rank``, which then sets items outside ``allowed`` and the ``exclude``
        pairs to -inf: a model may leave any value there (the hybrid skips their ranker rows)."""
        return self._score(histories, users)

    def _score_sessions(self, sessions: list[np.ndarray]) -> np.ndarray:
        """Scores for new shoppers from their items *in the order they happened* (dense ids).

        The default forgets the order and folds the set in through ``_score``; sequence models
        (SASRec, GRU4Rec…) override this to read the order."""
        rows = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
        cols = np.concatenate(sessions) if sessions else np.empty(0, np.int64)
        hist = sp.csr_matrix(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sessions), self.n_items)
        )
        hist.sum_duplicates()
        hist.data[:] = 1
        return self._score(hist, np.full(len(sessions), -1, np.int64))

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """Item-to-item scores, ``len(items)`` × n_items; by default the fold-in of a one-item history."""
        rows = sp.csr_matrix(
            (np.ones(len(items), np.float32), (np.arange(len(items)), items)),
            shape=(len(items), self.n_items),
        )
        return self._score(rows, np.full(len(items), -1, np.int64))

    # --- fitting -------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, *, event_weights: np.ndarray | None = None) -> Self:
        """Learn from ``dataset`` (pass a split's training part: nothing later may leak in).

        ``event_weights`` (one per event of ``dataset``, in [0, 1]) down-weights events in what the
        model learns from — the shilling defence's trust in each event — while the shopper's
        history (what is excluded and folded in when scoring) stays every event."""
        started = time.perf_counter()
        train_mask = dataset.type_mask(self.config.train_types)
        train = dataset.select(train_mask) if not train_mask.all() else dataset
        history = train.matrix()
        learn = history
        if event_weights is not None:
            w = np.asarray(event_weights, np.float32)
            if w.shape != (len(dataset),):
                raise ModelError(f"event_weights has {w.shape[0]} entries for {len(dataset)} events")
            learn = _weighted(train, w[train_mask])
        # before anything grows with the catalogue: a refusal here costs nothing, a crash costs the process
        self.check_fits(MatrixShape.of(history))
        seen = dataset.matrix(types=self.config.exclude_types)
        self._state = _State(
            user_map=dataset.user_map,
            item_map=dataset.item_map,
            # a copy: set_availability must not write into the caller's dataset
            attributes=replace(dataset.item_attributes, available=dataset.item_attributes.available.copy()),
            history=history,
            seen=seen,
            popularity=np.asarray(history.sum(axis=0)).ravel().astype(np.float32),
        )
        self._fit(train, learn)
        self._state.meta = {
            "train_seconds": round(time.perf_counter() - started, 3),
            "train_events": len(train),
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "data": dict(dataset.meta),
        }
        return self

    def use_histories(self, dataset: Dataset) -> Self:
        """Score with the histories (and exclusions) of ``dataset`` — same id maps as the one this
        model was fitted on — keeping what was learnt. The shilling defence fits on the events of
        unflagged accounts only, then gives every account its own history back: a flagged account
        teaches the model nothing, yet a real shopper flagged by mistake still gets their own
        recommendations."""
        st = self.state
        if dataset.n_users != st.history.shape[0] or dataset.n_items != st.history.shape[1]:
            raise ModelError("use_histories needs a dataset with the model's own id maps")
        train_mask = dataset.type_mask(self.config.train_types)
        st.history = (dataset.select(train_mask) if not train_mask.all() else dataset).matrix()
        st.seen = dataset.matrix(types=self.config.exclude_types)
        return self

    @property
    def state(self) -> _State:
        if self._state is None:
            raise ModelError(
                f"model {self.name!r} is not fitted", hint="call fit(dataset) or load(dir) first"
            )
        return self._state

    @property
    def n_items(self) -> int:
        return len(self.state.item_map)

    @property
    def item_map(self) -> IdMap:
        return self.state.item_map

    @property
    def user_map(self) -> IdMap:
        return self.state.user_map

    @property
    def train_seconds(self) -> float:
        return float(self.state.meta.get("train_seconds", 0.0))

    # --- serving -------------------------------------------------------------------------------
    def set_availability(self, item_ids: Iterable[str], available: bool) -> None:
        """Mark items (un)available; unavailable or hidden items are never recommended."""
        idx = self.item_map.to_internal(item_ids, strict=False)
        self.state.attributes.available[idx[idx >= 0]] = available

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Raw scores for known users by dense id (rows × all items); no masking. For evaluation."""
        users = np.asarray(users, np.int64)
        return self._score(self.state.history[users], users)

    def allowed_mask(self, filters: Filters | None) -> np.ndarray:
        """Items that may be shown: available, and within the filters."""
        st = self.state
        attrs = st.attributes
        mask = attrs.available.copy()
        if filters is None:
            return mask
        if filters.categories is not None:
            codes = [i for i, n in enumerate(attrs.category_names.tolist()) if n in set(filters.categories)]
            mask &= np.isin(attrs.category, codes) & (attrs.category != NO_CODE)
        if filters.brands is not None:
            codes = [i for i, n in enumerate(attrs.brand_names.tolist()) if n in set(filters.brands)]
            mask &= np.isin(attrs.brand, codes) & (attrs.brand != NO_CODE)
        if filters.price_min is not None:
            mask &= attrs.price >= filters.price_min  # nan price compares False: excluded
        if filters.price_max is not None:
            mask &= attrs.price <= filters.price_max
        if filters.exclude_items:
            idx = self.item_map.to_internal(filters.exclude_items, strict=False)
            mask[idx[idx >= 0]] = False
        return mask

    def _rank(
        self,
        histories: sp.csr_matrix,
        users: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        filters: Filters | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = self.allowed_mask(filters)
        scores = self._with_fallback(self._score_to_rank(histories, users, allowed, exclude), histories)
        scores[:, ~allowed] = -np.inf
        if exclude is not None and exclude.nnz:
            rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
            scores[rows, exclude.indices] = -np.inf
        return top_k(scores, k)

    def _with_fallback(self, scores: np.ndarray, histories: sp.csr_matrix) -> np.ndarray:
        """Rows with no history (a shopper we know nothing about) get the popular items: a model
        that learns from co-occurrence has nothing else to say to them."""
        scores = np.array(scores, dtype=np.float32, copy=True)
        empty = np.diff(histories.indptr) == 0
        if empty.any() and self.popular_fallback:
            pop = self.state.popularity
            top = float(pop.max(initial=0.0))
            scores[empty] = pop / top if top > 0 else pop
        return scores

    def _package(self, who: str, idx: np.ndarray, vals: np.ndarray, history: np.ndarray) -> Recommendation:
        keep = idx >= 0
        idx, vals = idx[keep], vals[keep]
        return Recommendation(
            user=who,
            items=self.item_map.to_external(idx),
            scores=[float(v) for v in vals],
            reasons=(
                self._reasons(history, idx)
                if len(history) or not self.popular_fallback
                else ["popular overall"] * len(idx)
            ),
        )

    def recommend(
        self,
        users: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """Top-``k`` for each user (the shop's ids). A user the model never saw (or with no history)
        gets the popular items, with the reason "popular overall"."""
        st = self.state
        dense = st.user_map.to_internal(users, strict=False)
        histories = csr_rows(st.history, dense)  # unknown users (-1): empty rows
        exclude = csr_rows(st.seen, dense) if exclude_seen else None
        with serving_threads(len(dense)):
            idx, vals = self._rank(histories, dense, k, exclude=exclude, filters=filters)
        return [
            self._package(
                str(u), idx[r], vals[r], histories.indices[histories.indptr[r] : histories.indptr[r + 1]]
            )
            for r, u in enumerate(users)
        ]

    def recommend_for_events(
        self,
        items: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filters: Filters | None = None,
        who: str = "session",
    ) -> Recommendation:
        """Recommend from a few events (a new shopper's session, or a whole cart) without retraining:
        the model folds the items in. Items it does not know are ignored; events that tell it nothing
        (``no_preference``: only items with no factors, say) give no items, and the caller falls back."""
        ordered = self.item_map.to_internal(items, strict=False)
        ordered = ordered[ordered >= 0]
        idx = np.unique(ordered)
        if len(ordered):
            scores = self._score_sessions([ordered])
        else:
            empty = sp.csr_matrix((1, self.n_items), dtype=np.float32)
            scores = self._with_fallback(self._score(empty, np.array([-1])), empty)
        scores = np.array(scores, dtype=np.float32, copy=True)
        scores[:, ~self.allowed_mask(filters)] = -np.inf
        if exclude_seen:
            scores[0, idx] = -np.inf
        if len(ordered) and no_preference(scores[0]):
            return Recommendation(who, [], [], [])
        top, vals = top_k(scores, k)
        return self._package(who, top[0], vals[0], idx)

    def similar_items(
        self, items: Sequence[str], k: int = 10, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """Items most like each given item (never the item itself). None for an item the model
        knows nothing about (``no_preference``: a cold item's zero factors or empty similarity row):
        the lowest item ids are not 'similar', and the caller falls back. A list ends where the
        item's evidence does (``evidence_floor``): fewer than k items rather than padding."""
        idx = self.item_map.to_internal(items, strict=False)
        out = []
        for external, i in zip(items, idx, strict=True):
            if i < 0:
                out.append(Recommendation(str(external), [], [], []))
                continue
            scores = self._similar_scores(np.array([i])).astype(np.float32, copy=True)
            scores[:, ~self.allowed_mask(filters)] = -np.inf
            scores[0, i] = -np.inf
            if no_preference(scores[0]):
                out.append(Recommendation(str(external), [], [], []))
                continue
            top, vals = top_k(scores, k)
            floor = evidence_floor(scores[0])
            n = len(vals[0]) if floor is None else int(np.count_nonzero(vals[0] > floor))
            out.append(self._package(str(external), top[0][:n], vals[0][:n], np.array([i])))
        return out

    def _label(self, item: int) -> str:
        return str(self.item_map.external[item])

    # --- artifacts -----------------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write arrays as ``.npy`` (no pickle) and ``metadata.json`` with the sha256 of every file."""
        st = self.state
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "user_ids": st.user_map.external,
            "item_ids": st.item_map.external,
            "popularity": st.popularity,
            **st.attributes.arrays(),
            **_csr_arrays("history", st.history),
            **_csr_arrays("seen", st.seen),
        }
        own = self._arrays()
        clash = set(own) & set(arrays)
        if clash:
            raise ModelError(f"model arrays clash with shared names: {sorted(clash)}")
        arrays.update({f"model_{k}": v for k, v in own.items()})
        files = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype == object:
                raise ModelError(f"array {name!r} holds Python objects; artifacts never pickle")
            path = out / f"{name}.npy"
            np.save(path, arr, allow_pickle=False)
            files[path.name] = _sha256(path)
        meta = {
            "artifact_version": ARTIFACT_VERSION,
            "model": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": self.config.model_dump(mode="json"),
            "files": files,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **st.meta,
        }
        (out / METADATA).write_text(json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, directory: Path | str) -> Recommender:
        """Read a saved model back (any model when called on ``Recommender``), verifying checksums."""
        src = Path(directory)
        try:
            meta = json.loads((src / METADATA).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{src}: not a saved model ({exc})") from exc
        if meta.get("artifact_version") != ARTIFACT_VERSION:
            raise ModelError(f"{src}: artifact version {meta.get('artifact_version')!r} is not supported")
        model = _model_factory[0](meta["config"])
        if cls is not Recommender and not isinstance(model, cls):
            raise ModelError(f"{src}: holds a {meta['model']!r} model, not {cls.name!r}")
        arrays: dict[str, np.ndarray] = {}
        for fname, digest in meta["files"].items():
            path = src / fname
            if not path.is_file() or _sha256(path) != digest:
                raise ModelError(f"{path}: missing or its checksum does not match the metadata")
            arrays[fname.removesuffix(".npy")] = np.load(path, allow_pickle=False)
        model._state = _State(
            user_map=IdMap(arrays["user_ids"]),
            item_map=IdMap(arrays["item_ids"]),
            attributes=ItemAttributes.from_arrays(arrays),
            history=_csr_from("history", arrays),
            seen=_csr_from("seen", arrays),
            popularity=arrays["popularity"],
            meta={k: meta[k] for k in ("train_seconds", "train_events", "n_users", "n_items") if k in meta},
        )
        model._set_arrays({k.removeprefix("model_"): v for k, v in arrays.items() if k.startswith("model_")})
        return model
