"""Errors a data engineer sees as one line: what is wrong and what to do, and the exit code of each kind."""

from __future__ import annotations

import errno
import os
import re
import traceback
from dataclasses import dataclass

# The exit codes of `migration-pipeline` (its --help and the README list them too).
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, and a store's run failed or was blocked, or a backup failed verification
EXIT_NOT_STARTED = 2  # nothing was done: a setting, folder, disk, privilege or the database is not usable
EXIT_DATABASE_LOST = 3  # PostgreSQL went away while the command was working
EXIT_DISK = 4  # a file could not be written while the command was working (disk full, permission, not a folder)
EXIT_BUG = 5  # an unexpected error: its type and place are printed; the traceback with --debug
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    done
  1    a store's run failed or was blocked by a gate; a backup failed verification
  2    nothing was done: a setting, folder, free disk, privilege or the database is not usable
  3    PostgreSQL went away while the command was working: start it, then run the command again
  4    a file could not be written while working (disk full, permission denied, not a folder)
  5    unexpected error (a bug): rerun with --debug or MIGRATION_DEBUG=1 for the traceback
  130  interrupted (Ctrl-C)"""

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}
MAX_PATH_IN_MESSAGE = 80
MAX_DETAIL_IN_MESSAGE = 2000  # a gate naming every table it blocks on is long and worth reading whole


class MigrationError(Exception):
    """An expected failure whose message is safe to print as it is (no secrets, no traceback)."""

    exit_code = EXIT_NOT_STARTED


class ConfigurationError(MigrationError):
    """A missing or invalid setting (secret, source root, database URL), or a folder or disk not usable."""


class DatabaseUnavailableError(MigrationError):
    """PostgreSQL cannot be reached. `reason`: libpq's, short (e.g. "Connection refused")."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class InsufficientPrivilegeError(MigrationError):
    """The database role may not do what the pipeline needs (create schemas and tables)."""


class SchemaDriftError(MigrationError):
    """An already-applied file under sql/ was edited."""


class StoreBusyError(MigrationError):
    """Another run holds the store's lock."""


class PromotionBlockedError(MigrationError):
    """A gate failed, or the store is cut over, so the live tables were left as they were."""


def shorten(text: str, limit: int = MAX_PATH_IN_MESSAGE) -> str:
    """`text` of at most `limit` characters, its middle elided: a path keeps its root and its file name."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = limit - 1
    head = keep // 3
    return f"{text[:head]}…{text[len(text) - (keep - head):]}"


def shorten_paths(message: str, limit: int = MAX_PATH_IN_MESSAGE) -> str:
    """Every long word of `message` that looks like a path shortened; then the whole capped."""
    words = [shorten(w, limit) if len(w) > limit and ("/" in w or os.sep in w) else w for w in message.split(" ")]
    return shorten(" ".join(words), MAX_DETAIL_IN_MESSAGE + limit)


@dataclass(frozen=True)
class Failure:
    """What a command prints on stderr when it stops, and the exit code it returns."""

    message: str
    exit_code: int


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_database_error(exc: BaseException, *names: str) -> bool:
    module = type(exc).__module__.split(".")[0]
    return module in {"psycopg", "psycopg2", "sqlalchemy", "dagster_postgres"} and any(
        c.__name__ in names for c in type(exc).__mro__)


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(exc).__name__


def _lost(database: str, reason: str) -> Failure:
    return Failure(
        f"lost PostgreSQL at {database} while working ({reason}); start it (or wait until it answers) and run the "
        "command again: the live tables change only in the promotion's transaction", EXIT_DATABASE_LOST)


def _database_reason(exc: BaseException) -> str:
    """libpq's reason without the server's address (the message names it once, redacted)."""
    reason = re.sub(r"^\([\w.]+\) ", "", _first_line(exc))
    reason = re.sub(r'^connection to server (at "[^"]*", port \d+|on socket "[^"]*") failed: ', "", reason)
    return re.sub(r"^FATAL: ", "", reason)


def _where(exc: BaseException) -> str:
    """The innermost frame of this package (else the innermost at all), as `path:line`."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}migration_pipeline{os.sep}" in f.filename] or frames
    if not ours:
        return "unknown place"
    frame = ours[-1]
    name = frame.filename
    marker = name.rfind(f"migration_pipeline{os.sep}")
    return f"{name[marker:] if marker >= 0 else shorten(name)}:{frame.lineno}"


def explain(exc: BaseException, *, started: bool, database: str = "the database") -> Failure:
    """The one line and exit code for an exception that reached the command line.

    `started`: the checks before any work passed, so a lost database or disk is a failure mid-work, not a
    setting to fix. `database`: the server, already redacted, for messages.
    """
    chain = _chain(exc)
    for err in chain:
        if isinstance(err, KeyboardInterrupt):
            return Failure("interrupted", EXIT_INTERRUPTED)
    if isinstance(exc, DatabaseUnavailableError) and started:
        return _lost(database, exc.reason or "cannot connect")
    if isinstance(exc, MigrationError):
        return Failure(shorten_paths(str(exc)), exc.exit_code)
    for err in chain:
        if _sqlstate(err) == "42501" or _is_database_error(err, "InsufficientPrivilege"):
            return Failure(
                f"the database role lacks a privilege on {database} ({_first_line(err)}): run as the role that owns "
                "the pipeline's schemas, or have their owner grant it (CREATE on the database, USAGE and CREATE on "
                "the schema)", EXIT_NOT_STARTED)
    for err in reversed(chain):  # the root cause says more than "too many retries"
        if _is_database_error(err, "OperationalError", "InterfaceError", "DagsterPostgresException"):
            if not started:
                return Failure(f"PostgreSQL at {database} failed ({_database_reason(err)}); check that it runs and "
                               "answers, then run the command again", EXIT_NOT_STARTED)
            return _lost(database, _database_reason(err))
    for err in chain:
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            place = f" at {shorten(os.fsdecode(err.filename))}" if err.filename is not None else ""
            return Failure(
                f"cannot write{place} ({err.strerror}): free disk space or fix the folder's permissions, then run "
                "again", EXIT_DISK if started else EXIT_NOT_STARTED)
    detail = shorten_paths(_first_line(exc)) if str(exc).strip() else "no message"
    return Failure(
        f"unexpected {type(exc).__name__} at {_where(exc)}: {detail}; this is a bug: rerun with --debug (or "
        "MIGRATION_DEBUG=1) for the traceback and report it", EXIT_BUG)
