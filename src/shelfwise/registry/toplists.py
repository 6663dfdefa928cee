"""Batch scoring: every known shopper's unfiltered top-``k``, precomputed and kept with the version.

The lists are data beside the model (``<version>/toplists/items.npy``, ``scores.npy`` and
``meta.json``, listed with their sha256 in ``version.json``, so ``verify`` covers them): row ``u``
is the recommender's dense user ``u`` (its ``user_ids.npy``), items are the recommender's dense item
ids, ``-1`` pads a short list. A serving process slices them instead of scoring (``LiveModels``),
and an erasure empties the shopper's row.

Scoring is cut into chunks of users and run through a ``Mapper``: in-process by default, as Ray
tasks with ``shelfwise.distributed``; a chunk's lists do not depend on who computes them.

    >>> lists = top_lists(model, k=50)                        # doctest: +SKIP
    >>> registry.attach_arrays(version, "toplists", lists.arrays(), lists.meta())  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.core.parallel import Mapper, chunks, local_map
from shelfwise.recommend.base import Recommender, serving_threads

TOPLISTS = "toplists"


@dataclass(frozen=True)
class TopLists:
    """Dense item ids (users × k, ``-1`` pads) and their scores, by dense user id."""

    items: np.ndarray
    scores: np.ndarray
    model: str

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "scores": self.scores}

    def meta(self) -> dict[str, Any]:
        return {"k": self.k, "users": int(self.items.shape[0]), "model": self.model, "rows": "dense user ids"}


# users scored at once inside a chunk: their score rows (users × items float32) then stay in the
# cache while they are masked and partitioned (12k items: 12 MB), where a whole chunk's would go
# to memory several times; on Amazon Beauty's ALS, 256 rows took 1.40 CPU s per 8,192 users
# against 1.58 for 1,024 and 2.41 for 2,048 (one BLAS thread, best of 3, a loaded machine). A task
# stays a chunk: few tasks, each long enough that Ray's per-task cost does not count.
BLOCK_USERS = 256


def _score_chunk(job: tuple[Recommender, int], bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of users' unfiltered top lists, exactly as ``recommend(users, k)`` ranks them."""
    model, k = job
    st = model.state
    lo, hi = bounds
    items = np.empty((hi - lo, k), np.int32)
    scores = np.empty((hi - lo, k), np.float32)
    for b, e in chunks(hi - lo, BLOCK_USERS):
        rows = np.arange(lo + b, lo + e, dtype=np.int64)
        with serving_threads(len(rows)):
            idx, vals = model._rank(st.history[rows], rows, k, exclude=st.seen[rows], filters=None)
        items[b:e], scores[b:e] = idx, vals
    return items, scores


def top_lists(
    model: Recommender, *, k: int = 50, chunk_users: int = 2048, mapper: Mapper = local_map
) -> TopLists:
    """Every known user's top-``k`` from ``model`` (seen items excluded, no filters)."""
    n_users = len(model.user_map)
    k = min(k, model.n_items)
    parts = list(mapper(_score_chunk, chunks(n_users, chunk_users), shared=(model, k)))
    items = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, k), np.int32)
    scores = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, k), np.float32)
    return TopLists(items=items, scores=scores, model=model.name)


def covers(lists: TopLists | None, k: int, model: Recommender) -> bool:
    """Whether kept lists can answer every shopper of ``model`` their top ``k`` by a slice: there
    are lists, one row per shopper, at least ``k`` long or the whole catalogue (``top_lists`` cuts
    them at its size)."""
    return (
        lists is not None and lists.k >= min(k, model.n_items) and lists.items.shape[0] == len(model.user_map)
    )


def load_top_lists(version_dir: Path) -> TopLists | None:
    """The lists kept with a version (checked with the version itself), or None if it has none."""
    folder = Path(version_dir) / TOPLISTS
    if not (folder / "items.npy").is_file():
        return None
    meta = json.loads((folder / "meta.json").read_text())
    return TopLists(
        items=np.load(folder / "items.npy", allow_pickle=False),
        scores=np.load(folder / "scores.npy", allow_pickle=False),
        model=str(meta.get("model", "")),
    )


__all__ = ["TOPLISTS", "TopLists", "covers", "load_top_lists", "top_lists"]
