-- Signing in to the products: OpenID Connect clients (products), authorization requests waiting
-- for a sign-in, single-use codes, access and refresh tokens (stored only as SHA-256 hashes),
-- TOTP second factors, and each organization's session lifetime. Times are Unix ms (UTC).

CREATE TABLE oidc_clients (
    id                         TEXT PRIMARY KEY,
    name                       TEXT NOT NULL UNIQUE,
    secret_hash                TEXT NOT NULL,
    redirect_uris              TEXT NOT NULL,
    post_logout_redirect_uris  TEXT NOT NULL,
    created_at                 BIGINT NOT NULL,
    secret_rotated_at          BIGINT NOT NULL
);

-- An authorization request parked while the browser signs in (possibly through an IdP, which
-- starts a new browser session): the resume link carries a random handle, stored hashed.
CREATE TABLE oidc_requests (
    handle_hash     TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    state           TEXT NULL,
    nonce           TEXT NULL,
    code_challenge  TEXT NOT NULL,
    login_after     BIGINT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT NULL
);
CREATE INDEX oidc_requests_expiry ON oidc_requests (expires_at);

-- A code is also the grant: every token issued from it (and its refreshed successors) carries
-- its id, so a reused code revokes them all.
CREATE TABLE oidc_codes (
    id                TEXT PRIMARY KEY,
    code_hash         TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    redirect_uri      TEXT NOT NULL,
    scope             TEXT NOT NULL,
    nonce             TEXT NULL,
    code_challenge    TEXT NOT NULL,
    auth_time         BIGINT NOT NULL,
    amr               TEXT NOT NULL,
    grant_expires_at  BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    used_at           BIGINT NULL
);
CREATE INDEX oidc_codes_account ON oidc_codes (account_id);

CREATE TABLE oidc_tokens (
    token_hash  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    scope       TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    amr         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NULL,
    revoked_at  BIGINT NULL
);
CREATE INDEX oidc_tokens_account ON oidc_tokens (account_id);
CREATE INDEX oidc_tokens_grant ON oidc_tokens (grant_id);

-- The secret must be readable to check codes, so it cannot be hashed; last_step makes each
-- code usable once.
CREATE TABLE totp_credentials (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id),
    secret        TEXT NOT NULL,
    confirmed_at  BIGINT NULL,
    last_step     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE session_settings (
    org_id          TEXT PRIMARY KEY REFERENCES orgs (id),
    lifetime_hours  BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
