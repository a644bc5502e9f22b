//! [`SqliteLog`]: a SQLite file that keeps the completed records of an embedded
//! store, a [`MemoryStore`](idempotency::MemoryStore) owned by one process.
//!
//! The memory store decides every reservation; this log only makes its completions
//! durable and reads them back (see [`idempotency::store::log`]). So:
//!
//! - **The file is locked for this process.** The connection uses SQLite's
//!   `locking_mode = EXCLUSIVE` and writes at open, so SQLite holds the file lock
//!   until the process exits or the log closes; a second server on the same file is
//!   refused ([`OpenError::InUse`]). A killed process's lock is released by the kernel.
//! - **Completions are written behind.** [`CompletionLog::append`] queues the record;
//!   one task writes queued records in multi-row inserts on the log's connection,
//!   never on a request's path, and reports how far it got
//!   ([`CompletionLog::durable_through`]). A write that fails is retried with a
//!   growing pause; meanwhile the records stay in memory (the memory store does not
//!   evict what the log does not hold yet), so replays keep working, and a log that
//!   stays behind fills the memory store, which then refuses new keys (503).
//! - **Rows are appended, never indexed by key.** An index on (scope, key), whose
//!   entries are random, would cost every written record a page of the write-ahead log
//!   of its own. Instead the log keeps an exact index of its rows in memory (a 64-bit
//!   hash of the key and the row id, built at open and kept up to date by every write
//!   and purge, all of which go through this process), so a fresh key costs no I/O
//!   and a stored one is read by row id.
//!
//! What a crash (SIGKILL, power loss) loses is the reservations in flight, whose
//! workers died with the process, so their keys are free at once, and the completions
//! queued in the last moments (the writer gathers rows for 5 ms before a write, which
//! takes a few milliseconds more): a retry of such a request executes again, as after
//! a crash between a handler's commit and a synchronous completion. A host guards
//! against both with a *recovery point* (see [`idempotency::IdempotencyContext`]).
//!
//! ```
//! use std::sync::Arc;
//!
//! use idempotency::{MemoryStore, MemoryStoreConfig};
//! use idempotency_sql::SqliteLog;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = SqliteLog::open(dir.path().join("idempotency.db")).await?;
//! // A second opener (here in the same process) is refused while the first holds it.
//! assert!(SqliteLog::open(dir.path().join("idempotency.db")).await.is_err());
//! let store = MemoryStore::with_log(MemoryStoreConfig::default(), Arc::new(log.clone()));
//! # drop(store);
//! log.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::codec::{decode_headers, encode_headers, from_unix_millis, unix_millis};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use idempotency::store::contains_bytes;
use idempotency::{
    CompletedRecord, CompletionLog, Fingerprint, LogPosition, RecordId, StoreError, StoredResponse,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode, SqliteSynchronous,
};
use sqlx::Connection;
use tokio::sync::{mpsc, Notify, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::migrations;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long opening waits for a file another connection holds before reporting it
/// in use (a process that is just exiting releases it within this).
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a write or read waits for the connection before it is reported
/// unavailable (the layer then answers 503 instead of hanging).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most rows one write-behind insert carries. Each row binds 8 values, far
/// below SQLite's limit of 32,766 per statement; each row count has its own cached
/// statement, and the connection's statement cache (100) holds them all.
const MAX_WRITE_ROWS: usize = 64;

/// How long the writer waits, after a completion arrives at an idle log, for more to
/// share its insert. Each insert rewrites the table's last page and the expiry
/// index's, so one row per insert cost a record two pages of the log's write-ahead
/// log and a hand-off to the connection's thread; a few rows' wait makes that one
/// per many records, and adds as much to what a crash can lose.
const GATHER: Duration = Duration::from_millis(5);

/// How many expired rows one purge statement deletes at most (the purge loops).
const PURGE_BATCH: i64 = 1_000;

/// The first pause before a failed write is retried; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Why [`SqliteLog::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another connection holds the file: another process serving from it, or a log
    /// already open on it in this process.
    #[error(
        "the idempotency database {0} is in use by another process (only one process may \
         serve from it; several instances need PostgreSQL)"
    )]
    InUse(PathBuf),
    /// The file could not be opened, migrated or read.
    #[error("cannot open the idempotency database {path}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: sqlx::Error,
    },
}

