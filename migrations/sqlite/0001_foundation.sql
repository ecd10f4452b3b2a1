-- Foundation: accounts, organizations, memberships, email tokens, API tokens, sessions,
-- audit events and the email outbox. Times are Unix milliseconds (UTC); ids are text.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    seats       BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE accounts (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL,
    email_norm         TEXT NOT NULL,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('nulab', 'managed')),
    org_id             TEXT NULL REFERENCES orgs (id),
    status             TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    password_hash      TEXT NULL,
    email_verified_at  BIGINT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    last_sign_in_at    BIGINT NULL
);
-- A deleted account keeps its row (its id stays attributable); its email may be reused.
CREATE UNIQUE INDEX accounts_email_live ON accounts (email_norm) WHERE status <> 'deleted';
CREATE INDEX accounts_org ON accounts (org_id);

CREATE TABLE memberships (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, account_id)
);
CREATE INDEX memberships_account ON memberships (account_id);

CREATE TABLE email_tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    purpose     TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NULL
);
CREATE INDEX email_tokens_account ON email_tokens (account_id, purpose);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_by    TEXT NULL REFERENCES accounts (id),
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NULL,
    revoked_at    BIGINT NULL
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NULL,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NULL,
    occurred_at  BIGINT NOT NULL,
    action       TEXT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NULL,
    actor_label  TEXT NULL,
    target_type  TEXT NULL,
    target_id    TEXT NULL,
    ip           TEXT NULL,
    user_agent   TEXT NULL,
    details      TEXT NOT NULL
);
CREATE INDEX audit_events_org_time ON audit_events (org_id, occurred_at, id);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    to_addr          TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT NULL,
    sent_at          BIGINT NULL,
    last_error       TEXT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
