"""Scale-out on Celery (dagster-celery, RabbitMQ broker, Redis results): each wallet shard is its own step,
run by real worker processes started here; the result is exactly the in-process migration's, a worker
killed mid-shard loses nothing, and a second run of the store is refused while the first holds it.

Every test uses a queue of its own, so that concurrent sessions on the machine never take each other's tasks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dagster import DagsterInstance, build_reconstructable_job, execute_job

from migration_pipeline.core.database import connect, sqlalchemy_url

pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (pip install -e '.[celery]')")

from migration_pipeline.core.spec import StoreSpec  # noqa: E402
from migration_pipeline.scale_out import DEFAULT_BACKEND, DEFAULT_BROKER, mapping_key, partition_keys  # noqa: E402
from migration_pipeline.stores.pend import PEND_STORE  # noqa: E402
from migration_pipeline.stores.wallet import WALLET_STORE  # noqa: E402
from migration_pipeline.stores.wallet.store import UNITS_PER_SHARD  # noqa: E402

from .conftest import REPO, SAMPLE_SECRET, SAMPLES, fresh_database  # noqa: E402

pytestmark = [pytest.mark.celery, pytest.mark.slow]

BROKER = os.environ.get("MIGRATION_CELERY_BROKER") or DEFAULT_BROKER
BACKEND = os.environ.get("MIGRATION_CELERY_BACKEND") or DEFAULT_BACKEND
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _listening(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def celery_services() -> None:
    if not _listening(BROKER, 5672):
        pytest.skip(f"RabbitMQ not reachable at {urlsplit(BROKER).netloc.split('@')[-1]}")
    if not _listening(BACKEND, 6379):
        pytest.skip(f"Redis not reachable at {urlsplit(BACKEND).netloc.split('@')[-1]}")


def _env(database_url: str, root: Path, tmp: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "MIGRATION_SOURCE_ROOT": str(root),
            "MIGRATION_REPORT_DIR": str(tmp / "reports"), "MIGRATION_BACKUP_DIR": str(tmp / "backups"),
            "ENCRYPTION_SECRET": SAMPLE_SECRET, "MIGRATION_CELERY_BROKER": BROKER,
            "MIGRATION_CELERY_BACKEND": BACKEND}


@contextmanager
def _pipeline_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _database(server_url: str) -> AbstractContextManager[str]:
    return fresh_database(server_url, "mp_celery")


@contextmanager
def _instance(home: Path, database_url: str) -> Iterator[DagsterInstance]:
    """A Dagster instance the workers open too (its event log in PostgreSQL)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: '{sqlalchemy_url(database_url)}'\n"
                                       "telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


class Workers:
    """Celery worker processes, each in a session of its own (SIGKILL of the group = a lost machine)."""

    def __init__(self, queue: str, env: dict[str, str], logs: Path) -> None:
        self.queue, self.env, self.logs = queue, env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = self.logs / f"{name}.log"
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "migration_pipeline.scale_out", "worker", "-Q", self.queue,
             "-n", f"{name}@%h", "--concurrency", "1", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "INFO", "-f", str(log)],
            env=env, cwd=str(REPO), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while not (log.exists() and " ready." in log.read_text()):
            assert self.procs[name].poll() is None, f"worker {name} exited: {log.read_text() if log.exists() else ''}"
            assert time.monotonic() < deadline, f"worker {name} not ready after 90 s"
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextmanager
def _workers(count: int, env: dict[str, str], logs: Path) -> Iterator[Workers]:
    logs.mkdir(parents=True, exist_ok=True)
    workers = Workers(f"migration-test-{uuid.uuid4().hex[:10]}", env, logs)
    try:
        for i in range(count):
            workers.start(f"w{i + 1}-{workers.queue[-10:]}")
        yield workers
    finally:
        workers.stop()


def _fan_out(instance: DagsterInstance, queue: str, store: str = "wallet") -> Any:
    job = build_reconstructable_job("migration_pipeline.scale_out", "fan_out_job",
                                    reconstructable_kwargs={"store": store, "queue": queue})
    return execute_job(job, instance=instance, raise_on_error=False,
                       run_config={**QUIET, "execution": {"config": {"broker": BROKER, "backend": BACKEND}}})


def _migrate(instance: DagsterInstance, store: str = "wallet") -> Any:
    from migration_pipeline.definitions import defs

    return defs.resolve_job_def(f"migrate_{store}").execute_in_process(instance=instance, run_config=QUIET)


def failures(result: Any) -> list[str]:
    """The error messages of a run's failed steps and of the run itself (for an assertion's message)."""
    out = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if event.event_type_value in ("STEP_FAILURE", "PIPELINE_FAILURE") and error is not None:
            while error.cause is not None:
                error = error.cause
            out.append(f"{event.step_key}: {error.message.strip()}")
    return out


