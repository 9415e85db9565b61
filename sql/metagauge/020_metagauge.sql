-- Seed 003's ten Metagauge tables in valid PostgreSQL (its inline INDEX syntax is MySQL's).
-- Deviations from the seed, each for a LEGACY_FORMATS rule or for a safe bulk load:
--   * ids are uuid without a DEFAULT gen_random_uuid(): every id is set by the migration (a UUID is
--     kept, a legacy id maps to a deterministic UUIDv5 and is kept in legacy_id, unique);
--   * varchar(n) is text: a long legacy value must never abort a COPY; widths are not a rule of the data;
--   * timestamps are timestamptz; users.email is stored as given, unique on lower(email);
--   * extra jsonb NOT NULL DEFAULT '{}' on users, contracts, analyses, chat_sessions, chat_messages
--     keeps unknown keys (also unknown keys of nested objects, under "<object>.<key>");
--   * the parent reference of every child table (user_id, contract_id, session_id) is NOT NULL:
--     a record without its owner is rejected by the migration (missing_field), and the seed's
--     ON DELETE CASCADE already makes an ownerless row meaningless; analyses.config_id stays nullable
--     (ON DELETE SET NULL);
--   * contract_rpc_config gets UNIQUE (contract_id, chain): one row per chain of a contract's rpcConfig;
--   * the seed's redundant indexes on columns that are already UNIQUE (users.email/api_key,
--     user_onboarding/user_preferences/contract_analysis_params .user_id/.contract_id) are not repeated;
--   * updated_at triggers (BEFORE UPDATE) use the shared migration.set_updated_at().
CREATE SCHEMA IF NOT EXISTS metagauge;

