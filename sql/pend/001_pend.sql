-- The Pend store (seed 002, LEGACY_FORMATS section 3): wallet-db.json, admin-*.json, explorer days, KYC uploads.
--   * column names are the snake_case of the source fields; `from` / `to` of an event are from_address /
--     to_address (reserved words); surplus fields of a record go to extra jsonb, never lost;
--   * amounts are numeric (exact, any scale); wei values numeric(78,0) (uint256 has 78 digits);
--   * addresses are stored as given; EIP-55 and lower-case forms are one account, so keys and references
--     use a generated lower-case column (address_key / user_key), never a rewritten address;
--   * KYC documents keep their bytes in bytea with size, SHA-256 and the content type sniffed from them.
CREATE SCHEMA IF NOT EXISTS pend;

CREATE TABLE pend.assets (
    id              text PRIMARY KEY,
    name            text,
    symbol          text,
    asset_type      text,
    description     text,
    target_raise    numeric,
    min_investment  numeric,
    apy             numeric,
    status          text,
    token_address   text,
    created_at      timestamptz,
    updated_at      timestamptz,
    extra           jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE pend.users (
    address      text NOT NULL,
    address_key  text GENERATED ALWAYS AS (lower(address)) STORED PRIMARY KEY,
    email        text,
    name         text,
    role         text,
    kyc_status   text CHECK (kyc_status IN ('none', 'pending', 'approved', 'rejected')),
    created_at   timestamptz,
    last_login   timestamptz,
    extra        jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE pend.user_profiles (
    user_id       text NOT NULL,
    user_key      text GENERATED ALWAYS AS (lower(user_id)) STORED PRIMARY KEY
                  REFERENCES pend.users (address_key) ON DELETE CASCADE,
    display_name  text,
    avatar_url    text,
    country       text,
    risk_profile  text,
    extra         jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE pend.investments (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    user_key    text GENERATED ALWAYS AS (lower(user_id)) STORED NOT NULL
                REFERENCES pend.users (address_key) ON DELETE CASCADE,
    asset_id    text REFERENCES pend.assets (id),
    amount      numeric NOT NULL,
    tx_hash     text,
    status      text,
    "timestamp" timestamptz,
    extra       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_investments_user ON pend.investments (user_key);
CREATE INDEX idx_investments_asset ON pend.investments (asset_id);

CREATE TABLE pend.admin_logs (
    id             text PRIMARY KEY,
    admin_address  text,
    action         text,
    target_type    text,
    target_id      text,
    details        jsonb,
    ip             text,
    "timestamp"    timestamptz,
    extra          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_admin_logs_time ON pend.admin_logs ("timestamp");

CREATE TABLE pend.blockchain_events (
    day               date NOT NULL,
    chain             text NOT NULL,
    tx_hash           text NOT NULL,
    log_index         integer NOT NULL,
    block_number      bigint,
    block_timestamp   timestamptz,
    contract_address  text,
    event_name        text,
    from_address      text,
    to_address        text,
    value             numeric(78, 0),
    asset_id          text,
    args              jsonb,
    extra             jsonb NOT NULL DEFAULT '{}',
    UNIQUE (chain, tx_hash, log_index)
);
CREATE INDEX idx_events_day ON pend.blockchain_events (day, chain);
CREATE INDEX idx_events_contract ON pend.blockchain_events (lower(contract_address));

CREATE TABLE pend.kyc_applications (
    address           text NOT NULL,
    address_key       text GENERATED ALWAYS AS (lower(address)) STORED PRIMARY KEY
                      REFERENCES pend.users (address_key) ON DELETE CASCADE,
    full_name         text,
    date_of_birth     date,
    country           text,
    document_type     text,
    document_number   text,
    status            text,
    submitted_at      timestamptz,
    reviewed_at       timestamptz,
    reviewed_by       text,
    rejection_reason  text,
    extra             jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE pend.kyc_documents (
    address            text NOT NULL,
    address_key        text GENERATED ALWAYS AS (lower(address)) STORED NOT NULL
                       REFERENCES pend.kyc_applications (address_key) ON DELETE CASCADE,
    file_name          text NOT NULL,
    content_type       text NOT NULL,
    extension_matches  boolean NOT NULL,
    size_bytes         bigint NOT NULL CHECK (size_bytes >= 0),
    sha256             text NOT NULL,
    content            bytea NOT NULL,
    PRIMARY KEY (address_key, file_name)
);
