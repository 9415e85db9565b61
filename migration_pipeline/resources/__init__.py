"""The one resource the assets need: where the stores are, where PostgreSQL is, where reports go."""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from dagster import AssetExecutionContext, ConfigurableResource, Failure, InitResourceContext
from pydantic import PrivateAttr

from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import ConfigurationError, MigrationError
from migration_pipeline.core.lease import StoreLease


def workers_from_env() -> int:
    """MIGRATION_WORKERS, else 2 (the machine this was built on has two cores)."""
    value = os.environ.get("MIGRATION_WORKERS") or "2"
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"MIGRATION_WORKERS is {value!r}: set it to a whole number of processes (1 or more)")
    return int(value)


class MigrationResource(ConfigurableResource):  # type: ignore[misc]
    """Settings of a migration run, given by environment variables (see README, Configuration)."""

    database_url: str
    source_root: str = "data_samples"
    report_dir: str = "reports"
    backup_dir: str = "backups"
    workers: int | None = None  # worker processes per store; None: MIGRATION_WORKERS, else 2
    encryption_secret_env: str = "ENCRYPTION_SECRET"

    _leases: dict[str, StoreLease] = PrivateAttr(default_factory=dict)

    def root(self) -> Path:
        return Path(self.source_root)

    def reports(self) -> Path:
        return Path(self.report_dir)

    def secret(self, required: bool) -> str | None:
        """The encryption secret, read when a run needs it (never stored in config or metadata)."""
        value = os.environ.get(self.encryption_secret_env)
        if required and not value:
            raise ConfigurationError(
                f"{self.encryption_secret_env} is not set: the wallet keys cannot be verified; export it (the "
                "samples' value is in data_samples/sample.env)")
        return value or None

    def worker_count(self) -> int:
        """Processes that read a store (and write its backup) side by side: one per core is what pays."""
        return self.workers if self.workers is not None else workers_from_env()

    def connect(self) -> psycopg.Connection:
        return connect(self.database_url)

    def hold_store_lock(self, store: str, run_id: str) -> None:
        """Hold the store for this run until this process's steps end (a lease in `migration.store_leases`,
        kept alive by a heartbeat): the steps of this run share it, in this process or any other; another
        run is refused with StoreBusyError naming the holder."""
        if store in self._leases:
            return
        self._leases[store] = StoreLease.take(self.database_url, store, run_id)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        for lease in self._leases.values():
            lease.release()
        self._leases.clear()

    def describe(self) -> dict[str, Any]:
        return {"source_root": str(self.root().resolve()), "report_dir": str(self.reports().resolve())}


@contextmanager
def step_errors() -> Iterator[None]:
    """A step's expected refusals (a blocked promotion, a busy store, a setting missing) end it with their one
    line and no retry; a transient database error (psycopg.OperationalError: a dropped connection, a failover)
    propagates, so that the step's RetryPolicy runs it again."""
    try:
        yield
    except MigrationError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    except psycopg.OperationalError:
        raise


def run_stores(context: AssetExecutionContext) -> list[str]:
    """The stores whose assets this run materializes (every asset but the shared schema is `<store>/…`)."""
    selection = context.run.asset_selection or set()
    checks = context.run.asset_check_selection or set()
    keys = {*selection, *(c.asset_key for c in checks)}
    return sorted({k.path[0] for k in keys if len(k.path) > 1})


def tag_run_with_stores(context: AssetExecutionContext) -> None:
    """Tag the run with its stores (`migration/store` when one, `migration/stores` always), as the CLI and the
    jobs do: a Materialize from the asset graph is found by store in the Runs list too."""
    stores = run_stores(context) or sorted({k.path[0] for k in context.selected_asset_keys if len(k.path) > 1})
    tags = context.run.tags
    wanted = {"migration/stores": ",".join(stores)}
    if len(stores) == 1:
        wanted["migration/store"] = stores[0]
    missing = {k: v for k, v in wanted.items() if k not in tags}
    if missing:
        context.instance.add_run_tags(context.run_id, missing)
