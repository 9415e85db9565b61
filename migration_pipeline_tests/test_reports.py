"""The validation report as a decision (promoted, rejected, to check, next command), its inline SVG charts
and the store's own sections, on a real staging of the Pend samples; and Data Docs that load nothing from the
network, kept per run."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.report import build_report
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.pend.store import PEND_STORE

from .conftest import SAMPLES

EXPECTED = json.loads((Path(__file__).resolve().parents[1] / "migration_pipeline/stores/pend/expected.json").read_text())
PEND = SAMPLES / "pend"
SITE = Path("gx/uncommitted/data_docs/local_site")
# Each sample document and the type its first bytes show (data_samples/pend/EXPECTED.md).
DOCUMENT_TYPES = {
    "0x52908400098527886E0F7030069857D2E4169EE7/id-front.jpg": "image/jpeg",
    "0x52908400098527886E0F7030069857D2E4169EE7/selfie.png": "image/png",
    "0x52908400098527886E0F7030069857D2E4169EE7/scan.jpg": "image/png",
    "0x52908400098527886E0F7030069857D2E4169EE7/proof-of-address.pdf": "application/pdf",
    "0x52908400098527886E0F7030069857D2E4169EE7/empty.pdf": "application/octet-stream",
    "0x52908400098527886E0F7030069857D2E4169EE7/notes.bin": "application/octet-stream",
    "0xDE709F2102306220921060314715629080E2FB77/passport.pdf": "application/pdf",
}


def _stage_and_report(database_url: str, reports: Path, run_id: str, *, stage: bool = True) -> Path:
    if stage:
        stage_store(database_url, PEND_STORE, SAMPLES, run_id, None, workers=2)
    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, PEND_STORE, run_id, reports / "pend" / run_id)
        assert [o.name for o in outcomes if not o.passed] == []
        return build_report(conn, PEND_STORE, run_id, reports, outcome="validated",
                            stage_seconds={"discover": 0.01, "read_and_copy": 1.5, "finish_sql": 0.25})


def _figures(page: str) -> dict[str, str]:
    """Each chart's SVG by its title."""
    return {html.unescape(title): svg for title, svg in
            re.findall(r"<figure role='img' aria-label='([^']*)'>(<svg.*?</svg>)</figure>", page, re.S)}


def _texts(svg: str, css_class: str | None = None) -> list[str]:
    """The text of an SVG's <text> elements (of one class, if given)."""
    pattern = r'<text[^>]*class="' + css_class + r'"[^>]*>([^<]*)</text>' if css_class else r"<text[^>]*>([^<]*)</text>"
    return [html.unescape(t) for t in re.findall(pattern, svg)]


def _section_rows(page: str, title: str) -> list[list[str]]:
    block = page.split(f"<h3>{title}</h3>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", block, re.S)[1:]  # the header row first
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


def _planted_pii() -> set[str]:
    """The invented personal values of the samples: e-mails, names, document numbers, birth dates, IPs."""
    values: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("email", "name", "fullName", "documentNumber", "dateOfBirth", "ip") and isinstance(value, str):
                    values.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads((PEND / "wallet-db.json").read_text()))
    walk(json.loads((PEND / "admin-logs.json").read_text()))
    for application in (PEND / "uploads/kyc").glob("*/application.json"):
        walk(json.loads(application.read_text()))
    assert {"203.0.113.7", "Dan Sample", "ID-998877"} <= values  # the walk found what it plants
    return values - {"Solar Fund"}