# Written by the migration itself (the derived audit rows' run id and DEFAULT now()): differ between any two runs.
MIGRATION_TIME_COLUMNS = {"wallet_audit_log": {"timestamp", "accessed_by"}}


def table_fingerprints(database_url: str, schema: str, spec: StoreSpec = WALLET_STORE) -> dict[str, tuple[int, str]]:
    """(count(*), md5 of the ordered rows as text) of every table of `spec` in `schema`."""
    from psycopg import sql

    out: dict[str, tuple[int, str]] = {}
    with connect(database_url) as conn:
        for table in spec.tables:
            columns = [sql.Identifier(c) for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
                " ORDER BY ordinal_position", (schema, table.name))
                if c not in MIGRATION_TIME_COLUMNS.get(table.name, set())]
            row_text = sql.SQL("(ROW({}))::text").format(sql.SQL(", ").join(columns))
            row = conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg({r}, E'\\n' ORDER BY {r}), ''))"
                                       " FROM {s}.{t}").format(r=row_text, s=sql.Identifier(schema),
                                                                t=sql.Identifier(table.name))
                               ).fetchone()
            assert row is not None and columns
            out[table.name] = (row[0], row[1])
    return out


def quarantine_by_reason(database_url: str, store: str = "wallet") -> dict[tuple[str, str], int]:
    with connect(database_url) as conn:
        rows = conn.execute("SELECT table_name, reason, count(*) FROM migration.quarantine WHERE store = %s"
                            " GROUP BY 1, 2", (store,)).fetchall()
    return {(t, r): n for t, r, n in rows}


def _in_process_result(server_url: str, root: Path, tmp: Path, spec: StoreSpec = WALLET_STORE
                       ) -> tuple[dict[str, tuple[int, str]], dict[Any, int]]:
    with _database(server_url) as url, _pipeline_env(_env(url, root, tmp)), _instance(tmp / "home", url) as instance:
        assert _migrate(instance, spec.name).success
        return table_fingerprints(url, spec.name, spec), quarantine_by_reason(url, spec.name)


