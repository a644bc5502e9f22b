//! The PostgreSQL backend: one table shared by every server instance.
//!
//! Reservations rely on `INSERT … ON CONFLICT (scope, key) DO UPDATE … WHERE …`:
//! under the default READ COMMITTED isolation, a concurrent insert of the same key
//! waits for the first one to commit, then finds the conflict, locks the row and
//! evaluates the `WHERE` against its latest version. So of any number of concurrent
//! callers exactly one gets the row, whatever the number of processes.
//!
//! # Group commit
//!
//! A new key costs a reservation and a completion, each a statement and a commit
//! that waits for its WAL flush. Concurrent requests share them: reservations queued
//! while a statement runs go out together as one multi-row form of the same upsert
//! (each row keeps its own `ON CONFLICT … WHERE`; a row the statement leaves alone
//! takes the single-row path below, as a conflicting single statement would), and
//! completions as one fenced multi-row `UPDATE`. A batch is one transaction with a
//! synchronous commit, answered only after it: durability is as for one statement
//! (a host whose effects share the cluster may let reservations skip their flush
//! wait, see [`PostgresStore::with_reservations_flushed_by_later_commits`]).
//! The rows of a reservation batch are written in (scope, key) order and hold no
//! duplicate key, so two batches (of this process or another) wait for each other
//! in one order and cannot deadlock; if the database reports a deadlock or a
//! serialization failure anyway, each row is retried alone. A lone request runs the
//! single-row statement, as before. The reservation and the completion queues keep
//! one connection each (the pool's options, opened when first used) beside
//! the pool; [`PostgresStore::with_max_batch`]`(1)` uses the pool alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::codec::{decode_headers, encode_headers, unix_millis};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use idempotency::store::contains_bytes;
use idempotency::{
    ExistingRecord, FencingToken, RecordId, ReserveOutcome, ReserveRequest, Store, StoreError,
    StoredResponse,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres,
};
use sqlx::query::QueryScalar;
use sqlx::Connection;
use tokio::sync::oneshot;

use crate::migrations;
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

/// The most rows one batched reservation or completion carries, by default.
const DEFAULT_MAX_BATCH: usize = 64;

/// How many batched statements of one kind may run at once (each on its own
/// connection); requests arriving meanwhile queue for the next. One: a second batch
/// running beside the first carried only the few requests that arrived since, so
/// batches stayed small and keyed creates paid more commits (docs/BENCHMARKS.md).
const RUNNING_BATCHES: usize = 1;

/// A pooled connection idle for longer than this is pinged before use.
pub const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Options for a pool of the store's (and its host's) connections: no liveness
/// ping before every checkout (sqlx's default costs a round trip per statement);
/// a connection that sat idle for [`PING_IDLE_AFTER`] is still pinged, so one that
/// died while idle (a database restart) is replaced rather than failing a request.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
}

fn ping_if_idle(
    connection: &mut PgConnection,
    metadata: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if metadata.idle_for >= PING_IDLE_AFTER {
            connection.ping().await?;
        }
        Ok(true)
    })
}

/// An idempotency [`Store`] in a PostgreSQL database.
///
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    purge_batch: i64,
    batches: Option<Arc<Batches>>,
    max_batch: usize,
    reservation_commit: ReservationCommit,
}

/// Whether a batched reservation's commit waits for its WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReservationCommit {
    /// `synchronous_commit` as the pool's sessions have it (on by default).
    Synchronous,
    /// `synchronous_commit = off`: made durable by the request's next synchronous
    /// commit on the same cluster (see
    /// [`PostgresStore::with_reservations_flushed_by_later_commits`]).
    FlushedByLaterCommits,
}

/// The queues of the group commit.
struct Batches {
    reserve: Batcher<ReserveOp, PgConnection>,
    complete: Batcher<CompleteOp, PgConnection>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("max_batch", &self.reserve.max_batch())
            .finish()
    }
}

