-- One row per (scope, key). Instants are Unix milliseconds supplied by the caller.
CREATE TABLE IF NOT EXISTS idempotency_records (
    scope            TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    fingerprint      BLOB    NOT NULL CHECK (length(fingerprint) = 32),
    state            TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    token            INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    -- How many times an in-flight reservation was taken over after its lease ended;
    -- `reserve` returns it to tell a takeover from a fresh reservation.
    takeovers        INTEGER NOT NULL DEFAULT 0,
    status           INTEGER,
    headers          BLOB,
    body             BLOB,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (scope, key),
    CHECK (state = 'in_flight' OR (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL))
);

-- The sweeper deletes by expiry; the index keeps that proportional to what expired.
CREATE INDEX IF NOT EXISTS idempotency_records_expires_at ON idempotency_records (expires_at);
