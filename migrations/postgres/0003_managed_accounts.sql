-- Managed accounts: password state, tombstones, per-org password policy, and a sort key on
-- memberships so member lists page through an index at any size.

ALTER TABLE accounts ADD COLUMN password_changed_at BIGINT NULL;
ALTER TABLE accounts ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN deleted_at BIGINT NULL;
CREATE INDEX accounts_org_kind_status ON accounts (org_id, kind, status);

ALTER TABLE memberships ADD COLUMN sort_key TEXT NOT NULL DEFAULT '';
UPDATE memberships SET sort_key = (SELECT a.email_norm FROM accounts a WHERE a.id = memberships.account_id);
CREATE INDEX memberships_org_sort ON memberships (org_id, sort_key, account_id);

CREATE TABLE password_policies (
    org_id                 TEXT PRIMARY KEY REFERENCES orgs (id),
    min_length             BIGINT NOT NULL,
    require_three_classes  BIGINT NOT NULL,
    reject_common          BIGINT NOT NULL,
    max_age_days           BIGINT NULL,
    password_sign_in       BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