impl PostgresStore {
    /// Connects a pool of up to ten connections to `url`
    /// (`postgres://user:password@host:port/database?options`).
    ///
    /// Call [`PostgresStore::migrate`] before first use.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let pool = pool_options()
            .max_connections(DEFAULT_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Uses the host's pool. The pool's sessions must run at the default READ
    /// COMMITTED isolation level (the statements are single autocommit statements and
    /// rely on its upsert semantics) with `synchronous_commit` on (the default), so
    /// that a completed record is durable once `complete` returns. [`pool_options`]
    /// makes a pool without a ping per checkout.
    ///
    /// Call [`PostgresStore::migrate`] before first use. Must be called within a Tokio
    /// runtime (the group commit runs its statements on spawned tasks).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            purge_batch: record::DEFAULT_PURGE_BATCH,
            batches: Some(Arc::new(Batches::new(
                pool.clone(),
                DEFAULT_MAX_BATCH,
                ReservationCommit::Synchronous,
            ))),
            max_batch: DEFAULT_MAX_BATCH,
            reservation_commit: ReservationCommit::Synchronous,
            pool,
        }
    }

    fn rebuild_batches(&mut self) {
        self.batches = (self.max_batch > 1).then(|| {
            Arc::new(Batches::new(
                self.pool.clone(),
                self.max_batch,
                self.reservation_commit,
            ))
        });
    }

    /// Sets the most rows one batched reservation or completion carries (default
    /// 64); 1 turns the group commit off, so that every call is its own statement.
    pub fn with_max_batch(mut self, rows: usize) -> Self {
        self.max_batch = rows;
        self.rebuild_batches();
        self
    }

    /// Lets batched reservations commit without waiting for their WAL flush
    /// (`synchronous_commit = off` on the reservation connections), which takes one
    /// of a new key's three flush waits off its request's path. Completions still
    /// wait for theirs.
    ///
    /// Sound only when every durable effect of a reserved request is committed,
    /// synchronously, to the same PostgreSQL cluster after its reservation, as when
    /// the host's own writes use this store's pool. PostgreSQL's log is one sequence,
    /// so that commit flushes the reservation written before it, and so does the
    /// request's completion; a database crash before either loses a reservation
    /// that protected nothing durable yet. Other sessions and instances see a
    /// reservation at its commit either way. Not for a host whose effects go to
    /// another database server, nor with [`with_max_batch`](Self::with_max_batch)`(1)`
    /// (every call then runs on the pool as it is).
    pub fn with_reservations_flushed_by_later_commits(mut self) -> Self {
        self.reservation_commit = ReservationCommit::FlushedByLaterCommits;
        self.rebuild_batches();
        self
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
    /// recorded in [`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE), never in sqlx's `_sqlx_migrations`, so a host
    /// running its own `sqlx::migrate!()` on the same database is unaffected (see
    /// [`crate::migrations`]).
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        migrations::apply_pending::<sqlx::Postgres>(
            &mut tx,
            &MIGRATOR,
            "CREATE TABLE IF NOT EXISTS _idempotency_sql_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                checksum BYTEA NOT NULL,
                installed_at BIGINT NOT NULL
            )",
            "PostgreSQL",
        )
        .await?;
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
        // Fast path, the common case of a new key: one autocommit statement, shared
        // with the reservations of concurrent requests.
        let fast = match &self.batches {
            Some(batches) => {
                let (reply, answer) = oneshot::channel();
                batches.reserve.submit(ReserveOp::new(&request, reply));
                answer.await.unwrap_or_else(|_| Err(batch_lost()))?
            }
            None => reserve_query(&request)
                .fetch_optional(&self.pool)
                .await
                .map_err(record::unavailable)?,
        };
        if let Some(takeovers) = fast {
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
        let op = CompleteOp {
            scope: id.scope.clone(),
            key: id.key.clone(),
            token: token.as_i64(),
            status: i32::from(response.status),
            headers: encode_headers(&response.headers),
            body: response.body.to_vec(),
            reply: None,
        };
        let completed = match &self.batches {
            Some(batches) => {
                let (reply, answer) = oneshot::channel();
                batches.complete.submit(CompleteOp {
                    reply: Some(reply),
                    ..op
                });
                answer.await.unwrap_or_else(|_| Err(batch_lost()))?
            }
            None => op.execute(&self.pool).await.map_err(record::unavailable)?,
        };
        if !completed {
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

    /// One transaction: a `SELECT … FOR UPDATE` finds the scope's rows whose raw
    /// columns hold the needle (`position` on the key's bytes, the status digits, the
    /// encoded header list and the body) and locks them, each match is decided
    /// exactly on the decoded response (a needle could span the header list's length
    /// prefixes), and one `DELETE` removes the matches. A row that does not decode
    /// but whose raw bytes hold the needle is deleted too. The locks keep a locked
    /// row from completing or being released in between; a row reserved meanwhile is
    /// not seen. What PostgreSQL keeps of deleted rows (dead tuples until vacuum,
    /// WAL segments) is the database's to reclaim.
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        if needle.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(record::unavailable)?;
        let candidates: Vec<ErasureCandidate> = sqlx::query_as(
            "SELECT key, status, headers, body FROM idempotency_records
             WHERE scope = $1 AND (
                 position($2 in convert_to(key, 'UTF8')) > 0
                 OR (state = 'completed' AND (
                     position($2 in convert_to(status::text, 'UTF8')) > 0
                     OR position($2 in headers) > 0
                     OR position($2 in body) > 0))
             )
             FOR UPDATE",
        )
        .bind(scope)
        .bind(needle)
        .fetch_all(&mut *tx)
        .await
        .map_err(record::unavailable)?;
        let keys: Vec<String> = candidates
            .into_iter()
            .filter(|candidate| candidate.mentions(needle))
            .map(|candidate| candidate.key)
            .collect();
        if keys.is_empty() {
            tx.commit().await.map_err(record::unavailable)?;
            return Ok(0);
        }
        let done =
            sqlx::query("DELETE FROM idempotency_records WHERE scope = $1 AND key = ANY($2)")
                .bind(scope)
                .bind(&keys)
                .execute(&mut *tx)
                .await
                .map_err(record::unavailable)?;
        tx.commit().await.map_err(record::unavailable)?;
        Ok(done.rows_affected())
    }
}

