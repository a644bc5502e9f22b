//! The delegation statements, written once for both dialects: each is built with a
//! [`QueryBuilder`], which writes each dialect's placeholders, and binds booleans
//! rather than writing their literals (SQLite's `1`, PostgreSQL's `TRUE`). The
//! backends only execute them.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{
    judge_holder, DelegationFilter, DelegationRole, Holder, Inserted, NewDelegation, StorageError,
};

/// The row at a `jti` a keyed insert wanted: document, created_at_ms, scope, key,
/// fingerprint.
pub(crate) type HolderRow = (String, i64, Option<String>, Option<String>, Option<Vec<u8>>);

/// `SELECT` of the row at a `jti` (bind the `jti`).
pub(crate) const FIND_HOLDER: &str = "SELECT document, created_at_ms, idempotency_scope, \
     idempotency_key, idempotency_fingerprint FROM delegations WHERE jti = ";

/// What an insert that found its `jti` taken by `holder` amounts to.
pub(crate) fn resolve(
    holder: Option<HolderRow>,
    delegation: &NewDelegation,
) -> Result<Inserted, StorageError> {
    let (Some(recovery), Some((document, created_at_ms, scope, key, fingerprint))) =
        (delegation.recovery.as_ref(), holder)
    else {
        return Err(StorageError::Duplicate);
    };
    match judge_holder(
        recovery,
        scope.as_deref(),
        key.as_deref(),
        created_at_ms,
        fingerprint.as_deref(),
    ) {
        Some(Holder::SameRequest) => Ok(Inserted::Recovered(document)),
        Some(Holder::OtherRequest) => Ok(Inserted::KeyReused),
        // The key's earlier use, older than the retention, or a collision: the caller
        // tries the key's next id.
        Some(Holder::Expired) | None => Err(StorageError::Duplicate),
    }
}

/// `SELECT seq, document` of `owner`'s delegations passing `filter`, without the
/// paging (the backend's `list` adds it).
pub(crate) fn list<'a, DB>(owner: &'a str, filter: &'a DelegationFilter) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT seq, document FROM delegations WHERE owner = ");
    query.push_bind(owner);
    if let Some(agent) = filter.agent_id.as_deref() {
        match filter.role {
            DelegationRole::Issuer => {
                query.push(" AND issuer = ").push_bind(agent);
            }
            DelegationRole::Audience => {
                query.push(" AND audience = ").push_bind(agent);
            }
            DelegationRole::Any => {
                query
                    .push(" AND (issuer = ")
                    .push_bind(agent)
                    .push(" OR audience = ")
                    .push_bind(agent)
                    .push(")");
            }
        }
    }
    if !filter.include_revoked {
        query.push(" AND revoked = ").push_bind(false);
    }
    if !filter.include_expired {
        query.push(" AND expires_at_ms > ").push_bind(filter.now_ms);
    }
    query
}

/// `SELECT jti` of the revoked delegations among `jtis` (not empty), in any scope.
pub(crate) fn revoked_among<'a, DB>(jtis: &'a [String]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT jti FROM delegations WHERE revoked = ");
    query.push_bind(true).push(" AND jti IN (");
    let mut items = query.separated(", ");
    for jti in jtis {
        items.push_bind(jti.as_str());
    }
    query.push(")");
    query
}
