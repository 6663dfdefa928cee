"""What one serving process tells the others through files beside the registry's versions.

Both files live under the registry root and are written under the registry's lock (``.lock``),
with the format they always had, so an existing ``var/models`` keeps working:

    ERASURES        {"erasures": n, "at": ...}: a counter (it names nobody) bumped on every erasure;
                    each process then re-checks what it holds in memory (``LiveModels.sync``)
    CATALOGUE.log   items written through the API, one JSON ``[item_id, removed]`` line each; every
                    process follows it from where it started (``serving.catalogue``)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from shelfwise.registry.versions import ModelRegistry, now_iso, write_json_atomic

ERASURES = "ERASURES"
CATALOGUE = "CATALOGUE.log"

Stamp = tuple[int, int]


def file_stamp(path: Path) -> Stamp | None:
    """Cheap change detection for other processes: (mtime_ns, size) of a file, None if missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ErasureCounter:
    """The registry's erasure counter (``ERASURES``)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.path = registry.root / ERASURES

    def note(self) -> None:
        """Tell other serving processes that a shopper was erased: bump the counter."""
        with self.registry.locked():
            write_json_atomic(self.path, {"erasures": self.count() + 1, "at": now_iso()})

    def count(self) -> int:
        """How many erasures the counter has seen (it names nobody)."""
        try:
            return int(json.loads(self.path.read_text())["erasures"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 0

    def stamp(self) -> Stamp | None:
        return file_stamp(self.path)


class CatalogueLog:
    """The registry's catalogue log (``CATALOGUE.log``)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.path = registry.root / CATALOGUE

    def note_items(self, item_ids: Sequence[str], *, removed: bool = False) -> list[int]:
        """Tell other serving processes that these items were written (``removed``: taken out of
        search and recommendations): one append (atomic for short lines on a local file system),
        fsync'd. Lines are ``[item_id, removed]`` in JSON. Returns where each line starts, so the
        writer can skip its own lines when it follows the log."""
        if not item_ids:
            return []
        lines = [(json.dumps([str(i), removed]) + "\n").encode() for i in item_ids]
        with self.registry.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                # the leading newline ends a line torn by a writer killed mid-write, so that line is
                # skipped alone instead of swallowing this one
                os.write(fd, b"\n" + b"".join(lines))
                end = os.lseek(fd, 0, os.SEEK_CUR)
                os.fsync(fd)
            finally:
                os.close(fd)
        starts, at = [], end - sum(len(line) for line in lines)
        for line in lines:
            starts.append(at)
            at += len(line)
        return starts

    def offset(self) -> int:
        """Where the log ends now (a process starts following it from here)."""
        stamp = file_stamp(self.path)
        return stamp[1] if stamp is not None else 0

    def changed_since(self, offset: int) -> tuple[list[tuple[int, str, bool]], int]:
        """(line start, item id, removed) of each line written after ``offset``, and the new
        offset (complete lines only; a log that shrank is read from the start)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return [], 0
        if size < offset:
            offset = 0
        if size == offset:
            return [], offset
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size - offset)
        changes, at = [], offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # being written: read it next time
            item_id = None
            # blank, or torn by a writer killed mid-line: skipped (and not read again)
            with contextlib.suppress(ValueError, TypeError):
                item_id, removed = json.loads(line)
            if item_id is not None:
                changes.append((at, str(item_id), bool(removed)))
            at += len(line)
        return changes, at
