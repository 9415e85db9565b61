"""Great Expectations 1.x suites, built from each table's declared expectations and run in
PostgreSQL against the staged tables; Data Docs are written into the run's report folder.

Results keep counts only (`partial_unexpected_count` 0, queries that select key columns), so no
value of a secret column can reach Data Docs, Dagster metadata or the report.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import great_expectations as gx
import jinja2
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

from migration_pipeline.core.database import sqlalchemy_url
from migration_pipeline.core.names import gx_data_source
from migration_pipeline.core.spec import StoreSpec, TableSpec

# The groups' queries already run side by side on the cores: a parallel plan only competes with its neighbour,
# and its hash aggregates (GX's uniqueness queries) are rebuilt whole in every worker. Measured at 100k users:
# the suites take 2.1 s instead of 2.5 s.
SERIAL_QUERIES = "-c max_parallel_workers_per_gather=0"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}


@dataclass(frozen=True)
class SuiteOutcome:
    table: str
    passed: bool
    evaluated: int
    failed: tuple[dict[str, Any], ...]  # expectation type, column and unexpected count per failure
    docs_index: Path | None


class CountedUnexpectedRows(gx.expectations.UnexpectedRowsExpectation):  # type: ignore[misc]
    """GX's `UnexpectedRowsExpectation`, minus the fetch of the unexpected rows: GX computes both the
    count and the rows (for a COMPLETE result, which these suites never ask for: their queries select
    key columns only, and results keep counts). The fetch ran every query a second time, a whole anti-join
    of 200k rows per orphan check at 100k users. Renders in Data Docs as its parent does."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict[str, Any], runtime_configuration: dict[str, Any] | None = None,
                  execution_engine: Any = None) -> dict[str, Any]:
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}


# The declared expectation types this module implements itself (the rest are GX's own classes).
_OWN_EXPECTATIONS: dict[str, type] = {"UnexpectedRowsExpectation": CountedUnexpectedRows}


def _expectation(spec_type: str, kwargs: dict[str, Any], schema_sql: str, expected_rows: int) -> Any:
    resolved: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value == "$expected_rows":
            value = expected_rows
        elif isinstance(value, str):
            value = value.replace("$schema", schema_sql)
        resolved[key] = value
    return (_OWN_EXPECTATIONS.get(spec_type) or getattr(gx.expectations, spec_type))(**resolved)


def run_suites(
    database_url: str,
    spec: StoreSpec,
    expected_rows: dict[str, int],
    docs_dir: Path,
    threads: int = 2,
) -> dict[str, SuiteOutcome]:
    """Validate every staged table of `spec` with its suite; return one outcome per table.

    The suites run in `threads` groups, each with its own in-memory GX context: one group's queries
    run on the server while another's expectations are built and evaluated in Python. The results are
    then gathered into one context, which writes a single Data Docs site into `docs_dir`.
    """
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    shutil.rmtree(docs_dir / "gx", ignore_errors=True)  # a re-run of the same run's gates starts clean
    docs_dir.mkdir(parents=True, exist_ok=True)
    # Set up one group after the other: GX binds a new suite to the context created last (a global).
    prepared = [_prepare_group(database_url, spec, tables, expected_rows)
                for tables in _balanced_groups(spec, expected_rows, threads)]
    with ThreadPoolExecutor(len(prepared), thread_name_prefix="gx-suite") as pool:
        ran = list(pool.map(lambda group: (group[0], [v.run(result_format=RESULT_FORMAT) for v in group[1]]),
                            prepared))
    docs_index = _build_data_docs([context for context, _ in ran], docs_dir)
    outcomes: dict[str, SuiteOutcome] = {}
    for _, results in ran:
        for validation in results:
            table_name = validation.suite_name.removeprefix(f"{spec.name}.")
            outcomes[table_name] = _outcome(table_name, validation, docs_index)
    return outcomes


def _balanced_groups(spec: StoreSpec, expected_rows: dict[str, int], count: int) -> list[list[TableSpec]]:
    """Tables in `count` groups of about equal work (rows times expectations), largest first."""
    groups: list[list[TableSpec]] = [[] for _ in range(max(1, min(count, len(spec.tables))))]
    load = [0] * len(groups)
    for table in sorted(spec.tables, key=lambda t: -expected_rows[t.name] * len(t.expectations)):
        lightest = load.index(min(load))
        groups[lightest].append(table)
        load[lightest] += max(1, expected_rows[table.name]) * len(table.expectations)
    return [g for g in groups if g]


