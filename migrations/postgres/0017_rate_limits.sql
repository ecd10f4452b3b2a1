-- Rate limits shared by every instance: one row per (limit, key) while it counts or blocks.
-- `hits` counts within the window that began at `window_start`; going over the limit's rate
-- sets `blocked_until` and adds a strike (each block in a row lasts twice as long, up to the
-- configured maximum); strikes are forgotten a day after the last block. Times are Unix
-- milliseconds (UTC). The keys are client addresses (an IPv6 address by its /64), SHA-256
-- hashes of email addresses, product client ids and organization ids (for alerts).
-- The per-account password pause of schema migration 7 is one of these limits now.

CREATE TABLE rate_limits (
    bucket         TEXT NOT NULL,
    key            TEXT NOT NULL,
    hits           BIGINT NOT NULL,
    window_start   BIGINT NOT NULL,
    strikes        BIGINT NOT NULL DEFAULT 0,
    blocked_until  BIGINT NULL,
    tripped_at     BIGINT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE INDEX rate_limits_stale ON rate_limits (window_start);

DROP TABLE password_failures;
