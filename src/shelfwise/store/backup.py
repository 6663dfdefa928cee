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
