-- Single Logout and back-channel logout.
--
-- Every browser sign-in has a sign-in id (the OpenID Connect `sid`): its sessions carry it, so
-- ending one sign-in deletes exactly its sessions; product grants made within it carry it too.

ALTER TABLE sessions ADD COLUMN sign_in_id TEXT NULL;
CREATE INDEX sessions_sign_in ON sessions (sign_in_id);

-- The IdP's SingleLogoutService (HTTP-Redirect): where LogoutRequests go, and where
-- LogoutResponses go when the IdP names a separate ResponseLocation.
ALTER TABLE saml_connections ADD COLUMN slo_url TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN slo_response_url TEXT NULL;

-- A sign-in through an IdP connection: what a LogoutRequest from that IdP names.
CREATE TABLE saml_sessions (
    sign_in_id         TEXT PRIMARY KEY,
    connection_id      TEXT NOT NULL REFERENCES saml_connections (id) ON DELETE CASCADE,
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    name_id            TEXT NOT NULL,
    name_id_format     TEXT NULL,
    name_qualifier     TEXT NULL,
    sp_name_qualifier  TEXT NULL,
    session_index      TEXT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    ended_at           BIGINT NULL
);
CREATE INDEX saml_sessions_subject ON saml_sessions (connection_id, name_id);
CREATE INDEX saml_sessions_expiry ON saml_sessions (expires_at);

-- A LogoutRequest this service sent, until its LogoutResponse arrives.
CREATE TABLE saml_logout_requests (
    id             TEXT PRIMARY KEY,
    connection_id  TEXT NOT NULL REFERENCES saml_connections (id) ON DELETE CASCADE,
    return_to      TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    answered_at    BIGINT NULL
);
CREATE INDEX saml_logout_requests_expiry ON saml_logout_requests (expires_at);

-- OpenID Connect Back-Channel Logout 1.0: where a product learns that a sign-in ended.
ALTER TABLE oidc_clients ADD COLUMN backchannel_logout_uri TEXT NULL;
ALTER TABLE oidc_codes ADD COLUMN sign_in_id TEXT NULL;
ALTER TABLE oidc_tokens ADD COLUMN sign_in_id TEXT NULL;
CREATE INDEX oidc_codes_sign_in ON oidc_codes (sign_in_id);
CREATE INDEX oidc_tokens_sign_in ON oidc_tokens (sign_in_id);

-- Logout tokens waiting to be delivered (retried with backoff, like the email outbox).
CREATE TABLE backchannel_logouts (
    id               TEXT PRIMARY KEY,
    client_id        TEXT NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    account_id       TEXT NOT NULL,
    sign_in_id       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    sent_at          BIGINT NULL,
    last_error       TEXT NULL
);
CREATE INDEX backchannel_logouts_due ON backchannel_logouts (status, next_attempt_at);
