"""The validation report: one self-contained HTML file per run and store, plus an index.

It reads top-down as a decision: what is (or will be) promoted, what was rejected and why, what the
reviewer must check, and the exact command for the next step; then the evidence (charts, the store's own
sections, every gate, Data Docs, files, phase history).

Built only from the bookkeeping tables (counts, reasons, locators, checksums, check outcomes, phases) and
the store's declared sections (counts and content types): no value of any migrated record is read, so no
secret or PII can appear in it. Charts are pygal SVG written inline (no script, no network): pygal imports in
0.05 s and wrote 20.6 kB for the pend tables chart, against 0.6 s and 28.6 kB for matplotlib's SVG backend
(whose text becomes paths, unsearchable).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import psycopg
import pygal
from markupsafe import Markup
from psycopg import sql

from migration_pipeline.core.bookkeeping.backups import newest_backup_row
from migration_pipeline.core.bookkeeping.checks import plan_adjustments, run_checks
from migration_pipeline.core.bookkeeping.phases import phase_history
from migration_pipeline.core.bookkeeping.plans import staging_window
from migration_pipeline.core.bookkeeping.units import (
    quarantine_by_table_and_reason,
    unmapped_field_counts,
    unmapped_files,
)
from migration_pipeline.core.names import migrate_job
from migration_pipeline.core.promote import get_phase, set_report_path
from migration_pipeline.core.reconcile import current_plan, file_counts, table_counts
from migration_pipeline.core.spec import ReportSection, StoreSpec

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1f2933;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d9e2ec;padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f0f4f8} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0b7a3b;font-weight:600} .fail{color:#b42318;font-weight:600}
.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:16px}
.banner.ok{background:#e3f9e5;border:1px solid #31a24c} .banner.bad{background:#ffe3e3;border:1px solid #e12d39}
.next{background:#f0f4f8;border-left:4px solid #2f80ed;padding:8px 14px;margin:8px 0}
.muted{color:#627d98} code{background:#f0f4f8;padding:1px 4px;border-radius:3px}
pre{background:#102a43;color:#f0f4f8;padding:8px 12px;border-radius:4px;overflow-x:auto}
figure{margin:10px 0} figure svg{max-width:100%;height:auto}
"""


# Shipped as package data; autoescaped, so a file name or a message can never inject markup into the page.
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("migration_pipeline", "templates"),
                                autoescape=True, keep_trailing_newline=True)
