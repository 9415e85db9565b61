"""A partition loaded after promotion replaces only its own rows of the live table, behind its own gate.

A store whose partitioned table names its partition column (`Partitioning.live_table` / `live_column`,
e.g. pend's `blockchain_events.day`) gets, for a partition materialized while the store is live: the
partition's units staged and reconciled alone (`reconcile_units`), then, in one transaction that locks the
live table, the partition's staged rows deduplicated on the table's unique keys (first kept; a key already
live in another partition is a duplicate too, quarantined `duplicate_key`), the live rows of the partition
deleted and the staged ones inserted, and the inserted rows' count and checksum compared with the staged
rows': any difference rolls the transaction back and fails the check. Nothing else of the store is read or
written.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping.units import move_removed_to_quarantine, unit_files
from migration_pipeline.core.reconcile import CheckOutcome, _short
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import StoreSpec, Unit


class _Mismatch(Exception):
    pass


def replace_live_partition(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str, units: Sequence[Unit], keys: Sequence[str],
    check_name: str,
) -> CheckOutcome:
    """Replace the live rows of partitions `keys` with the staged rows of `units` (see the module docstring)."""
    assert spec.partitions is not None and spec.partitions.live_table and spec.partitions.live_column
    table = spec.table(spec.partitions.live_table)
    column = sql.Identifier(spec.partitions.live_column)
    live = sql.SQL("{}.{}").format(sql.Identifier(spec.schema), sql.Identifier(table.name))
    staged = sql.SQL("{}.{}").format(sql.Identifier(spec.staging_schema), sql.Identifier(table.name))
    files = unit_files(conn, spec.name, plan_id, [u.number for u in units])
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
    row_hash = sql_row_hash(table.columns)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(live))
            conn.execute(sql.SQL("CREATE TEMP TABLE partition_rows ON COMMIT DROP AS"
                                 " SELECT * FROM {} WHERE _source_file = ANY(%s)").format(staged), (files,))
            duplicates = 0
            for key in table.unique_keys:
                key_sql = sql.SQL(", ").join(sql.Identifier(c) for c in key)
                match = sql.SQL(" AND ").join(sql.SQL("l.{0} = p.{0}").format(sql.Identifier(c)) for c in key)
                removed = sql.SQL(
                    """WITH ranked AS (SELECT ctid AS at, row_number() OVER (PARTITION BY {key} ORDER BY _seq) AS n
                                      FROM partition_rows)
                       DELETE FROM partition_rows p USING ranked r
                       WHERE p.ctid = r.at AND (r.n > 1 OR EXISTS (
                         SELECT 1 FROM {live} l WHERE {match} AND NOT l.{column}::text = ANY(%(keys)s)))
                       RETURNING p.*""").format(key=key_sql, live=live, match=match, column=column)
                message = (f"same {', '.join(key)} as a record kept earlier in the {spec.partitions.label} or"
                           f" live in another {spec.partitions.label}")
                duplicates += move_removed_to_quarantine(
                    conn, removed, {"keys": list(keys), "message": message}, store=spec.name, plan_id=plan_id,
                    run_id=run_id, table=table.name, reason="duplicate_key", message=sql.Placeholder("message"),
                    row_hash=row_hash)
            expected = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM partition_rows").format(
                row_hash)).fetchone()
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s)").format(live, column),
                                   (list(keys),)).rowcount
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM partition_rows ORDER BY _seq").format(
                live, columns, columns))
            now = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} WHERE {}::text = ANY(%s)").format(
                row_hash, live, column), (list(keys),)).fetchone()
            assert expected is not None and now is not None
            details = {"keys": list(keys), "rows_replaced": deleted, "rows_live": int(now[0]),
                       "duplicates_quarantined": duplicates, "checksum_staged": _short(int(expected[1])),
                       "checksum_live": _short(int(now[1]))}
            if tuple(expected) != tuple(now):
                raise _Mismatch(details)
    except _Mismatch as exc:
        return CheckOutcome(check_name, False, "the live rows differ from the staged ones: nothing was replaced",
                            exc.args[0])
    except psycopg.errors.IntegrityError as exc:
        return CheckOutcome(check_name, False, f"the live table refused the rows ({type(exc).__name__}): nothing was"
                            " replaced", {"keys": list(keys)})
    return CheckOutcome(check_name, True, f"{details['rows_live']} live rows of {', '.join(keys)} replace"
                        f" {deleted}; counts and checksums match the staged rows", details)
