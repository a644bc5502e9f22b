//! [`Storage`] in PostgreSQL: many server instances sharing one database.
//!
//! Every method is one autocommit statement, except an insert whose recovery point is
//! already taken: that one reads the row holding it `FOR UPDATE` in a transaction and
//! either returns its document or, when it was created before the recovery point's
//! `valid_after_ms`, clears the row's recovery point and inserts the new row. Under
//! the default READ COMMITTED isolation a concurrent insert with the same recovery
//! point waits for the first to commit and then finds the conflict, so of any number
//! of concurrent callers, across processes, exactly one creates the row. (Keyed
//! creates also carry ids derived from their recovery point, see [`crate::recovery`];
//! PostgreSQL keeps its unique constraint on (scope, key) all the same, which finds the
//! original under any id and holds across instances whatever their clocks.)
//!
//! Pagination follows `seq`, an identity column. Its values are taken when rows are
//! inserted, not when they commit, so a row whose transaction commits after a later
//! one may be missed by a client already paging past it; each page is still a
//! consistent index range scan.
//!
//! # Migrations
//!
//! The embedded migrations (`migrations/postgres`) are applied by sqlx's
//! [`Migrator`] (under its advisory lock, so concurrent instances migrate once), which
//! records them in `_sqlx_migrations`. Their versions are date-based, `2026112801`
//! onwards, so they cannot collide with the small sequential versions (`0001`…) a
//! library would use. The migrator ignores applied versions it does not know
//! (`ignore_missing`), so another component's sqlx migrations recorded in the same
//! ledger do not make it fail. (`idempotency-sql` keeps its own ledger,
//! `_idempotency_sql_migrations`, and never touches `_sqlx_migrations`.)

use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions, Postgres};
use sqlx::QueryBuilder;

use super::insert_batch::{InsertBatcher, OwnedRow};
use super::new_row::{self, NewRow};
use super::records::{append_event, Col, Conn, Job, Tx};
use super::{
    delegations, dids, ApiKeyRecord, CredentialFilter, DelegationFilter, Holder, IdentityFilter,
    Inserted, NewCredential, NewDelegation, NewDid, NewIdentity, Page, PageRequest, RecordState,
    RecoveryPoint, Storage, StorageError,
};

/// How long a call waits for a pooled connection before failing.
// Short enough that a database outage answers 503 promptly instead of hanging
// requests; long enough for a busy pool to hand out a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times an insert re-reads a recovery point that other transactions keep
/// replacing under it. Each round means another caller made progress, so a few suffice.
const RECOVERY_ATTEMPTS: usize = 5;

/// The migrations of `migrations/postgres`, tolerant of versions applied by others.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
}

/// [`Storage`] in a PostgreSQL database.
///
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
    jobs: super::job_batch::PostgresJobs,
    batcher: InsertBatcher<PgPool>,
}

