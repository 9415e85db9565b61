"""Every name the pipeline generates from a store's or a table's name, built in one place so that no module
rebuilds one from strings (a staging schema, a check, an op, a job)."""

from __future__ import annotations


def staging_schema(store: str) -> str:
    """Where a store's next version is loaded and checked."""
    return f"{store}__staging"


def previous_schema(store: str) -> str:
    """The live version the last promotion replaced, kept for rollback."""
    return f"{store}__previous"


def swap_schema(store: str) -> str:
    """The transient name a schema passes through during a promotion or rollback."""
    return f"{store}__swap"


def gx_check_name(table: str) -> str:
    return f"gx_suite_{table}"


def reconciliation_check_name(label: str) -> str:
    """The per-partition reconciliation check (label: the partition's kind, e.g. `shard`)."""
    return f"{label}_reconciliation"


def gates_op(store: str) -> str:
    return f"{store}_gates"


def staged_op(store: str) -> str:
    """Dagster's op name of the `<store>/staged` asset (asset key path joined by `__`)."""
    return f"{store}__staged"


def migrate_job(store: str) -> str:
    return f"migrate_{store}"


def backfill_job(store: str, partitions: str = "shards") -> str:
    """The job that loads a range of a store's partitions (`partitions`: the partitioned asset's name)."""
    return f"backfill_{store}_{partitions}"


def dynamic_partitions_name(store: str, partitions: str) -> str:
    """The name of a store's dynamic partitions definition (its keys live in the Dagster instance)."""
    return f"{store}_{partitions}"


def partition_sensor_name(store: str, partitions: str) -> str:
    return f"{store}_{partitions}_discovery"


def partition_schedule_name(store: str, partitions: str) -> str:
    return f"{store}_daily_{partitions}"


def live_replacement_check_name(label: str) -> str:
    """The check of a partition loaded after promotion into the live table (label: e.g. `day`)."""
    return f"{label}_live_replacement"


def backfill_group(store: str) -> str:
    return f"{store}_backfill"


def change_sensor_name(store: str) -> str:
    return f"{store}_source_changes"


def sync_schedule_name(store: str) -> str:
    return f"{store}_hourly_sync"


def gx_data_source(store: str) -> str:
    return f"{store}_staging"


def live_op(store: str) -> str:
    """Dagster's op of a store's promotion (the multi-asset that makes its live tables)."""
    return f"{store}__live"


def store_pool(store: str) -> str:
    """The Dagster concurrency pool of a store's loading and promotion steps (one run of a store at a time)."""
    return f"migration_{store}"


# Steps of a store's Dagster graph whose asset keys (`<store>/<step>`) a live table's key (`<store>/<table>`)
# must not take.
STORE_STEPS = ("source_files", "backup", "staged", "validation_report")
