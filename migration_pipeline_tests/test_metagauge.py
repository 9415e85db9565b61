"""The metagauge store end to end against a real PostgreSQL: the hand-checked sample
(data_samples/metagauge/EXPECTED.md), a generated store's exact counts, and streaming memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.report import build_report
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.metagauge import METAGAUGE_STORE
from migration_pipeline.stores.metagauge.generate import generate_metagauge_store
from migration_pipeline.stores.metagauge.store import legacy_uuid
from migration_pipeline.stores.registry import get_store
from migration_pipeline_tests.conftest import REPO, SAMPLES

SPEC = METAGAUGE_STORE
U1 = "8f14e45f-ceea-467f-a0e1-a47f2c0d9a11"  # given in upper case in users.json
U2_LEGACY = "user_1697040000000_x7k2"
U7 = "b1e2c3d4-5f60-4a7b-8c9d-0e1f2a3b4c5d"
C1 = "c0ffee00-1111-4222-8333-444455556666"
C2_LEGACY = "contract_1697040000123_ab12"

EXPECTED_ROWS = {
    "users": 3, "user_onboarding": 1, "user_preferences": 2, "contracts": 3, "contract_competitors": 1,
    "contract_rpc_config": 2, "contract_analysis_params": 1, "analyses": 3, "chat_sessions": 2, "chat_messages": 2,
}
U, C, A, S, M = (f"data/{n}.json" for n in ("users", "contracts", "analyses", "chat_sessions", "chat_messages"))
EXPECTED_QUARANTINE = {
    ("users", U, "[2]", "duplicate_key"),
    ("users", U, "[3]", "invalid_value"),
    ("users", U, "[4]", "missing_field"),
    ("users", U, "[5]", "invalid_timestamp"),
    ("users", U, "[6]", "not_an_object"),
    ("user_onboarding", U, "[2].onboarding", "orphan"),
    ("contracts", C, "[2]", "orphan"),
    ("contracts", C, "[3]", "missing_field"),
    ("contract_competitors", C, "[0].competitors[1]", "missing_field"),
    ("analyses", A, "[3]", "orphan"),
    ("analyses", A, "[4]", "invalid_value"),
    ("analyses", A, "[5]", "out_of_range"),
    ("analyses", A, "[6]", "invalid_value"),
    ("chat_sessions", S, "[2]", "orphan"),
    ("chat_messages", M, "[2]", "invalid_value"),
    ("chat_messages", M, "[3]", "orphan"),
    ("chat_messages", M, "[4]", "missing_field"),
    ("chat_messages", M, "[5]", "invalid_json"),
}


def _secrets_in_sample() -> set[str]:
    raw = (SAMPLES / "metagauge" / "data" / "users.json").read_bytes().removeprefix(b"\xef\xbb\xbf")
    users = [u for u in json.loads(raw) if isinstance(u, dict)]
    values = {u[k] for u in users for k in ("password", "apiKey") if u.get(k)}
    assert len(values) == 13  # 7 password hashes + 6 API keys
    return values


def test_registered() -> None:
    assert get_store("metagauge") is METAGAUGE_STORE
    assert [t.name for t in SPEC.tables] == list(EXPECTED_ROWS)


def test_sample_exact_outcome(database_url: str, tmp_path: Path) -> None:
    summary = stage_store(database_url, SPEC, SAMPLES, run_id="t", secret=None, workers=1)
    assert summary.staged == EXPECTED_ROWS
    assert summary.files_mapped == 5 and summary.files_unmapped == 2  # data/users.json.bak and EXPECTED.md

    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, SPEC, "t", tmp_path / "docs")
        assert {o.name: o.passed for o in outcomes if not o.passed} == {}
        assert [o.name for o in outcomes[:3]] == ["row_count_reconciliation", "checksum_reconciliation", "live_row_loss"]
        assert len(outcomes) == 3 + len(SPEC.gates) + len(SPEC.tables)  # counts, checksums, row loss; serving

        # Each file's records are counted apart from the reader; child tables (from within records) are not.
        counted = conn.execute("SELECT table_name, records_seen, records_counted FROM migration.unit_progress"
                               " WHERE store = 'metagauge' AND records_counted IS NOT NULL ORDER BY unit_no").fetchall()
        assert counted == [("users", 8, 8), ("contracts", 5, 5), ("analyses", 7, 7), ("chat_sessions", 3, 3),
                           ("chat_messages", 6, 6)]

        q = conn.execute("SELECT table_name, source_file, locator, reason, message FROM migration.quarantine"
                         " WHERE store = 'metagauge'").fetchall()
        assert {r[:4] for r in q} == EXPECTED_QUARANTINE
        assert len(q) == len(EXPECTED_QUARANTINE)

        unmapped = conn.execute("SELECT path, status FROM migration.source_manifest WHERE store = 'metagauge'"
                                " ORDER BY path").fetchall()
        files = ("analyses.json", "chat_messages.json", "chat_sessions.json", "contracts.json", "users.json")
        assert unmapped == [("EXPECTED.md", "unmapped"), *((f"data/{n}", "mapped") for n in files),
                            ("data/users.json.bak", "unmapped")]

        st = '"metagauge__staging"'
        users = {str(r[0]): r[1:] for r in conn.execute(
            f"SELECT id, legacy_id, email, tier, created_at, extra FROM {st}.users")}
        u2 = legacy_uuid("users", U2_LEGACY)
        assert set(users) == {U1, u2, U7}
        assert users[U1][:3] == (None, "ada@example.com", "pro")            # UUID lower-cased, tier lower-cased
        assert users[U1][4] == {"referralCode": "REF-ADA"}                   # unknown key kept
        assert users[u2][:3] == (U2_LEGACY, "Alice.Legacy@Example.com", "free")  # first of the two emails kept as given
        assert users[u2][3] == datetime(2023, 10, 11, 16, 0, tzinfo=UTC)     # epoch milliseconds
        assert users[U7][2:4] == ("free", datetime(2024, 3, 1, 10, 0, tzinfo=UTC))  # default tier, +02:00 offset

        onboarding = conn.execute(
            f"SELECT user_id, website, twitter, contract_abi, contract_start_date, last_analysis_id, last_update"
            f" FROM {st}.user_onboarding").fetchall()
        assert [(str(r[0]), *r[1:5], str(r[5]), r[6]) for r in onboarding] == [(
            U1, "https://ada.example", "@ada", '[{"type":"function","name":"transfer"}]', date(2024, 1, 15),
            legacy_uuid("analyses", "analysis_1697040000456_zz99"), datetime(2024, 5, 2, 8, 0, tzinfo=UTC))]
        prefs = {str(r[0]): r[1:] for r in conn.execute(
            f"SELECT user_id, email_notifications, default_chain, custom_settings FROM {st}.user_preferences")}
        assert prefs == {U1: (False, "polygon", {"theme": "dark", "language": "en"}), u2: (True, "ethereum", {})}

        c2 = legacy_uuid("contracts", C2_LEGACY)
        contracts = {str(r[0]): r[1:] for r in conn.execute(
            f"SELECT id, legacy_id, user_id, target_chain, tags, extra FROM {st}.contracts")}
        assert set(contracts) == {C1, c2, "e5f6a7b8-0000-4000-8000-00000000c005"}
        assert contracts[c2][:2] == (C2_LEGACY, uuid.UUID(u2))  # legacy userId joins the legacy user
        assert contracts[c2][4] == {"legacyNotes": "imported from v1"}
        assert contracts[C1][2:4] == ("ethereum", ["defi", "token"])
        rpc = conn.execute(f"SELECT contract_id::text, chain, rpc_urls FROM {st}.contract_rpc_config ORDER BY chain")
        assert rpc.fetchall() == [(C1, "ethereum", ["https://eth.example/rpc", "https://eth2.example/rpc"]),
                                  (C1, "polygon", ["https://polygon.example/rpc"])]
        params = conn.execute(f"SELECT contract_id::text, block_range, whale_threshold, max_retries, output_formats,"
                              f" custom_params FROM {st}.contract_analysis_params").fetchall()
        assert params == [(C1, 5000, Decimal("25.5"), 3, ["json"], {"customFlag": True})]
        comps = conn.execute(f"SELECT contract_id::text, address FROM {st}.contract_competitors").fetchall()
        assert comps == [(C1, "0x2222222222222222222222222222222222222222")]

        analyses = {str(r[0]): r[1:] for r in conn.execute(
            f"SELECT id, legacy_id, user_id::text, config_id::text, status, progress FROM {st}.analyses")}
        a2 = legacy_uuid("analyses", "analysis_1697040000456_zz99")
        assert analyses == {
            "a0000000-0000-4000-8000-000000000001": (None, U1, C1, "completed", 100),
            a2: ("analysis_1697040000456_zz99", u2, c2, "running", 40),
            "a0000000-0000-4000-8000-000000000003": (None, U7, None, "failed", 10),  # configId → missing contract
        }
        adjustments = conn.execute("SELECT table_name, reason, rows_changed FROM migration.adjustments"
                                   " WHERE store = 'metagauge'").fetchall()
        assert adjustments == [("analyses", "reference_set_null", 1)]

        s1 = legacy_uuid("chat_sessions", "session_1697040000789_q1")
        sessions = {str(r[0]): r[1:] for r in conn.execute(
            f"SELECT id, legacy_id, user_id::text, title, extra FROM {st}.chat_sessions")}
        assert sessions == {s1: ("session_1697040000789_q1", U1, "Ada chat", {}),
                            "5e551011-0000-4000-8000-000000000002": (None, u2, "New Chat", {"pinned": True})}
        messages = conn.execute(f"SELECT id::text, session_id::text, role, components FROM {st}.chat_messages"
                                " ORDER BY created_at").fetchall()
        assert messages == [(legacy_uuid("chat_messages", "msg_1697040000800_a"), s1, "user", None),
                            ("3e550000-0000-4000-8000-000000000002", s1, "assistant", [{"type": "metric", "value": 3}])]

        # Cloned constraints work on the staged tables: case-insensitive email, trigger, set-null FK.
        with pytest.raises(Exception, match="idx_users_email_lower"), conn.transaction():
            conn.execute(f"UPDATE {st}.users SET email = 'ADA@example.com' WHERE id = %s", (u2,))

        report = build_report(conn, SPEC, "t", tmp_path / "reports", outcome="validated")
        texts = [report.read_text(), (report.parent / "summary.json").read_text(), *(r[4] for r in q)]
        texts += [o.summary + json.dumps(o.details, default=str) for o in outcomes]
        for secret in _secrets_in_sample():
            assert not any(secret in t for t in texts)


def test_rerun_gives_same_ids(database_url: str) -> None:
    stage_store(database_url, SPEC, SAMPLES, run_id="r1", secret=None, workers=1)
    with connect(database_url) as conn:
        first = conn.execute('SELECT id FROM "metagauge__staging".analyses ORDER BY id').fetchall()
    stage_store(database_url, SPEC, SAMPLES, run_id="r2", secret=None, workers=1)  # staged: starts over
    with connect(database_url) as conn:
        assert conn.execute('SELECT id FROM "metagauge__staging".analyses ORDER BY id').fetchall() == first


def test_generated_store_exact_counts(database_url: str, tmp_path: Path) -> None:
    gen = generate_metagauge_store(tmp_path / "src", users=300, result_kb=1)
    summary = stage_store(database_url, SPEC, gen.root, run_id="g", secret=None, workers=1)
    assert summary.staged == {t.name: gen.loaded.get(t.name, 0) for t in SPEC.tables}
    with connect(database_url) as conn:
        rows = conn.execute("SELECT table_name, reason, count(*) FROM migration.quarantine WHERE store = 'metagauge'"
                            " GROUP BY 1, 2").fetchall()
        assert {(t, r): n for t, r, n in rows} == dict(gen.quarantined)
        outcomes = evaluate_gates(conn, database_url, SPEC, "g", tmp_path / "docs")
        assert [o.name for o in outcomes if not o.passed] == []


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = generate_metagauge_store(tmp_path / "a", users=60, result_kb=1)
    b = generate_metagauge_store(tmp_path / "b", users=60, result_kb=1)
    assert a.files == b.files and a.loaded == b.loaded and a.quarantined == b.quarantined
    for rel in a.files:
        assert (tmp_path / "a/metagauge" / rel).read_bytes() == (tmp_path / "b/metagauge" / rel).read_bytes()
    assert (tmp_path / "a/metagauge/data/users.json").read_bytes().startswith(b"\xef\xbb\xbf")


def test_not_an_array_and_truncated(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "metagauge" / "data"
    data.mkdir(parents=True)
    (data / "users.json").write_text('{"users": []}')
    (data / "chat_sessions.json").write_text("")
    summary = stage_store(database_url, SPEC, tmp_path, run_id="x", secret=None, workers=1)
    assert sum(summary.staged.values()) == 0
    with connect(database_url) as conn:
        rows = conn.execute("SELECT table_name, locator, reason FROM migration.quarantine ORDER BY id").fetchall()
    assert rows == [("users", "[0]", "invalid_json"), ("chat_sessions", "[0]", "invalid_json")]


_MEASURE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from migration_pipeline.core.stage import stage_store
    from migration_pipeline.stores.metagauge import METAGAUGE_STORE
    s = stage_store(sys.argv[1], METAGAUGE_STORE, Path(sys.argv[2]), run_id="mem", secret=None, workers=1)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report pytest's own peak.
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
    print(s.staged["analyses"], hwm)
""")


