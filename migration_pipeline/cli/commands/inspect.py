"""Commands that read what the runs left: `status`, `backups`, `quarantine`, `dump`, `restore-check`."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from migration_pipeline.cli.environment import prepare, schema_applied
from migration_pipeline.core.errors import ConfigurationError, shorten_paths


def cmd_status(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.summary import print_status

    schema_applied(env.database_url)
    print_status(env.database_url)
    from migration_pipeline.summary import database_line

    print(database_line(env.database_url, env.database_from))
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.backup import prune_expired, recorded_backups, verify_archive
    from migration_pipeline.core.database import connect
    from migration_pipeline.summary import backup_table

    schema_applied(env.database_url)
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
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cmd_quarantine(args: argparse.Namespace) -> int:
    env = prepare(args)
    args.started = True
    from migration_pipeline.core.database import connect
    from migration_pipeline.quarantine_export import export_quarantine, reason_counts
    from migration_pipeline.stores.registry import get_store

    spec = get_store(args.store)
    schema_applied(env.database_url)
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
    schema_applied(env.database_url)
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
