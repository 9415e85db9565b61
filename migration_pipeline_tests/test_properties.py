"""Property-based: hostile values in any field of any store never crash a run, never lose a record and
never leak (issue 14). Runs over every registered store that declares `samples`, so new stores join it.

For each generated store: staging finishes; every source record is a target row or a quarantine row with a
reason and a locator (the row-count gate, whose source side is counted apart from the parser, and the checksum
gate pass); a planted secret appears nowhere in the bookkeeping schema nor in the report.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_pipeline.core.database import connect
from migration_pipeline.core.reconcile import checksum_gate, row_count_gate, table_counts
from migration_pipeline.core.report import build_report
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.stage import stage_store
from migration_pipeline.stores.registry import all_stores

from .conftest import SAMPLE_SECRET

PLANTED = "PLANTED-SECRET-5f0c2b7e9d"
_RUNS = itertools.count()

# Raw JSON texts (bytes), so that tokens no Python value serializes to can be planted too.
_TOKENS: list[bytes] = [
    b"NaN", b"-Infinity", b"1e400", b"-1e400", b"123456789012345678901234567890123456789",
    b"-9223372036854775809", b"1.5", b"true", b"null", b"{}", b"[]", b'""',
    b'"\\ud800"', b'"\\udc80x"', b'"a\\u0000b"', b'"\xff\xfe"', b'"\xc3("',
    "\"²\"".encode(), "\"١٢٣\"".encode(), b'"9999-12-31T23:59:59-05:00"', b'"0001-01-01T00:00:00+05:00"',
    b'"' + b"x" * 300 + b'"', b'"\\t\\n\\r\\u001b"', b"[" * 5000 + b"]" * 5000,
    json.dumps(PLANTED).encode(), json.dumps({"nested": PLANTED}).encode(),
]
hostile_tokens = st.one_of(
    st.sampled_from(_TOKENS),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode()),
    st.text(max_size=40).map(lambda t: json.dumps(t).encode()),
)


def _record_text(record: dict[str, Any], field: str | None, token: bytes | None) -> bytes:
    """The record as JSON text, with `field` (possibly a new one) set to the raw `token`."""
    if field is None or token is None:
        return json.dumps(record).encode()
    marker = "\x00marker\x00"
    text = json.dumps({**record, field: marker}).encode()
    return text.replace(json.dumps(marker).encode(), token)


def _bookkeeping_text(conn: Any) -> str:
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'migration'")]
    return "\n".join(str(r[0]) for t in tables
                     for r in conn.execute(f"SELECT row_to_json(t)::text FROM migration.{t} t"))  # noqa: S608


STORES = [s for s in all_stores() if s.samples is not None]


@pytest.mark.parametrize("spec", STORES, ids=[s.name for s in STORES])
def test_hostile_values_never_crash_lose_or_leak(spec: StoreSpec, database_url: str, tmp_path: Path) -> None:
    assert spec.samples is not None
    samples = spec.samples
    entities = sorted(samples.valid)

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        entity = data.draw(st.sampled_from(entities), label="entity")
        valid = dict(samples.valid[entity])
        field = data.draw(st.sampled_from([*valid, "unknownField"]), label="field")
        token = data.draw(hostile_tokens, label="token")
        position = data.draw(st.integers(min_value=0, max_value=2), label="position")
        records = {e: [_record_text(dict(samples.valid[e]), None, None) for _ in range(3)] for e in entities}
        records[entity][position] = _record_text(valid, field, token)

        run = f"prop{next(_RUNS)}"
        root = tmp_path / run
        samples.write(root / spec.folder, records)
        summary = stage_store(database_url, spec, root, run, SAMPLE_SECRET if spec.needs_secret else None, workers=1)
        with connect(database_url) as conn:
            counts = table_counts(conn, spec, summary.plan_id)
            assert row_count_gate(counts).passed, counts
            assert checksum_gate(conn, spec, summary.plan_id).passed
            unexplained = conn.execute(
                "SELECT count(*) FROM migration.quarantine WHERE store = %s AND plan_id = %s"
                " AND (reason = '' OR message = '' OR source_file = '')", (spec.name, summary.plan_id)).fetchone()
            assert unexplained == (0,)
            report = build_report(conn, spec, run, root / "reports", outcome="blocked")
            assert PLANTED not in _bookkeeping_text(conn)
        assert PLANTED not in report.read_text(encoding="utf-8")
        assert PLANTED not in (report.parent / "summary.json").read_text(encoding="utf-8")
        shutil.rmtree(root)

    check()


@pytest.mark.parametrize("spec", STORES, ids=[s.name for s in STORES])
def test_a_secret_planted_in_every_field_stays_in_its_column(spec: StoreSpec, database_url: str, tmp_path: Path) -> None:
    """Deterministic sweep beside the random one: each record carries the planted secret in one field (the
    string itself and nested in an object), every field of every entity at once."""
    assert spec.samples is not None
    samples = spec.samples
    tokens = (json.dumps(PLANTED).encode(), json.dumps({"k": PLANTED}).encode())
    records = {e: [_record_text(dict(valid), field, token) for field in [*valid, "unknownField"] for token in tokens]
                  + [_record_text(dict(valid), None, None)]
               for e, valid in samples.valid.items()}
    samples.write(tmp_path / spec.folder, records)
    summary = stage_store(database_url, spec, tmp_path, "planted", SAMPLE_SECRET if spec.needs_secret else None,
                          workers=1)
    with connect(database_url) as conn:
        counts = table_counts(conn, spec, summary.plan_id)
        assert row_count_gate(counts).passed, counts
        assert sum(summary.seen.get(e, 0) for e in samples.valid) == sum(len(r) for r in records.values())
        report = build_report(conn, spec, "planted", tmp_path / "reports", outcome="blocked")
        assert PLANTED not in _bookkeeping_text(conn)
    assert PLANTED not in report.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("spec", STORES, ids=[s.name for s in STORES])
def test_a_planted_secret_leaves_its_tables_in_no_output_of_a_full_run(spec: StoreSpec, database_url: str,
                                                                      tmp_path: Path) -> None:
    """The planted secret in every field, through `migration-pipeline run` (a real Dagster run): outside the
    store's own tables it is nowhere: not in stdout or stderr, the Dagster event log and instance files, the
    bookkeeping schema, the reports and Data Docs."""
    import subprocess
    import sys

    from .conftest import REPO
    from .test_reliability import _all_rows_as_text, _env, _files_as_text, _hits

    assert spec.samples is not None
    tokens = (json.dumps(PLANTED).encode(), json.dumps({"k": PLANTED}).encode())
    records = {e: [_record_text(dict(valid), field, token) for field in [*valid, "unknownField"] for token in tokens]
                  + [_record_text(dict(valid), None, None)]
               for e, valid in spec.samples.valid.items()}
    spec.samples.write(tmp_path / "src" / spec.folder, records)
    env = {**_env(tmp_path, SAMPLE_SECRET), "MIGRATION_BACKUP_DIR": str(tmp_path / "backups")}
    proc = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "run", "--store", spec.name,
                           "--database-url", database_url, "--source-root", str(tmp_path / "src")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    needle = [PLANTED.lower()]
    database = _all_rows_as_text(database_url)
    own = {k: v for k, v in database.items() if k.split(".")[0] in (spec.schema, spec.staging_schema,
                                                                     spec.previous_schema)}
    # Controls: the scan reads the source as it reads the outputs, and the planted records were processed.
    assert _hits(needle, _files_as_text(tmp_path / "src"))
    assert database["migration.quarantine"] and database["migration.source_manifest"]
    elsewhere = {**{k: v for k, v in database.items() if k not in own},
                 "stdout": proc.stdout.lower(), "stderr": proc.stderr.lower(),
                 **_files_as_text(tmp_path / "reports"), **_files_as_text(Path(env["DAGSTER_HOME"]))}
    assert "public.event_logs" in elsewhere
    assert _hits(needle, elsewhere) == []
