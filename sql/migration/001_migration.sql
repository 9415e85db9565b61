-- Pipeline bookkeeping: what was read, what was rejected, what was checked, which phase each store is in.
CREATE SCHEMA IF NOT EXISTS migration;

-- The staging attempt of each store. A crashed attempt with the same source fingerprint is resumed.
CREATE TABLE migration.staging (
    store        text PRIMARY KEY,
    plan_id      text NOT NULL,
    fingerprint  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('loading', 'staged', 'promoted', 'superseded')),
    run_id       text NOT NULL,
    units_total  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    staged_at    timestamptz
);

-- One row per (unit of work, table) committed in the same transaction as the unit's COPY.
CREATE TABLE migration.unit_progress (
    store          text NOT NULL,
    plan_id        text NOT NULL,
    unit_no        integer NOT NULL,
    table_name     text NOT NULL,
    records_seen   bigint NOT NULL,
    rows_emitted   bigint NOT NULL,
    row_hash_sum   numeric NOT NULL,
    run_id         text NOT NULL,
    PRIMARY KEY (store, plan_id, unit_no, table_name)
);

CREATE TABLE migration.source_manifest (
    store       text NOT NULL,
    plan_id     text NOT NULL,
    path        text NOT NULL,
    size_bytes  bigint NOT NULL,
    sha256      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('mapped', 'unmapped')),
    PRIMARY KEY (store, plan_id, path)
);

CREATE TABLE migration.quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store        text NOT NULL,
    plan_id      text NOT NULL,
    run_id       text NOT NULL,
    table_name   text NOT NULL,
    source_file  text NOT NULL,
    locator      text NOT NULL,
    reason       text NOT NULL,
    message      text NOT NULL,
    row_hash     bigint,          -- set when the record was staged, then removed (e.g. duplicate_key)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_store_plan ON migration.quarantine (store, plan_id, table_name);

-- Records that were loaded but must block promotion (e.g. a key that derives another address).
CREATE TABLE migration.flagged_records (
    store        text NOT NULL,
    plan_id      text NOT NULL,
    table_name   text NOT NULL,
    source_file  text NOT NULL,
    locator      text NOT NULL,
    reason       text NOT NULL,
    message      text NOT NULL
);
CREATE INDEX flagged_records_store_plan ON migration.flagged_records (store, plan_id);

CREATE TABLE migration.check_results (
    run_id      text NOT NULL,
    store       text NOT NULL,
    plan_id     text NOT NULL,
    check_name  text NOT NULL,
    passed      boolean NOT NULL,
    summary     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, store, check_name)
);

CREATE TABLE migration.store_phase (
    store        text PRIMARY KEY,
    phase        text NOT NULL CHECK (phase IN
                   ('not_started', 'staged', 'validated', 'promoted', 'cut_over', 'rolled_back')),
    plan_id      text,
    run_id       text,
    report_path  text,
    approved_by  text,
    changed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE migration.phase_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store       text NOT NULL,
    from_phase  text,
    to_phase    text NOT NULL,
    run_id      text,
    actor       text NOT NULL,
    note        text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);

-- Shared trigger function; kept outside the store schemas so cloned staging tables can use it.
CREATE FUNCTION migration.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Values the engine changed after loading, with the change in row-hash sum, so that the checksum
-- gate can still prove that every other value arrived as read (e.g. a reference set NULL).
CREATE TABLE migration.adjustments (
    store          text NOT NULL,
    plan_id        text NOT NULL,
    table_name     text NOT NULL,
    reason         text NOT NULL,
    message        text NOT NULL,
    rows_changed   bigint NOT NULL,
    hash_delta     numeric NOT NULL
);
