"""The Pend store on its samples and on generated stores: exact rows, exact sums, documents as bytes,
quarantine reasons with their locators, a kill mid-documents, and no PII outside the pend tables."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.report import build_report
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.pend import PEND_STORE
from migration_pipeline.stores.pend import store as pend_store
from migration_pipeline.stores.pend.generate import generate_pend_store

from .conftest import SAMPLES

PEND = SAMPLES / "pend"
U1 = "0x52908400098527886E0F7030069857D2E4169EE7"
U2 = "0x8617e340b3d01fa5f11f306f4090fd50e238070d"
U4 = "0xde709f2102306220921060314715629080e2fb77"
U4_FOLDER = "0xDE709F2102306220921060314715629080E2FB77"
PII = ("Ada Sample", "ada.sample@example.com", "P1234567", "1985-12-10", "203.0.113.7", "ID-998877", "Dan Sample")


def _rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with connect(database_url) as conn:
        return conn.execute(query).fetchall()


def _quarantine(database_url: str) -> list[tuple[str, str, str, str]]:
    return [tuple(r) for r in _rows(database_url, "SELECT table_name, source_file, locator, reason"
                                                  " FROM migration.quarantine WHERE store = 'pend' ORDER BY 1, 2, 3")]


def test_samples_stage_exact_rows_and_quarantine_locators(database_url: str) -> None:
    stage_store(database_url, PEND_STORE, SAMPLES, "samples", None, workers=1)
    s = "pend__staging"
    assert _rows(database_url, f"SELECT address, email, kyc_status, extra FROM {s}.users ORDER BY address_key") == [
        (U1, "ada.sample@example.com", "approved", {"referralCode": "FRIEND-1"}),
        (U2, "bob.sample@example.com", "none", {}),
        (U4, "dan.sample@example.com", "pending", {}),
    ]
    assert _rows(database_url, f"SELECT user_id, display_name, extra FROM {s}.user_profiles ORDER BY user_key") == [
        (U1, "ada", {"theme": "dark"}), (U2, "bob", {})]
    assert _rows(database_url, f"SELECT id, user_id, asset_id, amount FROM {s}.investments ORDER BY id") == [
        ("inv-1", U1, "asset-1", Decimal("123456789012345678901234567890.123456")),
        ("inv-2", U1, "asset-2", Decimal("1.5")),
        ("inv-5", U2, "asset-1", Decimal("250")),
    ]
    assert _rows(database_url, f"SELECT id, target_raise, apy, extra FROM {s}.assets ORDER BY id") == [
        ("asset-1", Decimal("1000000.50"), Decimal("7.25"), {}), ("asset-2", Decimal(250000), None, {"riskRating": "A"})]
    assert _rows(database_url, f"SELECT id, details::text, extra FROM {s}.admin_logs ORDER BY id") == [
        ("log-1", '{"score": 0.970, "previous": "pending"}', {}),  # jsonb keeps the number's digits
        ("log-2", '{"field": "apy"}', {"sessionId": "s-42"})]
    assert _rows(database_url, f"SELECT day::text, chain, log_index, value, extra FROM {s}.blockchain_events"
                               " ORDER BY day, chain, tx_hash, log_index") == [
        ("2024-03-01", "ethereum", 0, Decimal(2**128), {}),
        ("2024-03-01", "ethereum", 1, Decimal(2**64 + 1), {}),
        ("2024-03-01", "polygon", 0, Decimal(10**18), {}),
        ("2024-03-01", "polygon", 3, Decimal(0), {"removed": False}),
        ("2024-03-02", "base", 1, Decimal("9" * 77), {}),
    ]
    assert _rows(database_url, f"SELECT address, address_key, extra FROM {s}.kyc_applications ORDER BY 2") == [
        (U1, U1.lower(), {}), (U4_FOLDER, U4, {"residence": "Berlin"})]
    assert _quarantine(database_url) == [
        ("assets", "admin-assets.json", "[2]", "invalid_value"),
        ("blockchain_events", "explorer-data/2024-03-01/ethereum.json", "[2]", "duplicate_key"),
        ("blockchain_events", "explorer-data/2024-03-01/ethereum.json", "[3]", "invalid_value"),
        ("blockchain_events", "explorer-data/2024-03-02/base.json", "[0]", "chain_mismatch"),
        ("blockchain_events", "explorer-data/2024-03-02/ethereum.json", "[0]", "invalid_json"),
        ("investments", "wallet-db.json", "users[1].investments[0]", "invalid_value"),
        ("investments", "wallet-db.json", "users[1].investments[1]", "orphan"),
        ("kyc_applications", "uploads/kyc/0x1111111111111111111111111111111111111111", "folder", "missing_application"),
        ("kyc_applications", "uploads/kyc/0x2222222222222222222222222222222222222222/application.json", "file", "orphan"),
        ("kyc_documents", "uploads/kyc/0x1111111111111111111111111111111111111111/photo.jpg", "file",
         "missing_application"),
        ("kyc_documents", "uploads/kyc/0x2222222222222222222222222222222222222222/doc.pdf", "file", "orphan"),
        ("users", "wallet-db.json", "users[2]", "invalid_value"),
        ("users", "wallet-db.json", "users[4]", "duplicate_key"),
        ("users", "wallet-db.json", "users[5]", "not_an_object"),
    ]


def test_documents_are_stored_byte_for_byte_with_sniffed_types(database_url: str) -> None:
    stage_store(database_url, PEND_STORE, SAMPLES, "docs", None, workers=1)
    rows = _rows(database_url, "SELECT address, file_name, content_type, extension_matches, size_bytes, sha256, content"
                               " FROM pend__staging.kyc_documents ORDER BY address_key, file_name")
    assert [r[:4] for r in rows] == [
        (U1, "empty.pdf", "application/octet-stream", False),  # an empty file is loaded, size 0
        (U1, "id-front.jpg", "image/jpeg", True),
        (U1, "notes.bin", "application/octet-stream", True),
        (U1, "proof-of-address.pdf", "application/pdf", True),
        (U1, "scan.jpg", "image/png", False),  # a PNG named .jpg: kept, the mismatch noted
        (U1, "selfie.png", "image/png", True),
        (U4_FOLDER, "passport.pdf", "application/pdf", True),
    ]
    assert [r[4] for r in rows][:3] == [0, 3000, 300]
    for address, name, _, _, size, sha256, content in rows:
        on_disk = (PEND / "uploads" / "kyc" / address / name).read_bytes()
        assert bytes(content) == on_disk and size == len(on_disk) and sha256 == hashlib.sha256(on_disk).hexdigest()


def _source_amounts() -> tuple[Decimal, int]:
    """Sums over the sample's source files of the amounts and wei values that load (parsed exactly)."""
    users = json.loads((PEND / "wallet-db.json").read_text(), parse_float=Decimal)["users"]
    with localcontext(prec=200):  # Decimal's default 28 digits would round the sum
        amounts = sum((Decimal(str(i["amount"])) for u in users.values() if isinstance(u, dict)
                       for i in u.get("investments", ()) if i["id"] in ("inv-1", "inv-2", "inv-5")), Decimal(0))
    wei = 0
    for path in sorted((PEND / "explorer-data").glob("2024-*/*.json")):
        try:
            events = json.loads(path.read_text())
        except ValueError:
            continue
        seen = set()
        for e in events:
            key = (e["chain"], e["txHash"], e["logIndex"])
            if key in seen or not e["value"].isdigit() or e["chain"] != path.stem:
                continue
            seen.add(key)
            wei += int(e["value"])
    return amounts, wei


