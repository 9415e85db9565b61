"""Settings of a command (flags, then the environment, then defaults), checked before any work and exported
for Dagster: the database (reachable, the role may create schemas), the source root, DAGSTER_HOME and its
dagster.yaml, the report and backup folders."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migration_pipeline.core.database import sqlalchemy_url, start_embedded_server
from migration_pipeline.core.errors import ConfigurationError, shorten
from migration_pipeline.preflight import free_disk_for, role_may_create, usable_folder

DAGSTER_HOME = Path(".dagster_home")
_DAGSTER_YAML = """# Written by migration-pipeline: the Dagster instance lives in the same PostgreSQL.
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
# Runs and backfills launched from the UI wait in the queue that the daemon of `dagster dev` works off, two at
# a time (each run already keeps both cores busy). Every loading and promotion step of a store is in the store's
# pool (`migration_<store>`), one run at a time: a second run of a store waits in the queue instead of failing on
# the store's lock. Enforced per run (a run starts when its pools are free), so a killed process holds no slot.
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
    granularity: run
nux:
  enabled: false
telemetry:
  enabled: false
"""


@dataclass(frozen=True)
class Environment:
    database_url: str
    source_root: Path
    report_dir: Path
    backup_dir: Path
    database_from: str = "the embedded PostgreSQL"  # or "--database-url", "DATABASE_URL"


def load_env_file(path: str | None) -> None:
    """Set what the file defines and the environment does not (the environment wins), read as `.env` files
    are: quotes, `export KEY=`, comments after a value."""
    if not path:
        return
    from dotenv import dotenv_values

    if not Path(path).is_file():
        raise ConfigurationError(f"env file {path} does not exist")
    for key, value in dotenv_values(path, interpolate=False).items():
        if value is not None:
            os.environ.setdefault(key, value)


def prepare(args: argparse.Namespace, *, needs_source: bool = False, needs_dagster: bool = False) -> Environment:
    """Resolve settings (flags, then environment, then defaults), check them, export them for Dagster.

    Every command checks the database (reachable, the role may create schemas, as sql/ needs); only the
    commands that read the stores need the source root, and only those that run Dagster need DAGSTER_HOME.
    """
    from migration_pipeline.core.database import connect
    from migration_pipeline.resources import workers_from_env

    load_env_file(getattr(args, "env_file", None))
    given = getattr(args, "database_url", None)
    source = "--database-url" if given else "DATABASE_URL" if os.environ.get("DATABASE_URL") else \
        "the embedded PostgreSQL"
    url = given or os.environ.get("DATABASE_URL") or start_embedded_server()
    args.resolved_database_url = url
    with connect(url) as conn:
        role_may_create(conn)
    root = Path(getattr(args, "source_root", None) or os.environ.get("MIGRATION_SOURCE_ROOT") or "data_samples")
    if needs_source and not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise ConfigurationError(
            f"source root {shorten(str(root))} {what}: pass --source-root or set MIGRATION_SOURCE_ROOT")
    workers_from_env()  # a bad value is said now, not by the first step that starts workers
    reports = Path(os.environ.get("MIGRATION_REPORT_DIR") or "reports").resolve()
    backups = Path(os.environ.get("MIGRATION_BACKUP_DIR") or "backups").resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or DAGSTER_HOME).resolve()
    if needs_dagster:
        fix = "set DAGSTER_HOME to a writable folder (default: .dagster_home in the current folder)"
        usable_folder(home, "DAGSTER_HOME", fix)
        try:
            if not (home / "dagster.yaml").exists():
                (home / "dagster.yaml").write_text(_DAGSTER_YAML)
        except OSError as exc:
            raise ConfigurationError(
                f"DAGSTER_HOME {shorten(str(home))}: cannot write dagster.yaml ({exc.strerror}): {fix}") from None
    os.environ.update({
        "DATABASE_URL": url,
        "DAGSTER_PG_URL": sqlalchemy_url(url),
        "MIGRATION_SOURCE_ROOT": str(root.resolve()),
        "MIGRATION_REPORT_DIR": str(reports),
        "MIGRATION_BACKUP_DIR": str(backups),
        "DAGSTER_HOME": str(home),
    })
    return Environment(url, root.resolve(), reports, backups, source)


def preflight_run(env: Environment, stores: Sequence[str]) -> None:
    """What a run can know before any work: the report and backup folders writable, and room on the backup's
    disk for the stores whose backup is not written yet (about their size; the archive is compressed)."""
    from migration_pipeline.core.backup import latest_backup
    from migration_pipeline.core.database import connect
    from migration_pipeline.stores.registry import get_store

    usable_folder(env.report_dir, "report folder", "set MIGRATION_REPORT_DIR to a writable folder")
    usable_folder(env.backup_dir, "backup folder", "set MIGRATION_BACKUP_DIR to a writable folder")
    with connect(env.database_url) as conn:
        unbacked = [env.source_root / get_store(name).folder for name in stores if not latest_backup(conn, name)]
    free_disk_for(env.backup_dir, unbacked, "backup folder",
                  "free space there or set MIGRATION_BACKUP_DIR to a folder on a larger disk")


def selected_stores(names: Sequence[str] | None, root: Path) -> tuple[list[str], list[str]]:
    """The stores asked for (default: all), split into those whose folder is under `root` and the others."""
    from migration_pipeline.stores.registry import all_stores, get_store

    specs = [get_store(n) for n in names] if names else list(all_stores())
    present = [s.name for s in specs if (root / s.folder).is_dir()]
    absent = [s.name for s in specs if s.name not in present]
    return present, absent


def schema_applied(database_url: str) -> None:
    """`sql/` applied (idempotent): every command reads the bookkeeping tables, which a fresh database lacks."""
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.schema import apply_migrations

    with connect(database_url) as conn:
        apply_migrations(conn)


def user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def store_arg(name: str):  # type: ignore[no-untyped-def]
    """The store of that name, or a one-line error."""
    from migration_pipeline.stores.registry import get_store

    try:
        return get_store(name)
    except KeyError as exc:
        raise ConfigurationError(str(exc.args[0])) from None
