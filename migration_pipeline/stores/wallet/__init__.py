"""The wallet store (seeds 000, 001): one JSON file per user and chain, keys encrypted."""

from migration_pipeline.stores.wallet.store import WALLET_STORE

__all__ = ["WALLET_STORE"]