/// The completion log of an embedded store, in a SQLite file this process holds
/// alone (see the module docs). Cloning is cheap and shares the log.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog")
            .field("path", &self.inner.path)
            .field("unwritten", &self.unwritten())
            .finish_non_exhaustive()
    }
}

/// What the log and its writing task share.
struct Inner {
    path: PathBuf,
    /// The one connection; `None` once closed.
    connection: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// The rows the file holds, by key hash, in shards.
    index: Box<[Mutex<KeyIndex>]>,
    hasher: RandomState,
    /// The queue to the writing task, with the last position handed out: positions
    /// are given and records queued under one lock, so the queue is in position order.
    queue: Mutex<(LogPosition, mpsc::UnboundedSender<Unwritten>)>,
    /// Every record at or before this position is written (or refused for good).
    durable: AtomicU64,
    /// Set when the writing task has stopped: nothing more will become durable.
    stopped: AtomicBool,
    progress: Notify,
}

/// Which rows the file holds, by key: exact, because every insert and delete of the
/// file goes through this process. Keyed by a 64-bit hash of (scope, key); the rare
/// second row under one hash (another key's, or an expired row of the same key) is
/// kept apart, so that deleting one row never hides another.
#[derive(Default)]
struct KeyIndex {
    /// A row id for every hash that has rows.
    first: HashMap<u64, i64, BuildHasherDefault<PrehashedKey>>,
    /// The other row ids of hashes with more than one row.
    more: HashMap<u64, Vec<i64>, BuildHasherDefault<PrehashedKey>>,
}

impl KeyIndex {
    fn contains(&self, hash: u64) -> bool {
        self.first.contains_key(&hash)
    }

    /// The ids of the rows under `hash`.
    fn rows(&self, hash: u64) -> Vec<i64> {
        let mut rows: Vec<i64> = self.first.get(&hash).copied().into_iter().collect();
        if let Some(more) = self.more.get(&hash) {
            rows.extend_from_slice(more);
        }
        rows
    }

    fn add(&mut self, hash: u64, row: i64) {
        if let Some(&existing) = self.first.get(&hash) {
            let more = self.more.entry(hash).or_default();
            if existing != row && !more.contains(&row) {
                more.push(row);
            }
            if more.is_empty() {
                self.more.remove(&hash);
            }
        } else {
            self.first.insert(hash, row);
        }
    }

    fn remove(&mut self, hash: u64, row: i64) {
        if self.first.get(&hash) == Some(&row) {
            match self.more.get_mut(&hash).and_then(Vec::pop) {
                Some(next) => {
                    self.first.insert(hash, next);
                }
                None => {
                    self.first.remove(&hash);
                }
            }
        } else if let Some(more) = self.more.get_mut(&hash) {
            more.retain(|other| *other != row);
        }
        if self.more.get(&hash).is_some_and(Vec::is_empty) {
            self.more.remove(&hash);
        }
    }

    fn len(&self) -> usize {
        self.first.len() + self.more.values().map(Vec::len).sum::<usize>()
    }
}

/// A hasher for keys that are already uniform 64-bit hashes: it passes them through
/// (no crate offers exactly this; a second round of hashing would only cost time).
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than lose it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A completed record on its way to the file.
struct Unwritten {
    position: LogPosition,
    hash: u64,
    record: CompletedRecord,
}

type Checkout = OwnedMappedMutexGuard<Option<SqliteConnection>, SqliteConnection>;