/// A row `erase_mentioning` found by a search of its raw columns.
#[derive(sqlx::FromRow)]
struct ErasureCandidate {
    key: String,
    status: Option<i32>,
    headers: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
}

impl ErasureCandidate {
    /// The exact test of [`Store::erase_mentioning`]: the key, or the decoded
    /// response of a completed row. A row that does not decode is searched as raw
    /// bytes, so that a corrupt row holding the needle is erased, not kept.
    fn mentions(&self, needle: &[u8]) -> bool {
        if contains_bytes(self.key.as_bytes(), needle) {
            return true;
        }
        let (Some(status), Some(headers), Some(body)) = (self.status, &self.headers, &self.body)
        else {
            return false;
        };
        match (u16::try_from(status), decode_headers(headers)) {
            (Ok(status), Ok(headers)) => StoredResponse {
                status,
                headers,
                body: body.clone().into(),
            }
            .mentions(needle),
            _ => {
                contains_bytes(status.to_string().as_bytes(), needle)
                    || contains_bytes(headers, needle)
                    || contains_bytes(body, needle)
            }
        }
    }
}

/// The error of a call whose batch went away without answering (its task panicked).
fn batch_lost() -> StoreError {
    StoreError::Unavailable("the batched statement was abandoned without an answer".into())
}

/// Whether a batched statement failed only because of how it met other
/// transactions (a deadlock or a serialization failure): its rows are then retried
/// one by one, since nothing of the batch was applied.
fn retry_alone(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(database)
            if matches!(database.code().as_deref(), Some("40P01") | Some("40001"))
    )
}

impl Batches {
    fn new(pool: PgPool, max_batch: usize, reservation_commit: ReservationCommit) -> Self {
        // The batch statements join an array of rows to the table, which only an
        // index lookup per row does well. A generic plan cached while the table was
        // small, or planned for unnest's default estimate of 100 rows, may scan the
        // table instead (measured: 820 sequential scans reading 2.9 M rows in 8 s
        // of keyed creates on a fresh database). These connections run nothing
        // else, so the planner is told to avoid scans and non-nested-loop joins.
        let options = Arc::new((*pool.connect_options()).clone().options([
            ("enable_seqscan", "off"),
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
        ]));
        let reserve_options = match reservation_commit {
            ReservationCommit::Synchronous => options.clone(),
            ReservationCommit::FlushedByLaterCommits => {
                Arc::new((*options).clone().options([("synchronous_commit", "off")]))
            }
        };
        Self {
            reserve: Batcher::new(max_batch, move |ops, connection| {
                let options = reserve_options.clone();
                Box::pin(async move { reserve_batch(&options, ops, connection).await })
            }),
            complete: Batcher::new(max_batch, move |ops, connection| {
                let options = options.clone();
                Box::pin(async move { complete_batch(&options, ops, connection).await })
            }),
        }
    }
}

