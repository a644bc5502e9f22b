-- API keys, stored as the SHA-256 digest of the key, never the key itself.
CREATE TABLE api_keys (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT   NOT NULL UNIQUE,
    principal     TEXT   NOT NULL,
    digest        BYTEA  NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
