"""What a store declares: its tables, how it splits into units of work, and how a unit is read.

A store module builds a `StoreSpec`; the engine (`core.stage`), the gates (`core.reconcile`,
`quality`) and the Dagster factory (`stores.factory`) need nothing else from it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from migration_pipeline.core.names import dynamic_partitions_name, previous_schema, staging_schema

ColumnKind = Literal["int", "numeric", "text", "bool", "timestamptz", "date", "uuid", "text[]", "jsonb",
                     "bytea"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: ColumnKind
    secret: bool = False  # never shown in expectations' samples, reports or metadata
    hashed: bool = True   # part of the row checksum; False for surrogate ids the engine may renumber


@dataclass(frozen=True, slots=True)
class Expectation:
    """A Great Expectations 1.x expectation as plain data (class name and keyword arguments)."""

    type: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A target table. Loaded tables are written by COPY from `columns`; derived tables by SQL."""

    name: str
    description: str
    columns: tuple[Column, ...] = ()
    # Natural keys: a second record with the same values is moved to the quarantine (duplicate_key).
    unique_keys: tuple[tuple[str, ...], ...] = ()
    # Case-insensitive unique columns (e.g. email): later duplicates are quarantined too.
    unique_ci: tuple[str, ...] = ()
    # For derived tables: SQL that fills it from the loaded staged tables ({schema} is the staging schema;
    # never from another derived table: they are filled side by side), and SQL giving its row count.
    derive_sql: str | None = None
    expected_rows_sql: str | None = None
    expectations: tuple[Expectation, ...] = ()

    @property
    def loaded(self) -> bool:
        return self.derive_sql is None

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A source record that did not become a row: where it was and why."""

    table: str
    source_file: str
    locator: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Flagged(Quarantined):
    """A record that was loaded but must block promotion: where it was and why (as a quarantined one)."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something a store changed in records it loaded (e.g. a timestamp rounded to the microsecond), counted
    per unit in `Batch.notes`; the plan's notes become adjustments the report lists."""

    table: str
    reason: str
    message: str


class ManifestEntry(NamedTuple):  # a tuple: built once per source file, millions of times
    path: str  # relative to the store folder, POSIX separators
    size_bytes: int
    sha256: str
    mapped: bool
    mtime_ns: int | None = None
    link_target: str | None = None  # a symlink's target (recorded_path), never followed: status 'symlink'


@dataclass(slots=True)
class Batch:
    """What reading part of a unit produced. Rows are tuples in the table's column order."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    flagged: list[Flagged] = field(default_factory=list)
    manifest: list[ManifestEntry] = field(default_factory=list)
    # (table, field name) -> records whose field no column holds; names shown as `safe_field_name` makes them
    unmapped_fields: dict[tuple[str, str], int] = field(default_factory=dict)
    # Source records of a table counted independently of the parser that loads them (e.g. a separate scan
    # of a file's top-level elements): reconciliation takes them as the source side, so that a reader that
    # loses records cannot shrink both sides of `source = loaded + quarantined` together. Tables absent
    # here are reconciled against `seen`.
    counted: dict[str, int] = field(default_factory=dict)
    # Records changed on purpose while they were read, per kind of change: see `Note`.
    notes: dict[Note, int] = field(default_factory=dict)

    def add_row(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)
        self.seen[table] = self.seen.get(table, 0) + 1

    def count_unmapped(self, table: str, fields: Iterable[str]) -> None:
        for name in fields:
            key = (table, safe_field_name(name))
            self.unmapped_fields[key] = self.unmapped_fields.get(key, 0) + 1

    def note(self, note: Note, records: int = 1) -> None:
        self.notes[note] = self.notes.get(note, 0) + records

    def quarantine(self, table: str, source_file: str, locator: str, reason: str, message: str) -> None:
        self.quarantined.append(Quarantined(table, source_file, locator, reason, message))
        self.seen[table] = self.seen.get(table, 0) + 1


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def safe_field_name(name: str) -> str:
    """A field name as reports may show it: as it is when it looks like a name, else described (a key pasted
    where a field name belongs must not reach a report)."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"<a name of {len(name)} characters, sha256 {digest}…>"


@dataclass(frozen=True, slots=True)
class Unit:
    """A slice of a store that is read, loaded and committed as one (the resume granularity)."""

    number: int
    payload: Any  # store-specific, picklable (e.g. file names with their sequence numbers)
    # The partition key the unit belongs to (a shard "07", a day "2024-03-01"), for partitioned stores; a
    # unit without one (a store's unpartitioned files) is loaded by the whole-store run only.
    partition: str | None = None

    @property
    def shard(self) -> int | None:
        """The partition as an integer shard number (stores partitioned into numbered shards)."""
        return int(self.partition) if self.partition is not None and self.partition.isdecimal() else None


@dataclass(frozen=True, slots=True)
class Discovery:
    units: tuple[Unit, ...]
    unmapped: tuple[str, ...]  # paths relative to the store folder
    fingerprint: str           # changes whenever any source file is added, removed or changed


@dataclass(frozen=True, slots=True)
class ReadContext:
    store_dir: Path
    secret: str | None


class UnitReader(Protocol):
    def __call__(self, unit: Unit, context: ReadContext) -> Iterator[Batch]: ...


