-- SAML SSO: IdP connections of organizations, the AuthnRequests this server sent (bound to the
-- browser that started them), and the replay cache of accepted response and assertion IDs.

CREATE TABLE saml_connections (
    id                         TEXT PRIMARY KEY,
    org_id                     TEXT NOT NULL REFERENCES orgs (id),
    name                       TEXT NOT NULL,
    idp_entity_id              TEXT NOT NULL,
    sso_redirect_url           TEXT NULL,
    sso_post_url               TEXT NULL,
    certificates               TEXT NOT NULL,
    want_authn_requests_signed BIGINT NOT NULL,
    metadata_xml               TEXT NOT NULL,
    metadata_url               TEXT NULL,
    metadata_fetched_at        BIGINT NULL,
    metadata_error             TEXT NULL,
    next_refresh_at            BIGINT NULL,
    claimed_until              BIGINT NULL,
    email_attribute            TEXT NULL,
    allow_idp_initiated        BIGINT NOT NULL,
    sign_authn_requests        BIGINT NOT NULL,
    require_signed_assertions  BIGINT NOT NULL,
    allow_sha1                 BIGINT NOT NULL,
    clock_skew_seconds         BIGINT NOT NULL,
    domains                    TEXT NULL,
    expiry_warnings            TEXT NOT NULL,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE UNIQUE INDEX saml_connections_org_entity ON saml_connections (org_id, idp_entity_id);
CREATE INDEX saml_connections_refresh ON saml_connections (next_refresh_at);

CREATE TABLE saml_requests (
    id             TEXT PRIMARY KEY,
    connection_id  TEXT NOT NULL,
    binding_hash   TEXT NOT NULL,
    relay_token    TEXT NOT NULL UNIQUE,
    return_to      TEXT NOT NULL,
    is_test        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT NULL
);
CREATE INDEX saml_requests_expiry ON saml_requests (expires_at);

CREATE TABLE saml_replay (
    idp_entity_id  TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    PRIMARY KEY (idp_entity_id, message_id)
);
CREATE INDEX saml_replay_expiry ON saml_replay (expires_at);