impl PostgresStorage {
    /// Connects a pool of up to `max_connections` (at least one) connections to `url`
    /// (`postgres://user:password@host:port/database?options`).
    ///
    /// Call [`PostgresStorage::migrate`] before first use.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(StorageError::database)?;
        Ok(Self::from_pool(pool))
    }

    /// Uses an existing pool. Its sessions must run at the default READ COMMITTED
    /// isolation level, on which the recovery-point handling relies.
    ///
    /// Call [`PostgresStorage::migrate`] before first use.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            jobs: super::job_batch::queue(pool.clone()),
            batcher: InsertBatcher::new(pool.clone()),
            pool,
        }
    }

    /// Creates or updates the tables `identities`, `credentials` and `api_keys`.
    ///
    /// Idempotent and safe to run from several instances at once. Applied versions
    /// unknown to this build (another component's, or a newer release's) are
    /// tolerated; see the module docs for the versioning.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        migrator()
            .run(&self.pool)
            .await
            .map_err(StorageError::database)
    }

    /// The pool; give it to the PostgreSQL idempotency store to share connections.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Inserts a row; with a recovery point, resolves a conflict on it (see
    /// [`Storage::insert_identity`]).
    async fn insert(&self, row: NewRow<'_>) -> Result<Inserted, StorageError> {
        // Fast path, also the only path without a recovery point: an insert shared
        // with concurrent ones (`insert_batch`) that leaves the row out when any of its
        // unique columns is taken.
        let inserted = self.insert_with_event(row).await?;
        let Some(recovery) = row.recovery() else {
            // Without a recovery point only a taken id keeps a row out.
            return match inserted {
                true => Ok(Inserted::Created),
                false => Err(StorageError::Duplicate),
            };
        };
        if inserted {
            return Ok(Inserted::Created);
        }
        // Kept out by its recovery point, or by its id: two executions of one request
        // insert the same row, id included, and the second can meet the first's id
        // before its recovery point. Both are resolved by the recovery point (a true
        // collision of ids ends there as `Duplicate`).
        for _ in 0..RECOVERY_ATTEMPTS {
            if let Some(outcome) = self.resolve_recovery(row, recovery).await? {
                return Ok(outcome);
            }
        }
        Err(StorageError::database(format!(
            "the recovery point of a new row in {} kept changing; gave up after {RECOVERY_ATTEMPTS} attempts",
            row.table()
        )))
    }

    /// Inserts `row` and, when it went in, appends its audit event, in one
    /// transaction; whether it went in (a taken recovery point keeps it out).
    async fn insert_with_event(&self, row: NewRow<'_>) -> Result<bool, StorageError> {
        self.batcher.insert(OwnedRow::from(row)).await
    }

    /// One attempt at an insert whose recovery point was taken: `None` when another
    /// transaction changed the recovery point meanwhile and the caller should retry.
    async fn resolve_recovery(
        &self,
        row: NewRow<'_>,
        recovery: &RecoveryPoint,
    ) -> Result<Option<Inserted>, StorageError> {
        let sql = statements(row).ok_or_else(|| {
            StorageError::database(format!("{} has no recovery statements", row.table()))
        })?;
        let mut tx = self.pool.begin().await.map_err(StorageError::database)?;
        // The lock keeps the row's recovery point as read until this transaction ends.
        let existing: Option<(i64, String, i64, Option<Vec<u8>>)> =
            sqlx::query_as(sql.lock_recovery)
                .bind(&recovery.scope)
                .bind(&recovery.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StorageError::database)?;
        if let Some((seq, document, created_at_ms, fingerprint)) = existing {
            match recovery.judge(created_at_ms, fingerprint.as_deref()) {
                Holder::SameRequest => {
                    tx.rollback().await.map_err(StorageError::database)?;
                    return Ok(Some(Inserted::Recovered(document)));
                }
                Holder::OtherRequest => {
                    tx.rollback().await.map_err(StorageError::database)?;
                    return Ok(Some(Inserted::KeyReused));
                }
                Holder::Expired => {}
            }
            // Made under an idempotency record that has expired: the key was reused.
            sqlx::query(sql.clear_recovery)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::database)?;
            tracing::debug!(
                table = sql.table,
                "recovery point expired; its resource keeps no recovery point"
            );
        }
        // Either the stale holder was just cleared, or the holder vanished between the
        // insert and the read (another caller cleared it and has not committed its row,
        // or has: then this insert waits for it and does nothing).
        let inserted = Conn::<Postgres>(&mut tx)
            .fetch(insert_unless_recovered(row), &[Col::Text])
            .await?;
        if !inserted.is_empty() {
            append_event(&mut Conn::<Postgres>(&mut tx), row.audit()).await?;
            tx.commit().await.map_err(StorageError::database)?;
            return Ok(Some(Inserted::Created));
        }
        tx.rollback().await.map_err(StorageError::database)?;
        Ok(None)
    }

    /// Runs a listing query built by `query` and turns its rows into a page.
    async fn list(
        &self,
        mut query: QueryBuilder<'_, Postgres>,
        page: PageRequest,
    ) -> Result<Page, StorageError> {
        if page.limit == 0 {
            return Ok(Page {
                documents: Vec::new(),
                next: None,
            });
        }
        if let Some(after) = page.after {
            query.push(" AND seq > ").push_bind(after);
        }
        // One row more than asked tells whether there is a next page.
        query
            .push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let rows: Vec<(i64, String)> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(StorageError::database)?;
        Ok(page_of(rows, page.limit))
    }
}

/// The statements specific to one resource table.
struct TableStatements {
    table: &'static str,
    /// Locks the row holding a recovery point: `$1` scope, `$2` key.
    lock_recovery: &'static str,
    /// Clears the recovery point of the row `$1` (its `seq`).
    clear_recovery: &'static str,
}

const IDENTITIES: TableStatements = TableStatements {
    table: "identities",
    lock_recovery: "SELECT seq, document, created_at_ms, idempotency_fingerprint FROM identities \
                    WHERE idempotency_scope = $1 AND idempotency_key = $2 FOR UPDATE",
    clear_recovery: "UPDATE identities SET idempotency_scope = NULL, idempotency_key = NULL, \
                     idempotency_fingerprint = NULL WHERE seq = $1",
};

