-- The unit of work a quarantined record was read in (NULL for records moved after loading), so that
-- the gates can reconcile one shard of a store on its own.
ALTER TABLE migration.quarantine ADD COLUMN unit_no integer;
