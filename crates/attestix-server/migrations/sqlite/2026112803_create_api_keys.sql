-- API keys, stored as the SHA-256 digest of the key, never the key itself.
CREATE TABLE api_keys (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    principal     TEXT    NOT NULL,
    digest        BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