def test_sums_over_the_loaded_tables_equal_the_sums_over_the_source_exactly(database_url: str) -> None:
    stage_store(database_url, PEND_STORE, SAMPLES, "sums", None, workers=1)
    amounts, wei = _source_amounts()
    assert amounts == Decimal("123456789012345678901234568141.623456")
    assert wei == 2**128 + 2**64 + 1 + 10**18 + int("9" * 77)
    assert _rows(database_url, "SELECT sum(amount) FROM pend__staging.investments") == [(amounts,)]
    assert _rows(database_url, "SELECT sum(value) FROM pend__staging.blockchain_events") == [(Decimal(wei),)]


def test_a_document_over_the_cap_is_quarantined_too_large(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(PEND, tmp_path / "pend")
    monkeypatch.setenv("PEND_KYC_MAX_BYTES", "2999")
    summary = stage_store(database_url, PEND_STORE, tmp_path, "cap", None, workers=1)
    assert summary.staged["kyc_documents"] == 5
    assert [q for q in _quarantine(database_url) if q[3] == "too_large"] == [
        ("kyc_documents", f"uploads/kyc/{U1}/id-front.jpg", "file", "too_large"),
        ("kyc_documents", f"uploads/kyc/{U4_FOLDER}/passport.pdf", "file", "too_large"),
    ]
    assert pend_store.DEFAULT_KYC_MAX_BYTES == 16 * 2**20


def test_no_pii_outside_the_pend_tables(database_url: str, tmp_path: Path) -> None:
    stage_store(database_url, PEND_STORE, SAMPLES, "pii", None, workers=1)
    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, PEND_STORE, "pii", tmp_path / "docs")
        assert [o.name for o in outcomes if not o.passed] == []
        report = build_report(conn, PEND_STORE, "pii", tmp_path / "reports", outcome="validated")
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'migration'")]
        bookkeeping = "\n".join(str(r[0]) for t in tables
                                for r in conn.execute(f"SELECT row_to_json(t)::text FROM migration.{t} t"))  # noqa: S608
    texts = [bookkeeping, report.read_text(encoding="utf-8"), (report.parent / "summary.json").read_text("utf-8"),
             json.dumps([o.details for o in outcomes], default=str), " ".join(o.summary for o in outcomes)]
    for value in PII:
        assert all(value not in text for text in texts), value


