"""Proof that the promoted tables serve the application: each lookup a store declares must be able to use an
index. The gate plans every lookup on the staged tables (whose indexes are the live ones) with sequential
scans disabled: a plan that still scans the table sequentially has no index to use, whatever the table's
size, so the check does not depend on how many rows the samples hold."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from migration_pipeline.core.names import staging_schema
from migration_pipeline.core.spec import Gate


@dataclass(frozen=True, slots=True)
class Lookup:
    """A query the application runs after cutover: `SELECT * FROM <table> WHERE <where>`, its `%s` bound to
    the values of `sample` (SQL expressions over the table) taken from one of its rows."""

    name: str
    table: str
    where: str
    sample: tuple[str, ...]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


INDEX_WAIT_SECONDS = 60.0

# Indexes of `table` that this statement's snapshot may not use yet. The finish updates rows before it builds
# indexes; while any older transaction runs on the server (in any database), those updates stay HOT chains, the
# index is built with `indcheckxmin`, and a snapshot whose xmin is not past the index's creator ignores it.
_INDEXES_NOT_YET_USABLE = """
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = %s::regclass AND i.indcheckxmin
      AND age(i.xmin) <= age(((pg_snapshot_xmin(pg_current_snapshot())::text::bigint %% 4294967296)::text)::xid)
    ORDER BY 1"""


def wait_for_usable_indexes(conn: psycopg.Connection, schema: str, table: str,
                            timeout: float = INDEX_WAIT_SECONDS) -> list[str]:
    """Wait until the planner may use every index of the table; return those it still may not (timed out).

    Read committed: each statement takes a new snapshot, so the same transaction sees the horizon move."""
    qualified = sql.Identifier(schema, table).as_string(conn)
    deadline = time.monotonic() + timeout
    while True:
        waiting = [r[0] for r in conn.execute(_INDEXES_NOT_YET_USABLE, (qualified,)).fetchall()]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.25)


def plan_of(conn: psycopg.Connection, schema: str, lookup: Lookup) -> list[dict[str, Any]] | None:
    """The plan nodes of `lookup` on `schema`, planned with sequential scans disabled (None: the table is empty)."""
    table = sql.Identifier(schema, lookup.table)
    sample = conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
        sql.SQL(", ").join(sql.SQL(s) for s in lookup.sample), table)).fetchone()  # type: ignore[arg-type]
    if sample is None:
        return None
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT * FROM {} WHERE " + lookup.where).format(table),  # type: ignore[arg-type]
                           sample).fetchone()
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


def _scans(nodes: list[dict[str, Any]]) -> bool:
    return any(n["Node Type"] == "Seq Scan" for n in nodes)


@dataclass(frozen=True, slots=True)
class _ServingCheck:
    """The gate's evaluation (a class, not a closure: a StoreSpec is pickled to the loader processes)."""

    lookups: tuple[Lookup, ...]

    def __call__(self, conn: psycopg.Connection, store: str, plan_id: str) -> tuple[bool, str, dict[str, Any]]:
        schema = staging_schema(store)
        plans: dict[str, Any] = {}
        scanning: list[str] = []
        for lookup in self.lookups:
            nodes = plan_of(conn, schema, lookup)
            if nodes is None:
                plans[lookup.name] = "empty table: not planned"
                continue
            unusable: list[str] = []
            if _scans(nodes):
                unusable = wait_for_usable_indexes(conn, schema, lookup.table)
                nodes = plan_of(conn, schema, lookup) or nodes
            kinds = [n["Node Type"] + (f" using {n['Index Name']}" if "Index Name" in n else "") for n in nodes]
            if unusable:
                kinds.append(f"(indexes not usable yet while an older transaction runs: {', '.join(unusable)})")
            plans[lookup.name] = {"query": f"SELECT * FROM {lookup.table} WHERE {lookup.where}", "plan": kinds}
            if _scans(nodes):
                scanning.append(f"{lookup.name} (SELECT * FROM {lookup.table} WHERE {lookup.where}: {' > '.join(kinds)})")
        if scanning:
            return False, (f"{len(scanning)} of {len(self.lookups)} lookups have no index and scan their whole table: "
                           + "; ".join(scanning) + ": add the index in sql/<store>/"), {"lookups": plans}
        return True, f"all {len(self.lookups)} declared lookups use an index", {"lookups": plans}


def serving_gate(lookups: Sequence[Lookup]) -> Gate:
    """A blocking gate: every declared lookup can use an index on the staged tables."""
    return Gate(name="serving", description="Every lookup the application makes after cutover (declared in the "
                "store's spec) can use an index on the promoted tables: a sequential scan fails the gate with the "
                "query and its plan.", evaluate=_ServingCheck(tuple(lookups)))
