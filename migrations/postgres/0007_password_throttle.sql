-- Wrong passwords per account: after 10 within 15 minutes, password sign-in pauses for 15
-- minutes. Times are Unix milliseconds (UTC). A row exists only while failures are counted.

CREATE TABLE password_failures (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id),
    failures      BIGINT NOT NULL,
    first_at      BIGINT NOT NULL,
    paused_until  BIGINT NULL
);
