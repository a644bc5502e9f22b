-- Agent identities (UAITs). `seq` is the pagination cursor; `document` is the signed
-- JSON exactly as returned to the client (TEXT, not JSONB, which would reorder keys).
-- Instants are Unix milliseconds.
CREATE TABLE identities (
    seq               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id          TEXT    NOT NULL UNIQUE,
    owner             TEXT    NOT NULL,
    source_protocol   TEXT    NOT NULL,
    revoked           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms     BIGINT  NOT NULL,
    expires_at_ms     BIGINT  NOT NULL,
    document          TEXT    NOT NULL,
    -- The recovery point: the (scope, key) of the idempotent request that created the
    -- row; NULL when it carried no Idempotency-Key or its record expired and was reused.
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    CONSTRAINT identities_recovery_point UNIQUE (idempotency_scope, idempotency_key),
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);

-- Listing is `owner = $1 [AND source_protocol = $2] AND seq > $3 ORDER BY seq`: one
-- range scan of either index.
CREATE INDEX identities_owner_seq ON identities (owner, seq);
CREATE INDEX identities_owner_protocol_seq ON identities (owner, source_protocol, seq);
