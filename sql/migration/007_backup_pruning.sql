-- A backup past its keep_until may be pruned (`migration-pipeline backups --prune`): its archive and
-- manifest are deleted, its row stays as the record that it existed and when it went.
ALTER TABLE migration.backups ADD COLUMN pruned_at timestamptz;
COMMENT ON COLUMN migration.backups.manifest_path IS
    'sha256sum-format manifest beside the archive: "<sha256>  <relative path>" per archived file';