impl SqliteLog {
    /// Opens (creating if needed) the database file at `path` for this process alone:
    /// migrates it, moves over the completed records a file of an earlier release
    /// kept in its `idempotency_records` table, and builds the index of its rows.
    ///
    /// # Errors
    /// [`OpenError::InUse`] while another connection holds the file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let failed = |source: sqlx::Error| {
            if is_locked(&source) {
                OpenError::InUse(path.clone())
            } else {
                OpenError::Database {
                    path: path.clone(),
                    source,
                }
            }
        };
        // WAL with `synchronous = NORMAL`: durable across process crashes; a power
        // loss may lose the last transactions, never corrupt the file.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .locking_mode(SqliteLockingMode::Exclusive)
            // Deleted rows and freed pages are overwritten with zeros, so that an
            // erased record (`erase_mentioning`) leaves nothing in the file.
            .pragma("secure_delete", "ON")
            .busy_timeout(OPEN_BUSY_TIMEOUT);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(failed)?;
        migrate(&mut connection)
            .await
            .map_err(|error| match error {
                MigrateError::Execute(source) => failed(source),
                other => failed(sqlx::Error::Migrate(Box::new(other))),
            })?;
        // A write: in exclusive locking mode, SQLite keeps the file locked from here
        // on. The records of the earlier one-table layout move over; its in-flight
        // reservations are dropped (their workers are gone).
        sqlx::raw_sql(
            "BEGIN IMMEDIATE;
             INSERT INTO idempotency_completed
                 (scope, key, fingerprint, status, headers, body, created_at, expires_at)
             SELECT scope, key, fingerprint, status, headers, body, created_at, expires_at
             FROM idempotency_records WHERE state = 'completed' ORDER BY created_at;
             DELETE FROM idempotency_records;
             COMMIT;",
        )
        .execute(&mut connection)
        .await
        .map_err(failed)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            path: path.clone(),
            connection: Arc::new(tokio::sync::Mutex::new(None)),
            index: (0..32).map(|_| Mutex::new(KeyIndex::default())).collect(),
            hasher: RandomState::new(),
            queue: Mutex::new((0, sender)),
            durable: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            progress: Notify::new(),
        });
        {
            let mut rows = sqlx::query_as::<_, (i64, String, String)>(
                "SELECT id, scope, key FROM idempotency_completed",
            )
            .fetch(&mut connection);
            while let Some((row, scope, key)) = rows.try_next().await.map_err(failed)? {
                let hash = inner.key_hash(&scope, &key);
                inner.index(hash).add(hash, row);
            }
        }
        *inner.connection.lock().await = Some(connection);
        tokio::spawn(write_behind(inner.clone(), receiver));
        tracing::debug!(path = %path.display(), records = inner.stored_records(), "opened the idempotency log");
        Ok(Self { inner })
    }

    /// How many records the file holds, as the index counts them.
    pub fn stored_records(&self) -> usize {
        self.inner.stored_records()
    }

    /// How many appended records are not written yet.
    pub fn unwritten(&self) -> usize {
        let appended = lock(&self.inner.queue).0;
        (appended - self.inner.durable.load(Ordering::Acquire)) as usize
    }

    /// Writes `records` into the file now (not behind), skipping any whose key the
    /// file may hold already; answers how many it wrote. For a host moving completed
    /// records from another store before serving.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be written.
    pub async fn import(&self, records: Vec<CompletedRecord>) -> Result<usize, StoreError> {
        let mut connection = self.inner.checkout().await.map_err(unavailable)?;
        let mut imported = 0;
        for record in records {
            let hash = self.inner.key_hash(&record.id.scope, &record.id.key);
            if self.inner.index(hash).contains(hash) {
                continue;
            }
            let row = Unwritten {
                position: 0,
                hash,
                record,
            };
            let written = insert_rows(&mut connection, std::slice::from_ref(&row))
                .await
                .map_err(unavailable)?;
            for (id, _, _) in written {
                self.inner.index(hash).add(hash, id);
            }
            imported += 1;
        }
        Ok(imported)
    }

    /// Moves the live completed records of an `idempotency_records` table (the layout
    /// of earlier releases, which a host may have kept in its own database file) into
    /// this log, and empties that table; answers how many moved. A database without
    /// the table is left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when either database cannot be read or written.
    pub async fn import_legacy_table(
        &self,
        source: &mut SqliteConnection,
    ) -> Result<usize, StoreError> {
        let has_table: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'idempotency_records'",
        )
        .fetch_optional(&mut *source)
        .await
        .map_err(unavailable)?;
        if has_table.is_none() {
            return Ok(0);
        }
        type LegacyRow = (String, String, Vec<u8>, i32, Vec<u8>, Vec<u8>, i64, i64);
        let rows: Vec<LegacyRow> = sqlx::query_as(
            "SELECT scope, key, fingerprint, status, headers, body, created_at, expires_at \
             FROM idempotency_records WHERE state = 'completed' AND expires_at > ?1",
        )
        .bind(unix_millis(SystemTime::now()))
        .fetch_all(&mut *source)
        .await
        .map_err(unavailable)?;
        let mut records = Vec::with_capacity(rows.len());
        for (scope, key, fingerprint, status, headers, body, created_at, expires_at) in rows {
            let (Some(fingerprint), Ok(status), Ok(headers)) = (
                Fingerprint::from_slice(&fingerprint),
                u16::try_from(status),
                decode_headers(&headers),
            ) else {
                tracing::warn!("skipped an unreadable record of an old idempotency table");
                continue;
            };
            records.push(CompletedRecord {
                id: RecordId::new(scope, key),
                fingerprint,
                response: StoredResponse {
                    status,
                    headers,
                    body: body.into(),
                },
                created_at: from_unix_millis(created_at),
                expires_at: from_unix_millis(expires_at),
            });
        }
        let moved = self.import(records).await?;
        sqlx::query("DELETE FROM idempotency_records")
            .execute(&mut *source)
            .await
            .map_err(unavailable)?;
        Ok(moved)
    }

    /// Writes what is queued, then releases the file (and its lock). Later writes
    /// fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        if let Err(error) = self.flush().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "closing the idempotency log with completions unwritten"
            );
        }
        if let Some(connection) = self.inner.connection.lock().await.take() {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the idempotency log's connection failed");
            }
        }
    }
}

