-- API tokens with limits, and secrets at rest.
--
-- Each API token has scopes (space-separated words of `read members domains sso billing audit`),
-- an expiry, and says whether the operator made it (then it has no creating admin). Tokens that
-- existed before get every scope and expire 90 days from this schema migration; those without a
-- creating admin were made by the operator's command line.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read members domains sso billing audit';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN operator BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN revoked_reason TEXT NULL;
UPDATE api_tokens SET expires_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 7776000000;
UPDATE api_tokens SET operator = 1 WHERE created_by IS NULL;
CREATE INDEX api_tokens_creator ON api_tokens (created_by, org_id);

-- Session ids are stored as their SHA-256 hashes from now on; sessions stored under their raw
-- ids cannot be found by hash, so they end here (everyone signs in again once).
DELETE FROM sessions;
