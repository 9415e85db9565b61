"""What every store's reader does with a source record: make it a row or reject it with a reason.

`Reject` is raised by a store's normalize functions when a record cannot become a row (its reason code and a
message that names no source value); `FileRows` adds the rows and rejects of one source file to a batch, each
row with the file, its locator and the next sequence number (the order the engine keeps first)."""

from __future__ import annotations

from typing import Any

from migration_pipeline.core.spec import Batch


class Reject(Exception):
    """A record that cannot become a row: a quarantine reason code and a message without source values."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FileRows:
    """The rows and rejects of one source file, added to `batch` (which the reader may replace when it
    yields it): `emit` gives each row the file, its locator and the next sequence number after `seq`."""

    __slots__ = ("batch", "relative", "seq")

    def __init__(self, batch: Batch, relative: str, seq: int) -> None:
        self.batch = batch
        self.relative = relative
        self.seq = seq

    def emit(self, table: str, row: tuple[Any, ...], locator: str) -> None:
        self.seq += 1
        self.batch.add_row(table, (*row, self.relative, locator, self.seq))

    def reject(self, table: str, locator: str, reason: str, message: str) -> None:
        self.batch.quarantine(table, self.relative, locator, reason, message)
