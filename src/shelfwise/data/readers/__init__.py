"""Dataset readers, by format name. ``get_format("online-retail").read(path, ReadOptions())``."""

from __future__ import annotations

from shelfwise.core.errors import UnknownFormatError
from shelfwise.data.readers import (
    amazon,
    flipkart,
    generic,
    online_retail,
    otto,
    platforms,
    rees46,
    taobao,
    wands,
)
from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, TimeSpec

FORMATS: dict[str, DatasetFormat] = {
    fmt.name: fmt
    for fmt in (
        online_retail.FORMAT,
        rees46.FORMAT,
        taobao.FORMAT,
        otto.FORMAT,
        *amazon.FORMATS,
        *flipkart.FORMATS,
        wands.FORMAT,
        *generic.FORMATS,
        *platforms.FORMATS,
    )
}


def get_format(name: str) -> DatasetFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}", hint=f"known formats: {', '.join(sorted(FORMATS))}"
        ) from None


__all__ = ["FORMATS", "DatasetFormat", "Draft", "Problem", "ReadOptions", "Record", "TimeSpec", "get_format"]
