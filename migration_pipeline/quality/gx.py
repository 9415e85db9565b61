"""Great Expectations 1.x suites, built from each table's declared expectations and run in
PostgreSQL against the staged tables; Data Docs are written into the run's report folder.

Results keep counts only (`partial_unexpected_count` 0, queries that select key columns), so no
value of a secret column can reach Data Docs, Dagster metadata or the report.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig

from migration_pipeline.core.database import sqlalchemy_url
from migration_pipeline.core.spec import StoreSpec, TableSpec

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}


@dataclass(frozen=True)
class SuiteOutcome:
    table: str
    passed: bool
    evaluated: int
    failed: tuple[dict[str, Any], ...]  # expectation type, column and unexpected count per failure
    docs_index: Path | None


def _expectation(spec_type: str, kwargs: dict[str, Any], schema_sql: str, expected_rows: int) -> Any:
    resolved: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value == "$expected_rows":
            value = expected_rows
        elif isinstance(value, str):
            value = value.replace("$schema", schema_sql)
        resolved[key] = value
    return getattr(gx.expectations, spec_type)(**resolved)


def run_suites(
    database_url: str,
    spec: StoreSpec,
    expected_rows: dict[str, int],
    docs_dir: Path,
) -> dict[str, SuiteOutcome]:
    """Validate every staged table of `spec` with its suite; return one outcome per table."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    shutil.rmtree(docs_dir / "gx", ignore_errors=True)  # a re-run of the same run's gates starts clean
    docs_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_or_update_sql(
        name=f"{spec.name}_staging", connection_string=sqlalchemy_url(database_url)
    )
    schema_sql = f'"{spec.staging_schema}"'
    definitions = []
    for table in spec.tables:
        definitions.append(_validation(context, source, spec, table, schema_sql, expected_rows[table.name]))
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{spec.name}_gates",
            validation_definitions=definitions,
            result_format=RESULT_FORMAT,
        )
    )
    result = checkpoint.run()
    # Once for all suites: UpdateDataDocsAction would rebuild the whole site once per validation.
    context.build_data_docs()
    outcomes: dict[str, SuiteOutcome] = {}
    docs_index = docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    for validation in result.run_results.values():
        table_name = validation.suite_name.removeprefix(f"{spec.name}.")
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
        outcomes[table_name] = SuiteOutcome(
            table=table_name,
            passed=bool(validation.success),
            evaluated=len(validation.results),
            failed=tuple(failed),
            docs_index=docs_index if docs_index.exists() else None,
        )
    return outcomes


def _validation(
    context: Any, source: Any, spec: StoreSpec, table: TableSpec, schema_sql: str, expected_rows: int
) -> Any:
    asset = source.add_table_asset(name=table.name, table_name=table.name, schema_name=spec.staging_schema)
    batch = asset.add_batch_definition_whole_table(name="whole_table")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{spec.name}.{table.name}"))
    for e in table.expectations:
        suite.add_expectation(_expectation(e.type, dict(e.kwargs), schema_sql, expected_rows))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}.{table.name}", data=batch, suite=suite)
    )
