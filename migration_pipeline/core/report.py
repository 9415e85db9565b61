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

import psycopg

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
    banner_ok = passed_all and outcome != "blocked"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(spec.name)} validation report</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Validation report: <code>{_e(spec.name)}</code></h1>",
        f"<p class='muted'>{_e(spec.description)}<br>run <code>{_e(run_id)}</code> · plan <code>{_e(plan_id)}</code>"
        f" · generated {_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>",
        f"<div class='banner {'ok' if banner_ok else 'bad'}'>Outcome: <b>{_e(outcome)}</b> · phase "
        f"<b>{_e(phase.phase)}</b>" + (f" · approved by <b>{_e(phase.approved_by)}</b>" if phase.approved_by else "")
        + "</div>",
        "<h2>Tables</h2><table><tr><th>table</th><th>source records</th><th>loaded</th><th>quarantined</th>"
        "<th>live before</th><th>checksum source</th><th>checksum target</th></tr>",
    ]
    for table, c in counts.items():
        cs = checksum_details.get("tables", {}).get(table, {})
        parts.append(
            f"<tr><td><code>{_e(table)}</code></td><td class='n'>{c['source']}</td><td class='n'>{c['staged']}</td>"
            f"<td class='n'>{c['quarantined']}</td><td class='n'>{live_before.get(table, {}).get('live', '—')}</td>"
            f"<td><code>{_e(cs.get('source', 'derived'))}</code></td>"
            f"<td><code>{_e(cs.get('target', '—'))}</code></td></tr>")
    parts.append("</table>")
    parts.append(_bar_chart("Rows loaded per table", {t: c["staged"] for t, c in counts.items()}, "#2f80ed"))
    by_reason: dict[str, int] = {}
    for _table, reason, n, *_ in reasons:
        by_reason[reason] = by_reason.get(reason, 0) + n
    parts.append(_bar_chart("Quarantined records per reason", by_reason, "#e8590c"))

    parts.append("<h2>Gates</h2><table><tr><th>check</th><th>outcome</th><th>summary</th></tr>")
    for name, passed, summary, _details in checks:
        parts.append(f"<tr><td><code>{_e(name)}</code></td><td class='{'pass' if passed else 'fail'}'>"
                     f"{'passed' if passed else 'FAILED'}</td><td>{_e(summary)}</td></tr>")
    parts.append("</table>")
    flagged = next((c[3] for c in checks if c[0] in [g.name for g in spec.gates] and not c[1]), None)
    if flagged and flagged.get("files"):
        parts.append("<p><b>Files that failed verification</b> (first 20): " +
                     ", ".join(f"<code>{_e(f)}</code>" for f in flagged["files"]) + "</p>")
    if docs:
        rel = os.path.relpath(docs, out_dir)
        parts.append(f"<p>Great Expectations Data Docs: <a href='{_e(rel)}'>{_e(rel)}</a></p>")

    parts.append("<h2>Quarantine</h2>")
    if reasons:
        parts.append("<table><tr><th>table</th><th>reason</th><th>records</th><th>sample locators</th>"
                     "<th>message (first)</th></tr>")
        for table, reason, n, samples, message in reasons:
            parts.append(f"<tr><td>{_e(table)}</td><td><code>{_e(reason)}</code></td><td class='n'>{n}</td>"
                         f"<td>{'<br>'.join(_e(s) for s in samples)}</td><td>{_e(message)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No record was quarantined.</p>")
    unmapped_fields = conn.execute(
        "SELECT table_name, field, sum(records)::bigint FROM migration.unmapped_fields WHERE store = %s AND plan_id = %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50", (spec.name, plan_id)).fetchall()
    if unmapped_fields:
        parts.append("<h2>Source fields no column holds</h2><p>Loaded records carried these fields; the target table"
                     " has no column (and no <code>extra</code> jsonb) for them, so their values are only in the"
                     " source files and the backup.</p><table><tr><th>table</th><th>field</th><th>records</th></tr>")
        for table, name, n in unmapped_fields:
            parts.append(f"<tr><td>{_e(table)}</td><td><code>{_e(name)}</code></td><td class='n'>{n}</td></tr>")
        parts.append("</table>")
    if adjustments:
        parts.append("<h2>Values normalised after loading</h2><table><tr><th>table</th><th>reason</th><th>rows</th>"
                     "<th>what</th></tr>")
        for table, reason, n, message in adjustments:
            parts.append(f"<tr><td>{_e(table)}</td><td><code>{_e(reason)}</code></td><td class='n'>{n}</td>"
                         f"<td>{_e(message)}</td></tr>")
        parts.append("</table>")
    patterns = ", ".join(f"<code>{_e(p)}</code>" for p in spec.source_files)
    parts.append(f"<h2>Source files</h2><p>{mapped} mapped ({patterns}), "
                 f"{unmapped_count} unmapped (listed in <code>migration.source_manifest</code> with size "
                 "and SHA-256).</p>")
    if unmapped:
        parts.append("<ul>" + "".join(f"<li><code>{_e(u)}</code></li>" for u in unmapped) + "</ul>")
    if backup:
        parts.append(f"<h2>Backup</h2><p>Archive <code>{_e(backup[0])}</code>, {backup[2]} files, SHA-256 "
                     f"<code>{_e(backup[1])}</code>, written {_e(backup[3])}; verified by re-reading.</p>")
    parts.append("<h2>Phase history</h2><table><tr><th>at</th><th>from</th><th>to</th><th>by</th><th>run</th>"
                 "<th>note</th></tr>")
    for at, from_phase, to_phase, actor, hist_run, note in history:
        parts.append(f"<tr><td>{_e(at)}</td><td>{_e(from_phase or '')}</td><td>{_e(to_phase)}</td><td>{_e(actor)}</td>"
                     f"<td><code>{_e(hist_run or '')}</code></td><td>{_e(note)}</td></tr>")
    parts.append("</table></body></html>")

    path = out_dir / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
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
