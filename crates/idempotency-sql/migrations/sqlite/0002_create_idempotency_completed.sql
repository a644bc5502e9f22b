-- Completed records of an `ExclusiveSqliteStore`, which keeps reservations in memory
-- and looks rows up through an in-memory index of their ids. So the table needs no
-- index on (scope, key): rows are appended in write order (`id`, the rowid), and the
-- only other index, on expiry, is appended to as well. A random (scope, key) index
-- cost every written record a page of its own in the write-ahead log.
-- (`SqliteStore` keeps using `idempotency_records`; a file is used by one or the other.)
CREATE TABLE IF NOT EXISTS idempotency_completed (
    id          INTEGER PRIMARY KEY,
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL CHECK (length(fingerprint) = 32),
    status      INTEGER NOT NULL,
    headers     BLOB    NOT NULL,
    body        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- The purge deletes by expiry; the index keeps that proportional to what expired.
CREATE INDEX IF NOT EXISTS idempotency_completed_expires_at ON idempotency_completed (expires_at);
