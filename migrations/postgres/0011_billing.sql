-- Billing per managed account: each organization's subscription (seats stay in orgs.seats), the
-- prorated charges of seat additions, invoices and credit notes with their lines (never changed
-- once written: triggers refuse it), the per-deployment invoice numbering, the idempotency keys
-- of the billing API, a daily record of seats and managed accounts for the billing chart, and
-- the transition of organizations whose managed accounts predate domain verification.
-- Money is in integer minor units of the configured currency; times are Unix milliseconds (UTC).

CREATE TABLE subscriptions (
    org_id                 TEXT PRIMARY KEY REFERENCES orgs (id),
    status                 TEXT NOT NULL CHECK (status IN ('trial', 'active', 'past_due', 'cancelled')),
    period                 TEXT NOT NULL CHECK (period IN ('monthly', 'yearly')),
    anchor_day             BIGINT NOT NULL,
    period_start           BIGINT NOT NULL,
    trial_ends_at          BIGINT NULL,
    scheduled_seats        BIGINT NULL,
    invoiced_period_start  BIGINT NULL,
    legacy_org_wide        BIGINT NOT NULL DEFAULT 0,
    legacy_seats           BIGINT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX subscriptions_due ON subscriptions (status, period_start);

CREATE TABLE billing_charges (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    seats_from     BIGINT NOT NULL,
    seats_to       BIGINT NOT NULL,
    period_start   BIGINT NOT NULL,
    period_end     BIGINT NOT NULL,
    days_charged   BIGINT NOT NULL,
    period_days    BIGINT NOT NULL,
    unit_price     BIGINT NOT NULL,
    amount         BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    invoice_id     TEXT NULL
);
CREATE INDEX billing_charges_open ON billing_charges (org_id, invoice_id, created_at);

CREATE TABLE billing_counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO billing_counters (name, value) VALUES ('invoice', 0), ('credit_note', 0);

CREATE TABLE invoices (
    id             TEXT PRIMARY KEY,
    number         TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    org_name       TEXT NOT NULL,
    corrects       TEXT NULL REFERENCES invoices (id),
    period         TEXT NOT NULL,
    period_start   BIGINT NOT NULL,
    period_end     BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    subtotal       BIGINT NOT NULL,
    tax_basis_points BIGINT NOT NULL,
    tax            BIGINT NOT NULL,
    total          BIGINT NOT NULL,
    note           TEXT NULL,
    issued_at      BIGINT NOT NULL
);
-- One invoice per organization and period start: a second instance of the job cannot write it twice.
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (org_id, period_start) WHERE kind = 'invoice';
CREATE INDEX invoices_org ON invoices (org_id, issued_at);

CREATE TABLE invoice_lines (
    invoice_id   TEXT NOT NULL REFERENCES invoices (id),
    position     BIGINT NOT NULL,
    description  TEXT NOT NULL,
    quantity     BIGINT NOT NULL,
    unit_price   BIGINT NOT NULL,
    amount       BIGINT NOT NULL,
    source       TEXT NOT NULL,
    PRIMARY KEY (invoice_id, position)
);

CREATE FUNCTION invoices_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'invoices are immutable: issue a credit note';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_refuse_change();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoices_refuse_change();

CREATE TABLE billing_idempotency (
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

CREATE TABLE billing_usage (
    org_id   TEXT NOT NULL REFERENCES orgs (id),
    day      BIGINT NOT NULL,
    seats    BIGINT NOT NULL,
    managed  BIGINT NOT NULL,
    PRIMARY KEY (org_id, day)
);

ALTER TABLE orgs ADD COLUMN legacy_imported_at BIGINT NULL;
ALTER TABLE orgs ADD COLUMN legacy_domains_until BIGINT NULL;
ALTER TABLE orgs ADD COLUMN legacy_reminded_at BIGINT NULL;
