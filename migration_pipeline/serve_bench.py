"""`migration-pipeline serve-bench`: how the promoted tables serve the application's lookups under concurrent readers.

Every lookup a store declares (`core.serving.Lookup`, in its serving gate) runs with random existing keys sampled
from the live table, and beside it the floor: a primary-key lookup on the same table (`SELECT * ... WHERE pk = %s`),
the fastest read a table offers. Each (readers, lookup) pair runs alone for a fixed time with every reader
connected (closed loop: a reader sends its next query when the last one returned), in the same command, so that
each lookup is compared with a floor measured under the same load. Readers are processes × threads, one
connection each; the client's and the server backends' CPU are measured too, to tell a client-bound run from a
server-bound one."""

from __future__ import annotations

import math
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import ConfigurationError
from migration_pipeline.core.serving import Lookup
from migration_pipeline.core.spec import StoreSpec

KEYS_PER_PROBE = 5000
GAP = 0.3          # seconds between two phases, so that no reader of one overlaps the next
MAX_PROCESSES = 10
MAX_ROUNDS = 5


def declared_lookups(spec: StoreSpec) -> tuple[Lookup, ...]:
    """The lookups of `spec`'s serving gate (a gate whose evaluation carries `lookups`)."""
    found: list[Lookup] = []
    for gate in spec.gates:
        found += getattr(gate.evaluate, "lookups", ())
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Probe:
    """One measured query: a declared lookup, or the floor (the primary-key lookup of its table)."""

    name: str
    table: str
    query: str          # plain SQL with %s placeholders
    keys: tuple[tuple[Any, ...], ...]
    floor: bool


def primary_key(conn: psycopg.Connection, schema: str, table: str) -> tuple[tuple[str, ...], bool]:
    """The columns of the table's primary key, else of its narrowest unique index over plain columns (a table
    keyed by a natural UNIQUE constraint); and whether it is the primary key. ((), False): neither."""
    rows = conn.execute(
        "SELECT i.indisprimary, array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))"
        " FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL"
        " GROUP BY i.indexrelid, i.indisprimary, i.indnatts ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid"
        " LIMIT 1", (sql.Identifier(schema, table).as_string(conn),)).fetchall()
    return (tuple(rows[0][1]), bool(rows[0][0])) if rows else ((), False)


def _sample(conn: psycopg.Connection, schema: str, table: str, expressions: Sequence[sql.Composable],
            count: int) -> tuple[tuple[Any, ...], ...]:
    """`count` random rows' values of `expressions` (existing keys; rows with a NULL key are left out)."""
    listed = sql.SQL(", ").join(expressions)
    rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE ({}) IS NOT NULL ORDER BY random() LIMIT {}").format(
        listed, sql.Identifier(schema, table), sql.SQL("ROW({})").format(listed) if len(expressions) > 1 else listed,
        sql.Literal(count))).fetchall()
    return tuple(tuple(r) for r in rows)


def build_probes(conn: psycopg.Connection, spec: StoreSpec, keys_per_probe: int = KEYS_PER_PROBE) -> list[Probe]:
    """Per table the declared lookups use: its floor, then its lookups, each with sampled existing keys."""
    lookups = declared_lookups(spec)
    if not lookups:
        raise ConfigurationError(f"store {spec.name} declares no lookups (a serving gate in its spec): nothing to"
                                 " measure")
    probes: list[Probe] = []
    for table in dict.fromkeys(lookup.table for lookup in lookups):
        target = sql.Identifier(spec.schema, table)
        key, is_primary = primary_key(conn, spec.schema, table)
        if not key:
            raise ConfigurationError(f"{spec.schema}.{table} has neither a primary key nor a unique index: it has no"
                                     " floor to compare with")
        keys = _sample(conn, spec.schema, table, [sql.Identifier(k) for k in key], keys_per_probe)
        if not keys:
            raise ConfigurationError(f"{spec.schema}.{table} is empty: promote the store first "
                                     f"(migration-pipeline run --store {spec.name})")
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key)
        label = "primary key" if is_primary else f"unique key ({', '.join(key)})"
        probes.append(Probe(f"floor: {label} of {table}", table,
                            sql.SQL("SELECT * FROM {} WHERE {}").format(target, where).as_string(conn), keys, True))
        for lookup in (x for x in lookups if x.table == table):
            sampled = _sample(conn, spec.schema, table, [sql.SQL(s) for s in lookup.sample], keys_per_probe)  # type: ignore[arg-type]
            query = sql.SQL("SELECT * FROM {} WHERE {}").format(target, sql.SQL(lookup.where)).as_string(conn)  # type: ignore[arg-type]
            probes.append(Probe(lookup.name, table, query, sampled, False))
    return probes


