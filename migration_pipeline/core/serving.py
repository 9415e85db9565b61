"""Proof that the promoted tables serve the application: each lookup a store declares must be able to use an
index. The gate plans every lookup on the staged tables (whose indexes are the live ones) with sequential
scans disabled: a plan that still scans the table sequentially has no index to use, whatever the table's
size, so the check does not depend on how many rows the samples hold."""

from __future__ import annotations

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
            kinds = [n["Node Type"] + (f" using {n['Index Name']}" if "Index Name" in n else "") for n in nodes]
            plans[lookup.name] = {"query": f"SELECT * FROM {lookup.table} WHERE {lookup.where}", "plan": kinds}
            if any(n["Node Type"] == "Seq Scan" for n in nodes):
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
