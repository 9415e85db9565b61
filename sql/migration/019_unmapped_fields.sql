-- Source fields that no column holds (a table without an `extra` jsonb column): counted per unit so a
-- reviewer sees what the target does not keep (LEGACY_FORMATS: listed, never dropped silently).
CREATE TABLE migration.unmapped_fields (
    store       text NOT NULL,
    plan_id     text NOT NULL,
    unit_no     integer NOT NULL,
    table_name  text NOT NULL,
    field       text NOT NULL,
    records     bigint NOT NULL,
    PRIMARY KEY (store, plan_id, unit_no, table_name, field)
);
