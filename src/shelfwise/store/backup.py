"""Backup and restore, the same for every backend: one Parquet file per table and a manifest
with row counts, content checksums and file hashes. A restore goes into an empty store (of
either backend), then proves itself: every table's row count and checksum must match.

The checksum of a table is the sum, modulo 2^256, of the SHA-256 of each row written as
canonical JSON, so it does not depend on row order (which differs between backends).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from shelfwise.core.clock import ms_to_datetime, now_ms
from shelfwise.core.errors import BackupError
from shelfwise.core.ids import sha256_file
from shelfwise.store.base import Store
from shelfwise.store.sql import SqlStore
from shelfwise.store.tables import DATA_TABLES, events

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MOD = 1 << 256


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):  # BigInteger is an Integer
        return pa.int64()
    if isinstance(kind, sa.Float):
        return pa.float64()
    return pa.string()


def _schema(table: sa.Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, _arrow_type(c), nullable=True) for c in table.columns])


def _sql(store: Store) -> SqlStore:
    if not isinstance(store, SqlStore):
        raise BackupError(f"backup is not supported for {type(store).__name__}")
    return store


def _row_hash(values: tuple[Any, ...]) -> int:
    text = json.dumps(values, separators=(",", ":"), ensure_ascii=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def table_fingerprints(store: Store) -> dict[str, dict[str, Any]]:
    """Rows and order-independent content checksum of every data table."""
    sql = _sql(store)
    out: dict[str, dict[str, Any]] = {}
    with sql.engine.connect() as conn:
        for table in DATA_TABLES:
            total, rows = 0, 0
            result = conn.execution_options(stream_results=True, yield_per=50_000).execute(sa.select(table))
            for row in result:
                total = (total + _row_hash(tuple(row))) % _MOD
                rows += 1
            out[table.name] = {"rows": rows, "checksum": f"{total:064x}"}
    return out


def backup(store: Store, out_dir: Path) -> dict[str, Any]:
    """Write every table of ``store`` into ``out_dir`` (created; must not hold a backup already)."""
    sql = _sql(store)
    started = time.perf_counter()
    if (out_dir / MANIFEST).exists():
        raise BackupError(f"{out_dir} already holds a backup", hint="choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, Any] = {}
    with sql.engine.connect() as conn:
        for table in DATA_TABLES:
            schema = _schema(table)
            path = out_dir / f"{table.name}.parquet"
            total, rows = 0, 0
            with pq.ParquetWriter(path, schema, compression="zstd") as writer:
                result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                    sa.select(table)
                )
                for chunk in result.partitions():
                    values = [tuple(r) for r in chunk]
                    for v in values:
                        total = (total + _row_hash(v)) % _MOD
                    rows += len(values)
                    columns: list[Any] = list(zip(*values, strict=True)) if values else [[] for _ in schema]
                    writer.write_table(
                        pa.table(
                            {f.name: pa.array(col, f.type) for f, col in zip(schema, columns, strict=True)},
                            schema=schema,
                        )
                    )
            tables[table.name] = {
                "rows": rows,
                "checksum": f"{total:064x}",
                "file": path.name,
                "sha256": sha256_file(str(path)),
            }
    manifest = {
        "format": FORMAT_VERSION,
        "created_at": ms_to_datetime(now_ms()).isoformat(timespec="seconds"),
        "source": sql.safe_url,
        "tables": tables,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(backup_dir: Path) -> dict[str, Any]:
    path = backup_dir / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{backup_dir}: no {MANIFEST}, not a shelfwise backup") from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path}: corrupt manifest ({exc})") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    for name, entry in manifest["tables"].items():
        file = backup_dir / entry["file"]
        if not file.exists():
            raise BackupError(f"{backup_dir}: {entry['file']} is missing ({name})")
        if sha256_file(str(file)) != entry["sha256"]:
            raise BackupError(f"{file}: sha256 does not match the manifest; the backup is corrupt")
    return manifest


def restore(store: Store, backup_dir: Path) -> dict[str, Any]:
    """Load a backup into an empty ``store`` and verify row counts and checksums."""
    sql = _sql(store)
    started = time.perf_counter()
    manifest = read_manifest(backup_dir)
    filled = {name: n for name, n in store.counts().items() if n}
    if filled:
        raise BackupError(
            f"{sql.safe_url} is not empty ({', '.join(f'{k}: {v}' for k, v in filled.items())})",
            hint="restore into a new database",
        )
    with sql.engine.begin() as conn:
        for table in DATA_TABLES:
            entry = manifest["tables"].get(table.name)
            if entry is None:
                continue
            names = [c.name for c in table.columns]
            for batch in pq.ParquetFile(backup_dir / entry["file"]).iter_batches(
                batch_size=50_000, columns=names
            ):
                columns = [batch.column(n).to_pylist() for n in names]
                if table is events:
                    sql.bulk_insert_events(conn, list(zip(*columns, strict=True)))
                else:
                    sql.bulk_load(
                        conn, table, [dict(zip(names, r, strict=True)) for r in zip(*columns, strict=True)]
                    )
        sql.after_load(conn)
    found = table_fingerprints(store)
    mismatched = [
        name
        for name, entry in manifest["tables"].items()
        if found.get(name) != {"rows": entry["rows"], "checksum": entry["checksum"]}
    ]
    if mismatched:
        raise BackupError(f"restore does not match the backup for {', '.join(mismatched)}")
    return {
        "tables": found,
        "verified": True,
        "seconds": round(time.perf_counter() - started, 3),
        "backup": str(backup_dir),
    }


# --- erasure ----------------------------------------------------------------------------------------

_PER_USER = {"events": "user_id", "users": "user_id"}  # tables whose rows belong to one shopper


def _user_rows(table: pa.Table, name: str, user_id: str) -> Any:
    import pyarrow.compute as pc

    if name == "quarantine":  # a rejected record names its shopper inside its JSON
        hit = pc.match_substring(table.column("record"), user_id)
    else:
        hit = pc.equal(table.column(_PER_USER[name]), user_id)
    return pc.fill_null(hit, False)


def backups_under(dirs: Any) -> list[Path]:
    """Directories under ``dirs`` that hold a shelfwise backup (a manifest of this format)."""
    found = []
    for d in dirs:
        for path in sorted(Path(d).rglob(MANIFEST)) if Path(d).is_dir() else []:
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if (
                isinstance(manifest, dict)
                and manifest.get("format") == FORMAT_VERSION
                and "tables" in manifest
            ):
                found.append(path.parent)
    return found


def backup_mentions(backup_dir: Path, user_id: str) -> dict[str, int]:
    """Rows of each table of a backup that belong to or name ``user_id`` (a pseudonym)."""
    import pyarrow.compute as pc

    manifest = read_manifest(backup_dir)
    found: dict[str, int] = {}
    for name in (*_PER_USER, "quarantine"):
        entry = manifest["tables"].get(name)
        if entry is None:
            continue
        column = "record" if name == "quarantine" else _PER_USER[name]
        table = pq.read_table(backup_dir / entry["file"], columns=[column])
        n = int(pc.sum(_user_rows(table, name, user_id)).as_py() or 0)
        if n:
            found[name] = n
    return found


def erase_from_backup(backup_dir: Path, user_id: str) -> int:
    """Remove a shopper's rows from a backup (events, profile, quarantined records that name them)
    and add their tombstone when the backup carries tombstones; the manifest's row counts,
    checksums and file hashes are rewritten, so the backup still restores and verifies. Returns the
    rows removed."""
    import os

    import pyarrow.compute as pc

    manifest = read_manifest(backup_dir)  # refuses a corrupt backup before touching it
    removed = 0
    for name in (*_PER_USER, "quarantine"):
        entry = manifest["tables"].get(name)
        if entry is None:
            continue
        path = backup_dir / entry["file"]
        table = pq.read_table(path)
        hit = _user_rows(table, name, user_id)
        n = int(pc.sum(hit).as_py() or 0)
        if n:
            _rewrite(path, table.filter(pc.invert(hit)), entry)
            removed += n
    tombstones = manifest["tables"].get("erased_users")
    if removed and tombstones is not None:
        path = backup_dir / tombstones["file"]
        table = pq.read_table(path)
        if user_id not in set(table.column("user_id").to_pylist()):
            row = pa.table({"user_id": [user_id], "erased_at": [now_ms()]}, schema=table.schema)
            _rewrite(path, pa.concat_tables([table, row]), tombstones)
    if removed:
        manifest["erasures"] = int(manifest.get("erasures", 0)) + 1
        tmp = backup_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, backup_dir / MANIFEST)
    return removed


def _rewrite(path: Path, table: pa.Table, entry: dict[str, Any]) -> None:
    """Write ``table`` over ``path`` (whole or not at all) and update its manifest entry."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    total = 0
    for row in zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True):
        total = (total + _row_hash(tuple(row))) % _MOD
    entry.update(rows=table.num_rows, checksum=f"{total:064x}", sha256=sha256_file(str(path)))
