//! The statements of the DIDs the server created, written once for both dialects
//! (see `delegations.rs` for the approach).

use sqlx::{Database, Encode, QueryBuilder, Type};

/// The row holding a recovery point: seq, document, created_at_ms, fingerprint.
pub(crate) type HolderRow = (i64, String, i64, Option<Vec<u8>>);

/// The row holding the recovery point (`scope`, `key`).
pub(crate) fn find_holder<'a, DB>(scope: &'a str, key: &'a str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "SELECT seq, document, created_at_ms, idempotency_fingerprint FROM did_keys \
         WHERE idempotency_scope = ",
    );
    query
        .push_bind(scope)
        .push(" AND idempotency_key = ")
        .push_bind(key);
    query
}

/// Releases the recovery point of row `seq`, made under an idempotency record that
/// has expired, so the key can be used again.
pub(crate) fn clear_recovery<'a, DB>(seq: i64) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "UPDATE did_keys SET idempotency_scope = NULL, idempotency_key = NULL, \
         idempotency_fingerprint = NULL WHERE seq = ",
    );
    query.push_bind(seq);
    query
}

/// The DID and sealed private key of `owner`'s keypair `keypair_id`.
pub(crate) fn private_key<'a, DB>(owner: &'a str, keypair_id: &'a str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query =
        QueryBuilder::new("SELECT did, sealed_private_key FROM did_keys WHERE keypair_id = ");
    query
        .push_bind(keypair_id)
        .push(" AND owner = ")
        .push_bind(owner);
    query
}
