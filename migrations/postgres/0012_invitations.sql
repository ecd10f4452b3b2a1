-- Invitations: a Nulab account joins an organization only by accepting one. An invitation is
-- stored for an email address (whether or not an account uses it), its emailed link only as a
-- SHA-256 hash. `pending` until the invitee accepts or declines, an admin revokes it, or it is
-- past `expires_at` (then `expired` once the job sees it; resending makes it pending again).
-- Times are Unix milliseconds (UTC).

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    email        TEXT NOT NULL,
    email_norm   TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'expired', 'accepted', 'declined', 'revoked')),
    token_hash   TEXT NOT NULL UNIQUE,
    invited_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    decided_at   BIGINT NULL
);
-- At most one open (pending or expired) invitation per organization and address.
CREATE UNIQUE INDEX invitations_open ON invitations (org_id, email_norm) WHERE status IN ('pending', 'expired');
CREATE INDEX invitations_email ON invitations (email_norm, status);
CREATE INDEX invitations_due ON invitations (status, expires_at);
