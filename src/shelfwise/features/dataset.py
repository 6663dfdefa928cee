"""A frozen interaction dataset: id maps (the shop's ids outside, dense ints inside), events as
arrays, item attributes as arrays, and the user×item matrices models train on.

Build one from the store (``Dataset.from_store``), from any events file a reader knows
(``Dataset.from_file(path, "sequences")``) or from ``Interactions`` arrays. Splits
(``shelfwise.features.splits``) return datasets that share the *same* id maps, so a model
trained on the training part scores exactly the columns the test part refers to.

    >>> ds = Dataset.from_file(Path("Beauty.txt"), "sequences")   # doctest: +SKIP
    >>> ds.matrix().shape                                           # doctest: +SKIP
    (22363, 12101)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from shelfwise.core.errors import InputFileError

# Column names, as constants (RecTools' habit): the arrays a Dataset holds per event.
USER: Final = "user"
ITEM: Final = "item"
TS: Final = "ts"
TYPE: Final = "type"
WEIGHT: Final = "weight"

NO_CODE: Final = -1  # an item without a category/brand


@dataclass(frozen=True)
class IdMap:
    """External ids (strings, in dense-id order) and the way back.

    >>> m = IdMap.from_values(["b", "a", "b"])
    >>> m.external.tolist(), m.to_internal(["a", "zz"], strict=False).tolist()
    (['b', 'a'], [1, -1])
    """

    external: np.ndarray  # str, unique

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> IdMap:
        seen: dict[str, None] = {}
        for v in values:
            seen.setdefault(str(v), None)
        return cls(np.array(list(seen), dtype=str))

    def __len__(self) -> int:
        return int(self.external.shape[0])

    @property
    def index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index")
        if cached is None:
            cached = {v: i for i, v in enumerate(self.external.tolist())}
            object.__setattr__(self, "_index", cached)
        return cached

    def to_internal(self, ids: Iterable[Any], *, strict: bool = True) -> np.ndarray:
        """Dense ids; unknown ids raise ``KeyError`` (strict) or map to -1."""
        index = self.index
        out = []
        for v in ids:
            i = index.get(str(v), -1)
            if i < 0 and strict:
                raise KeyError(f"unknown id {v!r}")
            out.append(i)
        return np.array(out, dtype=np.int64)

    def to_external(self, idx: Iterable[int] | np.ndarray) -> list[str]:
        arr = np.asarray(idx, dtype=np.int64)
        return self.external[arr].tolist() if arr.size else []


@dataclass(frozen=True)
class ItemAttributes:
    """Per-item facts used by filters, profiles and cold-start: codes index into the name arrays.

    ``available`` is False for items the shop hides or cannot sell: never recommended.
    ``text`` is the item's title and description ("" when unknown), for content-based models.
    """

    category: np.ndarray  # int32, NO_CODE when unknown
    category_names: np.ndarray  # str
    brand: np.ndarray  # int32
    brand_names: np.ndarray  # str
    price: np.ndarray  # float64, nan when unknown
    available: np.ndarray  # bool
    text: np.ndarray | None = None  # str, title + description; None when no item has any

    @classmethod
    def empty(cls, n_items: int) -> ItemAttributes:
        return cls(
            category=np.full(n_items, NO_CODE, np.int32),
            category_names=np.array([], dtype=str),
            brand=np.full(n_items, NO_CODE, np.int32),
            brand_names=np.array([], dtype=str),
            price=np.full(n_items, np.nan),
            available=np.ones(n_items, bool),
        )

    @classmethod
    def from_columns(
        cls,
        *,
        category: Sequence[str | None],
        brand: Sequence[str | None],
        price: Sequence[float | None],
        available: Sequence[bool],
        text: Sequence[str | None] | None = None,
    ) -> ItemAttributes:
        cat_codes, cat_names = _codes(category)
        brand_codes, brand_names = _codes(brand)
        return cls(
            category=cat_codes,
            category_names=cat_names,
            brand=brand_codes,
            brand_names=brand_names,
            price=np.array([np.nan if p is None else float(p) for p in price], dtype=np.float64),
            available=np.array(available, dtype=bool),
            text=np.array([t or "" for t in text], dtype=str) if text and any(text) else None,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        text = {} if self.text is None else {"item_text": self.text}
        return {
            **text,
            "item_category": self.category,
            "item_category_names": self.category_names,
            "item_brand": self.brand,
            "item_brand_names": self.brand_names,
            "item_price": self.price,
            "item_available": self.available,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ItemAttributes:
        return cls(
            category=arrays["item_category"],
            category_names=arrays["item_category_names"],
            brand=arrays["item_brand"],
            brand_names=arrays["item_brand_names"],
            price=arrays["item_price"],
            available=arrays["item_available"],
            text=arrays.get("item_text"),
        )


def _codes(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    names: dict[str, int] = {}
    codes = np.full(len(values), NO_CODE, np.int32)
    for i, v in enumerate(values):
        if v:
            codes[i] = names.setdefault(v, len(names))
    return codes, np.array(list(names), dtype=str)


@dataclass(frozen=True)
class Dataset:
    """Events as parallel arrays over dense ids, in time order, plus the id maps and item facts.

    ``weight`` is the event's quantity (1 for most sources). Treat every array as read-only.
    """

    users: np.ndarray  # int32 into user_map
    items: np.ndarray  # int32 into item_map
    ts: np.ndarray  # int64, ms
    types: np.ndarray  # int8 into type_names
    weight: np.ndarray  # float32
    type_names: tuple[str, ...]
    user_map: IdMap
    item_map: IdMap
    item_attributes: ItemAttributes
    meta: dict[str, Any] = field(default_factory=dict)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_interactions(cls, inter: Any, *, items: Mapping[str, Any] | None = None) -> Dataset:
        """From ``Store.interactions()`` (a ``shelfwise.store.Interactions``) and, optionally, the
        catalogue (``Store.get_items``): its items with no events still get a dense id (cold items)."""
        user_map = IdMap(np.asarray(inter.user_ids, dtype=str))
        item_ids = [str(i) for i in inter.item_ids]
        extra = sorted(set(items or {}) - set(item_ids))
        item_map = IdMap(np.array(item_ids + extra, dtype=str))
        ds = cls(
            users=np.asarray(inter.users, np.int32),
            items=np.asarray(inter.items, np.int32),
            ts=np.asarray(inter.ts, np.int64),
            types=np.asarray(inter.types, np.int8),
            weight=np.asarray(inter.quantity, np.float32),
            type_names=tuple(inter.type_names),
            user_map=user_map,
            item_map=item_map,
            item_attributes=ItemAttributes.empty(len(item_map)),
        )
        return ds.with_items(items or {})

    @classmethod
    def from_store(cls, store: Any, *, types: Iterable[Any] | None = None) -> Dataset:
        """Every user-item event in the store (bots excluded), with the catalogue's attributes (read
        once, as columns: ``Store.catalogue_columns``)."""
        inter = store.interactions(types=types)
        return cls.from_interactions(inter).with_columns(store.catalogue_columns())

    @classmethod
    def from_file(
        cls,
        path: Path,
        fmt_name: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        limit: int | None = None,
    ) -> Dataset:
        """Read an events file in any format shelfwise knows, through the same quality gate as ingest.

        User ids are pseudonymised with a throw-away key: evaluation never needs the raw ids.
        """
        from shelfwise.core.clock import now_ms
        from shelfwise.data.privacy import Pseudonymizer
        from shelfwise.data.quality import EventGate, GateConfig, ItemGate, Rejection
        from shelfwise.data.readers import ReadOptions, get_format

        fmt = get_format(fmt_name)
        if fmt.kind != "events":
            raise InputFileError(f"format {fmt.name!r} holds {fmt.kind}, not events")
        if not Path(path).is_file():
            raise InputFileError(f"{path}: no such file")
        config = GateConfig(source=fmt.name, time=fmt.time, currency=fmt.currency, now_ms=now_ms())
        pseudo = Pseudonymizer(secrets.token_bytes(32))
        gate = EventGate(config, pseudo)
        item_gate = ItemGate(config, pseudo)
        users: list[str] = []
        items: list[str] = []
        ts: list[int] = []
        types: list[str] = []
        qty: list[int] = []
        prices: dict[str, list[float]] = {}
        facts: dict[str, Any] = {}
        rejected = 0
        for draft in fmt.read(Path(path), ReadOptions(progress=progress, limit=limit)):
            event = gate.check(draft)
            if isinstance(event, Rejection):
                rejected += 1
                continue
            if event.user_id is None or event.item_id is None:
                continue
            users.append(event.user_id)
            items.append(event.item_id)
            ts.append(event.ts)
            types.append(event.type.value)
            qty.append(event.quantity)
            if event.price is not None:
                prices.setdefault(event.item_id, []).append(event.price)
            inline = getattr(draft, "item", None)
            if inline and event.item_id not in facts:
                item = item_gate.inline(inline)
                if item is not None:
                    facts[event.item_id] = item
        if not users:
            raise InputFileError(f"{path}: no user-item events in this {fmt.name} file")
        for item_id, values in prices.items():
            item = facts.get(item_id)
            median = float(np.median(values))
            if item is None:
                facts[item_id] = _Facts(price=median)
            elif getattr(item, "price", None) is None:
                facts[item_id] = _Facts(
                    price=median,
                    category=getattr(item, "category", None),
                    brand=getattr(item, "brand", None),
                    title=getattr(item, "title", None),
                    description=getattr(item, "description", None),
                )
        ds = cls.from_events(users=users, items=items, ts=ts, types=types, quantity=qty)
        ds = ds.with_items(facts)
        return replace(ds, meta={**ds.meta, "source": fmt.name, "path": str(path), "rejected": rejected})

    @classmethod
    def from_events(
        cls,
        *,
        users: Sequence[str],
        items: Sequence[str],
        ts: Sequence[int],
        types: Sequence[str] | None = None,
        quantity: Sequence[int] | None = None,
    ) -> Dataset:
        """From parallel columns of external ids; rows are put in time order (stable)."""
        ts_arr = np.asarray(ts, np.int64)
        order = np.argsort(ts_arr, kind="stable")
        user_map = IdMap.from_values(np.asarray(users, dtype=str)[order])
        item_map = IdMap.from_values(np.asarray(items, dtype=str)[order])
        type_list = list(types) if types is not None else ["purchase"] * len(ts_arr)
        type_names = tuple(sorted(set(type_list)))
        type_code = {t: i for i, t in enumerate(type_names)}
        return cls(
            users=user_map.to_internal(np.asarray(users, dtype=str)[order]).astype(np.int32),
            items=item_map.to_internal(np.asarray(items, dtype=str)[order]).astype(np.int32),
            ts=ts_arr[order],
            types=np.array([type_code[type_list[i]] for i in order], dtype=np.int8),
            weight=(
                np.ones(len(ts_arr), np.float32)
                if quantity is None
                else np.asarray(quantity, np.float32)[order]
            ),
            type_names=type_names,
            user_map=user_map,
            item_map=item_map,
            item_attributes=ItemAttributes.empty(len(item_map)),
        )

    def with_items(self, catalogue: Mapping[str, Any]) -> Dataset:
        """A copy carrying category/brand/price/availability from catalogue records (``Item``-like)."""
        if not catalogue:
            return self
        ids = self.item_map.external.tolist()
        recs = [catalogue.get(i) for i in ids]
        text: list[str | None] = [_item_text(r) for r in recs]
        if not any(text) and self.item_attributes.text is not None:  # keep titles read with the events
            text = self.item_attributes.text.tolist()
        attrs = ItemAttributes.from_columns(
            category=[getattr(r, "category", None) for r in recs],
            brand=[getattr(r, "brand", None) for r in recs],
            price=[getattr(r, "price", None) for r in recs],
            available=[bool(getattr(r, "available", True)) for r in recs],
            text=text,
        )
        return replace(self, item_attributes=attrs)

    def with_columns(self, columns: Any) -> Dataset:
        """``with_items`` from a ``shelfwise.store.CatalogueColumns``: catalogue items with no events
        get dense ids after the ones the events name (in id order, as ``from_interactions`` gives
        them), and the attributes are gathered by position, not through one object per item."""
        if not len(columns):
            return self
        known = self.item_map.index
        extra = sorted(i for i in columns.item_ids if i not in known)  # a backend's collation may differ
        ds = self
        if extra:
            item_map = IdMap(np.concatenate([self.item_map.external, np.array(extra, dtype=str)]))
            ds = replace(self, item_map=item_map, item_attributes=ItemAttributes.empty(len(item_map)))
        row = {item_id: k for k, item_id in enumerate(columns.item_ids)}
        at = np.fromiter((row.get(i, -1) for i in ds.item_map.external.tolist()), np.int64, ds.n_items)
        found = at >= 0
        take = np.where(found, at, 0)

        def pick(values: list[Any]) -> list[Any]:
            return [values[k] if ok else None for k, ok in zip(take.tolist(), found.tolist(), strict=True)]

        titles, descriptions = pick(columns.title), pick(columns.description)
        text: list[str | None] = [
            ". ".join(p.strip() for p in (t, d) if p and p.strip())
            for t, d in zip(titles, descriptions, strict=True)
        ]
        if not any(text) and self.item_attributes.text is not None:
            text = self.item_attributes.text.tolist()  # keep titles read with the events
        attrs = ItemAttributes.from_columns(
            category=pick(columns.category),
            brand=pick(columns.brand),
            price=np.where(found, columns.price[take], np.nan).tolist(),
            available=np.where(found, columns.available[take], True).tolist(),
            text=text,
        )
        return replace(ds, item_attributes=attrs)

    # --- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def type_mask(self, types: Iterable[str] | None) -> np.ndarray:
        """Rows whose event type is one of ``types`` (all rows for None)."""
        if types is None:
            return np.ones(len(self), bool)
        codes = [i for i, name in enumerate(self.type_names) if name in set(types)]
        return np.isin(self.types, codes)

    def matrix(
        self, *, types: Iterable[str] | None = None, binary: bool = True, dtype: Any = np.float32
    ) -> sp.csr_matrix:
        """The users×items matrix (all users and items of the id maps), counting or marking events."""
        return interaction_matrix(
            self.users,
            self.items,
            None if binary else self.weight,
            shape=(self.n_users, self.n_items),
            mask=None if types is None else self.type_mask(types),
            dtype=dtype,
        )

    def select(self, rows: np.ndarray) -> Dataset:
        """The events where ``rows`` (a bool mask) holds, with the same id maps and item facts."""
        return replace(
            self,
            users=self.users[rows],
            items=self.items[rows],
            ts=self.ts[rows],
            types=self.types[rows],
            weight=self.weight[rows],
        )

    def histories(self, *, types: Iterable[str] | None = None) -> list[np.ndarray]:
        """Each user's items in time order (one array per dense user id)."""
        mask = self.type_mask(types)
        users, items = self.users[mask], self.items[mask]
        order = np.argsort(users, kind="stable")  # rows are already in time order
        counts = np.bincount(users, minlength=self.n_users)
        return np.split(items[order], np.cumsum(counts)[:-1])


