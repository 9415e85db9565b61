"""`migration-pipeline`: the command line a data engineer types.

Every failure (missing secret, unreachable database, missing source root, a blocked promotion, PostgreSQL
gone mid-run, a bug) ends as one line on stderr and a documented exit code, never a traceback (unless
--debug). Every command works from any folder given --source-root / --database-url.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from migration_pipeline.core.database import dsn_password, redact_dsn, sqlalchemy_url, start_embedded_server
from migration_pipeline.core.errors import EXIT_CODES_HELP, ConfigurationError, explain, shorten, shorten_paths
from migration_pipeline.core.names import gates_op, live_op, staged_op
from migration_pipeline.preflight import folder_bytes, free_disk_for, role_may_create, usable_folder

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
    url = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL") or start_embedded_server()
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
    return Environment(url, root.resolve(), reports, backups)


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
    free_disk_for(env.backup_dir, folder_bytes(unbacked), "backup folder",
                  "free space there or set MIGRATION_BACKUP_DIR to a folder on a larger disk")


def _selected_stores(names: Sequence[str] | None, root: Path) -> tuple[list[str], list[str]]:
    from migration_pipeline.stores.registry import all_stores, get_store

    specs = [get_store(n) for n in names] if names else list(all_stores())
    present = [s.name for s in specs if (root / s.folder).is_dir()]
    absent = [s.name for s in specs if s.name not in present]
    return present, absent


# The console shows the summary (a failed step as one line); every event, with its stack trace, still goes
# to the instance's event log (and the UI).
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _schema_applied(database_url: str) -> None:
    """`sql/` applied (idempotent): every command reads the bookkeeping tables, which a fresh database lacks."""
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.schema import apply_migrations

    with connect(database_url) as conn:
        apply_migrations(conn)


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def _fail_fast_when_postgres_goes_away() -> None:
    """dagster-postgres retries a lost connection five times with backoff, each time its instance writes an
    event, logging each retry with its traceback: a server stopped mid-run took 30-42 s and 196 lines to say
    so. One retry still rides out a blip; then the run stops and `main` says it in one line."""
    from dagster_postgres import utils

    utils.retry_pg_connection_fn.__defaults__ = (1, 0.2)


class _FilteredStream(io.TextIOBase):
    """A text stream passing on every write but those starting with one of `prefixes` (dropped whole: such a
    write carries a multi-line database error)."""

    def __init__(self, target: TextIO, prefixes: tuple[str, ...]) -> None:
        self.target, self.prefixes = target, prefixes

    def write(self, text: str) -> int:
        if not text.startswith(self.prefixes):
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextmanager
def _stderr_without(*prefixes: str) -> Iterator[None]:
    """Dagster writes a failed event-log write to sys.stderr itself, then raises it: when the server is gone,
    `main` says so once, so that write is left out."""
    original = sys.stderr
    sys.stderr = _FilteredStream(original, prefixes)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = original


def cmd_run(args: argparse.Namespace) -> int:
    env = prepare(args, needs_source=True, needs_dagster=True)
    try:
        present, absent = _selected_stores(args.store, env.source_root)
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

    _schema_applied(env.database_url)
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
            live_op(name): {"config": {"force": args.force, "requested_by": _user()}},
            staged_op(name): {"config": {"incremental": bool(getattr(args, "incremental", False))}},
            gates_op(name): {"config": {"max_row_loss_percent": 100.0 if getattr(args, "allow_row_loss", False)
                                         else DEFAULT_MAX_ROW_LOSS_PERCENT}},
        }}
        with _stderr_without("Exception while writing logger call to event log"):
            result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                            tags={"migration/store": name, "migration/source": "cli"})
        problem = print_store_summary(env.database_url, get_store(name), result.run_id, result)
        if problem:
            failures.append(problem)
    for line in failures:
        print(shorten_paths(line), file=sys.stderr)
    return 1 if failures else 0


def cmd_generate(args: argparse.Namespace) -> int:
    from migration_pipeline.stores.registry import get_store

    spec = get_store(args.store)
    if spec.generator is None:
        raise ConfigurationError(f"store {spec.name} has no generator")
    sizes: dict[str, int] = {}
    for name, (_help, default) in spec.generator.options.items():
        value = getattr(args, name, None)
        if value is None and default is None:
            raise ConfigurationError(f"generate --store {spec.name} needs --{name.replace('_', '-')}")
        sizes[name] = default if value is None else value  # type: ignore[assignment]
    secret = args.secret or os.environ.get("ENCRYPTION_SECRET")
    if spec.generator.needs_secret and not secret:
        raise ConfigurationError(f"generate --store {spec.name} needs --secret or ENCRYPTION_SECRET")
    print(spec.generator.run(Path(args.out), sizes, args.seed, secret))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    embedded = not (getattr(args, "database_url", None) or os.environ.get("DATABASE_URL"))
    env = prepare(args)
    args.started = True
    from migration_pipeline.summary import print_status

    _schema_applied(env.database_url)
    print_status(env.database_url)
    from migration_pipeline.core.database import EMBEDDED_DATA_DIR, embedded_server_running

    if embedded:
        state = "running" if embedded_server_running(EMBEDDED_DATA_DIR) else "stopped"
        print(f"embedded PostgreSQL: {state} (data in {EMBEDDED_DATA_DIR.resolve()}; `migration-pipeline stop` stops it)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from migration_pipeline.core.database import EMBEDDED_DATA_DIR, stop_embedded_server

    args.started = True
    if stop_embedded_server(EMBEDDED_DATA_DIR):
        print(f"stopped the embedded PostgreSQL (data kept in {EMBEDDED_DATA_DIR.resolve()})")
    else:
        print(f"the embedded PostgreSQL is not running (data folder {EMBEDDED_DATA_DIR.resolve()})")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.database import connect
    from migration_pipeline.quarantine_export import export_quarantine, reason_counts
    from migration_pipeline.stores.registry import get_store

    spec = get_store(args.store)
    _schema_applied(env.database_url)
    with connect(env.database_url) as conn:
        try:
            if args.out is None:
                counts = reason_counts(conn, spec.name)
                if not counts:
                    print(f"{spec.name}: nothing quarantined in the current plan")
                for table, reason, n in counts:
                    if args.reason in (None, reason):
                        print(f"{table}\t{reason}\t{n}")
                return 0
            written = export_quarantine(conn, spec.name, Path(args.out), args.format, args.reason)
        except LookupError:
            raise ConfigurationError(f"store {spec.name} has not been staged yet: run it first") from None
    print(f"wrote {written} quarantined records of {spec.name} to {shorten_paths(str(Path(args.out).resolve()))}")
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.dump import dump_store
    from migration_pipeline.stores.registry import get_store

    spec = get_store(args.store)
    _schema_applied(env.database_url)
    made = dump_store(env.database_url, spec, Path(args.out))
    print(f"{spec.name}: dumped the live schema to {shorten_paths(str(made.path.resolve()))} ({made.bytes} bytes,"
          f" sha256 {made.sha256[:16]}…; manifest {made.manifest.name})")
    return 0


def cmd_restore_check(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.dump import restore_check
    from migration_pipeline.stores.registry import get_store
    from migration_pipeline.summary import _table

    spec = get_store(args.store)
    compared = restore_check(env.database_url, spec, Path(args.dump))
    print(_table(["table", "live rows", "restored rows", "checksums"],
                 [[c.table, c.live_rows, c.restored_rows, "equal" if c.equal else "DIFFER"] for c in compared]))
    different = [c.table for c in compared if not c.equal]
    if different:
        print(f"{spec.name}: the restored dump differs from live in {', '.join(different)}", file=sys.stderr)
        return 1
    print(f"{spec.name}: the dump restores every table exactly ({sum(c.live_rows for c in compared)} rows)")
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.backup import prune_expired, recorded_backups, verify_archive
    from migration_pipeline.core.database import connect
    from migration_pipeline.summary import backup_table

    _schema_applied(env.database_url)
    failed = 0
    with connect(env.database_url) as conn:
        if args.prune:
            for gone in prune_expired(conn):
                print(f"pruned {gone.store} backup of {gone.created_at:%Y-%m-%d %H:%M} (kept until "
                      f"{gone.keep_until:%Y-%m-%d}): {gone.archive}")
        backups = recorded_backups(conn)
    verdicts: dict[Path, str] = {}
    if args.verify:
        for backup in (b for b in backups if b.pruned_at is None):
            if not backup.archive.is_file() or not backup.manifest.is_file():
                verdicts[backup.archive] = "MISSING"
            elif _file_sha256(backup.archive) != backup.sha256:
                verdicts[backup.archive] = "FAILS: the archive's SHA-256 is not the recorded one"
            else:
                bad = verify_archive(backup.archive, backup.manifest)
                verdicts[backup.archive] = "verified" if bad is None else f"FAILS at {bad}"
            failed += verdicts[backup.archive] != "verified"
    print(backup_table(backups, verdicts))
    return 1 if failed else 0


def _file_sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _store_arg(name: str):  # type: ignore[no-untyped-def]
    from migration_pipeline.stores.registry import get_store

    try:
        return get_store(name)
    except KeyError as exc:
        raise ConfigurationError(str(exc.args[0])) from None


def cmd_cutover(args: argparse.Namespace) -> int:
    env = prepare(args)
    from migration_pipeline.core.database import connect
    from migration_pipeline.lifecycle import cut_over_with_report

    spec = _store_arg(args.store)
    usable_folder(env.report_dir, "report folder", "set MIGRATION_REPORT_DIR to a writable folder")
    _schema_applied(env.database_url)
    args.started = True
    with connect(env.database_url) as conn:
        approved: list[str] = []
        report = cut_over_with_report(conn, spec.name, args.approved_by, None, env.report_dir, log=approved.append)
    print(f"{approved[0]}; report {report}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    env = prepare(args)
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.promote import rollback

    spec = _store_arg(args.store)
    _schema_applied(env.database_url)
    args.started = True
    with connect(env.database_url) as conn:
        rollback(conn, spec, actor=args.actor or _user())
    print(f"{spec.name}: rolled back to the previous live version")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    env = prepare(args, needs_dagster=True)
    _schema_applied(env.database_url)  # so that any asset can be materialized first on a fresh database
    print(f"Dagster UI on http://127.0.0.1:{args.port} (database {redact_dsn(env.database_url)})")
    # The `dagster` of this interpreter's environment: `make ui` runs .venv/bin/migration-pipeline with the
    # venv not activated, so a bare "dagster" would not be on PATH.
    local = Path(sys.executable).parent / "dagster"
    dagster = str(local) if local.is_file() else "dagster"
    # The repository's workspace.yaml when started there (`make ui`); from any other folder, the package.
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else ["-m", "migration_pipeline.definitions"]
    os.execvp(dagster, [dagster, "dev", *target, "-h", "127.0.0.1", "-p", str(args.port)])
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from migration_pipeline.bench import run_benchmark
    from migration_pipeline.resources import workers_from_env

    env = prepare(args, needs_dagster=True)
    args.started = True
    workers = args.workers or workers_from_env()
    return run_benchmark(env.database_url, users=args.users, workers=workers, keep=args.keep,
                         sync_changes=args.sync_changes, metagauge_users=args.metagauge_users)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("migration-pipeline")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="migration-pipeline", description=__doc__.splitlines()[0] if __doc__ else "",
                                     epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (also MIGRATION_DEBUG=1)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url",
                       help="libpq URL or key=value string (default: DATABASE_URL, else the embedded server)")
        p.add_argument("--env-file", help="KEY=VALUE file to read first (e.g. data_samples/sample.env)")
        p.add_argument("--source-root", help="folder holding one folder per store (default: MIGRATION_SOURCE_ROOT, "
                       "else data_samples in the current folder)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error (also MIGRATION_DEBUG=1)")

    run = sub.add_parser("run", help="migrate stores as a Dagster run: stage, gate, promote, report")
    common(run)
    run.add_argument("--store", action="append", help="store to migrate (repeatable; default: all present)")
    run.add_argument("--force", action="store_true", help="overwrite a cut-over store's live tables (recorded)")
    run.add_argument("--allow-row-loss", action="store_true",
                     help="promote even if a table would lose more than 10%% of its live rows (gate live_row_loss)")
    run.add_argument("--incremental", action="store_true",
                     help="parallel run: read only files added, changed or deleted since the live version")
    run.set_defaults(func=cmd_run)

    from migration_pipeline.stores.registry import all_stores

    generators = {s.name: s.generator for s in all_stores() if s.generator is not None}
    gen = sub.add_parser("generate", help="write a realistic store for tests and benchmarks")
    gen.add_argument("--store", required=True, choices=sorted(generators))
    gen.add_argument("--out", required=True, help="source root to write into (the store's folder goes inside)")
    gen.add_argument("--secret", help="encryption secret for keys (default: ENCRYPTION_SECRET)")
    gen.add_argument("--seed", type=int, default=7, help="the same seed writes the same store")
    offered: dict[str, list[str]] = {}
    for store, generator in generators.items():
        for name, (text, _default) in generator.options.items():
            offered.setdefault(name, []).append(f"{store}: {text}")
    for name, texts in sorted(offered.items()):
        gen.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, help="; ".join(texts))
    gen.set_defaults(func=cmd_generate)

    bench = sub.add_parser("bench", help="generate a wallet store, migrate it, compare with a plain floor script")
    common(bench)
    bench.add_argument("--users", type=int, default=10000)
    bench.add_argument("--workers", type=int, default=None,
                       help="processes for the floors and the pipeline (default: MIGRATION_WORKERS, else 2)")
    bench.add_argument("--keep", action="store_true", help="keep the generated store under .bench/")
    bench.add_argument("--sync-changes", type=int, default=0,
                       help="then change this many files and time an incremental sync of them")
    bench.add_argument("--metagauge-users", type=int, default=0,
                       help="also migrate a generated metagauge store of this many users")
    bench.set_defaults(func=cmd_bench)

    status = sub.add_parser("status", help="phase, last run and last report of every store")
    common(status)
    status.set_defaults(func=cmd_status)

    backups = sub.add_parser("backups", help="every store's backups; verify them again, prune the expired")
    common(backups)
    backups.add_argument("--verify", action="store_true",
                         help="re-read every kept archive and check each file against its manifest (exit 1 if one fails)")
    backups.add_argument("--prune", action="store_true",
                         help="delete archives past their keep_until (30 days), never a store's newest")
    backups.set_defaults(func=cmd_backups)

    cut = sub.add_parser("cutover", help="mark a promoted, validated store as cut over")
    common(cut)
    cut.add_argument("--store", required=True)
    cut.add_argument("--approved-by", required=True)
    cut.set_defaults(func=cmd_cutover)

    back = sub.add_parser("rollback", help="restore the previous live version of a store")
    common(back)
    back.add_argument("--store", required=True)
    back.add_argument("--actor", default=None, help="who asks (default: $USER)")
    back.set_defaults(func=cmd_rollback)

    from migration_pipeline.stores.registry import all_stores as _stores

    quarantine = sub.add_parser(
        "quarantine", help="list the current plan's quarantine by reason, or export its rows to fix them",
        description="Without --out: records per table and reason. With --out: every quarantined record (file, "
        "locator, reason, message) as CSV or Parquet. Messages describe values, never quote them, so no "
        "secret or personal data is exported.",
        epilog="example: migration-pipeline quarantine --store wallet --reason invalid_json --out bad.csv")
    common(quarantine)
    quarantine.add_argument("--store", required=True, choices=[s.name for s in _stores()])
    quarantine.add_argument("--reason", help="only this reason code (see the README's table)")
    quarantine.add_argument("--format", choices=["csv", "parquet"], default="csv")
    quarantine.add_argument("--out", help="file to write (default: print the counts)")
    quarantine.set_defaults(func=cmd_quarantine)

    dump = sub.add_parser("dump", help="pg_dump a store's live schema (custom format) with a SHA-256 manifest",
                          epilog="example: migration-pipeline dump --store wallet --out dumps/")
    common(dump)
    dump.add_argument("--store", required=True, choices=[s.name for s in _stores()])
    dump.add_argument("--out", default="dumps", help="folder for <store>-<time>.dump and its .sha256 (default: dumps)")
    dump.set_defaults(func=cmd_dump)

    restore = sub.add_parser(
        "restore-check", help="restore a dump into a scratch database and compare every table with live",
        description="Checks the dump's SHA-256, restores it with pg_restore into a scratch database on the same "
        "server, compares row counts and checksums of every table with the live schema, drops the scratch "
        "database. Exit 1 if anything differs.")
    common(restore)
    restore.add_argument("--store", required=True, choices=[s.name for s in _stores()])
    restore.add_argument("--dump", required=True, help="a .dump written by `migration-pipeline dump`")
    restore.set_defaults(func=cmd_restore_check)

    stop = sub.add_parser("stop", help="stop the embedded PostgreSQL of this folder (.pgdata/); the data is kept",
                          description="Stops the embedded server that `run`, `ui` and the other commands start when "
                          "DATABASE_URL is not set. Its data stays in .pgdata/; the next command starts it again.")
    stop.set_defaults(func=cmd_stop)

    ui = sub.add_parser("ui", help="start the Dagster UI on the same database and instance")
    common(ui)
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


class _OneLineWarnings(logging.Handler):
    """Warnings logged on the root logger itself, each as one line; dagster-postgres's connection retries are
    left out (each came with a multi-line error, and a lost server is said once, by `main`). Records of named
    loggers that propagate here stay unprinted, as they were with no handler configured."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__(logging.WARNING)
        self.secrets = secrets

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "root" or str(record.msg).startswith("Retrying failed database"):
            return
        lines = record.getMessage().strip().splitlines() or [""]
        print(_scrub(f"warning: {shorten(' '.join(lines[0].split()), 300)}", self.secrets), file=sys.stderr)


