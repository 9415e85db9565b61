-- Verified archives of a store's source files, written before its first load (seeds: "backup first,
-- keep the file backup for 30 days").
CREATE TABLE migration.backups (
    store         text NOT NULL,
    archive_path  text NOT NULL,
    sha256        text NOT NULL,      -- of the archive file
    files         bigint NOT NULL,
    bytes         bigint NOT NULL,
    manifest_path text NOT NULL,      -- JSON: relative path -> SHA-256 of every archived file
    created_at    timestamptz NOT NULL DEFAULT now(),
    keep_until    timestamptz NOT NULL DEFAULT now() + interval '30 days',
    PRIMARY KEY (store, archive_path)
);
