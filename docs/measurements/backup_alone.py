"""Write the backup of one store folder on its own, as `ensure_backup` does without a load beside it (two threads),
and print its wall time and the peak resident memory of this process (the listing, the frames in flight).

    python docs/measurements/backup_alone.py STORE_FOLDER [threads|processes]

STORE_FOLDER is a store's folder, e.g. the `wallet` folder that `migration-pipeline bench --store wallet --users
1000000 --keep` leaves under .bench/. The archive is written to a temporary folder under /tmp and deleted. To compare
two commits, run it from a worktree of each: `PYTHONPATH=/tmp/before python docs/measurements/backup_alone.py ...`.
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from migration_pipeline.core.backup import write_backup

    mode = sys.argv[2] if len(sys.argv) > 2 else "threads"
    out = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        started = time.perf_counter()
        made = write_backup(Path(sys.argv[1]), out, "wallet", workers=2, threads=mode == "threads")
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{mode}: {made.files} files, {made.bytes} bytes, wall {wall:.2f} s, peak RSS of this process {peak:.0f} MiB")


if __name__ == "__main__":
    main()
