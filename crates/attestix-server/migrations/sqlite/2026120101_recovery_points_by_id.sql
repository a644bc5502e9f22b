-- Recovery points are now found through the resource's own id, which is derived from
-- (scope, key, retention window) for keyed creates (src/recovery.rs). The unique
-- constraint on (idempotency_scope, idempotency_key) goes: its entries are random, so
-- it cost every keyed insert a page write of its own. The columns stay, as the record
-- of which request made the row. SQLite cannot drop a table constraint, so each table
-- is rebuilt with the same rows and sequence numbers (cursors stay valid).

CREATE TABLE identities_rebuilt (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id          TEXT    NOT NULL UNIQUE,
    owner             TEXT    NOT NULL,
    source_protocol   TEXT    NOT NULL,
    revoked           INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    document          TEXT    NOT NULL,
    -- The (scope, key) of the idempotent request that created the row; NULL when it
    -- carried no Idempotency-Key.
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);
INSERT INTO identities_rebuilt (seq, agent_id, owner, source_protocol, revoked,
    created_at_ms, expires_at_ms, document, idempotency_scope, idempotency_key)
SELECT seq, agent_id, owner, source_protocol, revoked,
    created_at_ms, expires_at_ms, document, idempotency_scope, idempotency_key
FROM identities ORDER BY seq;
DROP TABLE identities;
ALTER TABLE identities_rebuilt RENAME TO identities;
CREATE INDEX identities_owner_seq ON identities (owner, seq);
CREATE INDEX identities_owner_protocol_seq ON identities (owner, source_protocol, seq);

CREATE TABLE credentials_rebuilt (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    credential_id     TEXT    NOT NULL UNIQUE,
    owner             TEXT    NOT NULL,
    subject_id        TEXT    NOT NULL,
    credential_type   TEXT    NOT NULL,
    revoked           INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    document          TEXT    NOT NULL,
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);
INSERT INTO credentials_rebuilt (seq, credential_id, owner, subject_id, credential_type,
    revoked, created_at_ms, expires_at_ms, document, idempotency_scope, idempotency_key)
SELECT seq, credential_id, owner, subject_id, credential_type,
    revoked, created_at_ms, expires_at_ms, document, idempotency_scope, idempotency_key
FROM credentials ORDER BY seq;
DROP TABLE credentials;
ALTER TABLE credentials_rebuilt RENAME TO credentials;
CREATE INDEX credentials_owner_seq ON credentials (owner, seq);
CREATE INDEX credentials_owner_subject_seq ON credentials (owner, subject_id, seq);
CREATE INDEX credentials_owner_type_seq ON credentials (owner, credential_type, seq);
