"""Ingest benchmark: ours against a raw insert of the same file, bulk append vs a naive row-by-row
insert, into SQLite and PostgreSQL.

The headline (issue 15): ``shelfwise ingest`` end to end on the whole Online Retail file (read,
check, normalise, dedupe, pseudonymise, quarantine, store; the batch engine, the default) against
the least a program can do with that file: stdlib ``csv`` + ``sqlite3`` ``executemany`` into a plain
table, no checks, one transaction. The two alternate in fresh processes (``RATIO_REPEATS`` rounds,
who goes first alternating too) and the ratio of their medians is reported, so load from other
work on the machine weighs on both alike. The reference row-by-row engine runs once beside them.

Each phase runs in a fresh process so its peak memory (ru_maxrss) is its own. Figures:
- bulk: ``Store.append_events`` of checked events (the store's bulk path), events/s;
- naive: the same events inserted one statement at a time, with a commit per event (what an
  application writing each event as it arrives does) and in one transaction;
- end to end: ``shelfwise ingest`` work (read + check + pseudonymise + store) on the whole
  Online Retail file, then the same file again (must add 0 events);
- reader memory: peak RSS reading 10% of the file vs all of it (streaming keeps it flat);
- backup and restore with verification, both backends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
PG_ADMIN = "postgresql://127.0.0.1:5432/test"
NAIVE_N = 20_000
RATIO_REPEATS = 3
KEY = "benchmark-pseudonym-key-0123456789"


def _settings(tmp: str) -> Any:
    from shelfwise.core.settings import Settings

    return Settings(var_dir=Path(tmp) / "var", pseudonym_key=KEY)


def _checked_events(limit: int | None = None) -> list[Any]:
    from shelfwise.core.settings import Settings
    from shelfwise.data.privacy import Pseudonymizer
    from shelfwise.data.quality import EventGate
    from shelfwise.data.readers import ReadOptions, get_format
    from shelfwise.data.schemas import Event
    from shelfwise.store.ingest import _gate_config

    fmt = get_format("online-retail")
    gate = EventGate(_gate_config(fmt, Settings(pseudonym_key=KEY), "create"), Pseudonymizer(KEY.encode()))
    distinct: dict[str, Event] = {}  # the file repeats some lines; a naive insert would fail on them
    for record in fmt.read(RETAIL, ReadOptions(limit=limit)):
        checked = gate.check(record)
        if isinstance(checked, Event):
            distinct.setdefault(checked.event_id, checked)
    return list(distinct.values())


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- phases (each runs in its own process) --------------------------------------------------------


def phase_bulk(url: str, limit: int | None) -> dict[str, Any]:
    from shelfwise.store import open_store

    events = _checked_events(limit)
    with open_store(url) as store:
        started, cpu = time.perf_counter(), time.process_time()
        stored = 0
        for start in range(0, len(events), 20_000):
            stored += store.append_events(events[start : start + 20_000])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": len(events),
        "stored": stored,
        "seconds": round(seconds, 3),
        "events_per_s": round(len(events) / seconds),
        "events_per_cpu_s": round(
            len(events) / cpu
        ),  # this process's CPU only: PostgreSQL's own is not in it
        "peak_mb": _peak_mb(),
    }


def phase_naive(url: str, n: int, per_event_commit: bool) -> dict[str, Any]:
    from shelfwise.store import open_store
    from shelfwise.store.sql import event_row
    from shelfwise.store.tables import events as table

    events = _checked_events(n * 2)[:n]
    names = [c.name for c in table.columns]
    with open_store(url) as store:
        engine = store.engine  # type: ignore[attr-defined]
        started = time.perf_counter()
        if per_event_commit:
            for event in events:
                with engine.begin() as conn:
                    conn.execute(table.insert().values(dict(zip(names, event_row(event), strict=True))))
        else:
            with engine.begin() as conn:
                for event in events:
                    conn.execute(table.insert().values(dict(zip(names, event_row(event), strict=True))))
        seconds = time.perf_counter() - started
    return {
        "events": len(events),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(events) / seconds),
        "peak_mb": _peak_mb(),
    }


def phase_end_to_end(url: str, tmp: str) -> dict[str, Any]:
    from shelfwise.data.readers import get_format
    from shelfwise.store import open_store
    from shelfwise.store.ingest import ingest_events

    settings = _settings(tmp)
    with open_store(url) as store:
        first = ingest_events(store, RETAIL, get_format("online-retail"), settings)
        second = ingest_events(store, RETAIL, get_format("online-retail"), settings)
        counts = store.counts()
    return {
        "records": first.records,
        "accepted": first.accepted,
        "duplicates": first.duplicates,
        "quarantined": first.quarantined,
        "reasons": first.reasons,
        "seconds": first.seconds,
        "records_per_s": round(first.records_per_second),
        "second_run_accepted": second.accepted,
        "second_run_seconds": second.seconds,
        "events_stored": counts["events"],
        "peak_mb": _peak_mb(),
    }


def phase_raw_peer(tmp: str) -> dict[str, Any]:
    """The floor: the file's rows into SQLite as text, nothing checked (stdlib only)."""
    import csv
    import gzip
    import sqlite3

    path = Path(tmp) / f"raw_{uuid.uuid4().hex[:8]}.db"
    started, cpu = time.perf_counter(), time.process_time()
    db = sqlite3.connect(path)
    with gzip.open(RETAIL, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        db.execute(f"CREATE TABLE raw ({', '.join(f'c{i}' for i in range(len(header)))})")
        with db:
            db.executemany(f"INSERT INTO raw VALUES ({', '.join('?' * len(header))})", reader)
    rows = db.execute("SELECT count(*) FROM raw").fetchone()[0]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    db.close()
    path.unlink()
    return {"records": rows, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}


def phase_ours(url: str, tmp: str, engine: str) -> dict[str, Any]:
    """``shelfwise ingest events`` of the whole file into a fresh store, as the CLI runs it."""
    from shelfwise.data.readers import get_format
    from shelfwise.store import open_store
    from shelfwise.store.ingest import ingest_events

    settings = _settings(tmp)
    with open_store(url) as store:
        cpu = time.process_time()
        report = ingest_events(store, RETAIL, get_format("online-retail"), settings, engine=engine)
        cpu = time.process_time() - cpu
        stored = store.counts()
    return {
        "engine": engine,
        "records": report.records,
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "quarantined": report.quarantined,
        "events_stored": stored["events"],
        "seconds": report.seconds,
        "cpu_seconds": round(cpu, 3),
    }


def ratio_rounds(tmp: str, repeats: int = RATIO_REPEATS) -> dict[str, Any]:
    """Ours (batch engine, SQLite) and the raw peer, interleaved; medians and their ratio."""
    import statistics

    peer: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    for r in range(repeats):
        url = f"sqlite:///{Path(tmp) / f'ratio_{r}.db'}"
        runs = [(peer, phase_raw_peer, (tmp,)), (ours, phase_ours, (url, tmp, "batch"))]
        for bucket, fn, args in runs if r % 2 == 0 else runs[::-1]:
            bucket.append(_in_child(fn, *args))
            print(f"  round {r + 1}: {fn.__name__} {bucket[-1]['seconds']:.2f} s", flush=True)
        Path(tmp, f"ratio_{r}.db").unlink(missing_ok=True)
    peer_s = statistics.median(x["seconds"] for x in peer)
    ours_s = statistics.median(x["seconds"] for x in ours)
    n = peer[0]["records"]
    return {
        "repeats": repeats,
        "records": n,
        "peer_seconds": [x["seconds"] for x in peer],
        "ours_seconds": [x["seconds"] for x in ours],
        "peer_cpu_seconds": [x["cpu_seconds"] for x in peer],
        "ours_cpu_seconds": [x["cpu_seconds"] for x in ours],
        "peer_rows_per_s": round(n / peer_s),
        "ours_rows_per_s": round(n / ours_s),
        "ratio": round(peer_s / ours_s, 3),
        # process CPU (this process only: SQLite runs in it, so both sides count their database
        # work); steadier than wall time on a loaded machine
        "cpu_ratio": round(
            statistics.median(x["cpu_seconds"] for x in peer)
            / statistics.median(x["cpu_seconds"] for x in ours),
            3,
        ),
        "ours": ours[-1],
    }


def phase_read(limit: int | None) -> dict[str, Any]:
    from shelfwise.data.readers import ReadOptions, get_format

    started = time.perf_counter()
    n = sum(1 for _ in get_format("online-retail").read(RETAIL, ReadOptions(limit=limit)))
    seconds = time.perf_counter() - started
    return {
        "records": n,
        "seconds": round(seconds, 3),
        "records_per_s": round(n / seconds),
        "peak_mb": _peak_mb(),
    }


def phase_backup_restore(source: str, target: str, backup_dir: str) -> dict[str, Any]:
    from shelfwise.store import open_store
    from shelfwise.store.backup import backup, restore

    with open_store(source) as store:
        manifest = backup(store, Path(backup_dir))
    with open_store(target) as fresh:
        result = restore(fresh, Path(backup_dir))
    return {
        "rows": {k: v["rows"] for k, v in manifest["tables"].items()},
        "backup_seconds": manifest["seconds"],
        "restore_seconds": result["seconds"],
        "verified": result["verified"],
    }


def _in_child(fn: Any, *args: Any) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


class _PgDatabase:
    def __init__(self) -> None:
        self.name = f"shelfwise_bench_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> str:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return f"postgresql://127.0.0.1:5432/{self.name}"

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:

        def sqlite(name: str) -> str:
            return f"sqlite:///{Path(tmp) / name}.db"

        figures["ratio"] = ratio_rounds(tmp)
        figures["sqlite_rows_engine"] = _in_child(phase_ours, sqlite("rows_engine"), tmp, "rows")
        with _PgDatabase() as url:
            figures["postgres_batch_engine"] = _in_child(phase_ours, url, tmp, "batch")
        if os.environ.get("SHELFWISE_INGEST_BENCH") == "headline":  # the ratio section only
            note = (
                "(This run measured the headline only, `SHELFWISE_INGEST_BENCH=headline`: the bulk, naive, "
                "backup and reader phases were not re-run; their last figures are in git history.)"
            )
            return {"name": "ingest", "figures": figures, "table": f"{_headline(figures)}\n\n{note}"}
        figures["sqlite_bulk_all"] = _in_child(phase_bulk, sqlite("bulk"), None)
        figures["sqlite_bulk_first"] = _in_child(phase_bulk, sqlite("bulk_first"), NAIVE_N)
        figures["sqlite_naive_commit_each"] = _in_child(phase_naive, sqlite("naive1"), NAIVE_N, True)
        figures["sqlite_naive_one_tx"] = _in_child(phase_naive, sqlite("naive2"), NAIVE_N, False)
        with _PgDatabase() as url:
            figures["postgres_bulk_all"] = _in_child(phase_bulk, url, None)
        with _PgDatabase() as url:
            figures["postgres_bulk_first"] = _in_child(phase_bulk, url, NAIVE_N)
        with _PgDatabase() as url:
            figures["postgres_naive_commit_each"] = _in_child(phase_naive, url, NAIVE_N // 4, True)
        with _PgDatabase() as url:
            figures["postgres_naive_one_tx"] = _in_child(phase_naive, url, NAIVE_N, False)
        figures["sqlite_end_to_end"] = _in_child(phase_end_to_end, sqlite("e2e"), tmp)
        with _PgDatabase() as url:
            figures["postgres_end_to_end"] = _in_child(phase_end_to_end, url, tmp)
            with _PgDatabase() as target:
                figures["postgres_backup_restore"] = _in_child(phase_backup_restore, url, target, tmp + "/pg")
        Path(tmp, "sq").mkdir()
        figures["sqlite_backup_restore"] = _in_child(
            phase_backup_restore, sqlite("e2e"), sqlite("restored"), tmp + "/sq"
        )
        figures["read_10pct"] = _in_child(phase_read, 54_191)
        figures["read_all"] = _in_child(phase_read, None)
    # Keep the raw figures even if rendering fails, so a long run is never lost.
    (Path(__file__).parent / "results" / "ingest.raw.json").write_text(
        __import__("json").dumps(figures, indent=2)
    )
    return {"name": "ingest", "figures": figures, "table": _table(figures)}


def _headline(f: dict[str, Any]) -> str:
    ratio, rows_engine, pg_batch = f["ratio"], f["sqlite_rows_engine"], f["postgres_batch_engine"]
    n = ratio["records"]
    lines = [
        "Online Retail (UCI, 541,909 lines). Rates are events (or records) per second.",
        "",
        f"**Ingest vs the raw insert** (same run, {ratio['repeats']} interleaved rounds in fresh processes, "
        "medians): `shelfwise ingest` end to end (batch engine) against stdlib `csv` + `sqlite3` "
        "`executemany` of the same file (no checks, one transaction). Target: ratio ≥ 0.25.",
        "",
        "| ingest of the whole file | rows/s (median) | seconds per round | CPU s per round | ratio to raw |",
        "|---|---:|---|---|---:|",
        f"| raw csv + sqlite3 executemany | {ratio['peer_rows_per_s']:,} | "
        f"{', '.join(f'{x:.2f}' for x in ratio['peer_seconds'])} | "
        f"{', '.join(f'{x:.2f}' for x in ratio['peer_cpu_seconds'])} | 1 |",
        f"| shelfwise ingest, batch engine, SQLite | {ratio['ours_rows_per_s']:,} | "
        f"{', '.join(f'{x:.2f}' for x in ratio['ours_seconds'])} | "
        f"{', '.join(f'{x:.2f}' for x in ratio['ours_cpu_seconds'])} | **{ratio['ratio']:.3f}** |",
        "",
        f"Ratio of median CPU seconds (raw / ours): **{ratio.get('cpu_ratio', float('nan')):.3f}**.",
        f"| shelfwise ingest, rows engine (reference), once | {round(n / rows_engine['seconds']):,} | "
        f"{rows_engine['seconds']:.2f} | {rows_engine['cpu_seconds']:.2f} | "
        f"{(n / rows_engine['seconds']) / ratio['peer_rows_per_s']:.3f} |",
        f"| shelfwise ingest, batch engine, PostgreSQL (COPY), once | {round(n / pg_batch['seconds']):,} | "
        f"{pg_batch['seconds']:.2f} | {pg_batch['cpu_seconds']:.2f} (client only) | "
        f"{(n / pg_batch['seconds']) / ratio['peer_rows_per_s']:.3f} |",
    ]
    return "\n".join(lines)


def _table(f: dict[str, Any]) -> str:
    def row(label: str, key: str, note: str = "") -> str:
        x = f[key]
        rate = x.get("events_per_s") or x.get("records_per_s")
        n = x.get("events") or x.get("records")
        cpu = f"{x['events_per_cpu_s']:,}" if "events_per_cpu_s" in x else ""
        return (
            f"| {label} | {n:,} | {x['seconds']:.2f} | {rate:,} | {cpu} | {x.get('peak_mb', '')} | {note} |"
        )

    s_ratio = f["sqlite_bulk_first"]["events_per_s"] / f["sqlite_naive_commit_each"]["events_per_s"]
    p_ratio = f["postgres_bulk_first"]["events_per_s"] / f["postgres_naive_commit_each"]["events_per_s"]
    e2e, pe2e = f["sqlite_end_to_end"], f["postgres_end_to_end"]
    lines = [
        _headline(f),
        "",
        "| phase | events | seconds | per second | per CPU second | peak MB | note |",
        "|---|---:|---:|---:|---:|---:|---|",
        row("SQLite bulk append, all events", "sqlite_bulk_all", "target ≥ 50,000/s"),
        row("SQLite bulk append, first 20k", "sqlite_bulk_first"),
        row(
            "SQLite naive: INSERT + commit per event",
            "sqlite_naive_commit_each",
            f"bulk is {s_ratio:,.0f}× faster",
        ),
        row("SQLite naive: INSERT per event, one transaction", "sqlite_naive_one_tx"),
        row("PostgreSQL bulk append (COPY), all events", "postgres_bulk_all"),
        row("PostgreSQL bulk append, first 20k", "postgres_bulk_first"),
        row(
            "PostgreSQL naive: INSERT + commit per event",
            "postgres_naive_commit_each",
            f"bulk is {p_ratio:,.0f}× faster",
        ),
        row("PostgreSQL naive: INSERT per event, one transaction", "postgres_naive_one_tx"),
        row("SQLite end to end (read, check, pseudonymise, store)", "sqlite_end_to_end"),
        row("PostgreSQL end to end", "postgres_end_to_end"),
        row("read only, 10% of the file", "read_10pct"),
        row("read only, whole file", "read_all", "memory flat in file size"),
        "",
        f"End to end: {e2e['accepted']:,} accepted, {e2e['duplicates']:,} duplicates, "
        f"{e2e['quarantined']:,} quarantined ({', '.join(f'{k} {v:,}' for k, v in e2e['reasons'].items())}). "
        f"Second ingest of the same file: {e2e['second_run_accepted']} new events on SQLite, "
        f"{pe2e['second_run_accepted']} on PostgreSQL.",
        "",
        "| backup → restore (verified rows + checksums) | backup s | restore s | verified |",
        "|---|---:|---:|---|",
    ]
    for key, label in (
        ("sqlite_backup_restore", "SQLite → new SQLite"),
        ("postgres_backup_restore", "PostgreSQL → new PostgreSQL database"),
    ):
        x = f[key]
        lines.append(
            f"| {label} | {x['backup_seconds']:.1f} | {x['restore_seconds']:.1f} | {x['verified']} |"
        )
    return "\n".join(lines)
