-- The unit that read a mapped file: a resumed plan re-hashes the files of its committed units and
-- reloads any unit whose files changed since they were read (NULL for unmapped files).
ALTER TABLE migration.source_manifest ADD COLUMN unit_no integer;
CREATE INDEX source_manifest_unit ON migration.source_manifest (store, plan_id, unit_no) WHERE unit_no IS NOT NULL;
