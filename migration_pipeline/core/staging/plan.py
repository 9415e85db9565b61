"""Step 1 of staging: the plan this run loads. A run resumes the store's open plan of the same source (its
committed units kept unless their files changed), else starts a new one on fresh staging tables."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.bookkeeping import checks, phases, plans, units
from migration_pipeline.core.manifest import describe_file
from migration_pipeline.core.spec import Discovery, StoreSpec

# The columns every loaded staging table has besides the store's: where each row came from, and its order.
BOOKKEEPING = ("_source_file", "_locator", "_seq")

# Bumped whenever what a unit stages changes, so that no plan of an older version is ever resumed.
PLAN_FORMAT = "2"


def plan_fingerprint(source_fingerprint: str, secret: str | None) -> str:
    """What a plan may be resumed under: the store's listing, the plan format and the secret the keys were
    verified with (as an HMAC, which says nothing of the secret that the stored ciphertexts do not)."""
    digest = hashlib.sha256(f"{PLAN_FORMAT}\0{source_fingerprint}\0".encode())
    if secret is not None:
        digest.update(hmac.new(secret.encode("utf-8"), b"migration-pipeline plan", hashlib.sha256).digest())
    return digest.hexdigest()


@dataclass
class Plan:
    plan_id: str
    fingerprint: str
    status: str            # loading, finishing or staged
    resumed: bool
    done: set[int] = field(default_factory=set)  # units already committed


def plan_run(
    conn: psycopg.Connection, spec: StoreSpec, discovery: Discovery, store_dir: Path, run_id: str, secret: str | None,
    reuse_staged: bool, scope: Collection[int] | None = None,
) -> Plan:
    """The plan this run loads, committed with its unmapped files before any unit is read. A resumed plan
    forgets the units whose files changed since (or, if its tables were already finished, gives way to a new
    plan: only a new plan is exact then). With `scope` (the units of the partitions this run loads), only
    those units are hashed again: a fan-out's step that hashed the units of the partitions loaded before it
    would read the store once per step (7.5 times over for 16 shards). The run that finishes the staging loads
    every partition, so every unit is hashed once before anything is gated."""
    fingerprint = plan_fingerprint(discovery.fingerprint, secret)
    plan = begin_plan(conn, spec, fingerprint, len(discovery.units), run_id, reuse_staged)
    if plan.resumed:
        relied_on = plan.done if scope is None else plan.done & set(scope)
        changed = changed_units(conn, spec.name, plan.plan_id, store_dir, relied_on)
        if changed and plan.status == "loading":
            discard_units(conn, spec, plan.plan_id, changed)
            plan.done -= changed
        elif changed:
            plan = new_plan(conn, spec, plan.fingerprint, len(discovery.units), run_id)
    if not plan.resumed:  # a resumed plan's unmapped files were recorded with it, before any unit
        record_unmapped(conn, spec, plan.plan_id, store_dir, discovery.unmapped)
    conn.commit()
    return plan


def begin_plan(
    conn: psycopg.Connection, spec: StoreSpec, fingerprint: str, units_total: int, run_id: str, reuse_staged: bool
) -> Plan:
    """The plan this run loads: the store's open plan of the same fingerprint (or, with `reuse_staged`, its
    finished plan whose gates never completed), else a new one."""
    plans.lock_plans(conn, spec.name)
    row = plans.plan_for_update(conn, spec.name)
    resumable = row is not None and row.fingerprint == fingerprint and (
        row.status in ("loading", "finishing")
        or (row.status == "staged" and reuse_staged and not gated(conn, spec, row.plan_id)))
    if not resumable:
        return new_plan(conn, spec, fingerprint, units_total, run_id)
    assert row is not None
    done = units.committed_units(conn, spec.name, row.plan_id)
    # The run that resumes owns the plan now: its gates and its promotion (derived rows keep their loader's run id).
    plans.set_plan_run(conn, spec.name, run_id)
    return Plan(row.plan_id, fingerprint, row.status, True, done)


def gated(conn: psycopg.Connection, spec: StoreSpec, plan_id: str) -> bool:
    """Whether the store's gates completed on this plan (they record every outcome at once, at their end)."""
    return checks.check_recorded(conn, spec.name, plan_id, "row_count_reconciliation")


def new_plan(conn: psycopg.Connection, spec: StoreSpec, fingerprint: str, units_total: int, run_id: str) -> Plan:
    plan_id = uuid.uuid4().hex[:16]
    ddl.create_staging_tables(conn, spec, BOOKKEEPING)
    discard_unkept_bookkeeping(conn, spec)
    plans.open_plan(conn, spec.name, plan_id, fingerprint, run_id, units_total)
    return Plan(plan_id, fingerprint, "loading", False)


def changed_units(
    conn: psycopg.Connection, store: str, plan_id: str, store_dir: Path, units_: Collection[int]
) -> set[int]:
    """The units among `units_` whose files no longer hash (SHA-256, size) to what their load read. The
    names alone prove nothing: a store replaced by another version keeps its names. One file after another:
    on 60k wallet files 32 µs a file warm and 71 cold, against 173 and more with four threads, which fight
    over the interpreter for every small read and hash (and do not read a cold disk any faster)."""
    changed: set[int] = set()
    recorded = units.unit_file_hashes(conn, store, plan_id, units_)
    for unit, path, size, sha256 in recorded:
        if unit not in changed:
            entry = describe_file(store_dir, path, mapped=True)
            if (entry.size_bytes, entry.sha256) != (size, sha256):
                changed.add(unit)
    # A unit that recorded no file at all cannot be proven unchanged.
    changed |= set(units_) - {r[0] for r in recorded}
    return changed


def discard_units(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, numbers: Collection[int]) -> None:
    """Remove everything the given committed units of an open plan wrote, so that they load again."""
    paths = units.unit_files(conn, spec.name, plan_id, numbers)
    for table in (t for t in spec.tables if t.loaded):
        conn.execute(sql.SQL("DELETE FROM {} WHERE _source_file = ANY(%s)").format(
            ddl.qualified(spec.staging_schema, table.name)), (paths,))
    units.discard_unit_records(conn, spec.name, plan_id, numbers, paths)


def discard_unkept_bookkeeping(conn: psycopg.Connection, spec: StoreSpec) -> None:
    """A new plan starts: drop the progress, manifest and flags of every plan but the live one."""
    units.discard_other_plans(conn, spec.name, phases.live_plans(conn, spec.name))


def record_unmapped(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, store_dir: Path, unmapped: Iterable[str]
) -> None:
    entries = [describe_file(store_dir, rel, mapped=False) for rel in unmapped]
    units.copy_manifest(conn.cursor(), spec.name, plan_id, entries)
