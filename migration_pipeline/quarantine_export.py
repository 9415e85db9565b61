"""The quarantine of a store's current plan as a file a person fixes records from: CSV or Parquet.

Only bookkeeping columns are exported (file, locator, reason, message, table): messages describe values and
never quote them, so secrets and PII stay in the source files. Rows are read and written in batches through
Arrow, so a quarantine of millions of records never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from migration_pipeline.core.bookkeeping.units import quarantine_reason_counts, quarantine_records
from migration_pipeline.core.reconcile import current_plan

COLUMNS = ("table_name", "source_file", "locator", "reason", "message", "run_id", "plan_id")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
_BATCH_ROWS = 50_000


def _batches(conn: psycopg.Connection, store: str, plan_id: str, reason: str | None) -> Iterator[pa.RecordBatch]:
    for rows in quarantine_records(conn, store, plan_id, reason, _BATCH_ROWS):
        yield pa.RecordBatch.from_arrays([pa.array([r[i] for r in rows], pa.string()) for i in range(len(COLUMNS))],
                                         schema=SCHEMA)


def export_quarantine(conn: psycopg.Connection, store: str, out: Path, fmt: str, reason: str | None = None) -> int:
    """Write the quarantine rows of `store`'s current plan (optionally of one reason) to `out`; return the count."""
    plan_id, _status = current_plan(conn, store)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    if fmt == "parquet":
        with pq.ParquetWriter(out, SCHEMA) as writer:
            for batch in _batches(conn, store, plan_id, reason):
                writer.write_batch(batch)
                written += batch.num_rows
    elif fmt == "csv":
        with pa_csv.CSVWriter(out, SCHEMA) as writer:
            for batch in _batches(conn, store, plan_id, reason):
                writer.write_batch(batch)
                written += batch.num_rows
    else:
        raise ValueError(f"unknown format {fmt!r}: csv or parquet")
    return written


def reason_counts(conn: psycopg.Connection, store: str) -> list[tuple[str, str, int]]:
    """(table, reason, records) of the current plan's quarantine, most frequent first."""
    plan_id, _status = current_plan(conn, store)
    return quarantine_reason_counts(conn, store, plan_id)