def test_a_run_killed_mid_documents_then_rerun_gives_identical_tables(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_pend_store(tmp_path, users=40, days=2, seed=3, document_kib=4)

    def tables() -> dict[str, list[tuple[Any, ...]]]:
        with connect(database_url) as conn:
            return {t.name: conn.execute(f"SELECT * FROM pend__staging.{t.name} ORDER BY 1, 2, 3").fetchall()
                    for t in PEND_STORE.tables}

    stage_store(database_url, PEND_STORE, tmp_path, "clean", None, workers=1)
    clean = tables()
    assert len(clean["kyc_documents"]) > 20

    real = pend_store._read_kyc
    documents = 0

    def dies_mid_folder(unit: Any, context: Any) -> Any:
        nonlocal documents
        for batch in real(unit, context):
            documents += sum(len(r) for t, r in batch.rows.items() if t == "kyc_documents")
            if documents > 10:
                raise KeyboardInterrupt  # SIGKILL mid-documents: the unit's transaction never commits
            yield batch

    with monkeypatch.context() as patched:
        patched.setattr(pend_store, "_read_kyc", dies_mid_folder)
        with pytest.raises(KeyboardInterrupt):
            stage_store(database_url, PEND_STORE, tmp_path, "killed", None, workers=1)
    resumed = stage_store(database_url, PEND_STORE, tmp_path, "resumed", None, workers=1)
    assert resumed.resumed_units > 0
    assert tables() == clean
    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, PEND_STORE, "resumed", tmp_path / "docs")
    assert [o.name for o in outcomes if not o.passed] == []


def test_the_generator_is_deterministic_and_plants_its_quirks(tmp_path: Path) -> None:
    first = generate_pend_store(tmp_path / "a", users=300, days=3, seed=7, document_kib=2)
    second = generate_pend_store(tmp_path / "b", users=300, days=3, seed=7, document_kib=2)

    def digest(root: Path) -> list[tuple[str, str]]:
        return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in sorted(root.rglob("*")) if p.is_file()]

    assert digest(first.store_dir) == digest(second.store_dir)
    assert first.days == 3 and first.documents > 300
    db = (first.store_dir / "wallet-db.json").read_text()
    assert '"n/a"' in db and "asset-missing" in db
    days = sorted(p.name for p in (first.store_dir / "explorer-data").iterdir())
    assert days == ["2024-03-01", "2024-03-02", "2024-03-03"]
    values = [int(e["value"]) for p in (first.store_dir / "explorer-data").glob("*/*.json")
              for e in _loads_or_empty(p) if e["value"].isdigit()]
    assert max(values) > 2**64
    heads = {p.suffix: p.read_bytes()[:4] for p in (first.store_dir / "uploads" / "kyc").glob("*/*") if p.stat().st_size}
    assert heads[".jpg"][:3] == b"\xff\xd8\xff" or heads[".jpg"][:4] == b"\x89PNG"
    assert {heads[".png"], heads[".pdf"]} <= {b"\x89PNG", b"%PDF", b"\xff\xd8\xff\xe0"}


def _loads_or_empty(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except ValueError:
        return []


def test_names_that_are_not_utf8_and_links_are_listed_never_loaded(tmp_path: Path) -> None:
    store = tmp_path / "pend"
    shutil.copytree(PEND, store)
    bad = os.fsdecode(b"0x\xff" + b"1" * 39)
    (store / "uploads" / "kyc" / bad).mkdir()
    (store / "uploads" / "kyc" / bad / "application.json").write_text("{}")
    (store / "explorer-data" / "2024-03-01" / "link.json").symlink_to(store / "admin-logs.json")
    discovery = PEND_STORE.discover(store)
    assert f"uploads/kyc/{bad}/application.json" in discovery.unmapped
    assert "explorer-data/2024-03-01/link.json" in discovery.unmapped
    assert len(discovery.units) == len(PEND_STORE.discover(PEND).units)


def test_documents_are_staged_in_bounded_batches_so_memory_stays_flat(database_url: str, tmp_path: Path) -> None:
    """Folders are grouped into units (a unit per folder cost a transaction and a COPY per table for a few
    kilobytes) and documents go to COPY in batches of up to KYC_BATCH_BYTES: the loader never holds much more
    than one batch, whatever the store's total (here ~8x the batch)."""
    import tracemalloc

    made = generate_pend_store(tmp_path, users=240, days=1, seed=11, document_kib=256)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "pend" / "uploads").rglob("*") if p.is_file())
    assert on_disk > 8 * pend_store.KYC_BATCH_BYTES
    tracemalloc.start()
    try:
        summary = stage_store(database_url, PEND_STORE, tmp_path, "flat", None, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.seen["kyc_documents"] == made.documents  # staged or quarantined with a reason
    assert summary.units < made.documents // 10  # folders grouped into units
    assert peak < 6 * pend_store.KYC_BATCH_BYTES, f"peak {peak / 2**20:.0f} MiB for {on_disk / 2**20:.0f} MiB of documents"
