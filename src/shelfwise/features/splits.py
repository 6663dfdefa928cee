"""Leakage-free splits. Every part shares the dataset's id maps; nothing in ``train`` comes from
after what is held out, and profiles/popularity must be computed from ``train`` only.

- ``leave_one_out``: each user's last event is the test target, the one before it validation
  (the SASRec / S3-Rec protocol); users with fewer than three events stay in training only.
- ``temporal_split``: one global cut-off time; events before it train, events after it test,
  so no model ever sees the future of any user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from shelfwise.features.dataset import Dataset


@dataclass(frozen=True)
class Split:
    """``train`` to fit, ``test`` targets as a users×items 0/1 matrix (rows empty for users not
    evaluated), and ``valid`` the same for tuning (fit on ``train_valid`` minus its targets).

    For the final test, models are fitted on ``train`` (which, for leave-one-out, includes the
    validation event: the standard protocol trains on all but the last item).
    """

    protocol: str
    train: Dataset
    test: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    valid_train: Dataset | None = None  # what to fit on when scoring ``valid``
    info: dict[str, int | float] | None = None

    @property
    def test_users(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.test.indptr) > 0)


def _targets(ds: Dataset, rows: np.ndarray) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(int(rows.sum()), np.float32), (ds.users[rows], ds.items[rows])),
        shape=(ds.n_users, ds.n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1
    return m


def leave_one_out(ds: Dataset, *, min_events: int = 3) -> Split:
    """Last event of each user → test, second-to-last → validation, the rest → training.

    Training keeps only events strictly *before* the held-out one: when several events share its
    time (the other lines of the same invoice), they are dropped, not trained on — they are the
    same moment as the target and would leak it."""
    n = len(ds)
    # position of each row within its user's timeline, counted from the end (0 = last)
    order = np.lexsort((np.arange(n), ds.ts, ds.users))  # by user, then time, then row
    counts = np.bincount(ds.users, minlength=ds.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    users_sorted = ds.users[order]
    pos = np.arange(n) - starts[users_sorted]
    from_end = np.empty(n, np.int64)
    from_end[order] = counts[users_sorted] - 1 - pos
    eligible = counts[ds.users] >= min_events
    test_rows = eligible & (from_end == 0)
    valid_rows = eligible & (from_end == 1)
    test_ts = np.full(ds.n_users, np.iinfo(np.int64).max, np.int64)
    test_ts[ds.users[test_rows]] = ds.ts[test_rows]
    valid_ts = np.full(ds.n_users, np.iinfo(np.int64).max, np.int64)
    valid_ts[ds.users[valid_rows]] = ds.ts[valid_rows]
    train_rows = ds.ts < test_ts[ds.users]  # non-eligible users: +inf, everything trains
    train = ds.select(train_rows)
    valid_train = ds.select(ds.ts < valid_ts[ds.users])
    return Split(
        protocol="loo",
        train=train,
        test=_targets(ds, test_rows),
        valid=_targets(ds, valid_rows),
        valid_train=valid_train,
        info={
            "users_evaluated": int(test_rows.sum()),
            "train_events": int(train_rows.sum()),
            "dropped_same_time_as_target": int((~train_rows & ~test_rows).sum()),
        },
    )


def temporal_split(
    ds: Dataset,
    *,
    test_fraction: float = 0.2,
    cutoff_ms: int | None = None,
    targets: Literal["new", "all"] = "new",
    target_types: tuple[str, ...] | None = None,
) -> Split:
    """Events before a global cut-off train; later events of users and items known at the cut-off
    are the test targets. ``targets="new"`` keeps only items the user had not interacted with
    before (what a recommender is for); ``target_types`` e.g. ``("purchase",)`` keeps only those.

    The cut-off defaults to the time at which ``1 - test_fraction`` of the events had happened.
    """
    if cutoff_ms is None:
        cutoff_ms = int(np.quantile(ds.ts, 1.0 - test_fraction)) if len(ds) else 0
    before = ds.ts < cutoff_ms
    train = ds.select(before)
    known_users = np.bincount(train.users, minlength=ds.n_users) > 0
    known_items = np.bincount(train.items, minlength=ds.n_items) > 0
    rows = ~before & known_users[ds.users] & known_items[ds.items] & ds.type_mask(target_types)
    test = _targets(ds, rows)
    if targets == "new":
        seen = train.matrix()
        test = test - test.multiply(seen)
        test.eliminate_zeros()
        test = sp.csr_matrix(test)
    after = ~before
    return Split(
        protocol="temporal",
        train=train,
        test=test,
        info={
            "cutoff_ms": cutoff_ms,
            "train_events": int(before.sum()),
            "test_events": int(after.sum()),
            "test_events_cold_user_or_item": int(
                (after & ~(known_users[ds.users] & known_items[ds.items])).sum()
            ),
            "users_evaluated": int((np.diff(test.indptr) > 0).sum()),
        },
    )
