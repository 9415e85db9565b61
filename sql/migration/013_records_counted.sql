-- A unit's source records of a table as counted by a pass independent of the parser that loads them (e.g. a
-- byte-level count of a JSON file's top-level elements). Reconciliation takes it as the source side where it
-- is set, so that a reader that loses records fails the row-count gate instead of shrinking both sides.
-- NULL: the store does not count that table separately; records_seen is the source side.
ALTER TABLE migration.unit_progress ADD COLUMN records_counted bigint;
