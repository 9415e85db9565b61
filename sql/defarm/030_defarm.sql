-- Seed 004's DeFarm tables: one per engine of the Rust service, named as the engine, columns named as
-- the serde fields (LEGACY_FORMATS section 4). The Rust types map as sources/coerce.py declares:
--   * u64 / usize -> numeric(20,0) with a CHECK for 0..18446744073709551615 (bigint stops at 2^63-1);
--     u32 -> bigint (integer stops at 2^31-1); i64 -> bigint; f64 -> numeric (the JSON number exactly);
--   * DateTime<Utc> -> timestamptz (rounded half to even to the microsecond by the loader);
--   * Uuid -> uuid; String -> text (no widths: a long value must never abort a COPY);
--   * an externally tagged enum -> its tag in a text column of the field's name and its payload in
--     <field>_payload jsonb (NULL for a unit variant);
--   * HashMap / serde_json::Value / Vec of records -> jsonb as they are; Vec<String> -> text[];
--   * Option<T> -> nullable; every other field NOT NULL;
--   * extra jsonb keeps the keys a line carries that the struct does not declare.
-- Keys (issue 17): items.dfid, circuits.circuit_id, users.user_id, lid_dfid_mappings (local_id,
-- workspace_id), enhanced_identifiers (dfid, namespace, key), and every engine's own Uuid id. References
-- to items / circuits / users are foreign keys ON DELETE CASCADE: a dangling one is quarantined (orphan).
CREATE SCHEMA IF NOT EXISTS defarm;

CREATE TABLE defarm.users (
    user_id                  text NOT NULL,
    username                 text NOT NULL,
    email                    text NOT NULL,
    password_hash            text NOT NULL,
    tier                     text NOT NULL,
    tier_payload             jsonb,
    status                   text NOT NULL,
    status_payload           jsonb,
    is_admin                 boolean NOT NULL,
    workspace_id             text,
    credits                  numeric(20,0) NOT NULL CHECK (credits BETWEEN 0 AND 18446744073709551615),
    available_adapters       text[],
    created_at               timestamptz NOT NULL,
    last_login               timestamptz,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_id)
);

CREATE TABLE defarm.items (
    dfid                     text NOT NULL,
    item_hash                text NOT NULL,
    status                   text NOT NULL,
    status_payload           jsonb,
    local_id                 uuid,
    legacy_mode              boolean NOT NULL,
    identifiers              jsonb NOT NULL,
    aliases                  jsonb NOT NULL,
    fingerprint              text,
    enriched_data            jsonb NOT NULL,
    creation_timestamp       timestamptz NOT NULL,
    last_modified            timestamptz NOT NULL,
    source_entries           jsonb NOT NULL,
    confidence_score         numeric NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (dfid)
);

CREATE TABLE defarm.circuits (
    circuit_id               uuid NOT NULL,
    name                     text NOT NULL,
    description              text,
    owner_id                 text NOT NULL,
    members                  jsonb NOT NULL,
    permissions              jsonb NOT NULL,
    status                   text NOT NULL,
    status_payload           jsonb,
    created_timestamp        timestamptz NOT NULL,
    last_modified            timestamptz NOT NULL,
    alias_config             jsonb,
    adapter_config           jsonb,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (circuit_id)
);

CREATE TABLE defarm.enhanced_identifiers (
    dfid                     text NOT NULL,
    namespace                text NOT NULL,
    key                      text NOT NULL,
    value                    text NOT NULL,
    id_type                  text NOT NULL,
    id_type_payload          jsonb,
    verified                 boolean NOT NULL,
    created_at               timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (dfid, namespace, key),
    FOREIGN KEY (dfid) REFERENCES defarm.items (dfid) ON DELETE CASCADE
);

CREATE TABLE defarm.circuit_items (
    dfid                     text NOT NULL,
    circuit_id               uuid NOT NULL,
    permissions              text[] NOT NULL,
    added_by                 text NOT NULL,
    added_at                 timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (dfid) REFERENCES defarm.items (dfid) ON DELETE CASCADE,
    FOREIGN KEY (circuit_id) REFERENCES defarm.circuits (circuit_id) ON DELETE CASCADE
);
CREATE INDEX idx_circuit_items_dfid ON defarm.circuit_items (dfid);
CREATE INDEX idx_circuit_items_circuit_id ON defarm.circuit_items (circuit_id);

CREATE TABLE defarm.circuit_operations (
    operation_id             uuid NOT NULL,
    circuit_id               uuid NOT NULL,
    dfid                     text NOT NULL,
    operation_type           text NOT NULL,
    operation_type_payload   jsonb,
    requester_id             text NOT NULL,
    status                   text NOT NULL,
    status_payload           jsonb,
    created_at               timestamptz NOT NULL,
    completed_at             timestamptz,
    metadata                 jsonb NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (operation_id),
    FOREIGN KEY (circuit_id) REFERENCES defarm.circuits (circuit_id) ON DELETE CASCADE,
    FOREIGN KEY (dfid) REFERENCES defarm.items (dfid) ON DELETE CASCADE,
    FOREIGN KEY (requester_id) REFERENCES defarm.users (user_id) ON DELETE CASCADE
);
CREATE INDEX idx_circuit_operations_circuit_id ON defarm.circuit_operations (circuit_id);
CREATE INDEX idx_circuit_operations_dfid ON defarm.circuit_operations (dfid);

