-- Verifiable credentials. `seq` is the pagination cursor; `document` is the signed
-- JSON exactly as returned to the client; `created_at_ms` is the issuance instant.
-- Instants are Unix milliseconds.
CREATE TABLE credentials (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    credential_id     TEXT    NOT NULL UNIQUE,
    owner             TEXT    NOT NULL,
    subject_id        TEXT    NOT NULL,
    credential_type   TEXT    NOT NULL,
    revoked           INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    document          TEXT    NOT NULL,
    -- The recovery point, as for identities.
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    CONSTRAINT credentials_recovery_point UNIQUE (idempotency_scope, idempotency_key),
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);

-- Listing is `owner = ? [AND subject_id = ? | AND credential_type = ?] AND seq > ?
-- ORDER BY seq`: one range scan of one of these indexes.
CREATE INDEX credentials_owner_seq ON credentials (owner, seq);
CREATE INDEX credentials_owner_subject_seq ON credentials (owner, subject_id, seq);
CREATE INDEX credentials_owner_type_seq ON credentials (owner, credential_type, seq);
