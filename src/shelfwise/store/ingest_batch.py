"""The batch ingest engine's loop: a format's records a chunk at a time (``DraftBatch`` columns),
checked by ``BatchEventGate``, written with one bulk statement per table per transaction.

It keeps the reference loop's bookkeeping (``ingest.ingest_events`` with ``engine="rows"``):
records of erased shoppers are counted and skipped, the first facts an accepted event carries about
an item become its catalogue stub, users' pace is followed for bot flags, and each chunk with its
quarantined records is one transaction of ``settings.ingest_batch_size`` records at most.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from shelfwise.core.parallel import ahead_map
from shelfwise.data.batch_gate import BatchEventGate
from shelfwise.data.columnar import encode
from shelfwise.data.quality import ItemGate, Rejection, UserActivity
from shelfwise.data.readers.base import DraftBatch
from shelfwise.store.base import QuarantineRow, Store


def store_batches(
    store: Store,
    batches: Iterable[DraftBatch],
    *,
    gate: BatchEventGate,
    item_gate: ItemGate,
    activity: UserActivity,
    erased: set[str],
    report: Any,  # ingest.IngestReport (not imported: ingest imports this module)
    reject: Callable[[Rejection, str], QuarantineRow],
    on_batch: Callable[[Any], None] | None = None,
    sales: LatestSales | None = None,
) -> set[str]:
    """Store every batch; returns the ids of the items the accepted events name. ``sales`` (if
    given) follows each item's latest sale among the rows handed to the store."""
    # The cyclic collector would walk every live object again and again while chunks of row lists
    # come and go (about 2 s of CPU on Online Retail); nothing here makes cycles, so it is paused
    # for the loop (reference counting still frees each chunk) and restored after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # reading and checking run a batch or two ahead, in a thread, while the loop writes: the
        # checks depend on no order (their memos and counts only on the batches before, which that
        # thread checks in order); everything that does stays in the loop. About 12% less wall
        # time on Online Retail (the store's SQLite work and the reader's zlib and Arrow let go of
        # the GIL). Closed here, not when an error's traceback lets go of it: the thread stops and
        # the file closes as the error leaves.
        checked = ahead_map(_checked, batches, shared=gate, name="shelfwise-ingest-check")
        try:
            return _loop(store, checked, item_gate, activity, erased, report, reject, on_batch, sales)
        finally:
            checked.close()
    finally:
        if collecting:
            gc.enable()


def _loop(
    store: Store,
    checked: Iterable[tuple[DraftBatch, Any]],
    item_gate: ItemGate,
    activity: UserActivity,
    erased: set[str],
    report: Any,
    reject: Callable[[Rejection, str], QuarantineRow],
    on_batch: Callable[[Any], None] | None,
    sales: LatestSales | None,
) -> set[str]:
    items_seen: set[str] = set()
    for batch, result in checked:
        report.records += len(batch) + len(batch.problems)
        held: list[QuarantineRow] = []
        for rejection in result.rejections:
            if erased and rejection.user_id in erased:
                report.erased += 1
            else:
                held.append(reject(rejection, "event"))
        rows, users, ts, item_ids = result.rows, result.user_ids, result.ts, result.item_ids
        paced, positions, sold = result.paced, result.positions, result.sales
        if erased and rows:
            keep = [k for k, u in enumerate(users) if u not in erased]
            report.erased += len(rows) - len(keep)
            rows = [rows[k] for k in keep]
            users, ts, item_ids = [users[k] for k in keep], [ts[k] for k in keep], [item_ids[k] for k in keep]
            paced, positions = [paced[k] for k in keep], [positions[k] for k in keep]
            sold = sold[np.asarray(keep, dtype=np.intp)]
        activity.observe_many(users, ts, paced)
        new_items = []
        distinct, codes = encode(item_ids)
        _, first = np.unique(codes, return_index=True)
        for code, k in zip(range(len(distinct)), first.tolist(), strict=True):
            item_id = distinct[code]
            if item_id is None or item_id in items_seen:
                continue
            items_seen.add(item_id)
            carried = batch.draft(positions[k]).item
            item = item_gate.inline({**carried, "item_id": item_id} if carried else {"item_id": item_id})
            if item is not None:
                new_items.append(item)
        if sales is not None:
            sales.observe(rows, sold, codes, distinct, ts, given_ids=result.given_ids)
        inserted = store.append_event_rows(rows, items=new_items, quarantine=held)
        report.accepted += inserted
        report.duplicates += len(rows) - inserted
        report.items_upserted += len(new_items)
        if on_batch is not None:
            on_batch(report)
    return items_seen


def _checked(gate: BatchEventGate, batch: DraftBatch) -> tuple[DraftBatch, Any]:
    return batch, gate.check(batch)


class LatestSales:
    """Each item's latest sale (a purchase with a price above 0) among the rows a run hands the
    store: the greatest (time, event id), the first row winning an exact tie (a repeated id is not
    stored twice). When the run started on an empty events table, stored every row it handed over
    and nothing else wrote events meanwhile, this is what ``catalogue_facts.latest_sale_prices``
    would read back from the store, found with NumPy on the rows in hand instead of two scans of
    the table. Rows whose event ids their records gave (``given_ids``) could differ from the stored
    ones under the same id, so such a run gives up (``valid`` is False)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[tuple[int, str], float, str | None]] = {}
        self.valid = True

    def observe(
        self,
        rows: list[tuple[Any, ...]],
        sold: np.ndarray,
        codes: np.ndarray,
        distinct: list[Any],
        ts: list[int],
        *,
        given_ids: bool,
    ) -> None:
        if given_ids:
            self.valid = False
        if not self.valid or not rows:
            return
        named = np.asarray([d is not None for d in distinct], dtype=bool)[codes]
        at = np.flatnonzero(sold & named)
        if len(at) == 0:
            return
        item, when = codes[at], np.asarray(ts, dtype=np.int64)[at]
        order = np.lexsort((when, item))  # by item, then time (stable: ties keep the batch's order)
        item_s, when_s = item[order], when[order]
        starts = np.r_[True, item_s[1:] != item_s[:-1]]
        group = np.cumsum(starts) - 1
        ends = np.r_[starts[1:], True]
        newest = when_s[ends][group]  # each row's item's latest time in this batch
        candidates = np.sort(at[order[when_s == newest]])  # the rows at that time, in batch order
        latest = self.latest
        for k in candidates.tolist():
            row = rows[k]  # EVENT_COLUMNS: event_id, user, session, item, type, ts, qty, price, currency
            key = (row[5], row[0])
            held = latest.get(row[3])
            if held is None or key > held[0]:
                latest[row[3]] = (key, row[7], row[8])

    def prices(self) -> dict[str, tuple[float, str | None]]:
        """``item_id -> (unit price, currency)``, as ``latest_sale_prices`` gives them."""
        return {item: (float(price), currency) for item, (_, price, currency) in self.latest.items()}