MATRIX_CHUNK = 1 << 20  # events turned into a partial matrix at a time by ``interaction_matrix``


def interaction_matrix(
    users: np.ndarray,
    items: np.ndarray,
    weight: np.ndarray | None,
    *,
    shape: tuple[int, int],
    mask: np.ndarray | None = None,
    dtype: Any = np.float32,
    chunk: int = MATRIX_CHUNK,
) -> sp.csr_matrix:
    """The users×items CSR matrix of events (``weight`` summed per cell, or 1 per touched cell when
    ``weight`` is None), built ``chunk`` events at a time: each chunk's COO becomes a CSR matrix
    with its duplicates summed and is added to the total, so the temporary index and value arrays
    are one chunk's, not a copy of every event's. Indices are int32 while they fit."""
    total: sp.csr_matrix | None = None
    for lo in range(0, len(users), chunk):
        hi = lo + chunk
        keep = slice(None) if mask is None else mask[lo:hi]
        u, i = users[lo:hi][keep], items[lo:hi][keep]
        data = np.ones(len(u), dtype) if weight is None else weight[lo:hi][keep].astype(dtype)
        part = sp.csr_matrix((data, (u, i)), shape=shape, dtype=dtype)
        part.sum_duplicates()
        total = part if total is None else total + part
    if total is None:
        total = sp.csr_matrix(shape, dtype=dtype)
    total.sum_duplicates()  # sorted indices, one entry per cell
    if weight is None:
        total.data[:] = 1
    return total


@dataclass(frozen=True)
class _Facts:
    """Item facts gathered from events when the file has no catalogue."""

    price: float | None = None
    category: str | None = None
    brand: str | None = None
    available: bool = True
    title: str | None = None
    description: str | None = None


def _item_text(record: Any) -> str:
    """Title and description of a catalogue record, for content-based models."""
    parts = (getattr(record, "title", None), getattr(record, "description", None))
    return ". ".join(p.strip() for p in parts if p and p.strip())