def _prepare_group(
    database_url: str, spec: StoreSpec, tables: list[TableSpec], expected_rows: dict[str, int]
) -> tuple[Any, list[Any]]:
    """A new in-memory context with a validation definition per table of the group."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_sql(name=gx_data_source(spec.name), connection_string=sqlalchemy_url(database_url),
                                          kwargs={"connect_args": {"options": SERIAL_QUERIES}})  # type: ignore[call-arg]
    schema_sql = f'"{spec.staging_schema}"'
    return context, [_validation(context, source, spec, t, schema_sql, expected_rows[t.name]) for t in tables]


def _build_data_docs(contexts: list[Any], docs_dir: Path) -> Path | None:
    """One Data Docs site for every group's suites and results, written by the first group's context."""
    site = docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site"
    first, *others = contexts
    for other in others:
        for suite in other.suites.all():
            first.suites.add(suite)
        store = other.validation_results_store
        for key in store.list_keys():
            first.validation_results_store.set(key, store.get(key))
    first.delete_data_docs_site("local_site")
    page_view = {"module_name": __name__, "class_name": CompiledOncePageView.__name__}
    first.add_data_docs_site(site_name="local_site", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                               "view": {"module_name": __name__, "class_name": CompiledOnceIndexPageView.__name__}},
        "site_section_builders": {"expectations": {"view": page_view}, "validations": {"view": page_view},
                                  "profiling": "None"},  # no profiling results are ever made
    })
    first.build_data_docs()
    index = site / "index.html"
    if not index.exists():
        return None
    make_offline(site)
    return index


# GX's pages load their scripts, styles and logos from CDNs (GX declined to ship them: great_expectations
# issue 994, pull request 2870), so offline the index is blank: its table is drawn by bootstrap-table. Each
# URL GX 1.x's templates reference is mapped to the same version's file, copied into the site's
# static/vendor: jQuery and Font Awesome from their XStatic packages (PyPI), the rest vendored in
# templates/gx_static (see its README). Vega is not: no page of these suites draws a chart with it.
_VENDORED = Path(__file__).resolve().parents[1] / "templates" / "gx_static"
_LOCAL_COPIES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "font-awesome/css/all.min.css",
}
# GX's logos (loaded from S3, one with a cache-busting query) are in the site's own static/images.
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[a-z_-]+\.png(\?[^\"')]*)?")
_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"(https?:[^\"]*)\"[^>]*>\s*</script>\s*")
_STYLESHEET = re.compile(r"<link\b[^>]*\bhref=\"(https?:[^\"]*)\"[^>]*>\s*")
_CORS_ATTRIBUTES = re.compile(r"\s(integrity|crossorigin)=\"[^\"]*\"")


def make_offline(site: Path) -> None:
    """Copy the vendored assets into `site`/static/vendor and point every page at them: a page then loads
    nothing from the network (a script or stylesheet with no local copy is dropped; links to GX's
    documentation stay links)."""
    vendor = site / "static" / "vendor"
    _copy_vendored(vendor)
    for css in (site / "static" / "styles").glob("*.css"):
        css.write_text(_LOGO.sub("../images/logo-long.png", css.read_text(encoding="utf-8")), encoding="utf-8")
    for page in site.rglob("*.html"):
        to_vendor = os.path.relpath(vendor, page.parent).replace(os.sep, "/")
        to_images = os.path.relpath(site / "static" / "images", page.parent).replace(os.sep, "/")

        def local(match: re.Match[str], to_vendor: str = to_vendor) -> str:
            copy = _LOCAL_COPIES.get(match.group(1))
            if copy is None:
                return ""
            tag = match.group(0).replace(match.group(1), f"{to_vendor}/{copy}")
            return _CORS_ATTRIBUTES.sub("", tag)  # a file: page cannot make a CORS request

        text = page.read_text(encoding="utf-8")
        text = _STYLESHEET.sub(local, _SCRIPT.sub(local, text))
        page.write_text(_LOGO.sub(f"{to_images}/logo-long.png", text), encoding="utf-8")


def _copy_vendored(vendor: Path) -> None:
    from xstatic.pkg import font_awesome, jquery

    vendor.mkdir(parents=True, exist_ok=True)
    for path in _VENDORED.iterdir():
        if path.suffix in (".js", ".css"):
            shutil.copyfile(path, vendor / path.name)
    shutil.copyfile(Path(jquery.BASE_DIR) / "jquery.min.js", vendor / "jquery.min.js")
    fonts = Path(font_awesome.BASE_DIR)
    (vendor / "font-awesome" / "css").mkdir(parents=True, exist_ok=True)
    (vendor / "font-awesome" / "webfonts").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fonts / "css" / "all.min.css", vendor / "font-awesome" / "css" / "all.min.css")
    for font in (fonts / "webfonts").glob("*.woff2"):  # every browser that runs bootstrap 4 reads woff2
        shutil.copyfile(font, vendor / "font-awesome" / "webfonts" / font.name)


class _CompiledTemplates(jinja2.BytecodeCache):
    """Jinja bytecode kept in memory for the process. Each Data Docs view builds its own Jinja
    environment, so without it every page type's templates were compiled again for each view and
    each run (0.28 s of the 0.46 s a site took at 100k users)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if (code := self._code.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _CompiledTemplates()


class CompiledOncePageView(DefaultJinjaPageView):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _TEMPLATES


class CompiledOnceIndexPageView(DefaultJinjaIndexPageView):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _TEMPLATES


def _outcome(table_name: str, validation: Any, docs_index: Path | None) -> SuiteOutcome:
    failed = []
    for r in validation.results:
        if r.success:
            continue
        config = r.expectation_config
        assert config is not None
        res = r.result or {}
        failed.append({
            "expectation": config.type,
            "column": config.kwargs.get("column") or config.kwargs.get("column_list") or "",
            "unexpected": res.get("unexpected_count", res.get("observed_value", "")),
            "error": (r.exception_info or {}).get("exception_message", "")
            if r.exception_info and r.exception_info.get("raised_exception") else "",
        })
    return SuiteOutcome(
        table=table_name,
        passed=bool(validation.success),
        evaluated=len(validation.results),
        failed=tuple(failed),
        docs_index=docs_index,
    )


def _validation(
    context: Any, source: Any, spec: StoreSpec, table: TableSpec, schema_sql: str, expected_rows: int
) -> Any:
    asset = source.add_table_asset(name=table.name, table_name=table.name, schema_name=spec.staging_schema)
    batch = asset.add_batch_definition_whole_table(name="whole_table")
    # Whole, then added once: each add_expectation on a stored suite re-serialises the suite into its store.
    suite = context.suites.add(gx.ExpectationSuite(
        name=f"{spec.name}.{table.name}",
        expectations=[_expectation(e.type, dict(e.kwargs), schema_sql, expected_rows) for e in table.expectations]))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}.{table.name}", data=batch, suite=suite)
    )
