"""What the Dagster UI shows of a target table, read from PostgreSQL: its columns and constraints as declared
by the DDL (the catalog), its row count, and its quarantined records by reason with a few locators (never a
value). Dagster-free: the factory turns these into `TableSchema` and Markdown metadata."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping.units import table_quarantine_by_reason


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    name: str
    type: str
    nullable: bool
    unique: bool
    description: str | None


@dataclass(frozen=True, slots=True)
class CatalogTable:
    columns: tuple[CatalogColumn, ...]
    constraints: tuple[str, ...]  # "PRIMARY KEY (id)", "UNIQUE (fid, chain)", "FOREIGN KEY ..." as the catalog says


def catalog_table(conn: psycopg.Connection, schema: str, table: str) -> CatalogTable | None:
    """The table's columns (type, NOT NULL, single-column unique) and its constraints and unique indexes, or
    None when it does not exist (yet)."""
    relation = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (schema, table)).fetchone()
    if relation is None:
        return None
    oid = relation[0]
    # Columns covered alone by a primary key, unique constraint or unique index.
    unique_columns = {row[0] for row in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = %s AND i.indisunique AND i.indnkeyatts = 1 AND i.indexprs IS NULL", (oid,))}
    columns = tuple(
        CatalogColumn(name, type_, not not_null, name in unique_columns, description)
        for name, type_, not_null, description in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, col_description(attrelid, attnum)"
            " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,)))
    constraints = [row[0] for row in conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype IN ('p', 'u', 'f')"
        " ORDER BY contype DESC, conname", (oid,))]
    # Unique indexes that are no constraint (e.g. a case-insensitive email): shown by their definition's tail.
    constraints += [f"UNIQUE INDEX {row[0].split(' USING ', 1)[-1]}" for row in conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s AND i.indisunique"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        " ORDER BY i.indexrelid", (oid,))]
    return CatalogTable(columns, tuple(constraints))


def row_count(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """Rows of `schema.table`, or None when it does not exist."""
    exists = conn.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),)).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class QuarantineReason:
    reason: str
    records: int
    sample_locators: tuple[str, ...]  # "<source file> <locator>", a few, in file order


def quarantine_by_reason(
    conn: psycopg.Connection, store: str, plan_id: str, table: str, samples: int = 3
) -> list[QuarantineReason]:
    """The plan's quarantined records of one table by reason, each with the locators of its first records."""
    return [QuarantineReason(reason, count, tuple(locators))
            for reason, count, locators in table_quarantine_by_reason(conn, store, plan_id, table, samples)]


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and shown literally."""
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def quarantine_markdown(reasons: list[QuarantineReason]) -> str:
    if not reasons:
        return "No record quarantined."
    lines = ["| reason | records | first locators |", "| --- | ---: | --- |"]
    for r in reasons:
        lines.append(f"| {_cell(r.reason)} | {r.records} | {'<br>'.join(_cell(s) for s in r.sample_locators)} |")
    return "\n".join(lines)