impl Inner {
    fn key_hash(&self, scope: &str, key: &str) -> u64 {
        self.hasher.hash_one((scope, key))
    }

    fn index(&self, hash: u64) -> MutexGuard<'_, KeyIndex> {
        // The high bits choose the shard: the index's tables use the low ones.
        lock(&self.index[((hash >> 40) as usize) % self.index.len()])
    }

    fn stored_records(&self) -> usize {
        self.index.iter().map(|shard| lock(shard).len()).sum()
    }

    /// The connection, in order of arrival, within [`CHECKOUT_TIMEOUT`].
    async fn checkout(&self) -> Result<Checkout, sqlx::Error> {
        let guard: OwnedMutexGuard<Option<SqliteConnection>> =
            tokio::time::timeout(CHECKOUT_TIMEOUT, self.connection.clone().lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?;
        OwnedMutexGuard::try_map(guard, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Notes that every record through `position` is settled, and wakes waiters.
    fn advance(&self, position: LogPosition) {
        self.durable.fetch_max(position, Ordering::AcqRel);
        self.progress.notify_waiters();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.progress.notify_waiters();
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// mutation under these locks is a few infallible steps).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::unavailable(error)
}

#[async_trait]
impl CompletionLog for SqliteLog {
    fn append(&self, record: CompletedRecord) -> Result<LogPosition, StoreError> {
        let hash = self.inner.key_hash(&record.id.scope, &record.id.key);
        let mut queue = lock(&self.inner.queue);
        let position = queue.0 + 1;
        queue
            .1
            .send(Unwritten {
                position,
                hash,
                record,
            })
            .map_err(|_| {
                StoreError::Unavailable("the idempotency log's writer has stopped".into())
            })?;
        queue.0 = position;
        Ok(position)
    }

    fn durable_through(&self) -> LogPosition {
        self.inner.durable.load(Ordering::Acquire)
    }

    async fn wait_durable(&self, position: LogPosition) -> Result<(), StoreError> {
        loop {
            let progress = self.inner.progress.notified();
            if self.durable_through() >= position {
                return Ok(());
            }
            if self.inner.stopped.load(Ordering::Acquire) {
                return Err(StoreError::Unavailable(
                    "the idempotency log's writer has stopped".into(),
                ));
            }
            // Woken by every writer turn; the timeout only guards a lost wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(100), progress).await;
        }
    }

    fn may_hold(&self, id: &RecordId) -> bool {
        let hash = self.inner.key_hash(&id.scope, &id.key);
        self.inner.index(hash).contains(hash)
    }

    async fn read(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<CompletedRecord>, StoreError> {
        let hash = self.inner.key_hash(&id.scope, &id.key);
        let rows = self.inner.index(hash).rows(hash);
        if rows.is_empty() {
            return Ok(None);
        }
        let mut connection = self.inner.checkout().await.map_err(unavailable)?;
        let now = unix_millis(now);
        let mut found: Option<StoredRow> = None;
        // Almost always one row; more only when hashes collide or an expired row of
        // the key waits to be purged.
        for row in rows {
            let stored: Option<StoredRow> = sqlx::query_as(
                "SELECT scope, key, fingerprint, status, headers, body, created_at, expires_at \
                 FROM idempotency_completed WHERE id = ?1",
            )
            .bind(row)
            .fetch_optional(&mut *connection)
            .await
            .map_err(unavailable)?;
            if let Some(stored) = stored.filter(|stored| {
                stored.scope == id.scope && stored.key == id.key && stored.expires_at > now
            }) {
                if found
                    .as_ref()
                    .is_none_or(|best| best.expires_at < stored.expires_at)
                {
                    found = Some(stored);
                }
            }
        }
        found.map(StoredRow::into_record).transpose()
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        // Rows queued before now are written first, so that they are purged with the
        // file's (a queued row may itself be expired).
        self.flush().await?;
        let now = unix_millis(now);
        let mut purged = 0;
        loop {
            // Batches keep each write short; the subquery walks the `expires_at` index,
            // so the cost follows what expired, not the size of the file.
            let deleted: Vec<(i64, String, String)> = {
                let mut connection = self.inner.checkout().await.map_err(unavailable)?;
                sqlx::query_as(
                    "DELETE FROM idempotency_completed WHERE id IN (
                         SELECT id FROM idempotency_completed WHERE expires_at <= ?1 LIMIT ?2
                     ) RETURNING id, scope, key",
                )
                .bind(now)
                .bind(PURGE_BATCH)
                .fetch_all(&mut *connection)
                .await
                .map_err(unavailable)?
            };
            for (row, scope, key) in &deleted {
                let hash = self.inner.key_hash(scope, key);
                self.inner.index(hash).remove(hash, *row);
            }
            purged += deleted.len() as u64;
            if (deleted.len() as i64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    /// Writes what is queued (a queued record may mention the needle), searches the
    /// scope's rows with `instr` on their raw columns (bodies are stored as they are,
    /// headers in [`encode_headers`]'s form), decides each match exactly on the
    /// decoded record, and deletes the matches in one transaction. A row that no
    /// longer decodes but whose raw bytes hold the needle is deleted too. Then the
    /// write-ahead log is checkpointed and truncated: with `secure_delete` on, the
    /// file's pages hold zeros where the rows were, and no older copy of them is
    /// left in the `-wal` file.
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        if needle.is_empty() {
            return Ok(0);
        }
        self.flush().await?;
        let mut connection = self.inner.checkout().await.map_err(unavailable)?;
        // The scope's rows are not indexed (see the module docs): this scans the
        // table, which a purge by a person's identifier may afford.
        let candidates: Vec<CandidateRow> = sqlx::query_as(
            "SELECT id, scope, key, fingerprint, status, headers, body, created_at, expires_at \
             FROM idempotency_completed \
             WHERE scope = ?1 AND (instr(CAST(key AS BLOB), ?2) > 0 \
                 OR instr(CAST(status AS BLOB), ?2) > 0 \
                 OR instr(CAST(headers AS BLOB), ?2) > 0 \
                 OR instr(CAST(body AS BLOB), ?2) > 0)",
        )
        .bind(scope)
        .bind(needle)
        .fetch_all(&mut *connection)
        .await
        .map_err(unavailable)?;
        let doomed: Vec<(i64, u64)> = candidates
            .into_iter()
            .filter_map(|candidate| {
                let hash = self
                    .inner
                    .key_hash(&candidate.stored.scope, &candidate.stored.key);
                let mentions = match candidate.stored.into_record() {
                    Ok(record) => {
                        contains_bytes(record.id.key.as_bytes(), needle)
                            || record.response.mentions(needle)
                    }
                    Err(_) => true,
                };
                mentions.then_some((candidate.id, hash))
            })
            .collect();
        let mut erased = 0;
        if !doomed.is_empty() {
            let mut tx = connection.begin().await.map_err(unavailable)?;
            for (row, _) in &doomed {
                erased += sqlx::query("DELETE FROM idempotency_completed WHERE id = ?1")
                    .bind(row)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
            }
            tx.commit().await.map_err(unavailable)?;
            for (row, hash) in &doomed {
                self.inner.index(*hash).remove(*hash, *row);
            }
        }
        // Even with nothing deleted now: an earlier erasure's checkpoint may have failed.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *connection)
            .await
            .map_err(unavailable)?;
        if busy != 0 {
            return Err(StoreError::Unavailable(
                format!(
                    "erased {erased} idempotency records, but the write-ahead log of {} could \
                     not be checkpointed, so it may still hold them; erase again",
                    self.inner.path.display()
                )
                .into(),
            ));
        }
        Ok(erased)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let appended = lock(&self.inner.queue).0;
        self.wait_durable(appended).await
    }
}

/// A row of `idempotency_completed` with its id, as `erase_mentioning` reads it.
#[derive(sqlx::FromRow)]
struct CandidateRow {
    id: i64,
    #[sqlx(flatten)]
    stored: StoredRow,
}

/// A row of `idempotency_completed` as read back.
#[derive(sqlx::FromRow)]
struct StoredRow {
    scope: String,
    key: String,
    fingerprint: Vec<u8>,
    status: i32,
    headers: Vec<u8>,
    body: Vec<u8>,
    created_at: i64,
    expires_at: i64,
}

impl StoredRow {
    fn into_record(self) -> Result<CompletedRecord, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| StoreError::Corrupt("stored fingerprint is not 32 bytes".into()))?;
        let status = u16::try_from(self.status).map_err(|_| {
            StoreError::Corrupt(format!("stored status {} is invalid", self.status))
        })?;
        Ok(CompletedRecord {
            id: RecordId::new(self.scope, self.key),
            fingerprint,
            response: StoredResponse {
                status,
                headers: decode_headers(&self.headers)?,
                body: Bytes::from(self.body),
            },
            created_at: from_unix_millis(self.created_at),
            expires_at: from_unix_millis(self.expires_at),
        })
    }
}

fn is_locked(error: &sqlx::Error) -> bool {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with or without extended codes.
    match error {
        sqlx::Error::Database(database) => database
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Applies the embedded migrations in one transaction, recorded in this crate's own
/// ledger (see [`migrations`]).
async fn migrate(connection: &mut SqliteConnection) -> Result<(), MigrateError> {
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    migrations::apply_pending::<sqlx::Sqlite>(
        &mut tx,
        &MIGRATOR,
        "CREATE TABLE IF NOT EXISTS _idempotency_sql_migrations (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            checksum BLOB NOT NULL,
            installed_at INTEGER NOT NULL
        )",
        "SQLite",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn write_behind(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<Unwritten>) {
    let mut pending: VecDeque<Unwritten> = VecDeque::new();
    let mut received_through: LogPosition = 0;
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(row) => {
                    received_through = row.position;
                    pending.push_back(row);
                }
                None => return inner.stop(),
            }
            tokio::time::sleep(GATHER).await;
        }
        while pending.len() < MAX_WRITE_ROWS {
            match queue.try_recv() {
                Ok(row) => {
                    received_through = row.position;
                    pending.push_back(row);
                }
                Err(_) => break,
            }
        }
        let batch = take_batch(&mut pending);
        match write_batch(&inner, batch).await {
            Ok(()) => pause = FIRST_RETRY_PAUSE,
            Err(Unwritable::Closed(rows)) => {
                tracing::warn!(
                    rows = rows.len() + pending.len(),
                    "idempotency log closed with completions unwritten"
                );
                return inner.stop();
            }
            Err(Unwritable::Retry(failed)) => {
                // Back to the front, in order, for the next attempt after a pause.
                for row in failed.into_iter().rev() {
                    pending.push_front(row);
                }
                inner.advance(
                    pending
                        .front()
                        .map_or(received_through, |row| row.position - 1),
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                continue;
            }
        }
        inner.advance(
            pending
                .front()
                .map_or(received_through, |row| row.position - 1),
        );
    }
}

/// The next batch: rows from the front, at most one per key (a second completion of
/// a key, possible once the first expired, must replace the first's row, so it waits
/// for the next turn).
fn take_batch(pending: &mut VecDeque<Unwritten>) -> Vec<Unwritten> {
    let mut batch: Vec<Unwritten> = Vec::with_capacity(pending.len().min(MAX_WRITE_ROWS));
    while let Some(row) = pending.front() {
        if batch.len() == MAX_WRITE_ROWS
            || batch.iter().any(|other| other.record.id == row.record.id)
        {
            break;
        }
        batch.extend(pending.pop_front());
    }
    batch
}

/// Rows a turn could not write.
enum Unwritable {
    /// To try again after a pause.
    Retry(Vec<Unwritten>),
    /// The connection is closed for good.
    Closed(Vec<Unwritten>),
}

/// Writes `batch`; answers the rows it could not write.
async fn write_batch(inner: &Inner, batch: Vec<Unwritten>) -> Result<(), Unwritable> {
    let mut connection = match inner.checkout().await {
        Ok(connection) => connection,
        Err(sqlx::Error::PoolClosed) => return Err(Unwritable::Closed(batch)),
        Err(error) => {
            tracing::error!(%error, rows = batch.len(), "cannot write completed idempotency records; will retry");
            return Err(Unwritable::Retry(batch));
        }
    };
    // Expired rows of the same keys go first (rare: a key used again after expiry).
    for row in &batch {
        let rows = inner.index(row.hash).rows(row.hash);
        if rows.is_empty() {
            continue;
        }
        match delete_expired(&mut connection, row, &rows).await {
            Ok(deleted) => {
                let mut index = inner.index(row.hash);
                for id in deleted {
                    index.remove(row.hash, id);
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot replace an expired idempotency record; will retry");
                return Err(Unwritable::Retry(batch));
            }
        }
    }
    match insert_rows(&mut connection, &batch).await {
        Ok(written) => {
            index_written(inner, &batch, &written);
            Ok(())
        }
        Err(error) => {
            tracing::debug!(%error, rows = batch.len(), "batched write failed; writing each row alone");
            let mut retry = Vec::new();
            for row in batch {
                match insert_rows(&mut connection, std::slice::from_ref(&row)).await {
                    Ok(written) => index_written(inner, std::slice::from_ref(&row), &written),
                    Err(sqlx::Error::Database(error)) if error.is_check_violation() => {
                        // The row itself is refused (a malformed fingerprint, say): no
                        // retry could write it, so it is dropped rather than retried
                        // forever; its copy in memory is lost with the process.
                        tracing::error!(
                            %error,
                            key_hash = %row.record.id.log_tag(),
                            "a completed idempotency record cannot be written; dropped"
                        );
                    }
                    Err(error) => {
                        tracing::error!(%error, key_hash = %row.record.id.log_tag(), "cannot write a completed idempotency record; will retry");
                        retry.push(row);
                    }
                }
            }
            if retry.is_empty() {
                Ok(())
            } else {
                Err(Unwritable::Retry(retry))
            }
        }
    }
}

/// Notes `rows` as in the file under the ids `written` reports (id, scope, key).
fn index_written(inner: &Inner, rows: &[Unwritten], written: &[(i64, String, String)]) {
    for row in rows {
        let id = written
            .iter()
            .find(|(_, scope, key)| *scope == row.record.id.scope && *key == row.record.id.key)
            .map(|(id, _, _)| *id);
        match id {
            Some(id) => inner.index(row.hash).add(row.hash, id),
            // Unreachable: an insert that succeeded returns every row it wrote.
            None => tracing::error!(
                key_hash = %row.record.id.log_tag(),
                "a written idempotency record came back without its id"
            ),
        }
    }
}

/// Deletes the expired rows of `row`'s key among `rows` (the index's ids under its
/// hash); answers the ids deleted.
async fn delete_expired(
    connection: &mut SqliteConnection,
    row: &Unwritten,
    rows: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut deleted = Vec::new();
    for id in rows {
        let gone: Option<i64> = sqlx::query_scalar(
            "DELETE FROM idempotency_completed \
             WHERE id = ?1 AND scope = ?2 AND key = ?3 AND expires_at <= ?4 RETURNING id",
        )
        .bind(id)
        .bind(row.record.id.scope.as_str())
        .bind(row.record.id.key.as_str())
        .bind(unix_millis(row.record.created_at))
        .fetch_optional(&mut *connection)
        .await?;
        deleted.extend(gone);
    }
    Ok(deleted)
}

/// Inserts `rows`; answers (id, scope, key) of each row written.
async fn insert_rows(
    connection: &mut SqliteConnection,
    rows: &[Unwritten],
) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let mut query = sqlx::query_as(&INSERT_SQL[rows.len() - 1]);
    for row in rows {
        let record = &row.record;
        query = query
            .bind(record.id.scope.as_str())
            .bind(record.id.key.as_str())
            .bind(record.fingerprint.as_bytes().as_slice())
            .bind(i32::from(record.response.status))
            .bind(encode_headers(&record.response.headers))
            .bind(record.response.body.as_ref())
            .bind(unix_millis(record.created_at))
            .bind(unix_millis(record.expires_at));
    }
    query.fetch_all(&mut *connection).await
}

/// `INSERT_SQL[n - 1]` inserts `n` completed rows.
static INSERT_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (1..=MAX_WRITE_ROWS)
        .map(|rows| {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
            format!(
                "INSERT INTO idempotency_completed
    (scope, key, fingerprint, status, headers, body, created_at, expires_at)
VALUES {values}
RETURNING id, scope, key"
            )
        })
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_index_keeps_every_row_of_a_shared_hash() {
        let mut index = KeyIndex::default();
        index.add(7, 1);
        index.add(7, 2);
        index.add(7, 3);
        assert_eq!(index.len(), 3);
        index.remove(7, 1);
        assert!(index.contains(7));
        let mut rows = index.rows(7);
        rows.sort_unstable();
        assert_eq!(rows, vec![2, 3]);
        index.remove(7, 3);
        index.remove(7, 2);
        assert!(!index.contains(7));
        assert_eq!(index.len(), 0);
    }
}
