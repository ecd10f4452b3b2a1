-- The seats an organization's managed accounts take, kept in its row: every INSERT, DELETE and
-- UPDATE of an account's kind, organization or status that moves a seat (whatever code or
-- instance makes it) moves the count in the same transaction. Reading it is one row, however
-- large the organization; counting the accounts took time in proportion to its size.
-- A seat is taken by an active or suspended managed account; a deleted one frees it.
ALTER TABLE orgs ADD COLUMN seats_used BIGINT NOT NULL DEFAULT 0;

UPDATE orgs SET seats_used = c.n
FROM (SELECT org_id, COUNT(*) AS n FROM accounts
      WHERE kind = 'managed' AND status IN ('active', 'suspended') AND org_id IS NOT NULL
      GROUP BY org_id) c
WHERE c.org_id = orgs.id;

-- Inserts and deletes are counted once a statement, an organization's row updated once however
-- many rows the statement has: a row updated again and again in one transaction leaves a
-- version each time that the next update walks past, so one update a row made a bulk insert of
-- 100,000 accounts into one organization take minutes instead of a second.
CREATE FUNCTION accounts_seats_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orgs
    SET seats_used = orgs.seats_used + CASE WHEN TG_OP = 'INSERT' THEN c.n ELSE -c.n END
    FROM (SELECT org_id, COUNT(*) AS n FROM changed
          WHERE kind = 'managed' AND status IN ('active', 'suspended') AND org_id IS NOT NULL
          GROUP BY org_id) c
    WHERE c.org_id = orgs.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER accounts_seats_added AFTER INSERT ON accounts
REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION accounts_seats_counted();
CREATE TRIGGER accounts_seats_removed AFTER DELETE ON accounts
REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION accounts_seats_counted();

-- Updates are counted a row at a time, and only the rows that move a seat call the function:
-- a statement trigger on UPDATE could not name its columns (PostgreSQL allows no column list
-- with transition tables), so it would run for every UPDATE of `accounts`, each sign-in's
-- last sign-in time included. A change between active and suspended, of a self-managed
-- account, or of any other column touches no organization's row and takes no lock on it.
CREATE FUNCTION accounts_seat_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.kind = 'managed' AND OLD.status IN ('active', 'suspended') THEN
        UPDATE orgs SET seats_used = seats_used - 1 WHERE id = OLD.org_id;
    END IF;
    IF NEW.kind = 'managed' AND NEW.status IN ('active', 'suspended') THEN
        UPDATE orgs SET seats_used = seats_used + 1 WHERE id = NEW.org_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER accounts_seat_moved AFTER UPDATE OF kind, org_id, status ON accounts
FOR EACH ROW WHEN (
    (CASE WHEN OLD.kind = 'managed' AND OLD.status IN ('active', 'suspended') THEN OLD.org_id END)
    IS DISTINCT FROM
    (CASE WHEN NEW.kind = 'managed' AND NEW.status IN ('active', 'suspended') THEN NEW.org_id END))
EXECUTE FUNCTION accounts_seat_moved();