/// Opens a connection for a batcher, with the pool's options, waiting no longer
/// than a pool checkout would.
async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// The batcher's connection, or a new one.
async fn connection_for(
    options: &PgConnectOptions,
    connection: Option<PgConnection>,
) -> Result<PgConnection, sqlx::Error> {
    match connection {
        Some(connection) => Ok(connection),
        None => connect(options).await,
    }
}

/// Whether a connection is still usable after `error`: a database's refusal (a
/// constraint, a deadlock) leaves it so; an I/O or protocol failure does not.
fn still_usable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(_))
}

type RunBatch<Op, C> =
    Box<dyn Fn(Vec<Op>, Option<C>) -> BoxFuture<'static, Option<C>> + Send + Sync>;

/// A queue whose items are executed together, each batch on a connection of the
/// batcher's own: whoever submits while fewer than [`RUNNING_BATCHES`] batches run
/// starts a task that drains the queue, one batch (at most `max_batch` items) at a
/// time, until it is empty. No item waits for a timer: a lone item runs at once,
/// and items pile up only while batches run.
///
/// The connections (`C`) are kept between batches by the batcher itself, not a
/// pool: sqlx pings a pooled connection when it returns to the pool (a round trip
/// and a spawned task per checkout), which for one-statement checkouts doubled the
/// round trips. A draining task takes an idle connection (or `None`, and `run`
/// connects) and hands it back when the queue is empty; `run` returns the
/// connection it used, or `None` when it failed and must be replaced.
struct Batcher<Op, C> {
    shared: Arc<BatcherShared<Op, C>>,
}

struct BatcherShared<Op, C> {
    queue: Mutex<BatchQueue<Op, C>>,
    max_batch: usize,
    run: RunBatch<Op, C>,
}

struct BatchQueue<Op, C> {
    items: VecDeque<Op>,
    running: usize,
    idle: Vec<C>,
}

impl<Op: Send + 'static, C: Send + 'static> Batcher<Op, C> {
    fn new(
        max_batch: usize,
        run: impl Fn(Vec<Op>, Option<C>) -> BoxFuture<'static, Option<C>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(BatcherShared {
                queue: Mutex::new(BatchQueue {
                    items: VecDeque::new(),
                    running: 0,
                    idle: Vec::new(),
                }),
                max_batch: max_batch.max(1),
                run: Box::new(run),
            }),
        }
    }

    /// Queues `op` (which carries its own reply channel), starting a draining task
    /// if a slot is free.
    fn submit(&self, op: Op) {
        let start = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.items.push_back(op);
            let start = queue.running < RUNNING_BATCHES;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(drain(self.shared.clone()));
        }
    }

    /// The most items of one batch.
    fn max_batch(&self) -> usize {
        self.shared.max_batch
    }
}

/// Hands a draining task's slot on if it ends by a panic.
struct Running<Op: Send + 'static, C: Send + 'static> {
    shared: Arc<BatcherShared<Op, C>>,
    armed: bool,
}

impl<Op: Send + 'static, C: Send + 'static> Drop for Running<Op, C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.items.is_empty() {
            queue.running -= 1;
        } else {
            drop(queue);
            tokio::spawn(drain(self.shared.clone()));
        }
    }
}

async fn drain<Op: Send + 'static, C: Send + 'static>(shared: Arc<BatcherShared<Op, C>>) {
    let mut running = Running {
        shared: shared.clone(),
        armed: true,
    };
    let mut connection = {
        let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.idle.pop()
    };
    loop {
        let batch: Vec<Op> = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.items.is_empty() {
                // Counted out under the lock that found the queue empty, so that a
                // racing submit sees either the slot free or its item taken here.
                queue.running -= 1;
                queue.idle.extend(connection);
                running.armed = false;
                return;
            }
            let take = queue.items.len().min(shared.max_batch);
            queue.items.drain(..take).collect()
        };
        connection = (shared.run)(batch, connection.take()).await;
    }
}

