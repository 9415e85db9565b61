"""The package as a user installs it: a wheel, run from a folder that is not the repository. An installed
copy must apply exactly the DDL a checkout applies (it once shipped no sql/ and applied nothing, silently)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from migration_pipeline.core.database import connect, drop_database, ensure_database

from .conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, unpacked as pip installs a pure-Python wheel into site-packages."""
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools reuses a build/ folder, whose stale files would end up in the wheel.
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".bench", ".dagster_home", ".pgdata", "reports",
        "backups"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True)
    site = out / "site-packages"
    with zipfile.ZipFile(next(out.glob("migration_pipeline-*.whl"))) as wheel:
        wheel.extractall(site)
    return site


def test_the_wheel_carries_every_ddl_file(installed: Path) -> None:
    shipped = sorted(p.relative_to(installed / "migration_pipeline" / "sql").as_posix()
                     for p in (installed / "migration_pipeline" / "sql").glob("*/*.sql"))
    assert shipped == sorted(p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").glob("*/*.sql")) and shipped


def test_run_and_status_from_an_unrelated_folder_use_the_installed_ddl(
    installed: Path, server_url: str, tmp_path: Path
) -> None:
    name = f"mp_wheel_{os.getpid()}"
    url = ensure_database(server_url, name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "MIGRATION_REPORT_DIR": str(tmp_path / "reports"), "MIGRATION_BACKUP_DIR": str(tmp_path / "backups")}
    env.pop("DATABASE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "migration_pipeline.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    try:
        where = subprocess.run([sys.executable, "-c", "import migration_pipeline; print(migration_pipeline.__file__)"],
                               cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
        assert where.startswith(str(installed))
        ran = cli("run", "--source-root", str(SAMPLES), "--database-url", url, "--env-file", str(SAMPLES / "sample.env"))
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        with connect(url) as conn:
            applied = {r[0] for r in conn.execute("SELECT filename FROM migration.schema_migrations")}
            assert applied == {p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").glob("*/*.sql")}
            assert conn.execute("SELECT count(*) FROM wallet.wallets").fetchone() == (16,)
        status = cli("status", "--source-root", str(SAMPLES), "--database-url", url)
        assert status.returncode == 0, status.stderr
        assert "wallet" in status.stdout and "promoted" in status.stdout
    finally:
        drop_database(server_url, name)