CREATE TABLE defarm.adapters (
    config_id                uuid NOT NULL,
    name                     text NOT NULL,
    adapter_type             text NOT NULL,
    adapter_type_payload     jsonb,
    connection_details       jsonb NOT NULL,
    is_active                boolean NOT NULL,
    is_default               boolean NOT NULL,
    created_by               text NOT NULL,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (config_id)
);

CREATE TABLE defarm.storage_history (
    dfid                     text NOT NULL,
    adapter_type             text NOT NULL,
    adapter_type_payload     jsonb,
    location                 text NOT NULL,
    location_payload         jsonb,
    stored_at                timestamptz NOT NULL,
    triggered_by             text NOT NULL,
    size_bytes               numeric(20,0) NOT NULL CHECK (size_bytes BETWEEN 0 AND 18446744073709551615),
    is_active                boolean NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (dfid) REFERENCES defarm.items (dfid) ON DELETE CASCADE
);
CREATE INDEX idx_storage_history_dfid ON defarm.storage_history (dfid);

CREATE TABLE defarm.lid_dfid_mappings (
    local_id                 uuid NOT NULL,
    dfid                     text NOT NULL,
    workspace_id             text NOT NULL,
    created_at               timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (local_id, workspace_id)
);
CREATE INDEX idx_lid_dfid_mappings_dfid ON defarm.lid_dfid_mappings (dfid);

CREATE TABLE defarm.receipts (
    id                       uuid NOT NULL,
    hash                     text NOT NULL,
    timestamp                timestamptz NOT NULL,
    data_size                numeric(20,0) NOT NULL CHECK (data_size BETWEEN 0 AND 18446744073709551615),
    identifiers              jsonb NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id)
);

CREATE TABLE defarm.logs (
    timestamp                timestamptz NOT NULL,
    level                    text NOT NULL,
    level_payload            jsonb,
    engine                   text NOT NULL,
    event_type               text NOT NULL,
    message                  text NOT NULL,
    context                  jsonb NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE defarm.data_lake_entries (
    entry_id                 uuid NOT NULL,
    receipt_id               uuid NOT NULL,
    timestamp                timestamptz NOT NULL,
    identifiers              jsonb NOT NULL,
    data_hash                text NOT NULL,
    data_size                numeric(20,0) NOT NULL CHECK (data_size BETWEEN 0 AND 18446744073709551615),
    status                   text NOT NULL,
    status_payload           jsonb,
    linked_dfid              text,
    error_message            text,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (entry_id)
);

CREATE TABLE defarm.events (
    event_id                 uuid NOT NULL,
    dfid                     text NOT NULL,
    event_type               text NOT NULL,
    event_type_payload       jsonb,
    timestamp                timestamptz NOT NULL,
    source                   text NOT NULL,
    metadata                 jsonb NOT NULL,
    is_encrypted             boolean NOT NULL,
    visibility               text NOT NULL,
    visibility_payload       jsonb,
    content_hash             text NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (event_id),
    FOREIGN KEY (dfid) REFERENCES defarm.items (dfid) ON DELETE CASCADE
);
CREATE INDEX idx_events_dfid ON defarm.events (dfid);

CREATE TABLE defarm.activities (
    activity_id              uuid NOT NULL,
    activity_type            text NOT NULL,
    activity_type_payload    jsonb,
    circuit_id               uuid NOT NULL,
    circuit_name             text NOT NULL,
    dfids                    text[] NOT NULL,
    performed_by             text NOT NULL,
    status                   text NOT NULL,
    status_payload           jsonb,
    details                  jsonb NOT NULL,
    timestamp                timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (activity_id)
);

CREATE TABLE defarm.notifications (
    id                       uuid NOT NULL,
    user_id                  text NOT NULL,
    notification_type        text NOT NULL,
    notification_type_payload jsonb,
    title                    text NOT NULL,
    message                  text NOT NULL,
    data                     jsonb,
    read                     boolean NOT NULL,
    created_at               timestamptz NOT NULL,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id)
);
CREATE INDEX idx_notifications_user_id ON defarm.notifications (user_id);

CREATE TABLE defarm.api_keys (
    id                       uuid NOT NULL,
    user_id                  text NOT NULL,
    key_hash                 text NOT NULL,
    key_prefix               text NOT NULL,
    name                     text NOT NULL,
    permissions              text[] NOT NULL,
    rate_limit_per_hour      bigint NOT NULL,
    is_active                boolean NOT NULL,
    usage_count              numeric(20,0) NOT NULL CHECK (usage_count BETWEEN 0 AND 18446744073709551615),
    expires_at               timestamptz,
    created_at               timestamptz NOT NULL,
    last_used_at             timestamptz,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id)
);
CREATE INDEX idx_api_keys_user_id ON defarm.api_keys (user_id);

CREATE TABLE defarm.credit_transactions (
    transaction_id           uuid NOT NULL,
    user_id                  text NOT NULL,
    amount                   bigint NOT NULL,
    transaction_type         text NOT NULL,
    transaction_type_payload jsonb,
    balance_after            numeric(20,0) NOT NULL CHECK (balance_after BETWEEN 0 AND 18446744073709551615),
    description              text,
    timestamp                timestamptz NOT NULL,
    metadata                 jsonb,
    extra                    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (transaction_id)
);
CREATE INDEX idx_credit_transactions_user_id ON defarm.credit_transactions (user_id);