/// A reservation waiting for its batch; answers `Some(takeovers)` when the row is
/// now the caller's, `None` when a live record stayed in the way.
struct ReserveOp {
    scope: String,
    key: String,
    fingerprint: Vec<u8>,
    token: i64,
    lease_expires_at: i64,
    expires_at: i64,
    now: i64,
    reply: oneshot::Sender<Result<Option<i32>, StoreError>>,
}

impl ReserveOp {
    fn new(
        request: &ReserveRequest<'_>,
        reply: oneshot::Sender<Result<Option<i32>, StoreError>>,
    ) -> Self {
        Self {
            scope: request.id.scope.clone(),
            key: request.id.key.clone(),
            fingerprint: request.fingerprint.as_bytes().to_vec(),
            token: request.token.as_i64(),
            lease_expires_at: unix_millis(request.lease_expires_at()),
            expires_at: unix_millis(request.expires_at()),
            now: unix_millis(request.now),
            reply,
        }
    }

    /// The single-row statement.
    async fn execute(&self, connection: &mut PgConnection) -> Result<Option<i32>, sqlx::Error> {
        sqlx::query_scalar(record::RESERVE)
            .bind(&self.scope)
            .bind(&self.key)
            .bind(self.fingerprint.as_slice())
            .bind(self.token)
            .bind(self.lease_expires_at)
            .bind(self.expires_at)
            .bind(self.now)
            .fetch_optional(connection)
            .await
    }
}

/// The multi-row reservation: the rows in (scope, key) order, each under the
/// single-row statement's conflict rule; returns the token of every row that is now
/// its caller's.
const RESERVE_BATCH: &str = concat!(
    "INSERT INTO idempotency_records
    (scope, key, fingerprint, state, token, lease_expires_at, expires_at, takeovers, created_at)
SELECT scope, key, fingerprint, 'in_flight', token, lease_expires_at, expires_at, 0, created_at
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
    AS batch(scope, key, fingerprint, token, lease_expires_at, expires_at, created_at)
ORDER BY scope, key
",
    record::reserve_on_conflict!(),
    "
RETURNING token, takeovers"
);

/// Runs the reservations of one batch on `connection`, answers them, and returns
/// the connection if it is still usable.
async fn reserve_batch(
    options: &PgConnectOptions,
    ops: Vec<ReserveOp>,
    connection: Option<PgConnection>,
) -> Option<PgConnection> {
    // One row per key: a second request for a key already in the batch could not
    // get it (the first row takes it or meets the same live record), and the upsert
    // may not touch a row twice. It is answered "in the way" after the batch, and
    // takes the single-row path.
    let mut seen = HashSet::with_capacity(ops.len());
    let (batch, duplicates): (Vec<ReserveOp>, Vec<ReserveOp>) = ops
        .into_iter()
        .partition(|op| seen.insert((op.scope.clone(), op.key.clone())));
    let mut connection = match connection_for(options, connection).await {
        Ok(connection) => connection,
        Err(error) => {
            let message = error.to_string();
            for op in batch.into_iter().chain(duplicates) {
                let _ = op
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone().into())));
            }
            return None;
        }
    };
    let mut usable = true;
    if batch.len() == 1 {
        for op in batch {
            let answer = op.execute(&mut connection).await;
            usable = answer.as_ref().err().is_none_or(still_usable);
            let _ = op.reply.send(answer.map_err(record::unavailable));
        }
    } else {
        let result = sqlx::query_as::<_, (i64, i32)>(RESERVE_BATCH)
            .bind(batch.iter().map(|op| op.scope.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|op| op.key.as_str()).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|op| op.fingerprint.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|op| op.token).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|op| op.lease_expires_at)
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|op| op.expires_at).collect::<Vec<_>>())
            .bind(batch.iter().map(|op| op.now).collect::<Vec<_>>())
            .fetch_all(&mut connection)
            .await;
        match result {
            Ok(rows) => {
                let reserved: HashMap<i64, i32> = rows.into_iter().collect();
                for op in batch {
                    let answer = reserved.get(&op.token).copied();
                    let _ = op.reply.send(Ok(answer));
                }
            }
            Err(error) if retry_alone(&error) => {
                tracing::debug!(%error, "batched reservation failed; retrying its rows alone");
                for op in batch {
                    let answer = op.execute(&mut connection).await;
                    usable &= answer.as_ref().err().is_none_or(still_usable);
                    let _ = op.reply.send(answer.map_err(record::unavailable));
                }
            }
            Err(error) => {
                usable = still_usable(&error);
                let message = error.to_string();
                for op in batch {
                    let _ = op
                        .reply
                        .send(Err(StoreError::Unavailable(message.clone().into())));
                }
            }
        }
    }
    for op in duplicates {
        let _ = op.reply.send(Ok(None));
    }
    usable.then_some(connection)
}

