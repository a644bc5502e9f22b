//! The statements of the DIDs the server created, written once for both dialects
//! (see `delegations.rs` for the approach).

use std::sync::LazyLock;

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::records::{Stmt, Value};
use super::NewDid;

/// The row holding a recovery point: seq, document, created_at_ms, fingerprint.
pub(crate) type HolderRow = (i64, String, i64, Option<Vec<u8>>);

/// The columns of a DID insert, in the order [`values`] gives them.
pub(crate) const COLUMNS: [&str; 10] = [
    "did",
    "owner",
    "method",
    "keypair_id",
    "created_at_ms",
    "document",
    "sealed_private_key",
    "idempotency_scope",
    "idempotency_key",
    "idempotency_fingerprint",
];

/// The values of `did`'s insert, in the order of [`COLUMNS`].
pub(crate) fn values(did: &NewDid) -> Vec<Value> {
    let recovery = did.recovery.as_ref();
    vec![
        Value::from(did.did.as_str()),
        did.owner.as_str().into(),
        did.method.as_str().into(),
        did.keypair_id.as_str().into(),
        did.created_at_ms.into(),
        did.document.as_str().into(),
        did.sealed_private_key.as_slice().into(),
        recovery.map(|point| point.scope.as_str()).into(),
        recovery.map(|point| point.key.as_str()).into(),
        recovery.map(|point| point.fingerprint.as_slice()).into(),
    ]
}

static INSERT_HEAD: LazyLock<String> =
    LazyLock::new(|| format!("INSERT INTO did_keys ({}) VALUES (", COLUMNS.join(", ")));

/// The insert of `did`, which does nothing when its DID (for its owner), keypair id
/// or recovery point is taken.
pub(crate) fn insert(did: &NewDid) -> Stmt {
    Stmt::new(INSERT_HEAD.as_str())
        .bind_list(values(did))
        .sql(") ON CONFLICT DO NOTHING")
}

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
