"""The metagauge store (seed 003): five JSON arrays of a Node app, read streaming."""

from migration_pipeline.stores.metagauge.store import METAGAUGE_STORE

__all__ = ["METAGAUGE_STORE"]