_CHART_STYLE = pygal.style.Style(background="white", plot_background="white", font_family="system-ui, sans-serif",
                                 colors=("#2f80ed", "#e8590c", "#31a24c", "#9b51e0", "#627d98"),
                                 label_font_size=12, major_label_font_size=12, value_font_size=11,
                                 title_font_size=15, legend_font_size=12)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _utc(moment: datetime | None) -> str:
    """A moment as the report shows every time: in UTC, with its zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def _ticks(top: float, whole: bool) -> list[float]:
    """About six round ticks from 0 past `top` (steps of 1, 2 or 5 times a power of ten; whole for counts)."""
    rough = max(top, 1e-9) / 6
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    if whole:
        step = max(1, round(step))
    return [round(i * step, 6) for i in range(math.ceil(top / step) + 1)]


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
              *, decimals: int = 0) -> str:
    """A horizontal bar chart as inline SVG (a bar per label and series, its value printed on it), labels
    top-down in the order given."""
    if not labels:
        return f"<p class='muted'>{_e(title)}: none</p>"
    top = max((v for values in series.values() for v in values if v is not None), default=0) or 1
    chart = pygal.HorizontalBar(
        js=[], disable_xml_declaration=True, explicit_size=True, style=_CHART_STYLE, print_values=True,
        width=760, height=110 + 22 * len(labels) * len(series), show_legend=len(series) > 1, legend_at_bottom=True,
        truncate_label=40, title=title, value_formatter=lambda v: f"{v:,.{decimals}f}",
        y_labels=_ticks(top, whole=decimals == 0))  # pygal would tick counts at 0.2, 0.4, …
    chart.x_labels = list(reversed(labels))  # pygal draws the first label at the bottom
    for name, values in series.items():
        chart.add(name, list(reversed(values)))
    svg = chart.render(is_unicode=True)
    return f"<figure role='img' aria-label='{_e(title)}'>{svg}</figure>"


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """A section's query as plain data (a store's spec is pickled into the loader processes): `{schema}` is the
    schema of the tables reported on (quoted as an identifier), `%(store)s` and `%(plan_id)s` are bound."""

    text: str

    def __call__(self, conn: Any, store: str, plan_id: str, schema: str) -> Sequence[tuple[Any, ...]]:
        statement = sql.SQL(self.text).format(schema=sql.Identifier(schema))  # type: ignore[arg-type]
        return conn.execute(statement, {"store": store, "plan_id": plan_id}).fetchall()  # type: ignore[no-any-return]


def sql_section(title: str, description: str, columns: tuple[str, ...], query: str,
                chart: int | None = None) -> ReportSection:
    """A section from one SQL query (see `SqlQuery`)."""
    return ReportSection(title, description, columns, SqlQuery(query), chart)


def _next_step(spec: StoreSpec, phase: str, outcome: str, passed_all: bool, checks: Sequence[Any]) -> dict[str, Any]:
    """What the reviewer does next, with the exact command and the Dagster job."""
    store, job = spec.name, migrate_job(spec.name)
    if outcome == "blocked" or not passed_all:
        failed = [c[0] for c in checks if not c[1]]
        row_loss = "live_row_loss" in failed
        return {"title": "Do not promote: fix the source, then run again",
                "text": f"Blocked by {', '.join(failed) or 'an incomplete staging'}. Promotion did not happen; the "
                        "live tables are untouched. Fix what the failed gates and the quarantine show, then run the "
                        f"store again (the UI: job {job}, or the command line):",
                "commands": [f"migration-pipeline run --store {store}"]
                + ([f"migration-pipeline run --store {store} --allow-row-loss   # only if the smaller source is "
                    "intended"] if row_loss else [])}
    if phase == "cut_over":
        return {"title": "Cut over: the live tables are the store's", "text": "Should a problem appear, the "
                "previous live version is kept and can be restored:",
                "commands": [f"migration-pipeline rollback --store {store}"]}
    if phase == "promoted" or outcome == "promoted":
        return {"title": "Review, then approve the cutover (or roll back)",
                "text": "The staged tables are live; the replaced version is kept for rollback. After checking the "
                        "points above, approve the cutover with your name (recorded), or restore the previous version:",
                "commands": [f"migration-pipeline cutover --store {store} --approved-by NAME",
                             f"migration-pipeline rollback --store {store}"]}
    return {"title": "Every gate passed: promotion follows in the same run",
            "text": f"The run's next step (job {job}) swaps the staged tables in; if it was stopped, re-run the "
                    f"promotion in the UI (materialize {store}/live) or run the store again. Then review and approve:",
            "commands": [f"migration-pipeline run --store {store}",
                         f"migration-pipeline cutover --store {store} --approved-by NAME"]}


def _to_check(store: str, counts: Mapping[str, Any], live_before: Mapping[str, Any], by_reason: Mapping[str, int],
              checks: Sequence[Any], unmapped_count: int, unmapped_fields: Sequence[Any],
              adjustments: Sequence[Any]) -> list[str]:
    """The points a reviewer must look at before approving, from this run's figures."""
    points = [f"Gate {name} failed: {summary}" for name, ok, summary, _ in checks if not ok]
    for table, c in counts.items():
        live = live_before.get(table, {}).get("live")
        if isinstance(live, int) and c["staged"] < live:
            points.append(f"{table}: {c['staged']} rows replace {live} live rows ({live - c['staged']} fewer).")
    if by_reason:
        points.append(f"{sum(by_reason.values())} source records were quarantined ("
                      + ", ".join(f"{r} {n}" for r, n in by_reason.items())
                      + f"): each is listed above with its file and locator; migration-pipeline quarantine --store {store}"
                      " --out FILE exports them.")
    if unmapped_count:
        points.append(f"{unmapped_count} source files are not mapped to any table (listed under Source files).")
    if unmapped_fields:
        points.append(f"{len(unmapped_fields)} source fields have no column (values only in the files and the backup).")
    if adjustments:
        points.append(f"{sum(a[2] for a in adjustments)} values were normalised after loading (see below).")
    return points


def _sections(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, schema: str) -> list[dict[str, Any]]:
    out = []
    for section in spec.report_sections:
        rows = [tuple(r) for r in section.query(conn, spec.name, plan_id, schema)]
        chart = ""
        if section.chart is not None and rows:
            column = section.chart
            chart = bar_chart(section.title, [str(r[0]) for r in rows],
                              {section.columns[column]: [r[column] for r in rows]})
        out.append({"title": section.title, "description": section.description, "columns": section.columns,
                    "rows": rows, "chart": Markup(chart)})
    return out


