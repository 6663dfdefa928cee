"""``Store.interactions`` built a chunk of rows at a time (issue 19: training on 10M stored events).

The rows a query streams (user, item, type, ts, quantity) become int32/int64/int8 arrays chunk by
chunk: each chunk's ids are dictionary-encoded (Arrow) and mapped to a code per distinct id in the
order first seen; at the end the codes are renumbered to the ids' sorted order, which is what
``np.unique`` over the whole columns gave before. So the result is the one-shot build's, while only
one chunk of row objects (``_INTERACTION_CHUNK`` in ``sql``) lives at a time and the rest is arrays:
about 21 bytes an event, plus one dict entry per distinct shopper and item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shelfwise.data.columnar import encode
from shelfwise.store.base import Interactions


class _Codes:
    """Dense codes for ids in the order first seen; ``sorted_codes`` renumbers them as sorted."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def chunk(self, values: Sequence[Any]) -> np.ndarray:
        distinct, codes = encode(values)
        index = self.index
        mapped = np.fromiter((index.setdefault(v, len(index)) for v in distinct), np.int64, len(distinct))
        return mapped[codes].astype(np.int32)

    def sorted_ids(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids in sorted order as an object array, ``codes`` renumbered to index it)."""
        ids = list(self.index)
        order = sorted(range(len(ids)), key=ids.__getitem__)
        rank = np.empty(len(ids), dtype=np.int32)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(ids), dtype=np.int32)
        out = np.empty(len(ids), dtype=object)
        out[:] = [ids[k] for k in order]
        return out, rank[codes] if len(codes) else codes.astype(np.int32)


class InteractionColumns:
    """Rows ``(user_id, item_id, type, ts, quantity)`` added in chunks; ``finish`` gives the
    ``Interactions`` a single ``np.unique`` pass over all of them would give."""

    def __init__(self, type_names: tuple[str, ...]) -> None:
        self.type_names = type_names
        self._type_code = {name: i for i, name in enumerate(type_names)}
        self._users, self._items = _Codes(), _Codes()
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("users", "items", "ts", "types", "qty")}

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        user_col, item_col, type_col, ts_col, qty_col = zip(*rows, strict=True)
        parts = self._parts
        parts["users"].append(self._users.chunk(user_col))
        parts["items"].append(self._items.chunk(item_col))
        parts["ts"].append(np.array(ts_col, dtype=np.int64))
        type_d, type_c = encode(type_col)
        parts["types"].append(np.array([self._type_code[t] for t in type_d], dtype=np.int8)[type_c])
        parts["qty"].append(np.array(qty_col, dtype=np.int32))

    def _column(self, name: str, dtype: Any) -> np.ndarray:
        parts = self._parts[name]
        out = np.concatenate(parts) if parts else np.array([], dtype=dtype)
        parts.clear()  # the pieces go as the whole is made
        return out.astype(dtype, copy=False)

    def finish(self) -> Interactions:
        user_ids, users = self._users.sorted_ids(self._column("users", np.int32))
        item_ids, items = self._items.sorted_ids(self._column("items", np.int32))
        return Interactions(
            users=users,
            items=items,
            ts=self._column("ts", np.int64),
            types=self._column("types", np.int8),
            quantity=self._column("qty", np.int32),
            user_ids=user_ids,
            item_ids=item_ids,
            type_names=self.type_names,
        )
