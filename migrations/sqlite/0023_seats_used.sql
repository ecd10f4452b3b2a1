-- The seats an organization's managed accounts take, kept in its row: every INSERT, DELETE and
-- UPDATE of an account's kind, organization or status that moves a seat (whatever code or
-- process makes it) moves the count in the same transaction. Reading it is one row, however
-- large the organization; counting the accounts took time in proportion to its size.
-- A seat is taken by an active or suspended managed account; a deleted one frees it.
ALTER TABLE orgs ADD COLUMN seats_used INTEGER NOT NULL DEFAULT 0;

UPDATE orgs SET seats_used = (
    SELECT COUNT(*) FROM accounts a
    WHERE a.org_id = orgs.id AND a.kind = 'managed' AND a.status IN ('active', 'suspended'));

CREATE TRIGGER accounts_seat_taken AFTER INSERT ON accounts
FOR EACH ROW WHEN NEW.kind = 'managed' AND NEW.status IN ('active', 'suspended')
BEGIN
    UPDATE orgs SET seats_used = seats_used + 1 WHERE id = NEW.org_id;
END;

CREATE TRIGGER accounts_seat_freed AFTER DELETE ON accounts
FOR EACH ROW WHEN OLD.kind = 'managed' AND OLD.status IN ('active', 'suspended')
BEGIN
    UPDATE orgs SET seats_used = seats_used - 1 WHERE id = OLD.org_id;
END;

-- Only a change of the organization whose seat the row takes touches `orgs` (as on PostgreSQL).
CREATE TRIGGER accounts_seat_moved AFTER UPDATE OF kind, org_id, status ON accounts
FOR EACH ROW WHEN
    (CASE WHEN OLD.kind = 'managed' AND OLD.status IN ('active', 'suspended') THEN OLD.org_id END)
    IS NOT
    (CASE WHEN NEW.kind = 'managed' AND NEW.status IN ('active', 'suspended') THEN NEW.org_id END)
BEGIN
    UPDATE orgs SET seats_used = seats_used - 1
    WHERE id = (CASE WHEN OLD.kind = 'managed' AND OLD.status IN ('active', 'suspended') THEN OLD.org_id END);
    UPDATE orgs SET seats_used = seats_used + 1
    WHERE id = (CASE WHEN NEW.kind = 'managed' AND NEW.status IN ('active', 'suspended') THEN NEW.org_id END);
END;
