"""The engine's gates with this package's Great Expectations suites plugged in."""

from __future__ import annotations

from pathlib import Path

import psycopg

from migration_pipeline.core.reconcile import DEFAULT_MAX_ROW_LOSS_PERCENT, CheckOutcome
from migration_pipeline.core.reconcile import evaluate_gates as _evaluate_gates
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.quality.gx import run_suites


def evaluate_gates(
    conn: psycopg.Connection, database_url: str, spec: StoreSpec, run_id: str, docs_dir: Path,
    max_row_loss_percent: float = DEFAULT_MAX_ROW_LOSS_PERCENT,
) -> list[CheckOutcome]:
    """Every gate of the store's staged plan, its GX suites included; the outcomes are recorded."""
    return _evaluate_gates(conn, database_url, spec, run_id, docs_dir, max_row_loss_percent, run_suites=run_suites)
