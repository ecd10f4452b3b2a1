-- Domains an organization claims, proven by a DNS TXT record. Times are Unix milliseconds (UTC).

CREATE TABLE domains (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs (id),
    domain              TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'lapsed', 'expired')),
    token               TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    token_issued_at     BIGINT NOT NULL,
    verified_at         BIGINT NULL,
    last_checked_at     BIGINT NULL,
    last_check_result   TEXT NULL,
    last_check_message  TEXT NULL,
    record_missing_since BIGINT NULL,
    next_check_at       BIGINT NOT NULL,
    claimed_until       BIGINT NULL,
    updated_at          BIGINT NOT NULL
);
-- An org lists a domain once.
CREATE UNIQUE INDEX domains_org_domain ON domains (org_id, domain);
-- A domain is verified by at most one org at a time (DESIGN rule 2), whatever the code does.
CREATE UNIQUE INDEX domains_verified_once ON domains (domain) WHERE status = 'verified';
CREATE INDEX domains_due ON domains (next_check_at);