/// A completion waiting for its batch; answers whether the caller still owned the
/// record (and stored its response).
struct CompleteOp {
    scope: String,
    key: String,
    token: i64,
    status: i32,
    headers: Vec<u8>,
    body: Vec<u8>,
    reply: Option<oneshot::Sender<Result<bool, StoreError>>>,
}

impl CompleteOp {
    /// The single-row statement.
    async fn execute<'c, E>(&self, executor: E) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let done = sqlx::query(record::COMPLETE)
            .bind(&self.scope)
            .bind(&self.key)
            .bind(self.token)
            .bind(self.status)
            .bind(self.headers.as_slice())
            .bind(self.body.as_slice())
            .execute(executor)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    fn answer(self, answer: Result<bool, StoreError>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(answer);
        }
    }
}

/// The multi-row completion, fenced per row as the single-row one; returns the
/// token of every row it completed.
const COMPLETE_BATCH: &str = "\
UPDATE idempotency_records AS r
SET state = 'completed', status = batch.status, headers = batch.headers, body = batch.body
FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::bytea[], $6::bytea[])
    AS batch(scope, key, token, status, headers, body)
WHERE r.scope = batch.scope AND r.key = batch.key AND r.token = batch.token
  AND r.state = 'in_flight'
RETURNING r.token";

/// Runs the completions of one batch on `connection`, answers them, and returns
/// the connection if it is still usable.
async fn complete_batch(
    options: &PgConnectOptions,
    mut ops: Vec<CompleteOp>,
    connection: Option<PgConnection>,
) -> Option<PgConnection> {
    let mut connection = match connection_for(options, connection).await {
        Ok(connection) => connection,
        Err(error) => {
            let message = error.to_string();
            for op in ops {
                op.answer(Err(StoreError::Unavailable(message.clone().into())));
            }
            return None;
        }
    };
    if ops.len() == 1 {
        let op = ops.pop().expect("one");
        let answer = op.execute(&mut connection).await;
        let usable = answer.as_ref().err().is_none_or(still_usable);
        op.answer(answer.map_err(record::unavailable));
        return usable.then_some(connection);
    }
    let result = sqlx::query_scalar::<_, i64>(COMPLETE_BATCH)
        .bind(ops.iter().map(|op| op.scope.as_str()).collect::<Vec<_>>())
        .bind(ops.iter().map(|op| op.key.as_str()).collect::<Vec<_>>())
        .bind(ops.iter().map(|op| op.token).collect::<Vec<_>>())
        .bind(ops.iter().map(|op| op.status).collect::<Vec<_>>())
        .bind(
            ops.iter()
                .map(|op| op.headers.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(ops.iter().map(|op| op.body.as_slice()).collect::<Vec<_>>())
        .fetch_all(&mut connection)
        .await;
    let mut usable = true;
    match result {
        Ok(tokens) => {
            let completed: HashSet<i64> = tokens.into_iter().collect();
            for op in ops {
                let answer = completed.contains(&op.token);
                op.answer(Ok(answer));
            }
        }
        Err(error) if retry_alone(&error) => {
            tracing::debug!(%error, "batched completion failed; retrying its rows alone");
            for op in ops {
                let answer = op.execute(&mut connection).await;
                usable &= answer.as_ref().err().is_none_or(still_usable);
                op.answer(answer.map_err(record::unavailable));
            }
        }
        Err(error) => {
            usable = still_usable(&error);
            let message = error.to_string();
            for op in ops {
                op.answer(Err(StoreError::Unavailable(message.clone().into())));
            }
        }
    }
    usable.then_some(connection)
}
