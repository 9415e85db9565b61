"""A store's lock as a lease in PostgreSQL (`migration.store_leases`): the processes of one run share it,
any other run is refused, and a crashed holder's lease expires on its own.

Each holding process has its own row (store, holder) with the run it works for and an expiry that a
heartbeat thread pushes forward. A process may take the store when no live row of another run is there;
a per-store transaction-level advisory lock makes that check and the insert one step, so two processes
cannot both see the store free. A session-level advisory lock alone would not do: it belongs to one
connection of one process, and the steps of a run may each be a process of their own (or a machine).

A row is live while it has not expired and its holder is alive: each holder keeps a connection open that
holds an advisory lock named after it, which PostgreSQL drops the moment the holder's process dies, so a
run killed by SIGKILL does not block the next one for the rest of its lease. Expiry remains for a holder
whose connection outlives it (a hung process, a lost network).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

import psycopg

from migration_pipeline.core.bookkeeping import leases
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import StoreBusyError

LEASE_SECONDS = 60.0  # a crashed holder blocks its store this long at most
HEARTBEAT_SECONDS = 15.0  # well inside the lease: a few missed beats (a busy database) do not lose it


def new_holder() -> str:
    """This process's name as a holder: host and pid for a person reading the table, a nonce to be unique."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def hold_alive(conn: psycopg.Connection, holder: str) -> None:
    """Mark `holder` alive for as long as `conn` stays open (a session advisory lock named after it)."""
    leases.mark_alive(conn, holder)


def take_lease(conn: psycopg.Connection, store: str, run_id: str, holder: str,
               seconds: float = LEASE_SECONDS, alive: bool = False) -> None:
    """Hold `store` for `run_id` until released or `seconds` pass without a renewal; raises StoreBusyError
    naming the run that holds it. `conn` must be in autocommit mode (the lease commits on its own). A row of
    another run counts while it has not expired and, if its holder marked itself alive (`hold_alive`), while
    that mark holds."""
    with conn.transaction():
        leases.lock_leases(conn, store)
        leases.drop_expired(conn, store)
        other = None
        for other_run, other_holder, marked_alive in leases.other_runs_leases(conn, store, run_id):
            # Taking the holder's mark succeeds only when no session holds it: its process is gone. (Released
            # at the end of this transaction.)
            if marked_alive and leases.holder_is_gone(conn, other_holder):
                leases.delete_lease(conn, store, other_holder)
            elif other is None:
                other = (other_run, other_holder)
        if other is None:
            leases.put_lease(conn, store, holder, run_id, seconds, alive)
    if other is not None:
        raise StoreBusyError(f"store {store} is being migrated by another run ({other[0]}, process {other[1]}); "
                             "wait for it to finish (or for its lease to expire if it crashed), then run again")


def renew_lease(conn: psycopg.Connection, store: str, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Push the lease's expiry forward; False when it is gone (it expired, and another run may hold the store)."""
    renewed = leases.extend_lease(conn, store, holder, seconds)
    if not conn.autocommit:
        conn.commit()
    return renewed


def release_lease(conn: psycopg.Connection, store: str, holder: str) -> None:
    leases.delete_lease(conn, store, holder)
    if not conn.autocommit:
        conn.commit()


class StoreLease:
    """A held lease with its heartbeat: `StoreLease.take(...)`, then `release()` when the process is done. Its
    connection stays open while it is held: it marks the holder alive (`hold_alive`) and renews the lease."""

    def __init__(self, database_url: str, store: str, run_id: str, holder: str,
                 seconds: float = LEASE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.database_url, self.store, self.run_id, self.holder = database_url, store, run_id, holder
        self.seconds, self.heartbeat = seconds, heartbeat
        self.lost = False  # set when a renewal found the lease gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None

    @classmethod
    def take(cls, database_url: str, store: str, run_id: str, holder: str | None = None,
             seconds: float = LEASE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS) -> StoreLease:
        lease = cls(database_url, store, run_id, holder or new_holder(), seconds, heartbeat)
        lease._conn = connect(database_url, autocommit=True, application_name=f"store-lease {store}")
        try:
            hold_alive(lease._conn, lease.holder)
            take_lease(lease._conn, store, run_id, lease.holder, seconds, alive=True)
        except BaseException:
            lease._conn.close()
            raise
        lease._thread = threading.Thread(target=lease._beat, name=f"lease-{store}", daemon=True)
        lease._thread.start()
        return lease

    def _beat(self) -> None:
        # Only this thread uses the connection until release() has joined it.
        while not self._stop.wait(self.heartbeat):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.database_url, autocommit=True)
                    hold_alive(self._conn, self.holder)
                if not renew_lease(self._conn, self.store, self.holder, self.seconds):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - a beat missed (database restarting): the next one reconnects
                if self._conn is not None:
                    self._conn.close()
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        conn = self._conn if self._conn is not None and not self._conn.closed else connect(self.database_url,
                                                                                           autocommit=True)
        try:
            release_lease(conn, self.store, self.holder)
        finally:
            conn.close()  # and with it the holder's mark