@dataclass(frozen=True, slots=True)
class Phase:
    probe: int        # index into the probes
    start: float      # epoch seconds
    end: float


@dataclass(slots=True)
class ReaderResult:
    latencies: list[list[float]]   # per phase, seconds
    rows: list[int]                # per phase
    errors: list[int]              # per phase
    first_error: str | None


def _reader(url: str, probes: Sequence[Probe], phases: Sequence[Phase], limit: int, seed: int) -> ReaderResult:
    result = ReaderResult([[] for _ in phases], [0] * len(phases), [0] * len(phases), None)
    rng = random.Random(seed)
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="serve-bench", connect_timeout=10)
    except psycopg.Error as exc:
        result.first_error = str(exc).strip().splitlines()[0]
        result.errors = [1] * len(phases)
        return result
    with conn:
        for index, phase in enumerate(phases):
            probe = probes[phase.probe]
            keys = probe.keys
            latencies = result.latencies[index]
            time.sleep(max(0.0, phase.start - time.time()))
            done = 0
            with conn.cursor() as cur:
                while done < limit and time.time() < phase.end:
                    params = keys[rng.randrange(len(keys))]
                    started = time.perf_counter()
                    try:
                        cur.execute(probe.query, params)
                        result.rows[index] += len(cur.fetchall())
                    except psycopg.Error as exc:
                        result.errors[index] += 1
                        result.first_error = result.first_error or str(exc).strip().splitlines()[0]
                        continue
                    latencies.append(time.perf_counter() - started)
                    done += 1
    return result


def _reader_process(url: str, probes: Sequence[Probe], phases: Sequence[Phase], threads: int, limit: int,
                    seed: int) -> tuple[list[ReaderResult], float]:
    """`threads` readers in this process; returns their results and this process's CPU seconds in the phases."""
    results: list[ReaderResult | None] = [None] * threads

    def run(i: int) -> None:
        results[i] = _reader(url, probes, phases, limit, seed * 1000 + i)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, phases[0].start - time.time()))
    cpu_started = time.process_time()
    for worker in workers:
        worker.join()
    return [r for r in results if r is not None], time.process_time() - cpu_started


