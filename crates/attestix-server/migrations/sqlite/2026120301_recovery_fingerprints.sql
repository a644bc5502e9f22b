-- The fingerprint of the request that made a keyed resource, beside its recovery
-- point: a later request under the same key recovers the resource only if it is the
-- same request. NULL for rows without a key, and for rows written before this
-- column, which are never recovered (a reuse of their key within the retention is
-- refused as a reuse).
ALTER TABLE identities ADD COLUMN idempotency_fingerprint BLOB;
ALTER TABLE credentials ADD COLUMN idempotency_fingerprint BLOB;