def _scrub(line: str, secrets: set[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, "***")
    return " ".join(line.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.started = False  # set once the checks before any work passed: a failure after it is one mid-work
    debug = bool(args.debug) or os.environ.get("MIGRATION_DEBUG", "") not in ("", "0")
    secrets = {p for p in (dsn_password(u) for u in (getattr(args, "database_url", None) or "",
                                                      os.environ.get("DATABASE_URL") or "")) if p}
    root = logging.getLogger()
    quiet = _OneLineWarnings(secrets) if not root.handlers else None
    if quiet:
        root.addHandler(quiet)
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:
        url = getattr(args, "resolved_database_url", None) or getattr(args, "database_url", None) or \
            os.environ.get("DATABASE_URL")
        secrets |= {p for p in (dsn_password(url or ""),) if p}
        failure = explain(exc, started=args.started, database=redact_dsn(url) if url else "the database")
        if debug:
            text = "".join(traceback.format_exception(exc))
            for secret in secrets:
                text = text.replace(secret, "***")
            print(text, file=sys.stderr, end="")
        line = failure.message if failure.message == "interrupted" else f"error: {failure.message}"
        print(_scrub(line, secrets), file=sys.stderr)
        return failure.exit_code
    finally:
        if quiet:
            root.removeHandler(quiet)


if __name__ == "__main__":
    sys.exit(main())
