-- The audit log as a product: each event joins its chain (one per organization, '' for events
-- of no organization) with a sequence number, the previous event's hash and its own SHA-256;
-- the head of each chain; retention checkpoints (the last pruned event of a chain), which are
-- the only way events may be deleted; retention and webhook settings per organization; the
-- webhook delivery log; the key that signs the viewer's cursors. Indexes serve each filter of
-- the viewer within one chain, newest first.

ALTER TABLE audit_events ADD COLUMN chain TEXT NULL;
ALTER TABLE audit_events ADD COLUMN seq BIGINT NULL;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT NULL;
ALTER TABLE audit_events ADD COLUMN hash TEXT NULL;

DROP INDEX audit_events_org_time;
CREATE UNIQUE INDEX audit_events_chain_seq ON audit_events (chain, seq);
CREATE INDEX audit_events_chain_time ON audit_events (chain, occurred_at, seq);
CREATE INDEX audit_events_chain_action ON audit_events (chain, action, seq);
CREATE INDEX audit_events_chain_actor ON audit_events (chain, actor_id, seq);
CREATE INDEX audit_events_chain_actor_label ON audit_events (chain, actor_label, seq);
CREATE INDEX audit_events_chain_target ON audit_events (chain, target_id, seq);
CREATE INDEX audit_events_chain_ip ON audit_events (chain, ip, seq);

CREATE TABLE audit_chain_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    pruned      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE TABLE audit_settings (
    org_id          TEXT PRIMARY KEY REFERENCES orgs(id),
    retention_days  BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE audit_webhooks (
    org_id           TEXT PRIMARY KEY REFERENCES orgs(id),
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    delivered_seq    BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT NULL,
    last_error       TEXT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE audit_webhook_deliveries (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('event', 'test')),
    seq          BIGINT NULL,
    event_id     TEXT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    status_code  BIGINT NULL,
    error        TEXT NULL,
    attempted_at BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL
);
CREATE INDEX audit_webhook_deliveries_org ON audit_webhook_deliveries (org_id, attempted_at);

CREATE TABLE audit_keys (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
INSERT INTO audit_keys (name, value) VALUES ('cursor', lower(hex(randomblob(32))));

-- Events never change, except that the chain columns of an event written before this schema
-- migration are filled once (the server seals such events at start). Deleting needs a
-- checkpoint at or after the event in its chain: retention writes one first.
DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN OLD.hash IS NOT NULL
  OR NEW.id IS NOT OLD.id OR NEW.org_id IS NOT OLD.org_id
  OR NEW.occurred_at IS NOT OLD.occurred_at OR NEW.action IS NOT OLD.action
  OR NEW.actor_type IS NOT OLD.actor_type OR NEW.actor_id IS NOT OLD.actor_id
  OR NEW.actor_label IS NOT OLD.actor_label OR NEW.target_type IS NOT OLD.target_type
  OR NEW.target_id IS NOT OLD.target_id OR NEW.ip IS NOT OLD.ip
  OR NEW.user_agent IS NOT OLD.user_agent OR NEW.details IS NOT OLD.details
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.chain = OLD.chain AND c.seq >= OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only (retention deletes behind a checkpoint)'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
