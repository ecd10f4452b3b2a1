-- An IdP-initiated SSO sign-in waiting for its browser to come back by a same-site request
-- (where the browser's own session is visible): single use, 5 minutes, found by the hash of
-- the handle in the browser's cookie. `grant_json` holds what completing it needs.

CREATE TABLE saml_pending_sign_ins (
    handle_hash    TEXT PRIMARY KEY,
    connection_id  TEXT NOT NULL REFERENCES saml_connections (id) ON DELETE CASCADE,
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    grant_json     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT NULL
);
CREATE INDEX saml_pending_sign_ins_expiry ON saml_pending_sign_ins (expires_at);
