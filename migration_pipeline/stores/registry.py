"""Every store the pipeline knows. Adding a store: a module under stores/, its DDL under sql/, one line here."""

from __future__ import annotations

from migration_pipeline.core.spec import StoreSpec


def all_stores() -> tuple[StoreSpec, ...]:
    from migration_pipeline.stores.defarm import DEFARM_STORE
    from migration_pipeline.stores.metagauge import METAGAUGE_STORE
    from migration_pipeline.stores.pend import PEND_STORE
    from migration_pipeline.stores.wallet import WALLET_STORE

    return (WALLET_STORE, METAGAUGE_STORE, PEND_STORE, DEFARM_STORE)


def get_store(name: str) -> StoreSpec:
    for store in all_stores():
        if store.name == name:
            return store
    known = ", ".join(s.name for s in all_stores())
    raise KeyError(f"unknown store {name!r} (known: {known})")
