-- Modification time of every source file, so that change detection needs a stat, not a read.
ALTER TABLE migration.source_manifest ADD COLUMN mtime_ns bigint;