def test_streaming_memory(database_url: str, tmp_path: Path) -> None:
    # 150 MB of analyses: parsed whole it would need well over 1 GB; streamed, memory stays flat.
    gen = generate_metagauge_store(tmp_path / "big", users=1000, analyses_per_user=3, result_kb=50, messy=False)
    assert gen.files["data/analyses.json"] > 140_000_000
    out = subprocess.run([sys.executable, "-c", _MEASURE, database_url, str(gen.root)], cwd=REPO,
                         capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    staged, max_rss_kb = map(int, out.stdout.split())
    assert staged == gen.loaded["analyses"] == 3000
    assert max_rss_kb < 500 * 1024, f"peak RSS {max_rss_kb // 1024} MB"


def test_set_null_checksum_with_preexisting_nulls(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "metagauge" / "data"
    data.mkdir(parents=True)
    uid = "11111111-1111-4111-8111-111111111111"
    (data / "users.json").write_text(json.dumps([{"id": uid, "email": "a@example.com", "password": "x",
                                                  "name": "A", "apiKey": "k"}]))
    (data / "analyses.json").write_text(json.dumps([
        {"id": "a1", "userId": uid, "analysisType": "single"},                              # no configId
        {"id": "a2", "userId": uid, "configId": "gone", "analysisType": "single"},          # dangling → NULL
    ]))
    stage_store(database_url, SPEC, tmp_path, run_id="n", secret=None, workers=1)
    with connect(database_url) as conn:
        outcomes = {o.name: o.passed for o in evaluate_gates(conn, database_url, SPEC, "n", tmp_path / "docs")}
    assert outcomes["checksum_reconciliation"]
