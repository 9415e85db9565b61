"""What the command line writes besides its results: progress while it works (a live bar on a terminal, a
line every few seconds on a pipe or file, nothing with --quiet), and stderr kept to one line per problem."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from migration_pipeline.core.errors import shorten

PROGRESS_EVERY_S = 5.0  # a line on a pipe or file this often (and at each change of phase)


def _print_now(line: str) -> None:
    print(line, flush=True)


@contextmanager
def store_progress(args: argparse.Namespace, database_url: str, stores: str | Sequence[str],
                   backup_dir: Path | None = None, starting: str = "starting") -> Iterator[None]:
    """Progress of the stores' runs while the block runs, read from the database (see progress.py)."""
    from migration_pipeline.progress import watch_progress, watch_progress_bar

    if getattr(args, "quiet", False):
        yield
        return
    with _own_stdout() as out:
        def line(text: str) -> None:
            out.write(f"{text}\n")
            out.flush()

        shown = watch_progress_bar(database_url, stores, file=out, backup_dir=backup_dir, starting=starting) \
            if out.isatty() else watch_progress(database_url, stores, line, PROGRESS_EVERY_S, backup_dir=backup_dir,
                                                starting=starting)
        with shown:
            yield


@contextmanager
def _own_stdout() -> Iterator[TextIO]:
    """A stream of its own on what stdout is now: Dagster points file descriptor 1 at a step's compute log
    while the step runs (and tails it back after), which would put the bar into every step's log and show it
    late, or garbled."""
    sys.stdout.flush()
    try:
        fd = os.dup(sys.stdout.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):  # not a file (captured by a test): as it is
        yield sys.stdout
        return
    with os.fdopen(fd, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8", errors="replace") as out:
        yield out


def work_progress(args: argparse.Namespace, what: str) -> AbstractContextManager[Any]:
    """`what, elapsed 0:15` every few seconds (a spinner on a terminal) for work with no bookkeeping to read."""
    from migration_pipeline.progress import heartbeat

    if getattr(args, "quiet", False):
        return nullcontext()
    return heartbeat(what, None if sys.stdout.isatty() else _print_now, PROGRESS_EVERY_S)


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
def stderr_without(*prefixes: str) -> Iterator[None]:
    """Dagster writes a failed event-log write to sys.stderr itself, then raises it: when the server is gone,
    `main` says so once, so that write is left out."""
    original = sys.stderr
    sys.stderr = _FilteredStream(original, prefixes)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = original


class OneLineWarnings(logging.Handler):
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
        print(scrub(f"warning: {shorten(' '.join(lines[0].split()), 300)}", self.secrets), file=sys.stderr)


def scrub(line: str, secrets: set[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, "***")
    return " ".join(line.split())
