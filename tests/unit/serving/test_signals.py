"""The files serving processes signal each other with, beside the registry's versions."""

from __future__ import annotations

from pathlib import Path

from shelfwise.registry import ModelRegistry
from shelfwise.serving.signals import CatalogueLog, ErasureCounter


def test_the_erasure_counter_counts_and_keeps_its_format(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "m")
    counter = ErasureCounter(reg)
    assert counter.count() == 0 and counter.stamp() is None
    counter.note()
    counter.note()
    assert counter.count() == 2 and counter.stamp() is not None
    # the format older registries hold: {"erasures": n, "at": ...} in <root>/ERASURES
    assert '"erasures": 2' in (reg.root / "ERASURES").read_text()


def test_the_catalogue_log_skips_a_torn_line_and_goes_on(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "m")
    log = CatalogueLog(reg)
    start = log.offset()
    mine = log.note_items(["A", "B"])
    with open(reg.root / "CATALOGUE.log", "ab") as fh:
        fh.write(b'["C", fa')  # a writer killed mid-line; the next append lands after it
    log.note_items(["D"], removed=True)
    changes, end = log.changed_since(start)
    assert [(i, r) for _, i, r in changes] == [("A", False), ("B", False), ("D", True)]
    assert [at for at, _, _ in changes][:2] == mine and end == log.offset()
    assert log.changed_since(end) == ([], end)
