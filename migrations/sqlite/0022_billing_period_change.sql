-- A change of billing period (monthly or yearly) asked for by an admin: it applies when the
-- current period ends, like a reduction of seats, and the next invoice is for the new period.
ALTER TABLE subscriptions ADD COLUMN scheduled_period TEXT NULL
    CHECK (scheduled_period IN ('monthly', 'yearly'));
