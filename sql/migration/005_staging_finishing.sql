-- 'finishing': every unit is loaded and the integrity rules have run (committed); the derived tables, keys,
-- indexes and statistics are being built on several connections. A run that stops here resumes there.
ALTER TABLE migration.staging DROP CONSTRAINT staging_status_check,
    ADD CONSTRAINT staging_status_check CHECK (status IN ('loading', 'finishing', 'staged', 'promoted', 'superseded'));