CREATE TABLE metagauge.users (
    id                      uuid PRIMARY KEY,
    legacy_id               text,
    email                   text NOT NULL,
    password                text NOT NULL,
    name                    text NOT NULL,
    tier                    text DEFAULT 'free' CHECK (tier IN ('free', 'starter', 'pro', 'enterprise')),
    api_key                 text NOT NULL UNIQUE,
    is_active               boolean DEFAULT true,
    email_verified          boolean DEFAULT false,
    analysis_count          integer DEFAULT 0,
    monthly_analysis_count  integer DEFAULT 0,
    last_analysis           timestamptz,
    monthly_reset_date      timestamptz DEFAULT now(),
    extra                   jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz DEFAULT now(),
    updated_at              timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX idx_users_email_lower ON metagauge.users (lower(email));
CREATE UNIQUE INDEX idx_users_legacy_id ON metagauge.users (legacy_id);
CREATE INDEX idx_users_tier ON metagauge.users (tier);
CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON metagauge.users
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.user_onboarding (
    id                       uuid PRIMARY KEY,
    user_id                  uuid NOT NULL UNIQUE REFERENCES metagauge.users (id) ON DELETE CASCADE,
    completed                boolean DEFAULT false,
    website                  text,
    twitter                  text,
    discord                  text,
    telegram                 text,
    logo                     text,
    contract_address         text,
    contract_chain           text,
    contract_abi             text,
    contract_name            text,
    contract_purpose         text,
    contract_category        text,
    contract_start_date      date,
    is_indexed               boolean DEFAULT false,
    indexing_progress        integer DEFAULT 0,
    last_analysis_id         uuid,
    last_update              timestamptz,
    current_step             text,
    continuous_sync          boolean DEFAULT false,
    has_errors               boolean DEFAULT false,
    completion_reason        text,
    continuous_sync_stopped  timestamptz,
    created_at               timestamptz DEFAULT now(),
    updated_at               timestamptz DEFAULT now()
);
CREATE INDEX idx_onboarding_contract ON metagauge.user_onboarding (contract_address, contract_chain);
CREATE TRIGGER trg_user_onboarding_updated_at BEFORE UPDATE ON metagauge.user_onboarding
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.user_preferences (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL UNIQUE REFERENCES metagauge.users (id) ON DELETE CASCADE,
    email_notifications     boolean DEFAULT true,
    analysis_notifications  boolean DEFAULT true,
    default_chain           text DEFAULT 'ethereum',
    custom_settings         jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz DEFAULT now(),
    updated_at              timestamptz DEFAULT now()
);
CREATE TRIGGER trg_user_preferences_updated_at BEFORE UPDATE ON metagauge.user_preferences
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.contracts (
    id              uuid PRIMARY KEY,
    legacy_id       text,
    user_id         uuid NOT NULL REFERENCES metagauge.users (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    target_address  text NOT NULL,
    target_chain    text NOT NULL,
    target_name     text,
    target_abi      text,
    tags            text[],
    is_active       boolean DEFAULT true,
    is_default      boolean DEFAULT false,
    last_analyzed   timestamptz,
    analysis_count  integer DEFAULT 0,
    extra           jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX idx_contracts_legacy_id ON metagauge.contracts (legacy_id);
CREATE INDEX idx_contracts_user ON metagauge.contracts (user_id);
CREATE INDEX idx_contracts_address ON metagauge.contracts (target_address, target_chain);
CREATE INDEX idx_contracts_active ON metagauge.contracts (is_active);
CREATE INDEX idx_contracts_default ON metagauge.contracts (user_id, is_default);
CREATE TRIGGER trg_contracts_updated_at BEFORE UPDATE ON metagauge.contracts
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.contract_competitors (
    id           uuid PRIMARY KEY,
    contract_id  uuid NOT NULL REFERENCES metagauge.contracts (id) ON DELETE CASCADE,
    address      text NOT NULL,
    chain        text NOT NULL,
    name         text,
    abi          text,
    created_at   timestamptz DEFAULT now()
);
CREATE INDEX idx_competitors_contract ON metagauge.contract_competitors (contract_id);
CREATE INDEX idx_competitors_address ON metagauge.contract_competitors (address, chain);

CREATE TABLE metagauge.contract_rpc_config (
    id           uuid PRIMARY KEY,
    contract_id  uuid NOT NULL REFERENCES metagauge.contracts (id) ON DELETE CASCADE,
    chain        text NOT NULL,
    rpc_urls     text[],
    created_at   timestamptz DEFAULT now(),
    updated_at   timestamptz DEFAULT now(),
    UNIQUE (contract_id, chain)
);
CREATE INDEX idx_rpc_chain ON metagauge.contract_rpc_config (chain);
CREATE TRIGGER trg_contract_rpc_config_updated_at BEFORE UPDATE ON metagauge.contract_rpc_config
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.contract_analysis_params (
    id                       uuid PRIMARY KEY,
    contract_id              uuid NOT NULL UNIQUE REFERENCES metagauge.contracts (id) ON DELETE CASCADE,
    block_range              integer DEFAULT 1000,
    whale_threshold          numeric(20, 8) DEFAULT 10,
    max_concurrent_requests  integer DEFAULT 10,
    failover_timeout         integer DEFAULT 30000,
    max_retries              integer DEFAULT 2,
    output_formats           text[] DEFAULT ARRAY['json', 'csv', 'markdown'],
    custom_params            jsonb NOT NULL DEFAULT '{}',
    created_at               timestamptz DEFAULT now(),
    updated_at               timestamptz DEFAULT now()
);
CREATE TRIGGER trg_contract_analysis_params_updated_at BEFORE UPDATE ON metagauge.contract_analysis_params
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.analyses (
    id             uuid PRIMARY KEY,
    legacy_id      text,
    user_id        uuid NOT NULL REFERENCES metagauge.users (id) ON DELETE CASCADE,
    config_id      uuid REFERENCES metagauge.contracts (id) ON DELETE SET NULL,
    analysis_type  text NOT NULL CHECK (analysis_type IN ('single', 'quick_scan', 'competitive', 'comparative')),
    status         text DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress       integer DEFAULT 0 CHECK (progress >= 0 AND progress <= 100),
    results        jsonb,
    metadata       jsonb DEFAULT '{}',
    error_message  text,
    has_errors     boolean DEFAULT false,
    logs           text[] DEFAULT ARRAY[]::text[],
    completed_at   timestamptz,
    created_at     timestamptz DEFAULT now(),
    updated_at     timestamptz DEFAULT now(),
    last_update    timestamptz,
    current_step   text,
    extra          jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX idx_analyses_legacy_id ON metagauge.analyses (legacy_id);
CREATE INDEX idx_analyses_user ON metagauge.analyses (user_id);
CREATE INDEX idx_analyses_config ON metagauge.analyses (config_id);
CREATE INDEX idx_analyses_status ON metagauge.analyses (status);
CREATE INDEX idx_analyses_type ON metagauge.analyses (analysis_type);
CREATE INDEX idx_analyses_created ON metagauge.analyses (created_at DESC);
CREATE TRIGGER trg_analyses_updated_at BEFORE UPDATE ON metagauge.analyses
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.chat_sessions (
    id                uuid PRIMARY KEY,
    legacy_id         text,
    user_id           uuid NOT NULL REFERENCES metagauge.users (id) ON DELETE CASCADE,
    title             text DEFAULT 'New Chat',
    contract_address  text,
    contract_chain    text,
    contract_name     text,
    is_active         boolean DEFAULT true,
    message_count     integer DEFAULT 0,
    last_message_at   timestamptz,
    extra             jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz DEFAULT now(),
    updated_at        timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX idx_chat_sessions_legacy_id ON metagauge.chat_sessions (legacy_id);
CREATE INDEX idx_sessions_user ON metagauge.chat_sessions (user_id);
CREATE INDEX idx_sessions_contract ON metagauge.chat_sessions (contract_address, contract_chain);
CREATE INDEX idx_sessions_active ON metagauge.chat_sessions (is_active);
CREATE INDEX idx_sessions_updated ON metagauge.chat_sessions (updated_at DESC);
CREATE TRIGGER trg_chat_sessions_updated_at BEFORE UPDATE ON metagauge.chat_sessions
    FOR EACH ROW EXECUTE FUNCTION migration.set_updated_at();

CREATE TABLE metagauge.chat_messages (
    id               uuid PRIMARY KEY,
    legacy_id        text,
    session_id       uuid NOT NULL REFERENCES metagauge.chat_sessions (id) ON DELETE CASCADE,
    role             text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content          text NOT NULL,
    components       jsonb,
    tokens_used      integer,
    model            text,
    processing_time  integer,
    extra            jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX idx_chat_messages_legacy_id ON metagauge.chat_messages (legacy_id);
CREATE INDEX idx_messages_session ON metagauge.chat_messages (session_id);
CREATE INDEX idx_messages_created ON metagauge.chat_messages (created_at DESC);