const CREDENTIALS: TableStatements = TableStatements {
    table: "credentials",
    lock_recovery: "SELECT seq, document, created_at_ms, idempotency_fingerprint FROM credentials \
                    WHERE idempotency_scope = $1 AND idempotency_key = $2 FOR UPDATE",
    clear_recovery: "UPDATE credentials SET idempotency_scope = NULL, idempotency_key = NULL, \
                     idempotency_fingerprint = NULL WHERE seq = $1",
};

/// How the row holding `row`'s recovery point is read and released; `None` for a
/// delegation or a DID, which resolve theirs in their own way.
fn statements(row: NewRow<'_>) -> Option<&'static TableStatements> {
    match row {
        NewRow::Identity(_) => Some(&IDENTITIES),
        NewRow::Credential(_) => Some(&CREDENTIALS),
        NewRow::Delegation(_) | NewRow::Did(_) => None,
    }
}

/// The insert of `row` that leaves it out when its recovery point is taken and fails
/// with a unique violation when its id is.
fn insert_unless_recovered(row: NewRow<'_>) -> super::records::Stmt {
    new_row::insert(&[row], "(idempotency_scope, idempotency_key) ")
}

/// Maps an insert's error: a unique violation (of an id; the recovery point's
/// conflicts are handled by `ON CONFLICT`) is [`StorageError::Duplicate`].
fn insert_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            StorageError::Duplicate
        }
        _ => StorageError::database(error),
    }
}

/// The page made of `rows` (at most `limit + 1`, in `seq` order).
fn page_of(mut rows: Vec<(i64, String)>, limit: u32) -> Page {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Page {
        documents: rows.into_iter().map(|(_, document)| document).collect(),
        next,
    }
}

/// An API key row: id, principal, digest, created, revoked.
type ApiKeyRow = (String, String, Vec<u8>, i64, Option<i64>);

