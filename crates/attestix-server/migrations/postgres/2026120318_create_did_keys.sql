-- DIDs the server created, with their private keys sealed under the data key
-- (src/data_key.rs): never in clear. `document` is the create response exactly as
-- returned (public material only). A keyed create's (scope, key) is its recovery
-- point, found through the unique constraint (DID keys are random, not derived).
CREATE TABLE did_keys (
    seq                     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    did                     TEXT    NOT NULL,
    owner                   TEXT    NOT NULL,
    method                  TEXT    NOT NULL,
    keypair_id              TEXT    NOT NULL UNIQUE,
    created_at_ms           BIGINT  NOT NULL,
    document                TEXT    NOT NULL,
    sealed_private_key      BYTEA   NOT NULL,
    idempotency_scope       TEXT,
    idempotency_key         TEXT,
    idempotency_fingerprint BYTEA,
    CONSTRAINT did_keys_owner_did UNIQUE (owner, did),
    CONSTRAINT did_keys_recovery_point UNIQUE (idempotency_scope, idempotency_key),
    CHECK ((idempotency_scope IS NULL) = (idempotency_key IS NULL))
);
