-- What a store changed in records it loaded, counted per unit while reading (e.g. timestamps rounded to the
-- microsecond, enum variants the source did not declare, blank lines skipped). Finishing turns a plan's
-- notes into `migration.adjustments` rows, which the report lists.
CREATE TABLE migration.unit_notes (
    store       text NOT NULL,
    plan_id     text NOT NULL,
    unit_no     integer NOT NULL,
    table_name  text NOT NULL,
    reason      text NOT NULL,
    message     text NOT NULL,
    records     bigint NOT NULL,
    PRIMARY KEY (store, plan_id, unit_no, table_name, reason, message)
);