fn api_key_record(row: ApiKeyRow) -> Result<ApiKeyRecord, StorageError> {
    let (id, principal, digest, created_at_ms, revoked_at_ms) = row;
    let digest = <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| {
        StorageError::database(format!(
            "api key {id}: stored digest is {} bytes, not 32",
            digest.len()
        ))
    })?;
    Ok(ApiKeyRecord {
        id,
        principal,
        digest,
        created_at_ms,
        revoked_at_ms,
    })
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn insert_identity(&self, identity: &NewIdentity) -> Result<Inserted, StorageError> {
        self.insert(NewRow::Identity(identity)).await
    }

    async fn get_identity(
        &self,
        owner: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar("SELECT document FROM identities WHERE agent_id = $1 AND owner = $2")
            .bind(agent_id)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(StorageError::database)
    }

    async fn list_identities(
        &self,
        owner: &str,
        filter: &IdentityFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError> {
        let mut query = QueryBuilder::new("SELECT seq, document FROM identities WHERE owner = ");
        query.push_bind(owner);
        if let Some(protocol) = &filter.source_protocol {
            query
                .push(" AND source_protocol = ")
                .push_bind(protocol.as_str());
        }
        if !filter.include_revoked {
            query.push(" AND NOT revoked");
        }
        self.list(query, page).await
    }

    async fn identity_state(&self, agent_id: &str) -> Result<Option<RecordState>, StorageError> {
        let row: Option<(bool, i64)> =
            sqlx::query_as("SELECT revoked, expires_at_ms FROM identities WHERE agent_id = $1")
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StorageError::database)?;
        Ok(row.map(|(revoked, expires_at_ms)| RecordState {
            revoked,
            expires_at_ms,
        }))
    }

    async fn insert_credential(
        &self,
        credential: &NewCredential,
    ) -> Result<Inserted, StorageError> {
        self.insert(NewRow::Credential(credential)).await
    }

    async fn get_credential(
        &self,
        owner: &str,
        credential_id: &str,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT document FROM credentials WHERE credential_id = $1 AND owner = $2",
        )
        .bind(credential_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(StorageError::database)
    }

    async fn list_credentials(
        &self,
        owner: &str,
        filter: &CredentialFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError> {
        let mut query = QueryBuilder::new("SELECT seq, document FROM credentials WHERE owner = ");
        query.push_bind(owner);
        if let Some(subject) = &filter.subject_id {
            query.push(" AND subject_id = ").push_bind(subject.as_str());
        }
        if let Some(credential_type) = &filter.credential_type {
            query
                .push(" AND credential_type = ")
                .push_bind(credential_type.as_str());
        }
        if filter.valid_only {
            query
                .push(" AND NOT revoked AND expires_at_ms > ")
                .push_bind(filter.now_ms);
        }
        self.list(query, page).await
    }

    async fn credential_state(
        &self,
        credential_id: &str,
    ) -> Result<Option<RecordState>, StorageError> {
        let row: Option<(bool, i64)> = sqlx::query_as(
            "SELECT revoked, expires_at_ms FROM credentials WHERE credential_id = $1",
        )
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StorageError::database)?;
        Ok(row.map(|(revoked, expires_at_ms)| RecordState {
            revoked,
            expires_at_ms,
        }))
    }

    async fn insert_delegation(
        &self,
        delegation: &NewDelegation,
    ) -> Result<Inserted, StorageError> {
        if self
            .insert_with_event(NewRow::Delegation(delegation))
            .await?
        {
            return Ok(Inserted::Created);
        }
        if delegation.recovery.is_none() {
            return Err(StorageError::Duplicate);
        }
        let mut find = QueryBuilder::<Postgres>::new(delegations::FIND_HOLDER);
        find.push_bind(delegation.jti.as_str());
        let holder: Option<delegations::HolderRow> = find
            .build_query_as()
            .fetch_optional(&self.pool)
            .await
            .map_err(StorageError::database)?;
        delegations::resolve(holder, delegation)
    }

    async fn get_delegation(&self, owner: &str, jti: &str) -> Result<Option<String>, StorageError> {
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT document FROM delegations WHERE jti = ");
        query.push_bind(jti).push(" AND owner = ").push_bind(owner);
        query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(StorageError::database)
    }

    async fn list_delegations(
        &self,
        owner: &str,
        filter: &DelegationFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError> {
        self.list(delegations::list(owner, filter), page).await
    }

    async fn revoked_delegations(&self, jtis: &[String]) -> Result<Vec<String>, StorageError> {
        if jtis.is_empty() {
            return Ok(Vec::new());
        }
        delegations::revoked_among::<Postgres>(jtis)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(StorageError::database)
    }

    async fn insert_did(&self, did: &NewDid) -> Result<Inserted, StorageError> {
        // An expired holder of the recovery point is released, then the insert is
        // tried again: at most twice, as nothing else releases it.
        for _ in 0..3 {
            if self.insert_with_event(NewRow::Did(did)).await? {
                return Ok(Inserted::Created);
            }
            let Some(recovery) = &did.recovery else {
                return Err(StorageError::Duplicate);
            };
            let holder: Option<dids::HolderRow> =
                dids::find_holder::<Postgres>(&recovery.scope, &recovery.key)
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StorageError::database)?;
            let Some((seq, document, created_at_ms, fingerprint)) = holder else {
                return Err(StorageError::Duplicate);
            };
            match recovery.judge(created_at_ms, fingerprint.as_deref()) {
                Holder::SameRequest => return Ok(Inserted::Recovered(document)),
                Holder::OtherRequest => return Ok(Inserted::KeyReused),
                Holder::Expired => {
                    dids::clear_recovery::<Postgres>(seq)
                        .build()
                        .execute(&self.pool)
                        .await
                        .map_err(StorageError::database)?;
                }
            }
        }
        Err(StorageError::Database(
            "the recovery point of a new DID kept changing".into(),
        ))
    }

    async fn did_private_key(
        &self,
        owner: &str,
        keypair_id: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        dids::private_key::<Postgres>(owner, keypair_id)
            .build_query_as()
            .fetch_optional(&self.pool)
            .await
            .map_err(StorageError::database)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO api_keys (id, principal, digest, created_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.id.as_str())
        .bind(key.principal.as_str())
        .bind(key.digest.as_slice())
        .bind(key.created_at_ms)
        .bind(key.revoked_at_ms)
        .execute(&self.pool)
        .await
        .map_err(insert_error)?;
        Ok(())
    }

    async fn find_api_key(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StorageError> {
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "SELECT id, principal, digest, created_at_ms, revoked_at_ms FROM api_keys \
             WHERE digest = $1 AND revoked_at_ms IS NULL",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(StorageError::database)?;
        row.map(api_key_record).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(
            "SELECT id, principal, digest, created_at_ms, revoked_at_ms FROM api_keys ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter().map(api_key_record).collect()
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(StorageError::database)?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StorageError::database)?;
        Ok(())
    }

    async fn write(&self, job: Job) -> Result<(), StorageError> {
        super::job_batch::run(&self.jobs, job).await
    }

    async fn write_after_events(&self, job: Job) -> Result<(), StorageError> {
        super::job_batch::run_after_events(&self.jobs, job).await
    }

    async fn read(&self, job: Job) -> Result<(), StorageError> {
        let mut connection = self.pool.acquire().await.map_err(StorageError::database)?;
        job(&mut Conn::<Postgres>(&mut connection)).await
    }
}
