"""Arrow tables from the analytical store as Polars frames."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

DAY_MS = 86_400_000


def frame(table: pa.Table) -> pl.DataFrame:
    """``table`` as a Polars frame (zero-copy where the types allow)."""
    out = pl.from_arrow(table)
    assert isinstance(out, pl.DataFrame)
    return out
