//! The PostgreSQL backend: one table shared by every server instance.
//!
//! Reservations rely on `INSERT … ON CONFLICT (scope, key) DO UPDATE … WHERE …`:
//! under the default READ COMMITTED isolation, a concurrent insert of the same key
//! waits for the first one to commit, then finds the conflict, locks the row and
//! evaluates the `WHERE` against its latest version. So of any number of concurrent
//! callers exactly one gets the row, whatever the number of processes.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use idempotency::store::unix_millis;
use idempotency::{
    ExistingRecord, FencingToken, RecordId, ReserveOutcome, ReserveRequest, Store, StoreError,
    StoredResponse,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, Postgres};
use sqlx::query::QueryScalar;
use sqlx::Executor;

use crate::migrations::{self, MIGRATIONS_TABLE};
use crate::record::{self, RecordRow};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The key of the transaction-level advisory lock that serialises concurrent
/// `migrate` calls (the bytes of "idemsql1" read as a big-endian i64).
const MIGRATION_LOCK_KEY: i64 = i64::from_be_bytes(*b"idemsql1");

/// How long a call waits for a pooled connection before the store reports itself
/// unavailable (the layer then answers 503 rather than hanging).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections opened by [`PostgresStore::connect`].
const DEFAULT_CONNECTIONS: u32 = 10;

/// An idempotency [`Store`] in a PostgreSQL database.
///
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    purge_batch: i64,
}

impl PostgresStore {
    /// Connects a pool of up to ten connections to `url`
    /// (`postgres://user:password@host:port/database?options`).
    ///
    /// Call [`PostgresStore::migrate`] before first use.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Uses the host's pool. The pool's sessions must run at the default READ
    /// COMMITTED isolation level (the statements are single autocommit statements and
    /// rely on its upsert semantics).
    ///
    /// Call [`PostgresStore::migrate`] before first use.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            purge_batch: record::DEFAULT_PURGE_BATCH,
        }
    }

    /// Sets how many rows one purge statement deletes at most (default 1000; at
    /// least 1).
    pub fn with_purge_batch_size(mut self, rows: u32) -> Self {
        self.purge_batch = i64::from(rows.max(1));
        self
    }

    /// Creates or updates the `idempotency_records` table and its index.
    ///
    /// Idempotent, and safe to call from several server instances at once: the whole
    /// pass runs in one transaction holding an advisory lock, and PostgreSQL's DDL is
    /// transactional, so a failure leaves nothing half-applied. Applied migrations are
    /// recorded in [`MIGRATIONS_TABLE`], never in sqlx's `_sqlx_migrations`, so a host
    /// running its own `sqlx::migrate!()` on the same database is unaffected (see
    /// [`crate::migrations`]).
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS _idempotency_sql_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                checksum BYTEA NOT NULL,
                installed_at BIGINT NOT NULL
            )",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(migrations::SELECT_APPLIED)
            .fetch_all(&mut *tx)
            .await?;
        for migration in migrations::pending(&MIGRATOR, applied)? {
            // A plain string runs as a script of several statements, as in sqlx's migrator.
            (&mut *tx)
                .execute(&*migration.sql)
                .await
                .map_err(|error| MigrateError::ExecuteMigration(error, migration.version))?;
            sqlx::query(migrations::INSERT_APPLIED)
                .bind(migration.version)
                .bind(&*migration.description)
                .bind(&*migration.checksum)
                .bind(migrations::now_millis())
                .execute(&mut *tx)
                .await?;
            tracing::info!(
                version = migration.version,
                description = %migration.description,
                ledger = MIGRATIONS_TABLE,
                "applied idempotency-sql PostgreSQL migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The atomic reservation statement, bound to `request`; yields `takeovers` when the
/// caller now owns the record.
fn reserve_query<'q>(
    request: &'q ReserveRequest<'_>,
) -> QueryScalar<'q, Postgres, i32, PgArguments> {
    sqlx::query_scalar(record::RESERVE)
        .bind(&request.id.scope)
        .bind(&request.id.key)
        .bind(request.fingerprint.as_bytes().as_slice())
        .bind(request.token.as_i64())
        .bind(unix_millis(request.lease_expires_at()))
        .bind(unix_millis(request.expires_at()))
        .bind(unix_millis(request.now))
}

