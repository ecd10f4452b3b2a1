-- One stamp ends every sign-in of an account: browser sessions and OIDC grants (codes and
-- tokens) whose sign-in happened before it are no longer accepted. Unix milliseconds (UTC);
-- 0 means no sign-in was ever ended this way.

ALTER TABLE accounts ADD COLUMN sessions_valid_after BIGINT NOT NULL DEFAULT 0;
