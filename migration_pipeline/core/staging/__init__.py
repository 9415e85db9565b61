"""Staging a store, one step per module: `plan` (which plan this run loads, and which of its units are
done), `load` (read and COPY units, each with its bookkeeping in one transaction) and `finish` (integrity
rules, keys, derived tables, indexes, then the counts). `core.stage.stage_store` runs them in order."""
