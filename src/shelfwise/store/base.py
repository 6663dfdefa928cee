"""The one ``Store`` interface every backend implements, and the shapes it returns."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shelfwise.data.quality import Rejection
from shelfwise.data.schemas import Event, EventType, Item


@dataclass(frozen=True)
class Interactions:
    """Events as arrays, for training: dense ids inside, the shop's ids in ``user_ids``/``item_ids``.

    ``users[k]`` indexes ``user_ids``, ``items[k]`` indexes ``item_ids``; rows are in time order.
    """

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ts: np.ndarray  # int64, ms
    types: np.ndarray  # int8, index into ``type_names``
    quantity: np.ndarray  # int32
    user_ids: np.ndarray  # str
    item_ids: np.ndarray  # str
    type_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class CatalogueColumns:
    """The catalogue as columns (``Store.catalogue_columns``): row ``k`` of every column is the item
    ``item_ids[k]``. What a model or a search stand-in needs of 1M items, without 1M ``Item``
    objects (about 1.5 kB and 20 µs each): text columns are lists (None when empty), the rest arrays."""

    item_ids: list[str]
    title: list[str | None]
    description: list[str | None]
    category: list[str | None]
    brand: list[str | None]
    price: np.ndarray  # float64, nan when unknown
    available: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_items(cls, items: Iterable[Item]) -> CatalogueColumns:
        """The columns of ``Item`` records (the reference: what the store's bulk read must equal)."""
        rows = sorted(items, key=lambda it: it.item_id)
        return cls(
            item_ids=[it.item_id for it in rows],
            title=[it.title for it in rows],
            description=[it.description for it in rows],
            category=[it.category for it in rows],
            brand=[it.brand for it in rows],
            price=np.array([np.nan if it.price is None else it.price for it in rows], np.float64),
            available=np.array([bool(it.available) for it in rows], bool),
        )


@dataclass(frozen=True)
class QuarantineRow:
    source: str
    kind: str
    line_no: int | None
    field: str | None
    reason: str
    detail: str
    record: str
    run_id: int | None = None
    user_id: str | None = None  # the pseudonym the record names (not stored: erasure checks it)

    @classmethod
    def of(cls, rejection: Rejection, *, source: str, kind: str, run_id: int | None = None) -> QuarantineRow:
        """The row that keeps a record the quality gate refused (ingest and the events API)."""
        return cls(
            source=source,
            kind=kind,
            line_no=rejection.line_no,
            field=rejection.field,
            reason=rejection.reason,
            detail=rejection.detail,
            record=rejection.raw,
            run_id=run_id,
            user_id=rejection.user_id,
        )


class Store(ABC):
    """Where events, the catalogue, users and quarantined records live.

    Backends are chosen by URL (``open_store``): ``sqlite:///path`` or ``postgresql://…``.
    Every write method commits before it returns, so what it acknowledged is durable.
    """

    url: str

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, fit for reports and logs."""
        return self.url

    # --- events -------------------------------------------------------------------------------
    def users_with_events_since(
        self, since: int, *, types: Iterable[EventType] | None = None, limit: int
    ) -> set[str] | None:
        """The users with an event at or after ``since`` (of ``types``); None when there are more
        than ``limit`` of them or the backend cannot say (the caller then asks user by user)."""
        return None

    @abstractmethod
    def append_events(
        self, events: Sequence[Event], *, items: Sequence[Item] = (), quarantine: Sequence[QuarantineRow] = ()
    ) -> int:
        """Store new events in one transaction (with their inline items, filled not replaced, and any
        quarantined neighbours); returns how many were new. Events whose id is already stored are
        skipped: appending is idempotent."""

    @abstractmethod
    def append_event_rows(
        self,
        rows: Sequence[tuple[Any, ...]],
        *,
        items: Sequence[Item] = (),
        quarantine: Sequence[QuarantineRow] = (),
    ) -> int:
        """``append_events`` for events already in the store's row form (``EVENT_COLUMNS`` order,
        context as compact JSON text), as the batch ingest engine builds them: no ``Event`` objects."""

    @contextlib.contextmanager
    def bulk_loading(self) -> Iterator[None]:
        """Around a large ingest: a backend may defer work it can do faster once at the end
        (SQLite builds the events indexes after a first load). Results are the same either way."""
        yield

    def append_event_groups(self, groups: Sequence[Sequence[Event]]) -> list[int]:
        """Several callers' events at once (group commit); how many of each group were new. A
        backend that can commits them in one transaction; this default stores group by group."""
        return [self.append_events(group) for group in groups]

    def append_event(self, event: Event) -> bool:
        """Store one event; False when its id was already stored."""
        return self.append_events([event]) == 1

    @abstractmethod
    def events_for_user(
        self,
        user_id: str,
        *,
        since: int | None = None,
        until: int | None = None,
        types: Iterable[EventType] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """A user's events in time order, within ``[since, until)`` when given."""

    @abstractmethod
    def iter_events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        types: Iterable[EventType] | None = None,
        batch: int = 50_000,
    ) -> Iterator[Event]:
        """All events in time order, streamed."""

    @abstractmethod
    def interactions(
        self,
        *,
        types: Iterable[EventType] | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude_bots: bool = True,
    ) -> Interactions:
        """Events with a user and an item, as arrays (see ``Interactions``). Events are read as the
        shopper they are stitched to (``shelfwise.store.identities``: aliases and guest sessions
        count as their shopper); shoppers who turned personalisation off are left out."""

    # --- catalogue and users ------------------------------------------------------------------
    @abstractmethod
    def upsert_items(self, items: Sequence[Item], *, replace: bool = True) -> int:
        """Insert or update items. ``replace=False`` only fills fields that are still empty."""

    @abstractmethod
    def get_items(self, item_ids: Iterable[str]) -> dict[str, Item]: ...

    @abstractmethod
    def item_ids(self) -> set[str]: ...

    def item_count(self) -> int:
        return len(self.item_ids())

    def first_items(self, n: int) -> list[Item]:
        """The first ``n`` available items in item id order (what a big catalogue's search answers
        from while its full index is built)."""
        found = self.get_items(sorted(self.item_ids()))
        return [it for it in found.values() if it.available][:n]

    def all_items(self) -> list[Item]:
        """Every item, in item id order."""
        return sorted(self.get_items(self.item_ids()).values(), key=lambda it: it.item_id)

    def catalogue_columns(self) -> CatalogueColumns:
        """Every item as columns, in item id order (``CatalogueColumns``). Backends read it in one
        pass; this default goes through ``get_items``."""
        return CatalogueColumns.from_items(self.get_items(self.item_ids()).values())

    @abstractmethod
    def refresh_users(self, user_ids: Iterable[str], *, flags: dict[str, str] | None = None) -> int:
        """Recompute first/last seen and event counts of these users from their stored events;
        ``flags`` marks users as suspected bots, with the reason."""

    @abstractmethod
    def get_user(self, user_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def suspected_bots(self) -> int:
        """How many users are flagged as likely bots."""

    @abstractmethod
    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user: leave a tombstone for their pseudonym, then remove their events, profile and
        the quarantined records that name them, in one transaction; returns rows removed per table.

        From then on every write (``append_events``, ``append_event_groups``, ``add_quarantine``)
        drops what names a tombstoned user, and a write that was already running when the erasure
        came is ordered before it (and so erased by it) or after it (and so filtered)."""

    @abstractmethod
    def erased_among(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these pseudonyms are tombstoned (their shopper was erased)."""

    @abstractmethod
    def erased_since(self, since_ms: int) -> list[str]:
        """Pseudonyms erased at or after ``since_ms`` (0: every tombstone)."""

    @property
    @abstractmethod
    def store_id(self) -> str:
        """A random id made once for this store (kept in it, carried by its backups): model versions
        record it, so a registry can refuse to serve one store a model trained on another's data."""

    # --- quality ------------------------------------------------------------------------------
    @abstractmethod
    def add_quarantine(self, rows: Sequence[QuarantineRow]) -> None: ...

    @abstractmethod
    def quarantine_summary(self) -> dict[str, Any]:
        """Counts by reason, by field and by source."""

    @abstractmethod
    def quarantined(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    @abstractmethod
    def start_run(self, *, source: str, kind: str, path: str) -> int: ...

    @abstractmethod
    def finish_run(self, run_id: int, report: dict[str, Any]) -> None: ...

    @abstractmethod
    def runs(self) -> list[dict[str, Any]]: ...

    # --- housekeeping -------------------------------------------------------------------------
    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Rows per table."""

    def event_count(self, *, at_most: int | None = None) -> int:
        """Events stored; with ``at_most``, counting stops there (a cheap "is it empty?")."""
        n = self.counts()["events"]
        return n if at_most is None else min(n, at_most)

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