@dataclass(frozen=True, slots=True)
class Measurement:
    readers: int
    probe: Probe
    queries: int
    seconds: float
    rows: int
    errors: int
    p50: float
    p95: float
    p99: float

    @property
    def throughput(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Level:
    readers: int
    processes: int
    measurements: tuple[Measurement, ...]
    client_cpu: float     # seconds, every reader process
    server_cpu: float     # seconds, the server backends of the database (sampled)
    wall: float
    first_error: str | None


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def free_connections(conn: psycopg.Connection) -> int:
    """Connections a non-superuser role could still open on the server (max_connections less the reserved
    ones and those open)."""
    row = conn.execute("SELECT current_setting('max_connections')::int"
                       " - current_setting('superuser_reserved_connections')::int"
                       " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')").fetchone()
    assert row is not None
    return int(row[0])


def run_level(url: str, probes: Sequence[Probe], readers: int, seconds: float, max_queries: int,
              processes: int | None = None) -> Level:
    """Every probe in turn for `seconds` with `readers` connected readers (each probe at most `max_queries`)."""
    from migration_pipeline.bench import Sampler

    processes = min(readers, processes or MAX_PROCESSES)
    threads = [readers // processes + (1 if i < readers % processes else 0) for i in range(processes)]
    setup = 2.0 + 0.05 * readers  # the processes start and every reader connects before the first phase
    first = time.time() + setup
    # In rounds (every probe for a slice of its time, then again), so that the machine's drift during the level
    # falls on the lookups and their floors alike.
    rounds = max(1, min(MAX_ROUNDS, int(seconds // 2)))
    slice_ = seconds / rounds
    order = [i for _ in range(rounds) for i in range(len(probes))]
    phases = [Phase(p, first + n * (slice_ + GAP), first + n * (slice_ + GAP) + slice_) for n, p in enumerate(order)]
    limit = max(1, math.ceil(max_queries / readers / rounds))
    started = time.perf_counter()
    with Sampler(url, include_self=False, every=0.25) as sampled, ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_reader_process, url, probes, phases, n, limit, p + 1) for p, n in enumerate(threads)]
        outcomes = [f.result() for f in futures]
    wall = time.perf_counter() - started
    results = [r for rs, _ in outcomes for r in rs]
    measurements = []
    for number, probe in enumerate(probes):
        mine = [i for i, phase in enumerate(phases) if phase.probe == number]
        merged = sorted(x for r in results for i in mine for x in r.latencies[i])
        measurements.append(Measurement(
            readers, probe, len(merged), sum(phases[i].end - phases[i].start for i in mine),
            sum(r.rows[i] for r in results for i in mine), sum(r.errors[i] for r in results for i in mine),
            _percentile(merged, 0.50), _percentile(merged, 0.95), _percentile(merged, 0.99)))
    return Level(readers, processes, tuple(measurements), sum(cpu for _, cpu in outcomes),
                 sampled.cpu_between(first, phases[-1].end)[1], wall,
                 next((r.first_error for r in results if r.first_error), None))


HEADERS = ("readers", "lookup", "queries", "q/s", "p50 ms", "p95 ms", "p99 ms", "q/s vs floor", "rows/query",
           "errors")


def _ms(value: float) -> str:
    return "" if math.isnan(value) else f"{value * 1000:.2f}"


def level_rows(level: Level) -> list[list[str]]:
    rows: list[list[str]] = []
    floor_of: dict[str, Measurement] = {m.probe.table: m for m in level.measurements if m.probe.floor}
    for m in level.measurements:
        floor = floor_of.get(m.probe.table)
        ratio = f"{m.throughput / floor.throughput:.2f}" if floor and floor.throughput and not m.probe.floor else ""
        rows.append([str(m.readers), m.probe.name, f"{m.queries:,}", f"{m.throughput:,.0f}", _ms(m.p50), _ms(m.p95),
                     _ms(m.p99), ratio, f"{m.rows / m.queries:.1f}" if m.queries else "", str(m.errors)])
    return rows


def goal_verdict(levels: Sequence[Level], share: float = 0.8, p99_limit: float = 0.002) -> list[str]:
    """The goal: every declared lookup at least `share` of its floor's throughput at the most readers, and its
    p99 at most `p99_limit` seconds at the fewest. Lines saying what meets it and what does not."""
    most, fewest = max(levels, key=lambda x: x.readers), min(levels, key=lambda x: x.readers)
    floors = {m.probe.table: m for m in most.measurements if m.probe.floor}
    slow = [f"{m.probe.name} ({m.throughput / floors[m.probe.table].throughput:.2f})"
            for m in most.measurements if not m.probe.floor and floors[m.probe.table].throughput
            and m.throughput < share * floors[m.probe.table].throughput]
    late = [f"{m.probe.name} ({_ms(m.p99)} ms)" for m in fewest.measurements
            if not m.probe.floor and not m.p99 <= p99_limit]
    return [
        f"goal: every lookup >= {share:.0%} of its floor's q/s at {most.readers} readers: "
        + ("met" if not slow else "not met by " + "; ".join(slow)),
        f"goal: every lookup p99 <= {p99_limit * 1000:.0f} ms at {fewest.readers} readers: "
        + ("met" if not late else "not met by " + "; ".join(late)),
    ]


def serve_benchmark(database_url: str, spec: StoreSpec, readers: Sequence[int], seconds: float,
                    max_queries: int = 1_000_000, processes: int | None = None,
                    out: Callable[[str], None] = print) -> int:
    """Measure every declared lookup of `spec`'s live tables and its floor at each reader count; print the
    table and the goal's verdict. 0 when every query succeeded."""
    from tabulate import tabulate

    with connect(database_url) as conn:
        probes = build_probes(conn, spec)
        free = free_connections(conn)
    if max(readers) > free:
        raise ConfigurationError(f"{max(readers)} readers need as many connections, the server has {free} free"
                                 " (max_connections): raise it, or put a pooler (PgBouncer) in front")
    levels = []
    rows: list[list[str]] = []
    for count in readers:
        level = run_level(database_url, probes, count, seconds, max_queries, processes)
        levels.append(level)
        rows += level_rows(level)
    out(f"{spec.name}: {len(probes) - sum(p.floor for p in probes)} declared lookups and their tables' primary-key"
        f" floors, {seconds:g} s each (in up to {MAX_ROUNDS} rounds), random existing keys ({KEYS_PER_PROBE} sampled per lookup)")
    out(tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True))
    for level in levels:
        available = level.wall * (multiprocessing.cpu_count())
        out(f"{level.readers} readers ({level.processes} processes): client CPU {level.client_cpu:.1f} s, server "
            f"backends {level.server_cpu:.1f} s, of {available:.0f} CPU-s the machine had in {level.wall:.0f} s")
    for line in goal_verdict(levels):
        out(line)
    errors = sum(m.errors for level in levels for m in level.measurements)
    if errors:
        first = next(level.first_error for level in levels if level.first_error)
        out(f"{errors} queries failed; the first: {first}")
    return 0 if not errors else 1