def _step_workers(instance: DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key → the Celery workers that started executing it, in order."""
    started: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or "] Executing steps " not in (event.message or ""):
            continue
        worker = event.engine_event_data.metadata["Celery worker"].value
        started.setdefault(event.step_key or "", []).append(str(worker))
    return started


def test_celery_fan_out_equals_in_process_and_a_second_run_is_refused(server_url: str, tmp_path: Path) -> None:
    expected = _in_process_result(server_url, SAMPLES, tmp_path / "in_process")
    with _database(server_url) as url:
        env = _env(url, SAMPLES, tmp_path / "celery")
        with _pipeline_env(env), _instance(tmp_path / "celery" / "home", url) as instance, \
                _workers(2, env, tmp_path / "logs") as workers:
            first: dict[str, Any] = {}
            runner = threading.Thread(target=lambda: first.update(result=_fan_out(instance, workers.queue)))
            runner.start()
            try:
                deadline = time.monotonic() + 120
                with connect(url, autocommit=True) as conn:
                    while (holder := conn.execute("SELECT min(run_id) FROM migration.store_leases"
                                                  " WHERE store = 'wallet'").fetchone()[0]) is None:
                        assert runner.is_alive() and time.monotonic() < deadline, "the first run never held wallet"
                        time.sleep(0.05)
                second = _fan_out(instance, workers.queue)
            finally:
                runner.join(timeout=600)
            assert not second.success
            failure = next(e for e in second.all_events if e.event_type_value == "PIPELINE_FAILURE")
            assert failure.event_specific_data.error.message.startswith(
                f"migration_pipeline.core.errors.StoreBusyError: store wallet is being migrated by another run ({holder}")
            assert [e.event_type_value for e in second.all_events] == ["PIPELINE_START", "PIPELINE_FAILURE"]
            assert first["result"].success, failures(first["result"])
            run_id = first["result"].run_id
            assert holder == run_id
            steps = _step_workers(instance, run_id)
            shard_steps = sorted(k for k in steps if k.startswith("wallet_load_shard"))
            assert shard_steps == sorted(f"wallet_load_shard[{i:02d}]" for i in range(16))
            assert len({w for k in shard_steps for w in steps[k]}) == 2  # both workers loaded shards
            assert _migrate(instance).success
        assert table_fingerprints(url, "wallet") == expected[0]
        assert quarantine_by_reason(url) == expected[1]


def test_pend_days_fan_out_on_two_workers_equals_in_process(server_url: str, tmp_path: Path) -> None:
    """Pend's partitions are the explorer days found on disk: each day is a step of its own on the workers, and
    the promoted tables and the quarantine are exactly the in-process migration's."""
    days = partition_keys(PEND_STORE, SAMPLES)
    assert days == ["2024-03-01", "2024-03-02"]
    expected = _in_process_result(server_url, SAMPLES, tmp_path / "in_process", PEND_STORE)
    with _database(server_url) as url:
        env = _env(url, SAMPLES, tmp_path / "celery")
        with _pipeline_env(env), _instance(tmp_path / "celery" / "home", url) as instance, \
                _workers(2, env, tmp_path / "logs") as workers:
            result = _fan_out(instance, workers.queue, "pend")
            assert result.success, failures(result)
            steps = _step_workers(instance, result.run_id)
            day_steps = sorted(k for k in steps if k.startswith("pend_load_day"))
            assert day_steps == [f"pend_load_day[{mapping_key(day)}]" for day in days]
            assert {w.split("@")[0] for k in steps for w in steps[k]} <= set(workers.procs)
            assert _migrate(instance, "pend").success
        assert table_fingerprints(url, "pend", PEND_STORE) == expected[0]
        assert quarantine_by_reason(url, "pend") == expected[1]
    assert expected[0]["blockchain_events"][0] > 0 and expected[1]  # the sample's events loaded, its odd records quarantined


def _partial_shard(url: str, units_per_shard: dict[int, int]) -> list[int]:
    """Shards with some of their units committed, not all."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT unit_no / %s, count(DISTINCT unit_no) FROM migration.unit_progress"
                            " WHERE store = 'wallet' GROUP BY 1", (UNITS_PER_SHARD,)).fetchall()
    return [shard for shard, done in rows if 0 < done < units_per_shard[shard]]


def _running_steps(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Worker name (before the @) → the step it is executing now."""
    finished = {r.dagster_event.step_key for r in instance.all_logs(run_id)
                if r.dagster_event is not None and r.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}
    running: dict[str, str] = {}
    for step, names in _step_workers(instance, run_id).items():
        for name in names:
            if step not in finished:
                running[name.split("@")[0]] = step
    return running


def test_a_worker_killed_mid_shard_its_shard_runs_again_on_the_other_worker(server_url: str, tmp_path: Path) -> None:
    from migration_pipeline.stores.wallet.generate import generate_wallet_store

    root = tmp_path / "store"
    # 30,000 users: ~3,750 files per shard, two units each (2,000 + ~1,750): a shard is half loaded for seconds.
    generate_wallet_store(root, users=30_000, secret=SAMPLE_SECRET, seed=3, processes=2)
    units_per_shard: dict[int, int] = {}
    for unit in WALLET_STORE.discover(root / "wallet").units:
        units_per_shard[unit.number // UNITS_PER_SHARD] = units_per_shard.get(unit.number // UNITS_PER_SHARD, 0) + 1
    assert set(units_per_shard.values()) == {2}
    expected = _in_process_result(server_url, root, tmp_path / "in_process")
    with _database(server_url) as url:
        env = _env(url, root, tmp_path / "celery")
        with _pipeline_env(env), _instance(tmp_path / "celery" / "home", url) as instance, \
                _workers(2, env, tmp_path / "logs") as workers:
            outcome: dict[str, Any] = {}
            runner = threading.Thread(target=lambda: outcome.update(result=_fan_out(instance, workers.queue)))
            runner.start()
            try:
                victim = step = None
                deadline = time.monotonic() + 600
                while victim is None:
                    assert runner.is_alive() and time.monotonic() < deadline, \
                        f"no shard was ever seen half loaded: {failures(outcome['result']) if 'result' in outcome else ''}"
                    partial = _partial_shard(url, units_per_shard)
                    if partial:
                        with connect(url, autocommit=True) as conn:
                            run_id = conn.execute("SELECT min(run_id) FROM migration.store_leases").fetchone()[0]
                        for name, running in _running_steps(instance, run_id).items():
                            if running in {f"wallet_load_shard[{s:02d}]" for s in partial}:
                                victim, step = name, running
                                break
                    if victim is not None:
                        shard = int(step[len("wallet_load_shard["):-1])
                        # Reading the event log takes time on a busy machine: the shard may have finished
                        # meanwhile. Kill only a worker whose shard is still half loaded, else look again.
                        if shard in _partial_shard(url, units_per_shard):
                            workers.kill(victim)  # the worker and its pool process, as when its machine is lost
                            break
                        victim = step = None
                    time.sleep(0.05)
                assert victim is not None and step is not None
                assert shard in _partial_shard(url, units_per_shard)  # killed with the shard half loaded
            finally:
                runner.join(timeout=900)
            result = outcome["result"]
            assert result.success, failures(result)
            started = _step_workers(instance, result.run_id)[step]
            survivor = next(n for n in workers.procs if n != victim)
            assert [n.split("@")[0] for n in started] == [victim, survivor]
            assert _partial_shard(url, units_per_shard) == []
            assert _migrate(instance).success
        assert table_fingerprints(url, "wallet") == expected[0]
        assert quarantine_by_reason(url) == expected[1]
