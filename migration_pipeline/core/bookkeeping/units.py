"""What the loaded units of a plan wrote: `unit_progress`, `source_manifest`, `quarantine`, `flagged_records`,
`unmapped_fields` and `unit_notes`. A unit's rows are written in the transaction that COPYs its rows, so that a
committed unit is whole and a crashed one left nothing."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from migration_pipeline.core.rows import copy_field
from migration_pipeline.core.spec import Flagged, ManifestEntry, Note, Quarantined

# The tables whose rows belong to one unit (its number in `unit_no`).
_PER_UNIT = ("quarantine", "source_manifest", "unit_progress", "unmapped_fields", "unit_notes")
# The tables a new plan clears of every plan but the live one's (the quarantine stays: reports show its history).
_PER_PLAN = ("unit_progress", "source_manifest", "flagged_records", "unmapped_fields", "unit_notes")


# --- writing a unit ---------------------------------------------------------------------------------------------


def copy_manifest(
    cur: psycopg.Cursor, store: str, plan_id: str, entries: Iterable[ManifestEntry], unit_no: int | None = None
) -> None:
    """The manifest rows of `entries` (a unit's files; unmapped files have no unit)."""
    # Formatted here rather than by write_row: this runs once per source file, millions of times.
    suffix = f"\t{copy_field(unit_no)}\n"
    prefix = f"{copy_field(store)}\t{copy_field(plan_id)}\t"
    text = "".join(
        f"{prefix}{copy_field(e.path)}\t{e.size_bytes}\t{copy_field(e.sha256)}\t"
        f"{'symlink' if e.link_target is not None else 'mapped' if e.mapped else 'unmapped'}\t{copy_field(e.mtime_ns)}"
        f"\t{copy_field(e.link_target)}{suffix}"
        for e in entries
    )
    with cur.copy(
        "COPY migration.source_manifest (store, plan_id, path, size_bytes, sha256, status, mtime_ns, link_target,"
        " unit_no) FROM STDIN"
    ) as copy:
        if text:
            copy.write(text)


def copy_quarantine(
    cur: psycopg.Cursor, store: str, plan_id: str, run_id: str, unit_no: int, records: Iterable[Quarantined]
) -> None:
    with cur.copy(
        "COPY migration.quarantine (store, plan_id, run_id, table_name, source_file, locator, reason, message,"
        " unit_no) FROM STDIN"
    ) as copy:
        for q in records:
            copy.write_row((store, plan_id, run_id, q.table, q.source_file, q.locator, q.reason, q.message, unit_no))


def copy_flags(cur: psycopg.Cursor, store: str, plan_id: str, records: Iterable[Flagged]) -> None:
    with cur.copy(
        "COPY migration.flagged_records (store, plan_id, table_name, source_file, locator, reason, message)"
        " FROM STDIN"
    ) as copy:
        for f in records:
            copy.write_row((store, plan_id, f.table, f.source_file, f.locator, f.reason, f.message))


def add_unmapped_fields(
    cur: psycopg.Cursor, store: str, plan_id: str, unit_no: int, counts: Mapping[tuple[str, str], int]
) -> None:
    """Records per (table, field) whose field no column holds, added to what the unit counted so far."""
    for (table, name), records in counts.items():
        cur.execute(
            """INSERT INTO migration.unmapped_fields (store, plan_id, unit_no, table_name, field, records)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (store, plan_id, unit_no, table_name, field)
               DO UPDATE SET records = migration.unmapped_fields.records + EXCLUDED.records""",
            (store, plan_id, unit_no, table, name, records))


def add_notes(cur: psycopg.Cursor, store: str, plan_id: str, unit_no: int, notes: Mapping[Note, int]) -> None:
    """A store's counters of what it changed while reading (see `spec.Note`), added to the unit's."""
    for note, records in notes.items():
        cur.execute(
            """INSERT INTO migration.unit_notes (store, plan_id, unit_no, table_name, reason, message, records)
               VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store, plan_id, unit_no, table_name, reason, message)
               DO UPDATE SET records = migration.unit_notes.records + EXCLUDED.records""",
            (store, plan_id, unit_no, note.table, note.reason, note.message, records))


def copy_unit_progress(
    cur: psycopg.Cursor, store: str, plan_id: str, run_id: str, unit_no: int, seen: Mapping[str, int],
    emitted: Mapping[str, int], hash_sums: Mapping[str, int], counted: Mapping[str, int], files: int,
) -> None:
    """A unit's progress, one row per loaded table, with the number of files it listed: its commit is what makes
    the unit done."""
    with cur.copy(
        "COPY migration.unit_progress (store, plan_id, unit_no, table_name, records_seen, rows_emitted,"
        " row_hash_sum, run_id, records_counted, files_listed) FROM STDIN"
    ) as copy:
        for table_name in seen:
            copy.write_row((store, plan_id, unit_no, table_name, seen[table_name], emitted[table_name],
                            hash_sums[table_name], run_id, counted.get(table_name), files))


def record_unit_progress(
    conn: psycopg.Connection, store: str, plan_id: str, run_id: str, unit_no: int, table: str, seen: int,
    emitted: int, hash_sum: int,
) -> None:
    """One table's progress row for a unit that is not read (the rows a sync carries from the live version)."""
    conn.execute(
        "INSERT INTO migration.unit_progress (store, plan_id, unit_no, table_name, records_seen, rows_emitted,"
        " row_hash_sum, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (store, plan_id, unit_no, table, seen, emitted, hash_sum, run_id))


# --- reading back -------------------------------------------------------------------------------------------------


def committed_units(conn: psycopg.Connection, store: str, plan_id: str, units: Collection[int] | None = None) -> set[int]:
    """The units of the plan whose load committed (all, or those among `units`)."""
    if units is None:
        rows = conn.execute("SELECT DISTINCT unit_no FROM migration.unit_progress WHERE store = %s AND plan_id = %s",
                            (store, plan_id))
    else:
        rows = conn.execute("SELECT DISTINCT unit_no FROM migration.unit_progress WHERE store = %s AND plan_id = %s"
                            " AND unit_no = ANY(%s)", (store, plan_id, list(units)))
    return {r[0] for r in rows}


def unit_files(conn: psycopg.Connection, store: str, plan_id: str, units: Collection[int]) -> list[str]:
    """The paths the given units' loads recorded in the manifest (a unit's staged rows carry them)."""
    return [r[0] for r in conn.execute(
        "SELECT path FROM migration.source_manifest WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)",
        (store, plan_id, list(units)))]


def unit_file_hashes(
    conn: psycopg.Connection, store: str, plan_id: str, units: Collection[int]
) -> list[tuple[int, str, int, str]]:
    """(unit, path, size, sha256) of every file the given units' loads recorded."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT unit_no, path, size_bytes, sha256 FROM migration.source_manifest"
        " WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)", (store, plan_id, list(units))).fetchall()]


def manifest_status_counts(conn: psycopg.Connection, store: str, plan_id: str) -> dict[str, int]:
    """Files of the plan per manifest status (mapped, unmapped, symlink)."""
    return _per_key(conn, "SELECT status, count(*) FROM migration.source_manifest"
                          " WHERE store = %s AND plan_id = %s GROUP BY 1", store, plan_id)


def records_read(conn: psycopg.Connection, store: str, plan_id: str) -> dict[str, int]:
    """Records each loaded table's readers saw, over every unit of the plan."""
    return _per_key(conn, "SELECT table_name, sum(records_seen)::bigint FROM migration.unit_progress"
                          " WHERE store = %s AND plan_id = %s GROUP BY 1", store, plan_id)


def source_records(conn: psycopg.Connection, store: str, plan_id: str) -> dict[str, int]:
    """A table's source records: as counted apart from its reader where the store did, else as read."""
    return _per_key(conn, "SELECT table_name, sum(coalesce(records_counted, records_seen)) FROM migration.unit_progress"
                          " WHERE store = %s AND plan_id = %s GROUP BY 1", store, plan_id)


def source_hash_sum(conn: psycopg.Connection, store: str, plan_id: str, table: str) -> int:
    """The sum of the row hashes computed while reading a table's records."""
    row = conn.execute(
        "SELECT coalesce(sum(row_hash_sum), 0) FROM migration.unit_progress"
        " WHERE store = %s AND plan_id = %s AND table_name = %s", (store, plan_id, table)).fetchone()
    return int(row[0]) if row else 0


def units_progress(
    conn: psycopg.Connection, store: str, plan_id: str, table: str, units: Collection[int]
) -> tuple[int, int, int]:
    """(source records, rows emitted, row hash sum) of a table over the given units."""
    row = conn.execute(
        "SELECT coalesce(sum(coalesce(records_counted, records_seen)), 0), coalesce(sum(rows_emitted), 0),"
        " coalesce(sum(row_hash_sum), 0)"
        " FROM migration.unit_progress WHERE store = %s AND plan_id = %s AND table_name = %s"
        " AND unit_no = ANY(%s)", (store, plan_id, table, list(units))).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def quarantined_per_table(conn: psycopg.Connection, store: str, plan_id: str) -> dict[str, int]:
    return _per_key(conn, "SELECT table_name, count(*) FROM migration.quarantine"
                          " WHERE store = %s AND plan_id = %s GROUP BY 1", store, plan_id)


def quarantined_per_reason(conn: psycopg.Connection, store: str, plan_id: str) -> dict[str, int]:
    return _per_key(conn, "SELECT reason, count(*) FROM migration.quarantine"
                          " WHERE store = %s AND plan_id = %s GROUP BY 1", store, plan_id)


def _per_key(conn: psycopg.Connection, query: LiteralString, store: str, plan_id: str) -> dict[str, int]:
    """{key: count} of a `SELECT key, count ... GROUP BY 1` of one plan."""
    return {str(k): int(v) for k, v in conn.execute(query, (store, plan_id)).fetchall()}


def quarantined_in_units(conn: psycopg.Connection, store: str, plan_id: str, table: str, units: Collection[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM migration.quarantine WHERE store = %s AND plan_id = %s AND table_name = %s"
        " AND unit_no = ANY(%s)", (store, plan_id, table, list(units))).fetchone()
    return int(row[0]) if row else 0


def moved_hash_sum(conn: psycopg.Connection, store: str, plan_id: str, table: str) -> int:
    """The sum of the row hashes of the staged rows moved to the quarantine after loading."""
    row = conn.execute(
        "SELECT coalesce(sum(row_hash), 0) FROM migration.quarantine"
        " WHERE store = %s AND plan_id = %s AND table_name = %s AND row_hash IS NOT NULL",
        (store, plan_id, table)).fetchone()
    return int(row[0]) if row else 0


def quarantine_totals(conn: psycopg.Connection, store: str, plan_id: str, table: str) -> tuple[int, int, int]:
    """(records moved after loading, all records, the moved rows' hash sum) of a table's quarantine."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE row_hash IS NOT NULL), count(*), coalesce(sum(row_hash), 0)"
        " FROM migration.quarantine WHERE store = %s AND plan_id = %s AND table_name = %s",
        (store, plan_id, table)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def flagged_count(conn: psycopg.Connection, store: str, plan_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM migration.flagged_records WHERE store = %s AND plan_id = %s",
                       (store, plan_id)).fetchone()
    return int(row[0]) if row else 0


def plan_notes(conn: psycopg.Connection, store: str, plan_id: str) -> list[tuple[str, str, str, int]]:
    """(table, reason, message, records) of every note of the plan's units, summed over its units."""
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in conn.execute(
        "SELECT table_name, reason, message, sum(records) FROM migration.unit_notes"
        " WHERE store = %s AND plan_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (store, plan_id))]


# --- moving records -------------------------------------------------------------------------------------------------


def move_removed_to_quarantine(
    conn: psycopg.Connection, removed: sql.Composable, params: Mapping[str, Any] | None, *, store: str, plan_id: str,
    run_id: str, table: str, reason: str, message: sql.Composable, row_hash: sql.Composable,
) -> int:
    """Run `removed` (a `DELETE ... RETURNING` of staged rows with their `_source_file` and `_locator`, its
    named placeholders bound from `params`) and move what it removed to the quarantine, each with its row hash
    (so that the checksums still add up). Returns how many.

    The bookkeeping values are composed as literals, not bound: a statement with no `params` is sent without
    any, as a `removed` built from a catalog's CHECK definition may hold a `%`."""
    statement = sql.SQL(
        """WITH removed AS ({removed})
        INSERT INTO migration.quarantine
            (store, plan_id, run_id, table_name, source_file, locator, reason, message, row_hash)
        SELECT {store}, {plan}, {run}, {table}, coalesce(_source_file, ''), coalesce(_locator, ''), {reason},
               {message}, {row_hash}
        FROM removed"""
    ).format(removed=removed, store=sql.Literal(store), plan=sql.Literal(plan_id), run=sql.Literal(run_id),
             table=sql.Literal(table), reason=sql.Literal(reason), message=message, row_hash=row_hash)
    return conn.execute(statement, params or None).rowcount


def drop_flags_of_quarantined(conn: psycopg.Connection, store: str, plan_id: str) -> None:
    """A flagged record that was then moved to the quarantine (e.g. a later duplicate) is not loaded: its flag
    must not block promotion nor be counted against the staged rows."""
    conn.execute(
        """DELETE FROM migration.flagged_records f USING migration.quarantine q
           WHERE f.store = %s AND f.plan_id = %s AND q.store = f.store AND q.plan_id = f.plan_id
             AND q.table_name = f.table_name AND q.source_file = f.source_file AND q.locator = f.locator""",
        (store, plan_id),
    )


def carry_file_records(conn: psycopg.Connection, store: str, from_plan: str, to_plan: str, unit_no: int,
                       except_files: Sequence[str]) -> None:
    """Copy the quarantine, flags and manifest rows of every file but `except_files` from one plan to another
    (a sync's plan keeps the live plan's records of the files it does not read again)."""
    conn.execute(
        """INSERT INTO migration.quarantine (store, plan_id, run_id, table_name, source_file, locator, reason,
                                             message, row_hash, unit_no)
           SELECT store, %s, run_id, table_name, source_file, locator, reason, message, row_hash, %s
           FROM migration.quarantine WHERE store = %s AND plan_id = %s AND source_file <> ALL(%s)""",
        (to_plan, unit_no, store, from_plan, list(except_files)))
    params = (to_plan, store, from_plan, list(except_files))
    conn.execute(
        """INSERT INTO migration.flagged_records (store, plan_id, table_name, source_file, locator, reason, message)
           SELECT store, %s, table_name, source_file, locator, reason, message
           FROM migration.flagged_records WHERE store = %s AND plan_id = %s AND source_file <> ALL(%s)""", params)
    conn.execute(
        """INSERT INTO migration.source_manifest (store, plan_id, path, size_bytes, sha256, status, mtime_ns, link_target)
           SELECT store, %s, path, size_bytes, sha256, status, mtime_ns, link_target
           FROM migration.source_manifest WHERE store = %s AND plan_id = %s AND path <> ALL(%s)""", params)


def changed_files(conn: psycopg.Connection, store: str, plan_id: str, current: str) -> list[tuple[str, str]]:
    """(path, added | changed | deleted) of every file that differs, by size and mtime, between the plan's
    manifest and the temporary table `current` (path, size_bytes, mtime_ns) of the files there now."""
    query = sql.SQL(
        """SELECT coalesce(c.path, m.path),
                  CASE WHEN m.path IS NULL THEN 'added' WHEN c.path IS NULL THEN 'deleted' ELSE 'changed' END
           FROM {current} c
           FULL JOIN (SELECT path, size_bytes, mtime_ns FROM migration.source_manifest
                      WHERE store = %s AND plan_id = %s) m ON m.path = c.path
           WHERE m.path IS NULL OR c.path IS NULL
              OR (c.size_bytes, c.mtime_ns) IS DISTINCT FROM (m.size_bytes, m.mtime_ns)""").format(
        current=sql.Identifier(current))
    return [(str(r[0]), str(r[1])) for r in conn.execute(query, (store, plan_id))]


# --- discarding -----------------------------------------------------------------------------------------------------


def discard_unit_records(conn: psycopg.Connection, store: str, plan_id: str, units: Collection[int],
                         files: Sequence[str]) -> None:
    """Remove what the given units of a plan recorded (their flags by `files`: a flag has no unit)."""
    conn.execute("DELETE FROM migration.flagged_records WHERE store = %s AND plan_id = %s AND source_file = ANY(%s)",
                 (store, plan_id, list(files)))
    for table in _PER_UNIT:
        conn.execute(sql.SQL("DELETE FROM migration.{} WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)").format(
            sql.Identifier(table)), (store, plan_id, list(units)))


def discard_other_plans(conn: psycopg.Connection, store: str, keep: Sequence[str]) -> None:
    """Drop the per-plan records of every plan of `store` but those in `keep`."""
    for table in _PER_PLAN:
        conn.execute(
            sql.SQL("DELETE FROM migration.{} WHERE store = %s AND plan_id <> ALL(%s)").format(sql.Identifier(table)),
            (store, list(keep)),
        )


def flags_per_reason(conn: psycopg.Connection, store: str, plan_id: str) -> list[tuple[str, int, list[str]]]:
    """(reason, records, the first 20 of their files by name) of the plan's flagged records."""
    return [(str(r[0]), int(r[1]), list(r[2])) for r in conn.execute(
        """SELECT reason, count(*), (array_agg(source_file ORDER BY source_file))[1:20]
           FROM migration.flagged_records WHERE store = %s AND plan_id = %s GROUP BY reason ORDER BY reason""",
        (store, plan_id)).fetchall()]


def quarantine_by_table_and_reason(conn: psycopg.Connection, store: str, plan_id: str,
                                   samples: int = 5) -> list[tuple[str, str, int, list[str], str]]:
    """(table, reason, records, the first `samples` locations as "file locator", one message) of the plan's
    quarantine, the most frequent reason of each table first."""
    return [(str(t), str(r), int(n), list(s), str(m)) for t, r, n, s, m in conn.execute(
        """SELECT table_name, reason, count(*),
                  (array_agg(source_file || CASE WHEN locator IN ('', 'file') THEN '' ELSE ' ' || locator END
                             ORDER BY id))[1:%s],
                  min(message)
           FROM migration.quarantine WHERE store = %s AND plan_id = %s GROUP BY 1, 2 ORDER BY 1, 3 DESC""",
        (samples, store, plan_id)).fetchall()]


def quarantine_reason_counts(conn: psycopg.Connection, store: str, plan_id: str) -> list[tuple[str, str, int]]:
    """(table, reason, records) of the plan's quarantine, most frequent first."""
    return [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(
        "SELECT table_name, reason, count(*) FROM migration.quarantine WHERE store = %s AND plan_id = %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2", (store, plan_id))]


def quarantine_records(conn: psycopg.Connection, store: str, plan_id: str, reason: str | None,
                       batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
    """The plan's quarantine rows (table, file, locator, reason, message, run id, plan id), optionally of one
    reason, in batches read from a server-side cursor."""
    with conn.cursor(name="quarantine_records") as cur:
        cur.execute(
            "SELECT table_name, source_file, locator, reason, message, run_id, plan_id FROM migration.quarantine"
            " WHERE store = %s AND plan_id = %s AND (%s::text IS NULL OR reason = %s) ORDER BY id",
            (store, plan_id, reason, reason))
        while rows := cur.fetchmany(batch_rows):
            yield rows


def unmapped_files(conn: psycopg.Connection, store: str, plan_id: str, limit: int = 50) -> list[str]:
    """"path (size bytes, sha256 abc…)" of the plan's unmapped files, by path."""
    return [str(r[0]) for r in conn.execute(
        "SELECT path || ' (' || size_bytes || ' bytes, sha256 ' || left(sha256, 12) || '…)' FROM"
        " migration.source_manifest WHERE store = %s AND plan_id = %s AND status = 'unmapped' ORDER BY path LIMIT %s",
        (store, plan_id, limit))]


def unmapped_field_counts(conn: psycopg.Connection, store: str, plan_id: str,
                          limit: int = 50) -> list[tuple[str, str, int]]:
    """(table, field, records) of the source fields no column took, most frequent first."""
    return [(str(t), str(f), int(n)) for t, f, n in conn.execute(
        "SELECT table_name, field, sum(records)::bigint FROM migration.unmapped_fields WHERE store = %s AND plan_id = %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %s", (store, plan_id, limit)).fetchall()]


def table_quarantine_by_reason(conn: psycopg.Connection, store: str, plan_id: str, table: str,
                               samples: int = 3) -> list[tuple[str, int, list[str]]]:
    """(reason, records, "file locator" of the first `samples` in file order) of one table's quarantine."""
    return [(str(r), int(n), list(s)) for r, n, s in conn.execute(
        "SELECT reason, count(*), (array_agg(source_file || ' ' || locator ORDER BY source_file, locator))[1:%s]"
        " FROM migration.quarantine WHERE store = %s AND plan_id = %s AND table_name = %s"
        " GROUP BY reason ORDER BY count(*) DESC, reason", (samples, store, plan_id, table)).fetchall()]
