-- Email ownership: only a confirmed address (or a managed account's, which its organization
-- vouches for) is unique among live accounts. Any number of unconfirmed sign-ups may name the
-- same address and none of them blocks anyone; an unconfirmed account whose address another
-- account confirmed (or an organization took for a managed account) loses its claim at that
-- moment (`email_released_at`): the address no longer finds it.
DROP INDEX accounts_email_live;
CREATE UNIQUE INDEX accounts_email_claimed ON accounts (email_norm)
    WHERE status <> 'deleted' AND (email_verified_at IS NOT NULL OR kind = 'managed');
CREATE INDEX accounts_email_norm ON accounts (email_norm);
ALTER TABLE accounts ADD COLUMN email_released_at BIGINT NULL;

-- Secrets at rest: a message that holds a single-use link is stored twice until it is
-- delivered (or given up): `body_*` as it goes out, `kept_*` with the link removed, which
-- replaces it then. Messages of those kinds delivered before this schema migration lose their
-- bodies (kind, recipient, subject and times stay).
ALTER TABLE outbox ADD COLUMN kept_text TEXT NULL;
ALTER TABLE outbox ADD COLUMN kept_html TEXT NULL;
ALTER TABLE outbox ADD COLUMN redacted_at BIGINT NULL;
UPDATE outbox
   SET body_text = '[removed: this message held a single-use link]',
       body_html = '<p>[removed: this message held a single-use link]</p>',
       redacted_at = created_at
 WHERE status IN ('sent', 'failed')
   AND kind IN ('account.verify_email', 'managed_account.activation',
                'managed_account.password_reset', 'member.invitation',
                'migration.requested', 'migration.reminder');
