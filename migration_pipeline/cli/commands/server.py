"""The servers: `ui` (Dagster's webserver and daemon on the same instance), `stop` (the embedded PostgreSQL)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
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
    # The webserver and the daemon (schedules, sensors, the run queue), as `dagster dev` starts them: that
    # command is superseded (it warns, pointing at `dg dev` of another package), these two are not. Taken from
    # this interpreter's environment: `make ui` runs .venv/bin/migration-pipeline with the venv not activated.
    # The repository's workspace.yaml when started there (`make ui`); from any other folder, the package.
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else ["-m", "migration_pipeline.definitions"]
    return _supervise([
        [_tool("dagster-webserver"), *target, "-h", "127.0.0.1", "-p", str(args.port)],
        [_tool("dagster-daemon"), "run", *target],
    ])


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else name


def _supervise(commands: list[list[str]]) -> int:
    """Run the processes side by side until one ends or we are stopped; then stop the others."""
    children = [subprocess.Popen(command) for command in commands]

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = next(child.returncode for child in children if child.returncode is not None)
    except KeyboardInterrupt:
        code = 130
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
    return code
