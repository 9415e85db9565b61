"""`migration-pipeline bench --store S`: every registered store, generated at a tiny size, is loaded by the generic
floor (plus what the store declares in its floor.py) and by the full Dagster run in the same command, and the
table shows both with their ratios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from migration_pipeline.bench import PHASE_HEADERS, FloorTask, SourceFiles, _records, floor_extra, floor_tasks
from migration_pipeline.stores.registry import all_stores, get_store

TINY = {"wallet": ["--users", "40"], "pend": ["--users", "40", "--days", "2", "--document-kib", "2"],
        "defarm": ["--items", "300"], "metagauge": ["--users", "8"]}

ROWS = [
    "floor: read + parse + COPY every record/document (2 procs + parent) + unique index",
    "floor, both measurements (before / after the run)",
    "of which COPY (the parent waiting on the server)",
    "of which the unique index on (file, locator), after the COPY",
    "full: schema",
    "full: stage (read, parse, validate, COPY, SQL rules, indexes; the backup beside it)",
    "of which read + parse + COPY (the floor's work)",
    "of which SQL: rules, keys, derived tables, indexes",
    "of which the backup, written beside the load (once per store)",
    "full: gates",
    "full: promote + validation report",
    "full: whole Dagster run (succeeded)",
    "peak RSS MiB (processes + workers; server not counted)",
    "dump (pg_dump -Fc of the live schema + SHA-256)",
]
WALLET_EXTRA = "verify every key (AES, secp256k1, Keccak-256)"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_every_store_is_benchmarked_by_the_tests() -> None:
    assert sorted(TINY) == sorted(s.name for s in all_stores())


# The page cache can only be dropped by root: elsewhere the cold variant is refused (tested below).
COLD = ["--cold-cache"] if os.geteuid() == 0 else []


@pytest.mark.slow
@pytest.mark.parametrize("store", ["wallet", "pend", "defarm", "metagauge"])
def test_bench_store_prints_the_floor_the_full_run_and_their_ratios(store: str, server_url: str,
                                                                     tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "DATABASE_URL": server_url}
    cold = COLD if store == "defarm" else []  # one store read from the disk: each side after the cache was dropped
    done = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "bench", "--store", store, *TINY[store],
                           *cold], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    lines = done.stdout.splitlines()
    said = next(line for line in lines if line.startswith(f"{store} store: "))
    if cold:
        assert "; page cache dropped before each side (cold); read from the disk: floor " in said
        floor_mb = int(said.split("read from the disk: floor ")[1].split(" MB")[0].replace(",", ""))
        assert floor_mb > 0  # the floor's child process read the store (and its own modules) from the disk
    else:
        assert "; page cache warmed in " in said and "; read from the disk: floor " in said
    header = next(i for i, line in enumerate(lines) if line.startswith("| phase"))
    assert _cells(lines[header]) == list(PHASE_HEADERS)
    table = [_cells(line) for line in lines[header + 2:] if line.startswith("|")]
    assert all(len(row) == len(PHASE_HEADERS) for row in table)
    names = [row[0] for row in table]
    expected = list(ROWS)
    if store == "wallet":
        expected[0] += f" + {WALLET_EXTRA}"
        expected.insert(4, f"of which {WALLET_EXTRA} (CPU in the workers; {names[4].split('; ')[1]}")
        assert names[4].endswith(" items)") and int(names[4].split("; ")[1].split()[0]) > 0
    assert names[:-1] == expected
    assert names[-1].startswith("restore-check (pg_restore, ") and names[-1].endswith(" tables compared: equal)")
    rows = dict(zip(names, table, strict=True))
    floor, stage, whole = rows[expected[0]], rows[ROWS[5]], rows[ROWS[11]]
    assert float(floor[1]) > 0 and float(floor[4]) > 0 and floor[2] == "" and floor[3] == ""
    assert 0 <= float(rows[ROWS[3]][1]) <= float(floor[1])  # the floor's unique index, timed within the floor
    for row in (stage, whole):  # floor and full side by side, and the ratio of the two
        assert float(row[1]) == float(floor[1])
        # the ratio of the unrounded seconds: the printed ones are rounded to 10 ms
        assert float(row[3]) == pytest.approx(float(row[2]) / float(row[1]), rel=0.05)
        assert float(row[6]) == pytest.approx(float(row[5]) / float(row[4]), rel=0.05)
    assert float(rows[ROWS[12]][1]) > 0 and float(rows[ROWS[12]][2]) > 0
    assert rows[ROWS[8]][2] != ""  # the backup was written by this run (a kept one has no time)
    assert float(rows[ROWS[8]][2]) <= float(stage[2])  # within its load's step
    assert any(line.startswith("ratio full run / floor: ") for line in lines)
    if store == "pend":  # the documents' throughput
        assert any(line.startswith("documents: ") and " MB/s" in line for line in lines)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".bench").exists() or not any((tmp_path / ".bench").iterdir())  # generated data deleted


def test_a_store_without_a_floor_module_gets_the_generic_floor_and_the_wallet_its_declared_extra() -> None:
    assert floor_extra(get_store("pend")) is None and floor_extra(get_store("defarm")) is None
    wallet = floor_extra(get_store("wallet"))
    assert wallet is not None and wallet.label == WALLET_EXTRA


def test_the_generic_floor_finds_the_records_of_a_document() -> None:
    assert _records([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert _records({"users": {"0xA": {"x": 1}, "0xB": {"x": 2}}}) == [{"x": 1}, {"x": 2}]
    assert _records({"fid": 1, "address": "0x1"}) == [{"fid": 1, "address": "0x1"}]
    assert _records(7) == [7]


def test_large_json_lines_files_are_split_into_byte_ranges_and_small_files_grouped(tmp_path: Path) -> None:
    files = SourceFiles((("a.json", 10), ("b.jsonl", 40 << 20), ("c.png", 10)))
    assert floor_tasks(files) == [FloorTask(("b.jsonl",), 0, 16 << 20), FloorTask(("b.jsonl",), 16 << 20, 32 << 20),
                                  FloorTask(("b.jsonl",), 32 << 20, 40 << 20), FloorTask(("a.json", "c.png"))]


def test_bench_store_needs_the_generators_required_sizes(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "bench", "--store", "defarm"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: bench --store defarm needs --items"


def test_a_cold_cache_bench_is_refused_in_one_line_where_the_page_cache_cannot_be_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migration_pipeline import bench
    from migration_pipeline.core.errors import ConfigurationError

    monkeypatch.setattr(bench, "DROP_CACHES", tmp_path / "no such folder" / "drop_caches")
    with pytest.raises(ConfigurationError) as refused:
        bench.drop_page_cache()
    assert str(refused.value) == (
        f"--cold-cache cannot drop the page cache ({tmp_path / 'no such folder' / 'drop_caches'}: No such file or "
        "directory): it takes root on Linux; run the bench as root, or without --cold-cache")


def test_a_warm_bench_whose_floor_read_the_store_from_the_disk_says_it_is_not_warm() -> None:
    """At 2M wallet files the warmed page cache did not hold the store: the floor read 1,738 MB from the disk, and
    the ratio looked like progress over warm runs. The bench now says so above its table."""
    from migration_pipeline.bench import not_warm

    assert not_warm(False, 654_000_000, 1_738_000_000) == (
        "warning: not a warm measurement: the floor read 1,738 MB from the disk after the page cache was warmed with "
        "the store's 654 MB (it does not stay in memory here); compare its ratio with runs that read as much, or run "
        "with --cold-cache")
    assert not_warm(False, 65_000_000, 1_000_000) is None  # 200k files, warm: 1 MB read
    assert not_warm(False, 65_000_000, 6_500_000) is None  # a tenth of the store, not more
    assert not_warm(True, 654_000_000, 1_738_000_000) is None  # a cold bench reads the store on purpose


def test_a_cold_cache_bench_needs_a_store(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "bench", "--cold-cache"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --cold-cache needs --store (e.g. bench --store wallet --users 100000 --cold-cache)")


def test_byte_ranges_of_a_json_lines_file_read_every_line_once(tmp_path: Path) -> None:
    from migration_pipeline.bench import _floor_task

    lines = [b'{"n": %d, "pad": "%s"}\n' % (n, b"x" * (n % 13)) for n in range(200)]
    (tmp_path / "e.jsonl").write_bytes(b"".join(lines))
    size = (tmp_path / "e.jsonl").stat().st_size
    for step in (1, 7, 100, size):
        pieces = [_floor_task(str(tmp_path), FloorTask(("e.jsonl",), start, min(start + step, size)), None, None)
                  for start in range(0, size, step)]
        assert sum(p.rows for p in pieces) == 200
        numbers = [int(row.split("\t")[2].split(",")[0].split(":")[1]) for p in pieces for row in p.text.splitlines()]
        assert numbers == list(range(200))
