"""`migration-pipeline run`: each present store's job as a real Dagster run, with its summary."""

from __future__ import annotations

import argparse
import os
import sys

from migration_pipeline.cli.console import stderr_without, store_progress, work_progress
from migration_pipeline.cli.environment import preflight_run, prepare, schema_applied, selected_stores, user
from migration_pipeline.core.errors import ConfigurationError, shorten_paths
from migration_pipeline.core.names import gates_op, live_op, staged_op

# The console shows the summary (a failed step as one line); every event, with its stack trace, still goes
# to the instance's event log (and the UI).
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _fail_fast_when_postgres_goes_away() -> None:
    """dagster-postgres retries a lost connection five times with backoff, each time its instance writes an
    event, logging each retry with its traceback: a server stopped mid-run took 30-42 s and 196 lines to say
    so. One retry still rides out a blip; then the run stops and `main` says it in one line."""
    from dagster_postgres import utils

    utils.retry_pg_connection_fn.__defaults__ = (1, 0.2)


def cmd_run(args: argparse.Namespace) -> int:
    env = prepare(args, needs_source=True, needs_dagster=True)
    try:
        present, absent = selected_stores(args.store, env.source_root)
    except KeyError as exc:
        raise ConfigurationError(str(exc.args[0])) from None
    from migration_pipeline.stores.registry import get_store

    for name in present:
        if get_store(name).needs_secret and not os.environ.get("ENCRYPTION_SECRET"):
            raise ConfigurationError(
                f"ENCRYPTION_SECRET is not set: the {name} store's keys cannot be verified; export it or pass "
                "--env-file (the samples' value is in data_samples/sample.env)")
    for name in absent:
        print(f"{name}: not present under {env.source_root} (skipped)")
    if not present:
        raise ConfigurationError(f"no store folder found under {env.source_root}")

    # Before the first store's run shows in the database: at 2M files the free-disk check walks them all, and
    # importing Dagster and Great Expectations takes seconds more.
    with work_progress(args, "preparing the run: sql/, folders, free disk, the Dagster definitions"):
        schema_applied(env.database_url)
        preflight_run(env, present)  # before importing the definitions: GX alone takes seconds to import
        args.started = True

        from dagster import DagsterInstance

        from migration_pipeline.core.database import connect
        from migration_pipeline.core.reconcile import DEFAULT_MAX_ROW_LOSS_PERCENT
        from migration_pipeline.definitions import defs, job_name
        from migration_pipeline.summary import print_store_summary

        _fail_fast_when_postgres_goes_away()
        # Runs started at once on a fresh database would race to create Dagster's tables (dagster-postgres then
        # logs retries on stderr): the first creates them while the others wait.
        with connect(env.database_url, autocommit=True) as lock:
            lock.execute("SELECT pg_advisory_lock(hashtext('migration-pipeline:dagster-instance'))")
            instance = DagsterInstance.get()
    failures: list[str] = []
    for name in present:
        job = defs.resolve_job_def(job_name(name))
        run_config = {**_QUIET, "ops": {
            live_op(name): {"config": {"force": args.force, "requested_by": user()}},
            staged_op(name): {"config": {"incremental": bool(getattr(args, "incremental", False))}},
            gates_op(name): {"config": {"max_row_loss_percent": 100.0 if getattr(args, "allow_row_loss", False)
                                         else DEFAULT_MAX_ROW_LOSS_PERCENT}},
        }}
        with store_progress(args, env.database_url, name, env.backup_dir), \
                stderr_without("Exception while writing logger call to event log"):
            result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                            tags={"migration/store": name, "migration/source": "cli"})
        problem = print_store_summary(env.database_url, get_store(name), result.run_id, result)
        if problem:
            failures.append(problem)
    for line in failures:
        print(shorten_paths(line), file=sys.stderr)
    return 1 if failures else 0
