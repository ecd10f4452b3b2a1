-- Migration of Nulab accounts into managed accounts: one request per (org, account) at a time,
-- its emailed consent links (stored only as SHA-256 hashes), its history, and each org's link
-- lifetime. Times are Unix milliseconds (UTC).

CREATE TABLE migration_requests (
    id                       TEXT PRIMARY KEY,
    org_id                   TEXT NOT NULL REFERENCES orgs (id),
    account_id               TEXT NOT NULL REFERENCES accounts (id),
    email                    TEXT NOT NULL,
    requested_by             TEXT NOT NULL,
    status                   TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'declined', 'expired', 'cancelled')),
    failure                  TEXT NULL,
    token_hash               TEXT NOT NULL UNIQUE,
    reminder_token_hash      TEXT NULL UNIQUE,
    requested_at             BIGINT NOT NULL,
    emailed_at               BIGINT NULL,
    reminded_at              BIGINT NULL,
    opened_at                BIGINT NULL,
    decided_at               BIGINT NULL,
    expires_at               BIGINT NOT NULL,
    password_failures        BIGINT NOT NULL DEFAULT 0,
    password_failures_since  BIGINT NULL,
    updated_at               BIGINT NOT NULL
);
-- At most one pending request per account and org, whatever the code does; pending requests
-- reserve seats.
CREATE UNIQUE INDEX migration_requests_one_pending ON migration_requests (org_id, account_id) WHERE status = 'pending';
CREATE INDEX migration_requests_org_status ON migration_requests (org_id, status, requested_at);
CREATE INDEX migration_requests_due ON migration_requests (status, expires_at);
CREATE INDEX migration_requests_account ON migration_requests (account_id, status);

CREATE TABLE migration_settings (
    org_id      TEXT PRIMARY KEY REFERENCES orgs (id),
    link_days   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
