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
INSERT INTO audit_keys (name, value) VALUES ('cursor', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

-- Events never change, except that the chain columns of an event written before this schema
-- migration are filled once (the server seals such events at start). Deleting needs a
-- checkpoint at or after the event in its chain: retention writes one first.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.hash IS NULL AND (NEW.id, NEW.org_id, NEW.occurred_at, NEW.action, NEW.actor_type,
            NEW.actor_id, NEW.actor_label, NEW.target_type, NEW.target_id, NEW.ip, NEW.user_agent,
            NEW.details) IS NOT DISTINCT FROM (OLD.id, OLD.org_id, OLD.occurred_at, OLD.action,
            OLD.actor_type, OLD.actor_id, OLD.actor_label, OLD.target_type, OLD.target_id, OLD.ip,
            OLD.user_agent, OLD.details) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit events are append-only';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.chain = OLD.chain AND c.seq >= OLD.seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (retention deletes behind a checkpoint)';
END;
$$;
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
