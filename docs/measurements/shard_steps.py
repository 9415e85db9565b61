"""Stage the wallet store one shard at a time, as a fan-out's steps (Celery) or a shard backfill do, each step a
`stage_store(..., partitions={shard})` of its own on one process, then the load that finishes the staging; print
each step's seconds. Before session 13, each step hashed again every unit the steps before it had committed, so the
steps grew slower one after the other.

    python docs/measurements/shard_steps.py USERS [STORE_ROOT]

Generates a wallet store of USERS users (2 files each) under STORE_ROOT (default .bench/shards-USERS), reused if it
is there. Needs `createdb`/`dropdb` for the server at 127.0.0.1:5432 (user postgres); the database is dropped after."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

SERVER = "postgresql://postgres@127.0.0.1:5432"
SECRET = "bench-secret"


def main(users: int, root: Path) -> None:
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.schema import apply_migrations
    from migration_pipeline.core.stage import stage_store
    from migration_pipeline.stores.wallet import WALLET_STORE
    from migration_pipeline.stores.wallet.generate import generate_wallet_store

    if not (root / "wallet").is_dir():
        generate_wallet_store(root, users=users, secret=SECRET, seed=3, processes=2)
    name = f"shard_steps_{uuid.uuid4().hex[:8]}"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    url = f"{SERVER}/{name}"
    try:
        with connect(url) as conn:
            apply_migrations(conn)
            conn.commit()
        shards = sorted({u.partition for u in WALLET_STORE.discover(root / "wallet").units if u.partition})
        seconds = []
        for shard in shards:
            started = time.perf_counter()
            stage_store(url, WALLET_STORE, root, "shard-steps", SECRET, workers=1, partitions={shard})
            seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        stage_store(url, WALLET_STORE, root, "shard-steps", SECRET, workers=1)
        finish = time.perf_counter() - started
        print(f"{users:,} users, {len(shards)} shard steps, seconds each: " + " ".join(f"{s:.1f}" for s in seconds))
        print(f"shard steps in all {sum(seconds):.1f} s (first {seconds[0]:.1f}, last {seconds[-1]:.1f}); "
              f"the load that finishes the staging {finish:.1f} s")
    finally:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", name], check=True)


if __name__ == "__main__":
    count = int(sys.argv[1])
    main(count, Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".bench") / f"shards-{count}")
