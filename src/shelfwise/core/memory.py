"""How much memory this process may use, and sizes people can read.

A model refuses, before it allocates, what it cannot fit (``shelfwise.recommend.sizing``): it
compares its own estimate with ``memory_budget()``, which is ``SHELFWISE_MEMORY_LIMIT`` when set
(``"6GB"``, ``"512MiB"``, a byte count) and otherwise a share of what the kernel says is available
now (``MemAvailable`` in ``/proc/meminfo``, capped by a cgroup's ``memory.max`` in a container).

    >>> parse_bytes("1.5GB"), parse_bytes("512MiB"), parse_bytes("1000")
    (1500000000, 536870912, 1000)
    >>> format_bytes(5_580_000_000)
    '5.6 GB'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shelfwise.core.errors import ConfigError

# the share of available memory a fit may plan to use: the rest is for the process's own data,
# the allocator's slack and whatever else the machine runs meanwhile
DEFAULT_SHARE = 0.8

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_bytes(text: str) -> int:
    """``"6GB"``, ``"6 GiB"``, ``"750MB"`` or a plain byte count, as bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"not a memory size: {text!r}", hint="write it as bytes or with a unit: 6GB, 512MiB"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Bytes in decimal units with two or three significant figures."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _meminfo(field: str) -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_room() -> int | None:
    """What a cgroup v2 limit still allows (None when unlimited or not in one)."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((base / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return max(0, int(limit) - used)


def available_bytes() -> int:
    """Memory the kernel could give this process now without swapping."""
    found = _meminfo("MemAvailable")
    if found is None:
        try:
            import psutil  # only where /proc is missing (macOS, Windows)

            found = int(psutil.virtual_memory().available)
        except ImportError:  # pragma: no cover - Linux always has /proc
            found = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    room = _cgroup_room()
    return min(found, room) if room is not None else found


def memory_budget(limit: str | int | None = None) -> int:
    """Bytes a model fit may plan to use: ``limit`` when given, else ``SHELFWISE_MEMORY_LIMIT``, else
    ``DEFAULT_SHARE`` of what is available now."""
    if limit is None:
        limit = os.environ.get("SHELFWISE_MEMORY_LIMIT") or None
    if limit is None:
        from shelfwise.core.settings import get_settings

        limit = get_settings().memory_limit  # the same setting from shelfwise.toml
    if limit is not None:
        return limit if isinstance(limit, int) else parse_bytes(limit)
    return int(available_bytes() * DEFAULT_SHARE)


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
