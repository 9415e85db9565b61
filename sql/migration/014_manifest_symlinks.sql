-- A symbolic link in a store is never read through (wherever it points: inside the store, outside it,
-- nowhere, to itself, to a folder): it is listed as a link, with its own size and mtime (lstat) and its
-- target as text, and archived as a link by the backup.
ALTER TABLE migration.source_manifest DROP CONSTRAINT source_manifest_status_check;
ALTER TABLE migration.source_manifest ADD CONSTRAINT source_manifest_status_check
    CHECK (status IN ('mapped', 'unmapped', 'symlink'));
ALTER TABLE migration.source_manifest ADD COLUMN link_target text;
ALTER TABLE migration.source_manifest ADD CONSTRAINT source_manifest_link_target_check
    CHECK ((status = 'symlink') = (link_target IS NOT NULL));
COMMENT ON COLUMN migration.source_manifest.link_target IS
    'what a symlink points to, as written in the link (never followed); NULL for a file';
