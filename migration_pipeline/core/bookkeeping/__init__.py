"""The bookkeeping schema `migration.*` and every statement the core runs on it.

One module per group of tables, each a set of named, typed functions that take the caller's connection
(or cursor) and run in the caller's transaction unless they say otherwise. Values are bound, identifiers
composed with `psycopg.sql`. The rest of the core asks these functions; it writes no SQL on `migration.*`.

- `plans`: `migration.staging`, the one plan per store being staged (its fingerprint, status, counts);
- `units`: what each loaded unit wrote: `unit_progress`, `source_manifest`, `quarantine`,
  `flagged_records`, `unmapped_fields`, `unit_notes`;
- `checks`: `check_results` and `adjustments`, what the gates and the finishing SQL record;
- `phases`: `store_phase` and `phase_history`, a store's place in its lifecycle;
- `backups`: `migration.backups`;
- `leases`: `store_leases`, a store's lock;
- `applied_ddl`: `schema_migrations`, the DDL files applied.
"""
