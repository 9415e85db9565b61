"""The validation report: one self-contained HTML file per run and store, plus an index.

Built only from the bookkeeping tables (counts, reasons, locators, checksums, check outcomes,
phases): no value of any migrated record is read, so no secret or PII can appear in it.
"""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from markupsafe import Markup

from migration_pipeline.core.promote import get_phase, set_report_path
from migration_pipeline.core.reconcile import current_plan, file_counts, table_counts
from migration_pipeline.core.spec import StoreSpec

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1f2933;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d9e2ec;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0b7a3b;font-weight:600} .fail{color:#b42318;font-weight:600}
.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:16px}
.banner.ok{background:#e3f9e5;border:1px solid #31a24c} .banner.bad{background:#ffe3e3;border:1px solid #e12d39}
.muted{color:#627d98} code{background:#f0f4f8;padding:1px 4px;border-radius:3px}
"""


# Shipped as package data; autoescaped, so a file name or a message can never inject markup into the page.
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("migration_pipeline", "templates"),
                                autoescape=True, keep_trailing_newline=True)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _bar_chart(title: str, values: dict[str, int], color: str) -> str:
    if not values:
        return f"<p class='muted'>{_e(title)}: none</p>"
    width, bar_h, label_w = 640, 22, 220
    top = max(values.values()) or 1
    rows = []
    for i, (label, value) in enumerate(values.items()):
        w = max(2, int((width - label_w - 80) * value / top)) if value else 0
        y = i * (bar_h + 6)
        rows.append(
            f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end' font-size='12'>{_e(label)}</text>"
            f"<rect x='{label_w}' y='{y}' width='{w}' height='{bar_h}' fill='{color}'/>"
            f"<text x='{label_w + w + 6}' y='{y + 15}' font-size='12'>{value}</text>"
        )
    height = len(values) * (bar_h + 6)
    return (f"<figure><figcaption><b>{_e(title)}</b></figcaption><svg role='img' aria-label='{_e(title)}' "
            f"width='{width}' height='{height}'>{''.join(rows)}</svg></figure>")


def build_report(
    conn: psycopg.Connection, spec: StoreSpec, run_id: str, report_root: Path, *, outcome: str
) -> Path:
    """Write `<report_root>/<store>/<run_id>/report.html` and refresh the index; return the path."""
    plan_id, staging_status = current_plan(conn, spec.name)
    where = spec.schema if staging_status == "promoted" else spec.staging_schema
    checks = conn.execute(
        "SELECT check_name, passed, summary, details FROM migration.check_results"
        " WHERE run_id = %s AND store = %s ORDER BY check_name", (run_id, spec.name)).fetchall()
    # The counts this run's row-count gate saw (the report shows what was checked, and the recount costs a
    # scan of every table); counted here only when the gate did not run.
    recorded = next((c[3] for c in checks if c[0] == "row_count_reconciliation"), None) or {}
    counts = {t.name: recorded["tables"][t.name] for t in spec.tables if t.name in recorded.get("tables", {})}
    if not counts and staging_status in ("staged", "promoted"):
        counts = table_counts(conn, spec, plan_id, where)
    reasons = conn.execute(
        """SELECT table_name, reason, count(*),
                  (array_agg(source_file || CASE WHEN locator IN ('', 'file') THEN '' ELSE ' ' || locator END
                             ORDER BY id))[1:5],
                  min(message)
           FROM migration.quarantine WHERE store = %s AND plan_id = %s GROUP BY 1, 2 ORDER BY 1, 3 DESC""",
        (spec.name, plan_id)).fetchall()
    mapped, unmapped_count = file_counts(conn, spec.name, plan_id)
    unmapped = [r[0] for r in conn.execute(
        "SELECT path || ' (' || size_bytes || ' bytes, sha256 ' || left(sha256, 12) || '…)' FROM"
        " migration.source_manifest WHERE store = %s AND plan_id = %s AND status = 'unmapped' ORDER BY path LIMIT 50",
        (spec.name, plan_id))]
    adjustments = conn.execute(
        "SELECT table_name, reason, rows_changed, message FROM migration.adjustments WHERE store = %s AND plan_id = %s",
        (spec.name, plan_id)).fetchall()
    history = conn.execute(
        "SELECT at, from_phase, to_phase, actor, run_id, note FROM migration.phase_history WHERE store = %s"
        " ORDER BY id DESC LIMIT 30", (spec.name,)).fetchall()
    backup = conn.execute(
        "SELECT archive_path, sha256, files, created_at FROM migration.backups WHERE store = %s"
        " ORDER BY created_at DESC LIMIT 1", (spec.name,)).fetchone() if _has_backups(conn) else None
    phase = get_phase(conn, spec.name)

    out_dir = report_root / spec.name / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    checksum_details: dict[str, Any] = next((c[3] for c in checks if c[0] == "checksum_reconciliation"), {}) or {}
    # What promotion replaces, as the live_row_loss gate counted it.
    live_gate: dict[str, Any] = next((c[3] for c in checks if c[0] == "live_row_loss"), {}) or {}
    live_before: dict[str, Any] = live_gate.get("tables", {})
    docs = next((c[3].get("data_docs") for c in checks if c[0].startswith("gx_suite_") and c[3].get("data_docs")), "")

    passed_all = bool(checks) and all(c[1] for c in checks)
    by_reason: dict[str, int] = {}
    for _table, reason, n, *_ in reasons:
        by_reason[reason] = by_reason.get(reason, 0) + n
    unmapped_fields = conn.execute(
        "SELECT table_name, field, sum(records)::bigint FROM migration.unmapped_fields WHERE store = %s AND plan_id = %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50", (spec.name, plan_id)).fetchall()
    flagged = next((c[3] for c in checks if c[0] in [g.name for g in spec.gates] and not c[1]), None)
    page = _TEMPLATES.get_template("report.html.j2").render(
        css=Markup(_CSS), bar_chart=lambda title, values, color: Markup(_bar_chart(title, values, color)),
        store=spec.name, description=spec.description, run_id=run_id, plan_id=plan_id,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        banner_ok=passed_all and outcome != "blocked", outcome=outcome, phase=phase.phase,
        approved_by=phase.approved_by,
        tables=[{"name": table, "source": c["source"], "staged": c["staged"], "quarantined": c["quarantined"],
                 "live_before": live_before.get(table, {}).get("live", "—"),
                 "checksum_source": checksum_details.get("tables", {}).get(table, {}).get("source", "derived"),
                 "checksum_target": checksum_details.get("tables", {}).get(table, {}).get("target", "—")}
                for table, c in counts.items()],
        rows_per_table={t: c["staged"] for t, c in counts.items()}, quarantine_by_reason=by_reason,
        checks=[{"name": n, "passed": ok, "summary": summary} for n, ok, summary, _details in checks],
        failed_files=(flagged or {}).get("files", []),
        docs=os.path.relpath(docs, out_dir) if docs else "",
        quarantine=[{"table": t, "reason": r, "records": n, "samples": samples, "message": m}
                    for t, r, n, samples, m in reasons],
        unmapped_fields=unmapped_fields, adjustments=adjustments, mapped=mapped, unmapped_count=unmapped_count,
        patterns=spec.source_files, unmapped=unmapped, backup=backup, history=history)

    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(
        {"store": spec.name, "run_id": run_id, "plan_id": plan_id, "outcome": outcome, "tables": counts,
         "checks": {c[0]: c[1] for c in checks}, "quarantine": by_reason,
         "unmapped_fields": {f"{t}.{n}": r for t, n, r in unmapped_fields}}, indent=2, default=str))
    set_report_path(conn, spec.name, str(path.resolve()))
    conn.commit()
    write_index(report_root)
    return path


def _has_backups(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('migration.backups') IS NOT NULL").fetchone() == (True,)


def write_index(report_root: Path) -> Path:
    """`<report_root>/index.html`: every report, newest first."""
    entries = []
    for summary in report_root.glob("*/*/summary.json"):
        data = json.loads(summary.read_text())
        entries.append((summary.stat().st_mtime, data, summary.parent / "report.html"))
    entries.sort(key=lambda e: e[0], reverse=True)
    rows = "".join(
        f"<tr><td>{_e(datetime.fromtimestamp(m, UTC).strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{_e(d['store'])}</td>"
        f"<td><a href='{_e(p.relative_to(report_root).as_posix())}'>{_e(d['run_id'])}</a></td>"
        f"<td>{_e(d['outcome'])}</td></tr>" for m, d, p in entries)
    index = report_root / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Migration reports</title>"
                     f"<style>{_CSS}</style></head><body><h1>Migration reports</h1><table><tr><th>generated</th>"
                     f"<th>store</th><th>run</th><th>outcome</th></tr>{rows}</table></body></html>", encoding="utf-8")
    return index
