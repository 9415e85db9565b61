-- How many files a unit listed (its manifest rows), written with its progress in the transaction that commits
-- it: progress reads it instead of counting the manifest, which costs a heap visit per file while a large
-- store loads. The same on each of the unit's tables' rows; NULL on rows written without it (a unit a sync
-- carried, or one committed before this column), whose files progress counts in the manifest.
ALTER TABLE migration.unit_progress ADD COLUMN files_listed integer;