def _data_docs(report_root: Path, spec: StoreSpec, run_id: str, out_dir: Path, recorded: str) -> list[dict[str, str]]:
    """Every run's Data Docs of this store still on disk (each run keeps its own in its folder), this run's
    first; `recorded` is where this run's gates wrote theirs, should that be elsewhere."""
    found = []
    if recorded and Path(recorded).is_file() and out_dir not in Path(recorded).resolve().parents:
        found.append((True, Path(recorded).stat().st_mtime, run_id, Path(recorded)))
    for index in (report_root / spec.name).glob("*/gx/uncommitted/data_docs/local_site/index.html"):
        run = index.relative_to(report_root / spec.name).parts[0]
        found.append((run == run_id, index.stat().st_mtime, run, index))
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    return [{"run": run, "href": os.path.relpath(index, out_dir).replace(os.sep, "/"),
             "at": _utc(datetime.fromtimestamp(mtime, UTC)), "this": "this run" if this else ""}
            for this, mtime, run, index in found]


def _timings(conn: psycopg.Connection, spec: StoreSpec, plan_id: str,
             stage_seconds: Mapping[str, float] | None) -> tuple[dict[str, float], str]:
    """Seconds per phase of the load (as staging measured them, when given), and the staging window."""
    window = staging_window(conn, spec.name, plan_id)
    span = ""
    seconds = {k: round(float(v), 3) for k, v in (stage_seconds or {}).items()}
    if window is not None and window[1] is not None:
        span = f"staging started {_utc(window[0])}, finished {_utc(window[1])}"
        if not seconds:
            seconds = {"staging (start to finish)": round((window[1] - window[0]).total_seconds(), 3)}
    return seconds, span