def test_the_pend_report_reads_as_a_decision_with_charts_and_its_own_sections(database_url: str, tmp_path: Path) -> None:
    report = _stage_and_report(database_url, tmp_path / "reports", "run-a")
    page = report.read_text(encoding="utf-8")

    # Top-down: promoted, rejected, to check, next step (the exact commands), then the evidence.
    order = [page.index(h) for h in ("1. What is promoted", "2. What was rejected, and why",
                                     "3. What the reviewer must check", "4. Next step", "Evidence")]
    assert order == sorted(order)
    assert "migration-pipeline cutover --store pend --approved-by NAME" in page
    assert f"{sum(EXPECTED['tables'].values())} rows in 8 tables" in page
    assert f"{sum(EXPECTED['quarantine'].values())} source records were quarantined" in page
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
    assert re.search(r"staging started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)

    # Five inline SVG charts, nothing fetched: tables, quarantine, explorer days, document types, timings.
    assert page.count("<svg") == 5
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=['\"]https?:", page)
    figures = _figures(page)
    assert list(figures) == ["Rows per table: live before vs staged", "Quarantined records per reason",
                             "Explorer events per day", "KYC documents by content type", "Load time per phase (seconds)"]
    tables = figures["Rows per table: live before vs staged"]
    assert set(EXPECTED["tables"]) <= set(_texts(tables))
    # live before: 0 rows in each table (nothing promoted yet), then the staged rows
    assert sorted(_texts(tables, "value")) == sorted(["0"] * 8 + [str(n) for n in EXPECTED["tables"].values()])
    quarantine = figures["Quarantined records per reason"]
    assert set(EXPECTED["quarantine"]) <= set(_texts(quarantine))
    assert sorted(_texts(quarantine, "value")) == sorted(str(n) for n in EXPECTED["quarantine"].values())
    assert {"discover", "read_and_copy", "finish_sql"} <= set(_texts(figures["Load time per phase (seconds)"]))
    assert sorted(_texts(figures["Load time per phase (seconds)"], "value")) == ["0.01", "0.25", "1.50"]

    # Pend's own sections: events per day, documents by sniffed type with their bytes, KYC quarantine.
    assert _section_rows(page, "Explorer events per day") == [
        ["2024-03-01", "2", "6", "4", "2"], ["2024-03-02", "2", "3", "1", "2"]]
    assert sorted(_texts(figures["Explorer events per day"], "value")) == ["1", "4"]
    by_type: dict[str, list[int]] = {}
    for relative, content_type in DOCUMENT_TYPES.items():
        by_type.setdefault(content_type, []).append((PEND / "uploads/kyc" / relative).stat().st_size)
    rows = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in _section_rows(page, "KYC documents by content type")}
    assert rows == {"image/jpeg": (1, 0, sum(by_type["image/jpeg"])), "image/png": (2, 1, sum(by_type["image/png"])),
                    "application/pdf": (2, 0, sum(by_type["application/pdf"])),
                    "application/octet-stream": (2, 1, sum(by_type["application/octet-stream"]))}
    assert sum(n for n, _, _ in rows.values()) == EXPECTED["tables"]["kyc_documents"]
    assert _section_rows(page, "KYC uploads quarantined") == [
        ["kyc_applications", "missing_application", "1"], ["kyc_applications", "orphan", "1"],
        ["kyc_documents", "missing_application", "1"], ["kyc_documents", "orphan", "1"]]

    # No personal value of the samples anywhere in the report or its summary.
    text = page + (report.parent / "summary.json").read_text(encoding="utf-8")
    leaked = sorted(v for v in _planted_pii() if v in text)
    assert leaked == []


def test_data_docs_load_nothing_from_the_network_and_every_run_keeps_its_own(database_url: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _stage_and_report(database_url, reports, "run-a")
    report = _stage_and_report(database_url, reports, "run-b", stage=False)
    for run in ("run-a", "run-b"):
        site = reports / "pend" / run / SITE
        pages = list(site.rglob("*.html"))
        assert len(pages) == 1 + 2 * len(PEND_STORE.tables)  # the index, a suite page and a result page per table
        for page in pages:
            text = page.read_text(encoding="utf-8")
            assert re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=\"https?:[^\"]*\"", text) == [], page
            assert "amazonaws.com" not in text
            for asset in re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=\"([^\"]+\.(?:js|css))\"", text):
                assert (page.parent / asset).is_file(), (page, asset)
        for css in site.rglob("*.css"):
            assert not re.search(r"url\(['\"]?https?:", css.read_text(encoding="utf-8")), css
        assert (site / "static/vendor/jquery.min.js").read_text().startswith("/*! jQuery v3.7.1")
        assert "pend.blockchain_events" in (site / "index.html").read_text(encoding="utf-8")
    page = report.read_text(encoding="utf-8")
    links = re.findall(r"<li><a href='([^']*)'>run (run-[ab])</a>", page)
    assert links == [(f"{SITE.as_posix()}/index.html", "run-b"), (f"../run-a/{SITE.as_posix()}/index.html", "run-a")]