@dataclass(frozen=True, slots=True)
class Gate:
    """A store-specific blocking check: `evaluate(conn, store, plan_id)` returns (passed, summary, details)."""

    name: str
    description: str
    evaluate: Callable[[Any, str, str], tuple[bool, str, dict[str, Any]]]  # (conn, store, plan_id)


@dataclass(frozen=True, slots=True)
class ReportSection:
    """A store's own section of the validation report: a small table of counts computed in SQL.

    `query(conn, store, plan_id, schema)` returns rows in `columns` order, where `schema` holds the tables the
    report describes (the staging schema, or the live one once promoted). Counts, content types, days and
    reasons only: a section never selects a value of a record (no name, number, address or e-mail), since
    the report is shared with reviewers. With `chart`, the first column labels the bars of a chart of the
    column at that position."""

    title: str
    description: str
    columns: tuple[str, ...]
    query: Callable[[Any, str, str, str], Sequence[tuple[Any, ...]]]  # (conn, store, plan_id, schema)
    chart: int | None = None


@dataclass(frozen=True, slots=True)
class SyncRules:
    """How a store whose files each hold one keyed record is synced incrementally during the parallel
    run: only added, changed and deleted files are read; every other row is carried from the live version."""

    table: str                                   # the loaded table whose rows come one per file
    key_columns: tuple[str, ...]                 # its natural key
    key_types: tuple[str, ...]                   # SQL types of the key columns
    key_of: Callable[[str], tuple[Any, ...] | None]  # natural key of the record in a mapped file, None if unmapped
    units_for: Callable[[Sequence[str], int], tuple[Unit, ...]]  # units for these paths, sequence numbers from n
    soft_delete_column: str                      # set when a record's file was deleted
    after_load_sql: tuple[str, ...] = ()         # {staging} / {live}: e.g. keep the live ids of known keys


@dataclass(frozen=True, slots=True)
class Generator:
    """A store's generator of realistic stores, as `migration-pipeline generate --store S` offers it.

    `run(source_root, sizes, seed, secret)` writes `<source_root>/<store folder>` and returns a one-line
    summary; `sizes` holds every option of `options` (name -> (help, default; None = required))."""

    run: Callable[[Path, Mapping[str, int], int, str | None], str]
    options: Mapping[str, tuple[str, int | None]]
    needs_secret: bool = False


@dataclass(frozen=True, slots=True)
class SampleRecords:
    """How a test builds a store from records of its own: a valid record of each entity (the file kind it
    lives in), and a function that writes each entity's records, given as JSON texts, where the store keeps
    them. Property tests plant hostile values in copies of the valid records (any store that declares this
    joins them)."""

    valid: Mapping[str, Mapping[str, Any]]
    write: Callable[[Path, Mapping[str, Sequence[bytes]]], None]  # (store folder, entity -> JSON texts)


@dataclass(frozen=True, slots=True)
class Partitioning:
    """How a store's units split into Dagster partitions that load, reconcile and re-run alone.

    `static`: a fixed list of keys (the wallet's shards); `dynamic`: keys discovered from the source (days
    from folder names), added by a sensor as they appear. `asset` names the partitioned asset
    (`<store>/<asset>`), `label` one partition in checks and messages."""

    kind: Literal["static", "dynamic"]
    asset: str
    label: str
    keys: tuple[str, ...] = ()                              # static keys
    discover_keys: Callable[[Path], Sequence[str]] | None = None  # dynamic: the keys present under a store folder
    # A loaded table whose rows belong to one partition each, by `live_column`: a partition materialized while
    # the store is live replaces only its own rows of that live table, behind its own gate (core.partition_swap).
    live_table: str | None = None
    live_column: str | None = None

    def dynamic_name(self, store: str) -> str:
        return dynamic_partitions_name(store, self.asset)


@dataclass(frozen=True, slots=True)
class StoreSpec:
    name: str
    description: str
    folder: str                         # relative to the source root
    tables: tuple[TableSpec, ...]       # in load order: parents before children
    discover: Callable[[Path], Discovery]
    read_unit: UnitReader
    parallel: bool                      # units are independent: read them in a process pool
    needs_secret: bool = False
    post_load_sql: tuple[str, ...] = ()  # run after every unit is loaded, before derived tables
    gates: tuple[Gate, ...] = ()
    source_files: Sequence[str] = ()    # human description of mapped files, for the README/report
    partitions: Partitioning | None = None  # units that belong to partitions loaded alone (Dagster partitions)
    sync: SyncRules | None = None       # incremental sync during the parallel run
    samples: SampleRecords | None = None  # for property tests: a valid record of each entity and a writer
    generator: Generator | None = None    # for `generate --store` and benchmarks
    report_sections: tuple[ReportSection, ...] = ()  # the store's own tables (and charts) in the validation report

    @property
    def schema(self) -> str:
        return self.name

    @property
    def staging_schema(self) -> str:
        return staging_schema(self.name)

    @property
    def previous_schema(self) -> str:
        return previous_schema(self.name)

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)

    @property
    def shards(self) -> int:
        """How many static partitions the store has (0: none)."""
        return len(self.partitions.keys) if self.partitions is not None and self.partitions.kind == "static" else 0
