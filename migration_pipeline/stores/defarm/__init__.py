"""The defarm store (seed 004): seventeen JSON Lines exports of a Rust service's engines."""

from migration_pipeline.stores.defarm.store import DEFARM_STORE

__all__ = ["DEFARM_STORE"]
