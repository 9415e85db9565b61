"""The Pend store (seed 002): users, admin files, explorer days and KYC documents as bytes."""

from migration_pipeline.stores.pend.store import PEND_STORE

__all__ = ["PEND_STORE"]
