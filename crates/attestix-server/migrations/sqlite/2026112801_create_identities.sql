-- Agent identities (UAITs). `seq` is the pagination cursor; `document` is the signed
-- JSON exactly as returned to the client. Instants are Unix milliseconds.
CREATE TABLE identities (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id          TEXT    NOT NULL UNIQUE,
    owner             TEXT    NOT NULL,
    source_protocol   TEXT    NOT NULL,
    revoked           INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    document          TEXT    NOT NULL,
    -- The recovery point: the (scope, key) of the idempotent request that created the
    -- row; NULL when it carried no Idempotency-Key or its record expired and was reused.
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    CONSTRAINT identities_recovery_point UNIQUE (idempotency_scope, idempotency_key),
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);

-- Listing is `owner = ? [AND source_protocol = ?] AND seq > ? ORDER BY seq`: one range
-- scan of either index.
CREATE INDEX identities_owner_seq ON identities (owner, seq);
CREATE INDEX identities_owner_protocol_seq ON identities (owner, source_protocol, seq);
