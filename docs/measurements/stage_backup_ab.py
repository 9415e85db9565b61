"""Stage the wallet store with its backup beside the load, as the `wallet__staged` step does, and print wall time,
client CPU (this process and its workers) and the machine's steal time; alternately with the backup in threads of
its own and in the load's worker processes. Each run gets a database of its own (created, then dropped).

    python docs/measurements/stage_backup_ab.py STORE_ROOT RUNS [pool,threads,none]   (COLD=1: drop the page cache first)

`none` stages without a backup. Server CPU is that of every process of the local PostgreSQL (nothing else should
use it meanwhile).

STORE_ROOT holds a `wallet` folder written with ENCRYPTION_SECRET=bench-secret, e.g. the one `migration-pipeline
bench --store wallet --users 100000 --keep` leaves under .bench/. Needs `createdb`/`dropdb` for the server at
127.0.0.1:5432 (user postgres), and root for COLD=1."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = "postgresql://postgres@127.0.0.1:5432"


def steal_seconds() -> float:
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def server_cpu_seconds() -> float:
    """CPU of the local PostgreSQL's processes: the postmaster's live children and those it has reaped."""
    import psutil

    postmaster = next(p for p in psutil.process_iter(["name", "ppid"])
                      if p.info["name"] and "postgres" in p.info["name"] and p.info["ppid"] == 1)
    times = postmaster.cpu_times()
    live = sum(c.cpu_times().user + c.cpu_times().system for c in postmaster.children())
    return times.children_user + times.children_system + live


def run(root: Path, variant: str, number: int) -> None:
    from migration_pipeline.core.backup import backup_beside
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.schema import apply_migrations
    from migration_pipeline.core.stage import loader_pool, stage_store
    from migration_pipeline.stores.registry import get_store

    database = f"stage_backup_{variant}_{number}"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    url = f"{SERVER}/{database}"
    with connect(url) as conn:
        apply_migrations(conn)
        conn.commit()
    spec = get_store("wallet")
    backups = Path(tempfile.mkdtemp())
    if os.environ.get("COLD"):
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    cpu, steal, started, server = cpu_seconds(), steal_seconds(), time.perf_counter(), server_cpu_seconds()
    if variant == "none":  # no backup: the stage alone
        stage_store(url, spec, root, f"run{number}", "bench-secret", workers=2)
    elif variant == "pool":
        with loader_pool(url, spec, 2) as pool, backup_beside(url, root / spec.folder, backups, "wallet", 2, pool) as b:
            stage_store(url, spec, root, f"run{number}", "bench-secret", workers=2, pool=pool)
            b.result()
    else:
        with backup_beside(url, root / spec.folder, backups, "wallet", 2) as b:
            stage_store(url, spec, root, f"run{number}", "bench-secret", workers=2)
            b.result()
    print(f"{variant:8s} wall {time.perf_counter() - started:6.2f} s  client CPU {cpu_seconds() - cpu:6.2f} s  "
          f"steal {steal_seconds() - steal:5.2f} s  server CPU {server_cpu_seconds() - server:6.2f} s", flush=True)
    shutil.rmtree(backups)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)


if __name__ == "__main__":
    for number in range(int(sys.argv[2])):
        for variant in (sys.argv[3] if len(sys.argv) > 3 else "pool,threads").split(","):
            run(Path(sys.argv[1]), variant, number)