fn reserved(takeovers: i32) -> ReserveOutcome {
    ReserveOutcome::Reserved {
        took_over: takeovers > 0,
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        let now = unix_millis(request.now);
        // Fast path, the common case of a new key: one autocommit statement.
        if let Some(takeovers) = reserve_query(&request)
            .fetch_optional(&self.pool)
            .await
            .map_err(record::unavailable)?
        {
            return Ok(reserved(takeovers));
        }
        // A live record was in the way: read it. This is the replay and in-flight
        // path, so it is a plain read; the record is reported if it still blocks the
        // reservation (at the moment of the read, the reservation would have failed).
        let existing: Option<RecordRow> = sqlx::query_as(record::SELECT_ANY)
            .bind(&request.id.scope)
            .bind(&request.id.key)
            .fetch_optional(&self.pool)
            .await
            .map_err(record::unavailable)?;
        if let Some(row) = existing.filter(|row| row.blocks(request.fingerprint, now)) {
            return Ok(ReserveOutcome::Existing(row.into_existing()?));
        }
        // It changed in between (released, purged, expired, or became reclaimable).
        // Try again inside a transaction that holds the record once the statement
        // conflicts (the row lock that `ON CONFLICT DO UPDATE` takes even when its WHERE is false), so that the record read back is the one that blocked.
        for _ in 0..record::RESERVE_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(record::unavailable)?;
            if let Some(takeovers) = reserve_query(&request)
                .fetch_optional(&mut *tx)
                .await
                .map_err(record::unavailable)?
            {
                tx.commit().await.map_err(record::unavailable)?;
                return Ok(reserved(takeovers));
            }
            let existing: Option<RecordRow> = sqlx::query_as(record::SELECT_ANY)
                .bind(&request.id.scope)
                .bind(&request.id.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(record::unavailable)?;
            tx.commit().await.map_err(record::unavailable)?;
            if let Some(row) = existing.filter(|row| row.blocks(request.fingerprint, now)) {
                return Ok(ReserveOutcome::Existing(row.into_existing()?));
            }
        }
        Err(record::too_much_contention())
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(record::COMPLETE)
            .bind(&id.scope)
            .bind(&id.key)
            .bind(token.as_i64())
            .bind(i32::from(response.status))
            .bind(response.encode_headers())
            .bind(response.body.as_ref())
            .execute(&self.pool)
            .await
            .map_err(record::unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotOwner);
        }
        Ok(())
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        let done = sqlx::query(record::RELEASE)
            .bind(&id.scope)
            .bind(&id.key)
            .bind(token.as_i64())
            .execute(&self.pool)
            .await
            .map_err(record::unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotOwner);
        }
        Ok(())
    }

    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        let row: Option<RecordRow> = sqlx::query_as(record::SELECT_LIVE)
            .bind(&id.scope)
            .bind(&id.key)
            .bind(unix_millis(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(record::unavailable)?;
        row.map(RecordRow::into_existing).transpose()
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = unix_millis(now);
        let mut purged = 0;
        loop {
            // Batches keep each transaction short. SKIP LOCKED lets several instances
            // sweep at once and steps around a row a reservation is replacing right
            // now; the outer `expires_at` test is re-checked on the row's latest
            // version, so a record renewed meanwhile is never deleted.
            let done = sqlx::query(
                "DELETE FROM idempotency_records
                 WHERE expires_at <= $1
                   AND (scope, key) IN (
                       SELECT scope, key FROM idempotency_records
                       WHERE expires_at <= $1
                       LIMIT $2
                       FOR UPDATE SKIP LOCKED
                   )",
            )
            .bind(now)
            .bind(self.purge_batch)
            .execute(&self.pool)
            .await
            .map_err(record::unavailable)?;
            purged += done.rows_affected();
            if done.rows_affected() < self.purge_batch as u64 {
                return Ok(purged);
            }
        }
    }
}
