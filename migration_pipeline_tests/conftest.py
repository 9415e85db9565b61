"""Test fixtures: a real PostgreSQL (DATABASE_URL's server, or the embedded one) and one fresh
database per test, with sql/ applied."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from migration_pipeline.core.database import connect, drop_database, ensure_database, start_embedded_server
from migration_pipeline.core.schema import apply_migrations

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data_samples"
SAMPLE_SECRET = "sample-secret-do-not-use-in-production"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files marked slow as a whole (browser, Celery, CLI end to end: minutes each) first: with
    `--dist loadfile` the processes take files in this order, so none of the longest runs last, alone."""
    def whole_file_slow(item: pytest.Item) -> bool:
        module = getattr(item, "module", None)
        marks = getattr(module, "pytestmark", [])
        return any(mark.name == "slow" for mark in (marks if isinstance(marks, list) else [marks]))

    items.sort(key=lambda item: not whole_file_slow(item))  # stable: each file's tests keep their order


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The server under test: TEST_DATABASE_URL / DATABASE_URL, else an embedded server for the session."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    # Not under pytest's basetemp: a concurrent pytest session on the machine prunes old basetemps, and with
    # them a running server's data folder.
    return start_embedded_server(Path(tempfile.mkdtemp(prefix="mp-test-pgdata-")), keep_running=False)


@contextmanager
def fresh_database(server_url: str, prefix: str = "mp_test") -> Iterator[str]:
    """A database of its own on the server, with sql/ applied; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = ensure_database(server_url, name)
    try:
        with connect(url) as conn:
            apply_migrations(conn)
            conn.commit()
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards, with sql/ applied."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different generated wallet stores (read-only for the tests): A = 50 users, B = 60 users."""
    from migration_pipeline.stores.wallet.generate import generate_wallet_store

    a = tmp_path_factory.mktemp("root_a")
    b = tmp_path_factory.mktemp("root_b")
    generate_wallet_store(a, users=50, secret=SAMPLE_SECRET, seed=1, quirk_rate=0.0, processes=1)
    generate_wallet_store(b, users=60, secret=SAMPLE_SECRET, seed=2, quirk_rate=0.0, processes=1)
    return {"A": a, "B": b}
