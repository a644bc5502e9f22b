-- UCAN delegations. `document` is the delegation record exactly as returned (the
-- token itself is never stored, as in the reference: a retried create re-signs it
-- from the record, and Ed25519 signatures are deterministic). `jti` is the id; for a
-- create under an Idempotency-Key it is derived from the key (src/recovery.rs), so it
-- is also the recovery point. Instants are Unix milliseconds.
CREATE TABLE delegations (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    jti                     TEXT    NOT NULL UNIQUE,
    owner                   TEXT    NOT NULL,
    issuer                  TEXT    NOT NULL,
    audience                TEXT    NOT NULL,
    revoked                 INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at_ms           INTEGER NOT NULL,
    expires_at_ms           INTEGER NOT NULL,
    document                TEXT    NOT NULL,
    idempotency_scope       TEXT,
    idempotency_key         TEXT,
    idempotency_fingerprint BLOB,
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);

-- Listing is `owner = ? [AND issuer = ? | AND audience = ? | AND (issuer = ? OR
-- audience = ?)] AND seq > ? ORDER BY seq`.
CREATE INDEX delegations_owner_seq ON delegations (owner, seq);
CREATE INDEX delegations_owner_issuer_seq ON delegations (owner, issuer, seq);
CREATE INDEX delegations_owner_audience_seq ON delegations (owner, audience, seq);
