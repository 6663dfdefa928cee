"""Column helpers for the batch ingest engine: a rule applied once per distinct value of a column.

Shop data repeats itself: Online Retail's 541,909 lines name 4,070 stock codes, 25,900 invoices,
4,372 customers and 38 countries. The batch engine dictionary-encodes each column (Arrow's
``dictionary_encode`` for text, object identity then value for anything else), runs the very
function the row-by-row reference runs on each distinct value, and broadcasts the results back to
the rows with NumPy. The results are the reference's by construction; only the number of calls drops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

T = TypeVar("T")


def per_distinct(fn: Callable[[Any], T], values: Sequence[Any]) -> list[T]:
    """``[fn(v) for v in values]`` with ``fn`` called once per distinct value (values must be
    hashable and of one type: ``1`` and ``True`` would share a result)."""
    memo = {v: fn(v) for v in set(values)}
    return list(map(memo.__getitem__, values))


class Coded(Sequence[Any]):
    """A column already dictionary-encoded: row ``i`` holds ``distinct[codes[i]]``. A reader that
    worked per distinct value hands its columns on like this, and ``encode`` takes them as they are."""

    __slots__ = ("codes", "distinct")

    def __init__(self, distinct: Sequence[Any], codes: np.ndarray) -> None:
        self.distinct, self.codes = list(distinct), codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.distinct[c] for c in self.codes[i].tolist()]
        return self.distinct[self.codes[i]]


def encode(values: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """(distinct values, code of each row): ``values[i]`` equals ``distinct[codes[i]]``.

    Text (with None) is encoded by Arrow; other columns (numbers from JSON, objects) first by
    object identity, then distinct objects are merged by (type, value) where hashable, so ``1``
    and ``True`` stay apart and each unhashable object is its own value."""
    if isinstance(values, Coded):
        return values.distinct, values.codes
    if isinstance(values, pa.StringArray):  # a column Arrow parsed: encoded as it is
        encoded = pc.dictionary_encode(values, null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
        return encoded.dictionary.to_pylist(), codes
    if len(values) == 0:
        return [], np.zeros(0, dtype=np.intp)
    try:
        encoded = pc.dictionary_encode(pa.array(values, type=pa.string()), null_encoding="encode")
    except (pa.ArrowException, TypeError, ValueError):  # not all text, or text Arrow cannot hold
        return _encode_objects(values)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
    return encoded.dictionary.to_pylist(), codes


def _encode_objects(values: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    by_id = pc.dictionary_encode(pa.array([id(v) for v in values], type=pa.uint64()))
    id_codes = by_id.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
    _, first = np.unique(id_codes, return_index=True)  # first row holding each distinct object
    merged: dict[Any, int] = {}
    remap = np.empty(len(first), dtype=np.intp)
    distinct: list[Any] = []
    for obj_code, row in enumerate(first.tolist()):
        value = values[row]
        try:
            key: Any = (value.__class__, _hashable(value))
            code = merged.get(key)
        except TypeError:  # unhashable: its own value
            key, code = None, None
        if code is None:
            code = len(distinct)
            distinct.append(value)
            if key is not None:
                merged[key] = code
        remap[obj_code] = code
    return distinct, remap[id_codes]


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k.__class__, k, v.__class__, _hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple((v.__class__, _hashable(v)) for v in value)
    if isinstance(value, float):
        return repr(value)  # -0.0 and 0.0 are equal but write differently
    hash(value)
    return value


def take(distinct: Sequence[Any], codes: np.ndarray) -> np.ndarray:
    """``distinct`` broadcast to rows, as an object array (values kept as the same objects)."""
    table = np.empty(len(distinct), dtype=object)
    for i, value in enumerate(distinct):
        table[i] = value
    return table[codes]


def flags(distinct: Sequence[Any], codes: np.ndarray) -> np.ndarray:
    """Truth of each distinct value, broadcast to rows as a boolean array."""
    return np.fromiter((bool(v) for v in distinct), dtype=bool, count=len(distinct))[codes]
