"""The servers: `ui` (Dagster's webserver and daemon on the same instance), `stop` (the embedded PostgreSQL)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from migration_pipeline.cli.environment import prepare, schema_applied
from migration_pipeline.core.database import redact_dsn


def cmd_stop(args: argparse.Namespace) -> int:
    from migration_pipeline.core.database import EMBEDDED_DATA_DIR, stop_embedded_server

    args.started = True
    if stop_embedded_server(EMBEDDED_DATA_DIR):
        print(f"stopped the embedded PostgreSQL (data kept in {EMBEDDED_DATA_DIR.resolve()})")
    else:
        print(f"the embedded PostgreSQL is not running (data folder {EMBEDDED_DATA_DIR.resolve()})")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    env = prepare(args, needs_dagster=True)
    schema_applied(env.database_url)  # so that any asset can be materialized first on a fresh database
    print(f"Dagster UI on http://127.0.0.1:{args.port} (database {redact_dsn(env.database_url)})")
    # The `dagster` of this interpreter's environment: `make ui` runs .venv/bin/migration-pipeline with the
    # venv not activated, so a bare "dagster" would not be on PATH.
    local = Path(sys.executable).parent / "dagster"
    dagster = str(local) if local.is_file() else "dagster"
    # The repository's workspace.yaml when started there (`make ui`); from any other folder, the package.
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else ["-m", "migration_pipeline.definitions"]
    os.execvp(dagster, [dagster, "dev", *target, "-h", "127.0.0.1", "-p", str(args.port)])
    return 0
