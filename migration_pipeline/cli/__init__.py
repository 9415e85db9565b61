"""`migration-pipeline`: the command line a data engineer types.

Every failure (missing secret, unreachable database, missing source root, a blocked promotion, PostgreSQL
gone mid-run, a bug) ends as one line on stderr and a documented exit code, never a traceback (unless
--debug). Every command works from any folder given --source-root / --database-url.

The package: `parser` builds the arguments, `environment` resolves and checks the settings before any work,
`console` shows progress and keeps stderr to one line, `commands/` holds one module per group of commands.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from migration_pipeline.cli.commands.bench import cmd_bench, cmd_generate
from migration_pipeline.cli.commands.inspect import cmd_backups, cmd_dump, cmd_quarantine, cmd_restore_check, cmd_status
from migration_pipeline.cli.commands.lifecycle import cmd_cutover, cmd_rollback
from migration_pipeline.cli.commands.run import cmd_run
from migration_pipeline.cli.commands.server import cmd_stop, cmd_ui
from migration_pipeline.cli.console import OneLineWarnings, scrub
from migration_pipeline.cli.environment import _DAGSTER_YAML, DAGSTER_HOME, Environment, preflight_run, prepare
from migration_pipeline.cli.parser import build_parser
from migration_pipeline.core.database import dsn_password, redact_dsn
from migration_pipeline.core.errors import explain

__all__ = [
    "DAGSTER_HOME", "_DAGSTER_YAML", "Environment", "build_parser", "cmd_backups", "cmd_bench", "cmd_cutover",
    "cmd_dump", "cmd_generate", "cmd_quarantine", "cmd_restore_check", "cmd_rollback", "cmd_run", "cmd_status",
    "cmd_stop", "cmd_ui", "main", "preflight_run", "prepare",
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.started = False  # set once the checks before any work passed: a failure after it is one mid-work
    debug = bool(args.debug) or os.environ.get("MIGRATION_DEBUG", "") not in ("", "0")
    secrets = {p for p in (dsn_password(u) for u in (getattr(args, "database_url", None) or "",
                                                      os.environ.get("DATABASE_URL") or "")) if p}
    root = logging.getLogger()
    quiet = OneLineWarnings(secrets) if not root.handlers else None
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
        print(scrub(line, secrets), file=sys.stderr)
        return failure.exit_code
    finally:
        if quiet:
            root.removeHandler(quiet)
