-- Usher's first schema. Every record kind is a table; the record itself is JSON (as
-- the embedded store keeps it) and the fields a query or an atomic update needs are
-- columns beside it, kept in step by the statements that write them. Keys compare
-- and sort bytewise (COLLATE "C"), as Usher does in memory, whatever the database's
-- locale: time-prefixed ids range-scan by age, and account pages keep id order.

-- Accounts. Usernames and emails are one namespace of sign-in names, folded to lower
-- case: `login_names` holds both kinds, so its primary key decides every conflict.
CREATE TABLE users (
    id text COLLATE "C" PRIMARY KEY,
    created_at bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE TABLE login_names (
    name text COLLATE "C" PRIMARY KEY,
    user_id text NOT NULL
);
CREATE INDEX login_names_user ON login_names (user_id);
CREATE TABLE external_ids (
    user_id text COLLATE "C" PRIMARY KEY,
    external_id text NOT NULL
);
CREATE TABLE identities (
    connection text COLLATE "C" NOT NULL,
    subject text COLLATE "C" NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (connection, subject)
);
CREATE INDEX identities_user ON identities (user_id);

-- Second factors.
CREATE TABLE totp (
    user_id text COLLATE "C" PRIMARY KEY,
    sealed_secret bytea NOT NULL,
    created_at bigint NOT NULL,
    last_step bigint NOT NULL,
    confirmed boolean NOT NULL
);
CREATE TABLE recovery_codes (
    user_id text COLLATE "C" NOT NULL,
    hash text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, hash)
);
-- Every write of an email code record takes a fresh version, so a swap prepared
-- before any other write fails.
CREATE SEQUENCE email_code_versions;
CREATE TABLE email_codes (
    key text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE TABLE counters (
    key text COLLATE "C" PRIMARY KEY,
    count integer NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX counters_expiry ON counters (expires_at);

-- Sessions, sign-ins in progress, flash messages.
CREATE TABLE sessions (
    hash text COLLATE "C" PRIMARY KEY,
    user_id text,
    expires_at bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE flows (
    id text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE upstream_states (
    state_hash text COLLATE "C" PRIMARY KEY,
    flow_id text COLLATE "C" NOT NULL
);
CREATE INDEX upstream_states_flow ON upstream_states (flow_id);
CREATE TABLE flashes (
    id text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX flashes_expiry ON flashes (expires_at);

-- Codes, grants, refresh tokens.
CREATE TABLE codes (
    hash text COLLATE "C" PRIMARY KEY,
    redeemed_by text,
    expires_at bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE INDEX codes_expiry ON codes (expires_at);
CREATE TABLE grants (
    id text COLLATE "C" PRIMARY KEY,
    user_id text,
    session text,
    revoked boolean NOT NULL,
    offline boolean NOT NULL,
    expires_at bigint NOT NULL,
    value jsonb NOT NULL
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_session ON grants (session);
CREATE INDEX grants_expiry ON grants (expires_at);
CREATE TABLE refresh_tokens (
    hash text COLLATE "C" PRIMARY KEY,
    grant_id text NOT NULL,
    used boolean NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Keys, server secrets, the audit trail.
CREATE TABLE signing_keys (
    kid text COLLATE "C" PRIMARY KEY,
    alg text NOT NULL,
    pkcs8_der bytea NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE secrets (
    name text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE audit_events (
    id text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL
);
