"""Stream a store into its staging schema, in three steps (`core.staging`): plan the run, load the units
(in parallel where they are independent, each committed with its bookkeeping), finish the staged tables
in SQL; then count what was staged.

A crashed run leaves committed units behind; the next run with the same source fingerprint
resumes after them, so nothing is read twice into the staging tables and nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from migration_pipeline.core.database import connect
from migration_pipeline.core.spec import ReadContext, StoreSpec
from migration_pipeline.core.staging import finish, plan
from migration_pipeline.core.staging.finish import StageSummary, summarize
from migration_pipeline.core.staging.load import load_unit, load_units, loader_pool
from migration_pipeline.core.staging.plan import (
    BOOKKEEPING,
    PLAN_FORMAT,
    changed_units,
    discard_units,
    discard_unkept_bookkeeping,
    plan_fingerprint,
)

__all__ = [
    "BOOKKEEPING", "PLAN_FORMAT", "StageSummary", "changed_units", "discard_units", "discard_unkept_bookkeeping",
    "finish_staging", "load_unit", "load_units", "loader_pool", "plan_fingerprint", "stage_store", "summarize",
]


def stage_store(
    database_url: str,
    spec: StoreSpec,
    source_root: Path,
    run_id: str,
    secret: str | None,
    workers: int = 2,
    partitions: Collection[str] | None = None,
    reuse_staged: bool = False,
    pool: ProcessPoolExecutor | None = None,
) -> StageSummary:
    """Load `spec`'s store under `source_root` into `<store>__staging`, resuming a crashed attempt.

    A unit committed by an earlier attempt is kept only if its files still hash to what was read then;
    a changed unit is loaded again. With `reuse_staged`, a finished staging of the same source whose gates
    never completed (the run died during them) is kept as it is. With `partitions`, only the units of those
    partitions are loaded and the staging is left open (status `loading`) for the others; without,
    every missing unit is loaded and the staging finished. With `pool`, the units are loaded by its worker
    processes (the caller's `loader_pool`, shared with the backup beside the load) instead of a pool of its own.
    """
    store_dir = source_root / spec.folder
    timings: dict[str, float] = {}
    # A pool of its own starts its workers while the store is listed.
    with nullcontext(pool) if pool is not None else loader_pool(database_url, spec, workers) as pool:
        started = time.perf_counter()
        discovery = spec.discover(store_dir)
        timings["discover"] = time.perf_counter() - started

        in_scope = tuple(u for u in discovery.units if partitions is None or u.partition in partitions)
        started = time.perf_counter()
        with connect(database_url) as conn:
            run_plan = plan.plan_run(conn, spec, discovery, store_dir, run_id, secret,
                                     reuse_staged and partitions is None,
                                     scope=None if partitions is None else {u.number for u in in_scope})
        timings["resume_check"] = time.perf_counter() - started

        started = time.perf_counter()
        todo = [u for u in in_scope if u.number not in run_plan.done]
        load_units(database_url, spec, run_plan.plan_id, run_id, todo, ReadContext(store_dir=store_dir, secret=secret),
                   pool, workers, load_one=load_unit)
        timings["read_and_copy"] = time.perf_counter() - started

    started = time.perf_counter()
    if partitions is None and run_plan.status != "staged":
        timings.update(finish_staging(database_url, spec, run_plan.plan_id, run_id, workers))
    with connect(database_url) as conn:
        summary = summarize(conn, spec, run_plan.plan_id, run_id)
    timings["finish_sql"] = time.perf_counter() - started  # the three steps and the summary's counts
    summary.in_scope = in_scope
    summary.resumed_units = sum(1 for u in in_scope if u.number in run_plan.done)
    summary.seconds = timings
    return summary


# The steps are looked up here when a run calls them (`load_unit` above too), so that a test can stop a run
# between two of them as a crash would.
_finish_table = finish.finish_table
_validate = finish.validate_key


def finish_staging(
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, workers: int = 2
) -> dict[str, float]:
    """Finish the loaded staging in SQL (`core.staging.finish`); return the seconds of each step."""
    return finish.finish_staging(database_url, spec, plan_id, run_id, workers,
                                 finish_one=_finish_table, validate=_validate)
