-- A plan's mapped and unmapped file counts, recorded when its staging is finished: the summary, the report
-- and the CLI each counted them over the whole manifest (60-70 ms a time at 100k users, three times a run).
ALTER TABLE migration.staging ADD COLUMN files_mapped bigint, ADD COLUMN files_unmapped bigint;
-- The report lists a plan's unmapped files: a handful among millions of mapped ones.
CREATE INDEX source_manifest_unmapped ON migration.source_manifest (store, plan_id, path) WHERE status = 'unmapped';
