-- One row per (scope, key). Instants are Unix milliseconds supplied by the caller.
CREATE TABLE IF NOT EXISTS idempotency_records (
    scope            TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    fingerprint      BYTEA   NOT NULL CHECK (octet_length(fingerprint) = 32),
    state            TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    token            BIGINT  NOT NULL,
    lease_expires_at BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    -- How many times an in-flight reservation was taken over after its lease ended;
    -- `reserve` returns it to tell a takeover from a fresh reservation.
    takeovers        INTEGER NOT NULL DEFAULT 0,
    status           INTEGER,
    headers          BYTEA,
    body             BYTEA,
    created_at       BIGINT  NOT NULL,
    PRIMARY KEY (scope, key),
    CHECK (state = 'in_flight' OR (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL))
);

-- The sweeper deletes by expiry; the index keeps that proportional to what expired.
CREATE INDEX IF NOT EXISTS idempotency_records_expires_at ON idempotency_records (expires_at);
