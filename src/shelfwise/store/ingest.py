"""Ingest: a file in a named format → quality gate → store, in acknowledged batches.

Each batch (events, the catalogue facts they carry, and their quarantined neighbours) is one
transaction: after a crash every batch that was committed is there whole, and running the
same file again stores nothing twice (events are keyed by their idempotency id).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import InputFileError
from shelfwise.core.logging import get_logger
from shelfwise.core.parallel import Mapper, local_map
from shelfwise.core.settings import Settings
from shelfwise.data.batch_gate import BatchEventGate
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.quality import EventGate, GateConfig, GateStats, ItemGate, Rejection, UserActivity
from shelfwise.data.readers import DatasetFormat, ReadOptions
from shelfwise.data.readers.base import SYNTHETIC_TS, ProgressFn
from shelfwise.data.schemas import Event, Item
from shelfwise.store.base import QuarantineRow, Store
from shelfwise.store.ingest_batch import LatestSales, store_batches
from shelfwise.store.sql import context_json


@dataclass
class IngestReport:
    """What one ingest run did. ``records = accepted + duplicates + quarantined + erased``; ``erased``
    counts records of shoppers who were erased (tombstoned): they are neither stored nor quarantined."""

    run_id: int
    source: str
    kind: str
    path: str
    records: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    erased: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    fields: dict[str, int] = field(default_factory=dict)
    conversions: dict[str, int] = field(default_factory=dict)
    items_upserted: int = 0
    users: int = 0
    flagged_users: int = 0
    guest_events: int = 0
    pii_scrubbed: int = 0
    catalogue_facts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["records_per_second"] = round(self.records_per_second, 1)
        return out


def _gate_config(fmt: DatasetFormat, settings: Settings, unknown_items: str) -> GateConfig:
    return GateConfig(
        source=fmt.name,
        time=fmt.time,
        currency=fmt.currency,
        shop_start=settings.shop_start,
        now_ms=now_ms(),
        future_tolerance_ms=settings.future_tolerance_seconds * 1000,
        max_text=settings.max_text_length,
        unknown_items=unknown_items,
        required=fmt.required,
    )


log = get_logger(__name__)


class _Tally:
    def __init__(self, report: IngestReport) -> None:
        self.report = report
        self.reasons: Counter[str] = Counter()
        self.fields: Counter[str] = Counter()

    def reject(self, rejection: Rejection, kind: str) -> QuarantineRow:
        self.reasons[rejection.reason] += 1
        self.fields[rejection.field or "(record)"] += 1
        return QuarantineRow.of(rejection, source=self.report.source, kind=kind, run_id=self.report.run_id)

    def close(self, started: float) -> None:
        self.report.quarantined = sum(self.reasons.values())
        self.report.reasons = dict(self.reasons.most_common())
        self.report.fields = dict(self.fields.most_common())
        self.report.seconds = round(time.perf_counter() - started, 3)
        r = self.report
        log.info(
            "ingest finished",
            run_id=r.run_id,
            source=r.source,
            kind=r.kind,
            records=r.records,
            accepted=r.accepted,
            duplicates=r.duplicates,
            quarantined=r.quarantined,
            seconds=r.seconds,
        )


def _start(store: Store, fmt: DatasetFormat, kind: str, path: Path) -> tuple[IngestReport, _Tally]:
    run_id = store.start_run(source=fmt.name, kind=kind, path=str(path))
    log.info("ingest started", run_id=run_id, source=fmt.name, kind=kind, path=str(path))
    report = IngestReport(run_id=run_id, source=fmt.name, kind=kind, path=str(path))
    return report, _Tally(report)


def _check_kind(fmt: DatasetFormat, kind: str) -> None:
    if fmt.kind == "queries":
        raise InputFileError(
            f"format {fmt.name!r} holds search queries, which are not stored",
            hint="search evaluation reads query files directly",
        )
    if fmt.kind != kind:
        raise InputFileError(
            f"format {fmt.name!r} holds {fmt.kind}, not {kind}", hint=f"use `shelfwise ingest {fmt.kind}`"
        )


def ingest_events(
    store: Store,
    path: Path,
    fmt: DatasetFormat,
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
    unknown_items: str = "create",
    limit: int | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
    mapper: Mapper = local_map,
    engine: str | None = None,
) -> IngestReport:
    """Read ``path`` as ``fmt`` and store its events; see ``IngestReport``. ``mapper`` runs the
    quality gate over batches of records (in-process by default; ``shelfwise.distributed`` runs
    them as Ray tasks): the stored events and the report are the same either way.

    ``unknown_items="create"`` adds an item stub (or the facts the event carries) for an item
    the catalogue lacks; ``"quarantine"`` rejects the event instead. ``engine`` (default
    ``settings.ingest_engine``): ``"batch"`` checks a chunk of records in columns
    (``ingest_batch``), ``"rows"`` one record at a time; both store the same thing. A ``mapper``
    other than the in-process one runs the rows engine's gate batches on it.
    """
    engine = engine or settings.ingest_engine
    if mapper is not local_map:
        engine = "rows"
    if engine not in ("batch", "rows"):
        raise ValueError(f"unknown ingest engine {engine!r}: batch or rows")
    _check_kind(fmt, "events")
    started = time.perf_counter()
    # bounded as the API's is: a shop of millions of shoppers must not hold one pseudonym each in memory
    pseudonymize = Pseudonymizer(settings.resolved_pseudonym_key(), cache_size=settings.pseudonym_cache_size)
    config = _gate_config(fmt, settings, unknown_items)
    known = store.item_ids() if unknown_items == "quarantine" else None
    gate = EventGate(config, pseudonymize, known_items=None if known is None else known.__contains__)
    item_gate = ItemGate(config, pseudonymize)
    activity = UserActivity(settings.bot_actions_per_minute, capacity=settings.bot_pace_capacity)
    retired = _Retired(activity)
    opts = ReadOptions(progress=progress, limit=limit)
    if engine == "batch":
        names: tuple[str, ...] = ("type", "ts", "item_id", "quantity", "price", "currency", "value")
        names += ("user_id", "session_id", "context", "event_id", *fmt.required)
        batches = fmt.batches(path, opts, dict.fromkeys(names), settings.ingest_batch_size)
        head = next(batches, None)  # raises before any write
        # a first load (no events yet) can price its items from the rows it stored, not a re-read
        sales = LatestSales() if settings.prices_from_sales and store.event_count(at_most=1) == 0 else None
        refused = getattr(store, "erased_refused", 0)
        report, tally = _start(store, fmt, "events", path)
        run_started = now_ms()
        with store.bulk_loading():
            touched = store_batches(
                store,
                _chain([] if head is None else [head], batches),
                gate=BatchEventGate(gate, context_json=context_json),
                item_gate=item_gate,
                activity=activity,
                erased=set(store.erased_since(0)),
                report=report,
                reject=tally.reject,
                on_batch=retired.after(on_batch),
                sales=sales,
            )
        sale_prices = None
        if (
            sales is not None
            and sales.valid
            and getattr(store, "erased_refused", 0) == refused  # the store dropped none of the rows
            and not store.erased_since(run_started)  # nor erased any meanwhile
            and store.event_count() == report.accepted  # it holds this run's rows and no other
        ):
            sale_prices = sales.prices()
        return _finish_events(
            store, report, tally, gate.stats, item_gate, retired, started, touched, settings, sale_prices
        )

    reader = fmt.read(path, opts)  # raises before any write
    first = next(reader, None)

    report, tally = _start(store, fmt, "events", path)
    # shoppers erased before this run: their records are skipped (and counted); one erased while it
    # runs is caught by the store itself, which checks its tombstones in every write transaction
    erased = set(store.erased_since(0))
    batch: list[Event] = []
    inline: dict[str, dict[str, Any]] = {}
    held: list[QuarantineRow] = []
    items_seen: set[str] = set()

    def flush() -> None:
        new_items = [it for it in (item_gate.inline(f) for f in inline.values()) if it is not None]
        inserted = store.append_events(batch, items=new_items, quarantine=held)
        report.accepted += inserted
        report.duplicates += len(batch) - inserted
        report.items_upserted += len(new_items)
        batch.clear()
        inline.clear()
        held.clear()
        retired.spill()
        if on_batch is not None:
            on_batch(report)

    records = [] if first is None else [first]
    # the gate's checks run per batch through ``mapper`` (in-process, or Ray tasks); everything
    # that depends on order (erasures, activity, the first facts of an item, writes) stays here
    parts = _batches(_chain(records, reader), settings.ingest_batch_size)
    counted = GateStats()
    for checked, stats in mapper(_check_events, parts, shared=gate):
        _merge_stats(counted, stats)
        for result, paced, facts in checked:
            report.records += 1
            if erased and result.user_id in erased:
                report.erased += 1
            elif isinstance(result, Rejection):
                held.append(tally.reject(result, "event"))
            else:
                batch.append(result)
                if result.user_id is not None:
                    activity.observe(result.user_id, result.ts, paced=paced)
                item_id = result.item_id
                # The first facts an event carries about an item are kept; later ones fill nothing new.
                if item_id is not None and item_id not in items_seen:
                    inline[item_id] = {**facts, "item_id": item_id} if facts else {"item_id": item_id}
                    items_seen.add(item_id)
            if len(batch) + len(held) >= settings.ingest_batch_size:
                flush()
    flush()
    return _finish_events(store, report, tally, counted, item_gate, retired, started, items_seen, settings)


def _finish_events(
    store: Store,
    report: IngestReport,
    tally: _Tally,
    counted: GateStats,
    item_gate: ItemGate,
    retired: _Retired,
    started: float,
    items: set[str],
    settings: Settings,
    sales: dict[str, tuple[float, str | None]] | None = None,
) -> IngestReport:
    report.catalogue_facts = _complete(store, items, settings, sales)
    flags = retired.activity.flagged()
    with retired:
        report.users = store.refresh_users(retired.every_id(), flags=flags)
    report.flagged_users = len(flags)
    report.conversions = dict(counted.notes)
    report.guest_events = counted.guests
    report.pii_scrubbed = counted.pii_scrubbed + item_gate.stats.pii_scrubbed
    tally.close(started)
    store.finish_run(report.run_id, report.to_dict())
    return report


class _Retired:
    """The shoppers ``UserActivity`` let go during a run, spilled to a temporary file a batch at a
    time (one JSON string a line), so the ids the run refreshes at its end are not held in memory
    all along."""

    def __init__(self, activity: UserActivity) -> None:
        self.activity = activity
        self._file: Any = None

    def spill(self) -> None:
        ids = self.activity.take_retired()
        if not ids:
            return
        if self._file is None:
            # closed by ``__exit__`` at the end of the run (unlinked at once: a crash leaves nothing)
            self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._file.write("".join(json.dumps(u) + "\n" for u in ids))

    def after(self, on_batch: Callable[[IngestReport], None] | None) -> Callable[[IngestReport], None]:
        def spill_then(report: IngestReport) -> None:
            self.spill()
            if on_batch is not None:
                on_batch(report)

        return spill_then

    def every_id(self) -> Iterator[str]:
        """Each shopper the run saw (one let go and seen again may come more than once)."""
        self.spill()
        spilled: Iterator[str] = iter(())
        if self._file is not None:
            self._file.seek(0)
            spilled = (json.loads(line) for line in self._file)
        return itertools.chain(spilled, list(self.activity.users))

    def __enter__(self) -> _Retired:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def ingest_items(
    store: Store,
    path: Path,
    fmt: DatasetFormat,
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
    limit: int | None = None,
) -> IngestReport:
    """Read a catalogue file and upsert its items (fields given replace stored ones)."""
    _check_kind(fmt, "items")
    started = time.perf_counter()
    config = _gate_config(fmt, settings, "create")
    gate = ItemGate(config, Pseudonymizer(settings.resolved_pseudonym_key()))
    reader = fmt.read(path, ReadOptions(progress=progress, limit=limit))
    first = next(reader, None)
    report, tally = _start(store, fmt, "items", path)
    batch: dict[str, Item] = {}
    held: list[QuarantineRow] = []
    touched: set[str] = set()

    def flush() -> None:
        if batch:
            store.upsert_items(list(batch.values()), replace=True)
        if held:
            store.add_quarantine(held)
        report.accepted += len(batch)
        batch.clear()
        held.clear()

    for record in _chain([] if first is None else [first], reader):
        report.records += 1
        result = gate.check(record)
        if isinstance(result, Rejection):
            held.append(tally.reject(result, "item"))
        else:
            if result.item_id in batch:
                report.duplicates += 1
            batch[result.item_id] = result
            touched.add(result.item_id)
        if len(batch) + len(held) >= settings.ingest_batch_size:
            flush()
    flush()
    report.catalogue_facts = _complete(store, touched, settings)
    report.items_upserted = report.accepted
    report.pii_scrubbed = gate.stats.pii_scrubbed
    tally.close(started)
    store.finish_run(report.run_id, report.to_dict())
    return report


def _batches(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_events(gate: EventGate, records: list[Any]) -> tuple[list[tuple[Any, bool, Any]], GateStats]:
    """The gate over one batch: (result, paced, the item facts the record carries) per record, and
    what the gate counted on the way (counted afresh per batch: a gate on a worker is a copy)."""
    gate.stats = GateStats()
    out = []
    for record in records:
        result = gate.check(record)
        accepted = not isinstance(result, Rejection)
        out.append(
            (
                result,
                accepted and SYNTHETIC_TS not in record.notes,
                (record.item or None) if accepted else None,
            )
        )
    return out, gate.stats


def _merge_stats(total: GateStats, part: GateStats) -> None:
    total.notes.update(part.notes)
    total.pii_scrubbed += part.pii_scrubbed
    total.guests += part.guests


def _complete(
    store: Store,
    item_ids: set[str],
    settings: Settings,
    sales: dict[str, tuple[float, str | None]] | None = None,
) -> dict[str, int]:
    """Prices from sales and annotated attributes for the items a run touched (settings say which);
    ``sales``: the items' latest sale prices when the run already knows them (else read from the store)."""
    if not item_ids or not (settings.prices_from_sales or settings.annotate_items):
        return {}
    from shelfwise.store.catalogue_facts import complete_catalogue

    return complete_catalogue(
        store,
        sorted(item_ids),
        prices=settings.prices_from_sales,
        annotate=settings.annotate_items,
        sales=sales,
    )


def _chain(head: list[Any], tail: Any) -> Any:
    yield from head
    yield from tail