@pytest.mark.slow
def test_the_migrate_job_report_shows_the_staging_phases_and_the_cutover_command(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole Dagster job on the samples: the gates' report gets the staged step's seconds per phase from
    its materialization, and the promotion's rebuild of the same report keeps them."""
    from dagster import DagsterInstance

    from migration_pipeline.definitions import defs, job_name

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MIGRATION_SOURCE_ROOT", str(SAMPLES))
    monkeypatch.setenv("MIGRATION_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MIGRATION_BACKUP_DIR", str(tmp_path / "backups"))
    result = defs.resolve_job_def(job_name("pend")).execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    report = tmp_path / "reports" / "pend" / result.run_id / "report.html"
    page = report.read_text(encoding="utf-8")
    assert "Outcome: <b>promoted</b>" in page
    assert "migration-pipeline cutover --store pend --approved-by NAME" in page
    assert "migration-pipeline rollback --store pend" in page
    timings = _figures(page)["Load time per phase (seconds)"]
    labels = {t for t in _texts(timings) if not re.fullmatch(r"[0-9.,]+", t)} - {"Load time per phase (seconds)"}
    assert labels == {"discover", "resume_check", "read_and_copy", "sql_integrity", "sql_tables", "sql_foreign_keys",
                      "finish_sql"}
    assert re.search(r"<a href='gx/uncommitted/data_docs/local_site/index.html'>run " + result.run_id, page)


def _staged_report(database_url: str, spec: Any, tmp_path: Path, secret: str | None = None) -> str:
    stage_store(database_url, spec, SAMPLES, "sections", secret, workers=1)
    with connect(database_url) as conn:
        return build_report(conn, spec, "sections", tmp_path / "reports", outcome="staged").read_text(encoding="utf-8")


def test_defarm_shows_its_type_mapping_notes(database_url: str, tmp_path: Path) -> None:
    from migration_pipeline.stores.defarm.store import DEFARM_STORE

    page = _staged_report(database_url, DEFARM_STORE, tmp_path)
    # data_samples/defarm/EXPECTED.md: rounded timestamps, an undeclared enum variant, a blank line
    assert _section_rows(page, "Type-mapping notes") == [
        ["blank_line", "items", "", "1"], ["timestamp_rounded", "items", "creation_timestamp", "1"],
        ["timestamp_rounded", "items", "last_modified", "2"], ["timestamp_rounded", "users", "created_at", "2"],
        ["unknown_enum_variant", "items", "status", "1"]]
    assert page.count("<svg") == 3  # tables, quarantine, timings (the notes have no chart)


def test_wallet_shows_its_files_per_shard(database_url: str, tmp_path: Path) -> None:
    from collections import Counter

    from migration_pipeline.stores.wallet.store import FILE_NAME, SHARDS, WALLET_STORE

    from .conftest import SAMPLE_SECRET

    page = _staged_report(database_url, WALLET_STORE, tmp_path, SAMPLE_SECRET)
    names = [p.name for p in (SAMPLES / "wallet/storage/wallets").iterdir()]
    per_shard = Counter(f"{int(m.group(1)) % SHARDS:02d}" for n in names if (m := FILE_NAME.fullmatch(n)))
    rows = _section_rows(page, "Wallet files per shard")
    assert {r[0]: int(r[1]) for r in rows} == dict(per_shard)
    assert sum(int(r[2]) for r in rows) == 16 + 1  # the wallets staged, and the duplicate removed after loading
    chart = _figures(page)["Wallet files per shard"]
    assert set(per_shard) <= set(_texts(chart))


def test_a_blocked_report_says_not_to_promote_and_lists_the_failed_gates(database_url: str, tmp_path: Path) -> None:
    stage_store(database_url, PEND_STORE, SAMPLES, "lost", None, workers=2)
    with connect(database_url) as conn:
        conn.execute("DELETE FROM pend__staging.admin_logs WHERE id = 'log-2'")  # a row lost after the load
        conn.commit()
        outcomes = evaluate_gates(conn, database_url, PEND_STORE, "lost", tmp_path / "reports" / "pend" / "lost")
        failed = sorted(o.name for o in outcomes if not o.passed)
        page = build_report(conn, PEND_STORE, "lost", tmp_path / "reports", outcome="blocked").read_text(encoding="utf-8")
    assert failed == ["checksum_reconciliation", "gx_suite_admin_logs", "row_count_reconciliation"]
    assert "4. Next step: Do not promote: fix the source, then run again" in page
    assert f"Blocked by {', '.join(failed)}." in page
    assert "<pre>migration-pipeline run --store pend\n</pre>" in page
    assert "cutover" not in page.split("<h2 id='next'>", 1)[1].split("<h2 id='evidence'>", 1)[0]
    to_check = re.findall(r"<li>Gate ([a-z_]+) failed: ", page)
    assert sorted(to_check) == failed
    assert "are <b>not</b> promoted while a gate fails" in page