def build_report(
    conn: psycopg.Connection, spec: StoreSpec, run_id: str, report_root: Path, *, outcome: str,
    stage_seconds: Mapping[str, float] | None = None,
) -> Path:
    """Write `<report_root>/<store>/<run_id>/report.html` and refresh the index; return the path.

    `stage_seconds`: the staging step's seconds per phase (its summary's `seconds`), when the caller has them."""
    plan_id, staging_status = current_plan(conn, spec.name)
    where = spec.schema if staging_status == "promoted" else spec.staging_schema
    checks = run_checks(conn, run_id, spec.name)
    # The counts this run's row-count gate saw (the report shows what was checked, and the recount costs a
    # scan of every table); counted here only when the gate did not run.
    recorded = next((c[3] for c in checks if c[0] == "row_count_reconciliation"), None) or {}
    counts = {t.name: recorded["tables"][t.name] for t in spec.tables if t.name in recorded.get("tables", {})}
    if not counts and staging_status in ("staged", "promoted"):
        counts = table_counts(conn, spec, plan_id, where)
    reasons = quarantine_by_table_and_reason(conn, spec.name, plan_id)
    mapped, unmapped_count = file_counts(conn, spec.name, plan_id)
    unmapped = unmapped_files(conn, spec.name, plan_id)
    adjustments = plan_adjustments(conn, spec.name, plan_id)
    history = [(_utc(at), *rest) for at, *rest in phase_history(conn, spec.name)]
    backup = newest_backup_row(conn, spec.name)
    phase = get_phase(conn, spec.name)

    out_dir = report_root / spec.name / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    checksum_details: dict[str, Any] = next((c[3] for c in checks if c[0] == "checksum_reconciliation"), {}) or {}
    # What promotion replaces, as the live_row_loss gate counted it.
    live_gate: dict[str, Any] = next((c[3] for c in checks if c[0] == "live_row_loss"), {}) or {}
    live_before: dict[str, Any] = live_gate.get("tables", {})

    passed_all = bool(checks) and all(c[1] for c in checks)
    by_reason: dict[str, int] = {}
    for _table, reason, n, *_ in reasons:
        by_reason[reason] = by_reason.get(reason, 0) + n
    by_reason = dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))
    unmapped_fields = unmapped_field_counts(conn, spec.name, plan_id)
    flagged = next((c[3] for c in checks if c[0] in [g.name for g in spec.gates] and not c[1]), None)
    if stage_seconds is None and (out_dir / "summary.json").is_file():
        # A later build of the same run's report (promotion, cutover) keeps the timings staging reported.
        stage_seconds = json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("stage_seconds")
    seconds, staging_window = _timings(conn, spec, plan_id, stage_seconds)
    table_names = list(counts)
    live_series = [v if isinstance(v := live_before.get(t, {}).get("live"), int) else None for t in table_names]
    charts: dict[str, Callable[[], str]] = {
        "tables": lambda: bar_chart("Rows per table: live before vs staged", table_names,
                                    {"live before": live_series, "staged": [counts[t]["staged"] for t in table_names]}),
        "quarantine": lambda: bar_chart("Quarantined records per reason", list(by_reason),
                                        {"records": list(by_reason.values())}),
        "timings": lambda: bar_chart("Load time per phase (seconds)", list(seconds),
                                     {"seconds": list(seconds.values())}, decimals=2),
    }
    page = _TEMPLATES.get_template("report.html.j2").render(
        css=Markup(_CSS), charts={name: Markup(make()) for name, make in charts.items()},
        store=spec.name, description=spec.description, run_id=run_id, plan_id=plan_id,
        generated=_utc(datetime.now(UTC)),
        banner_ok=passed_all and outcome != "blocked", outcome=outcome, phase=phase.phase,
        approved_by=phase.approved_by, next_step=_next_step(spec, phase.phase, outcome, passed_all, checks),
        to_check=_to_check(spec.name, counts, live_before, by_reason, checks, unmapped_count, unmapped_fields, adjustments),
        promoted_rows=sum(c["staged"] for c in counts.values()), quarantined_total=sum(by_reason.values()),
        tables=[{"name": table, "source": c["source"], "staged": c["staged"], "quarantined": c["quarantined"],
                 "live_before": live_before.get(table, {}).get("live", "—"),
                 "checksum_source": checksum_details.get("tables", {}).get(table, {}).get("source", "derived"),
                 "checksum_target": checksum_details.get("tables", {}).get(table, {}).get("target", "—")}
                for table, c in counts.items()],
        checks=[{"name": n, "passed": ok, "summary": summary} for n, ok, summary, _details in checks],
        failed_files=(flagged or {}).get("files", []),
        data_docs=_data_docs(report_root, spec, run_id, out_dir, next(
            (c[3]["data_docs"] for c in checks if c[0].startswith("gx_suite_") and c[3].get("data_docs")), "")),
        sections=_sections(conn, spec, plan_id, where), staging_window=staging_window,
        quarantine=[{"table": t, "reason": r, "records": n, "samples": samples, "message": m}
                    for t, r, n, samples, m in reasons],
        unmapped_fields=unmapped_fields, adjustments=adjustments, mapped=mapped, unmapped_count=unmapped_count,
        patterns=spec.source_files, unmapped=unmapped,
        backup=(backup[0], backup[1], backup[2], _utc(backup[3])) if backup else None, history=history)

    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(
        {"store": spec.name, "run_id": run_id, "plan_id": plan_id, "outcome": outcome, "tables": counts,
         "checks": {c[0]: c[1] for c in checks}, "quarantine": by_reason, "stage_seconds": stage_seconds,
         "unmapped_fields": {f"{t}.{n}": r for t, n, r in unmapped_fields}}, indent=2, default=str))
    set_report_path(conn, spec.name, str(path.resolve()))
    conn.commit()
    write_index(report_root)
    return path


def write_index(report_root: Path) -> Path:
    """`<report_root>/index.html`: every report, newest first."""
    entries = []
    for summary in report_root.glob("*/*/summary.json"):
        data = json.loads(summary.read_text())
        entries.append((summary.stat().st_mtime, data, summary.parent / "report.html"))
    entries.sort(key=lambda e: e[0], reverse=True)
    rows = "".join(
        f"<tr><td>{_e(_utc(datetime.fromtimestamp(m, UTC)))}</td><td>{_e(d['store'])}</td>"
        f"<td><a href='{_e(p.relative_to(report_root).as_posix())}'>{_e(d['run_id'])}</a></td>"
        f"<td>{_e(d['outcome'])}</td></tr>" for m, d, p in entries)
    index = report_root / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Migration reports</title>"
                     f"<style>{_CSS}</style></head><body><h1>Migration reports</h1><table><tr><th>generated</th>"
                     f"<th>store</th><th>run</th><th>outcome</th></tr>{rows}</table></body></html>", encoding="utf-8")
    return index
