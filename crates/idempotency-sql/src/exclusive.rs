//! [`ExclusiveSqliteStore`]: a SQLite database file owned by one process, which keeps
//! the live state of its keys in memory and writes completed records behind.
//!
//! # Why a second SQLite store
//!
//! [`SqliteStore`](crate::SqliteStore) makes every reservation a durable
//! `INSERT … ON CONFLICT` and every completion a durable `UPDATE`, before it answers.
//! That is what several processes sharing a file need. But a server that is the only
//! user of its file pays for it on every keyed request: two more waits for the one
//! writer connection, and, through sqlx, each wait a hand-off to the connection's
//! thread and back. On a 2-core machine a keyed create then ran at 0.37 to 0.49 of an
//! unkeyed one (docs/BENCHMARKS.md of the Attestix repository).
//!
//! A process that holds the file alone does not need the reservation on disk: a
//! reservation only means something while its worker lives, and every worker of this
//! store lives in this process. So here:
//!
//! - **The file is locked for this process.** The connection uses SQLite's
//!   `locking_mode = EXCLUSIVE` and writes at open, so SQLite holds the file lock
//!   until the process exits or the store closes; another process (another server on
//!   the same data directory, a [`SqliteStore`](crate::SqliteStore) on the same file)
//!   cannot open it ([`ExclusiveOpenError::InUse`]). A killed process's lock is
//!   released by the kernel.
//! - **Reservations are a compare-and-set in memory** (a mutex per shard), with the
//!   same leases, takeovers and fencing tokens as the memory store. The file is
//!   consulted only for keys it holds a record of: the store keeps an exact index
//!   of the file's rows (a 64-bit hash of the key and the row's id, 19 to 39 bytes
//!   per stored record as the table fills), built when the file opens and kept up to
//!   date by every write and purge, all of which go through this process. A fresh
//!   key, the common case, touches no I/O at all. A key the file holds is reserved in
//!   memory first and then read by row id, so nothing can change it in between.
//! - **Rows are appended, never indexed by key.** Completed records live in the
//!   table `idempotency_completed`, in write order, with one index on expiry (also
//!   appended to): lookups go through the in-memory index to row ids. An index on
//!   (scope, key), whose entries are random, would cost every written record a page
//!   of the write-ahead log of its own.
//! - **Completions are written behind.** [`Store::complete`] records the response in
//!   memory (replays of it are answered from there at once) and queues its row; a
//!   task writes queued rows in multi-row inserts on its own connection, never on the
//!   request's path. [`Store::flush`] waits until everything queued is written; call
//!   it before a clean shutdown.
//!
//! What a crash (SIGKILL, power loss) can lose, then, is the reservations in flight,
//! whose workers died with the process, so their keys are free at once (a shared
//! store frees them when their lease ends), and the completions queued in the last
//! moments: typically one writer turn, a few milliseconds. A retry of such a request
//! executes again. That is the same outcome as a crash between a handler's commit and
//! a synchronous completion, and a host guards against it the same way: with a
//! *recovery point* (see [`idempotency::IdempotencyContext`]), which answers the
//! retry with the resource already made. Records that reached the file survive.
//!
//! # Back-pressure and failures
//!
//! A queued row that cannot be written (a full disk, an I/O error) is retried, with a
//! growing pause, and stays in memory meanwhile, so its replays keep working. When
//! more than [`ExclusiveConfig::max_unwritten`] completions wait, new reservations are
//! refused with [`StoreError::Unavailable`] (the layer answers 503): the store fails
//! closed instead of growing without bound.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use idempotency::{FencingToken, Fingerprint, RecordId, ReserveOutcome, ReserveRequest, Store};
//! use idempotency_sql::ExclusiveSqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = ExclusiveSqliteStore::open(dir.path().join("idempotency.db")).await?;
//! // A second opener (here in the same process) is refused while the first holds it.
//! assert!(ExclusiveSqliteStore::open(dir.path().join("idempotency.db")).await.is_err());
//!
//! let id = RecordId::new("principal-42", "order-2024-0001");
//! let fingerprint = Fingerprint::from_bytes([7; 32]);
//! let request = ReserveRequest {
//!     id: &id,
//!     fingerprint: &fingerprint,
//!     token: FencingToken::generate(),
//!     now: SystemTime::now(),
//!     lease: Duration::from_secs(60),
//!     retention: Duration::from_secs(24 * 60 * 60),
//! };
//! assert_eq!(store.reserve(request).await?, ReserveOutcome::Reserved { took_over: false });
//! store.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use idempotency::store::{from_unix_millis, unix_millis};
use idempotency::{
    ExistingRecord, FencingToken, Fingerprint, RecordId, RecordState, ReserveOutcome,
    ReserveRequest, Store, StoreError, StoredResponse,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{mpsc, Notify};

use crate::record;
use crate::sqlite::{migrate_through, SqliteStore};
use crate::writer::{SqliteWriter, WriterConnection};

/// How long opening waits for a file another connection holds before reporting it
/// in use (a process that is just exiting releases it within this).
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The most rows one write-behind insert carries. Each row binds 8 values, far
/// below SQLite's limit of 32,766 per statement; each row count has its own cached
/// statement, and the connection's statement cache (100) holds them all.
const MAX_WRITE_ROWS: usize = 64;

/// The first pause before a failed write is retried; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// The longest a reservation waits for another caller's read of the same key.
const CHECK_WAIT: Duration = Duration::from_secs(1);

/// Bounds and layout of an [`ExclusiveSqliteStore`].
#[derive(Debug, Clone)]
pub struct ExclusiveConfig {
    /// Independently locked shards of the in-memory state.
    pub shards: usize,
    /// The most completions that may wait to be written before new reservations are
    /// refused (503). Each holds its response in memory.
    pub max_unwritten: usize,
    /// How many expired rows one purge statement deletes at most (the purge loops).
    pub purge_batch: u32,
}

impl Default for ExclusiveConfig {
    fn default() -> Self {
        Self {
            shards: 32,
            max_unwritten: 10_000,
            purge_batch: 1_000,
        }
    }
}

/// Why [`ExclusiveSqliteStore::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExclusiveOpenError {
    /// Another connection holds the file: another process serving from the same
    /// database, or a store already open on it in this process.
    #[error(
        "the idempotency database {0} is in use by another process (only one process may \
         serve from it; several instances need PostgreSQL)"
    )]
    InUse(PathBuf),
    /// The file could not be opened, migrated or read.
    #[error("cannot open the idempotency database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: sqlx::Error,
    },
}

/// A completed record to put into the file by [`ExclusiveSqliteStore::import`], such
/// as one read from another store when a host moves its records.
#[derive(Debug, Clone)]
pub struct ImportedRecord {
    /// Its scope and key.
    pub id: RecordId,
    /// The fingerprint of the request that made it.
    pub fingerprint: Fingerprint,
    /// The response it replays.
    pub response: StoredResponse,
    /// When it was reserved.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// An idempotency [`Store`] in a SQLite file that this process holds alone (see the
/// module docs). Cloning is cheap and shares the store.
#[derive(Clone)]
pub struct ExclusiveSqliteStore {
    state: Arc<State>,
    queue: mpsc::UnboundedSender<Unwritten>,
}

impl std::fmt::Debug for ExclusiveSqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExclusiveSqliteStore")
            .field("path", &self.state.path)
            .field("unwritten", &self.unwritten())
            .finish_non_exhaustive()
    }
}

/// What the store and its writing task share.
struct State {
    path: PathBuf,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    connection: SqliteWriter,
    config: ExclusiveConfig,
    /// Completions queued and not yet written (or given up).
    unwritten: AtomicUsize,
    /// Completions queued since open, and those written (or given up) since open:
    /// [`Store::flush`] waits for the second to reach the first as it was when called.
    queued_total: AtomicU64,
    settled_total: AtomicU64,
    settled: Notify,
    /// Tells records written by this process apart from one another.
    sequence: AtomicU64,
}

#[derive(Default)]
struct Shard {
    /// Keys in flight, and completed keys whose rows are not yet written.
    live: HashMap<RecordId, Live>,
    /// The keys the file holds a row of.
    stored: KeyIndex,
}

enum Live {
    InFlight {
        fingerprint: Fingerprint,
        token: FencingToken,
        lease_expires_at: i64,
        expires_at: i64,
        reserved_at: i64,
        /// The file may hold an expired row of this key, which the write replaces.
        row_in_file: bool,
        /// The file is being read to decide whether this reservation stands: the key
        /// may be completed there, so other callers read the file too instead of
        /// taking this entry for a request in flight.
        checking: bool,
        /// Created only when somebody waits.
        waiters: Option<Arc<Notify>>,
    },
    Unwritten {
        fingerprint: Fingerprint,
        response: StoredResponse,
        expires_at: i64,
        /// Which completion this is, so that the writer leaves a newer record alone.
        sequence: u64,
    },
}

impl Live {
    fn view(&self) -> ExistingRecord {
        match self {
            Self::InFlight {
                fingerprint,
                lease_expires_at,
                expires_at,
                ..
            } => ExistingRecord {
                fingerprint: *fingerprint,
                state: RecordState::InFlight {
                    lease_expires_at: from_unix_millis(*lease_expires_at),
                },
                expires_at: from_unix_millis(*expires_at),
            },
            Self::Unwritten {
                fingerprint,
                response,
                expires_at,
                ..
            } => ExistingRecord {
                fingerprint: *fingerprint,
                state: RecordState::Completed(response.clone()),
                expires_at: from_unix_millis(*expires_at),
            },
        }
    }

    fn expires_at(&self) -> i64 {
        match self {
            Self::InFlight { expires_at, .. } | Self::Unwritten { expires_at, .. } => *expires_at,
        }
    }
}

/// A completed record on its way to the file.
struct Unwritten {
    id: RecordId,
    hash: u64,
    fingerprint: [u8; 32],
    status: i32,
    headers: Vec<u8>,
    body: Bytes,
    expires_at: i64,
    created_at: i64,
    /// Delete this key's expired row first.
    replaces_row: bool,
    sequence: u64,
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

/// A hasher for keys that are already uniform 64-bit hashes: it passes them through.
/// (Written here because the index's keys are the store's own `RandomState` hashes; a
/// second round of hashing would only cost time.)
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

impl ExclusiveSqliteStore {
    /// Opens (creating if needed) the database file at `path` for this process alone,
    /// with the default [`ExclusiveConfig`]: migrates it, forgets the in-flight rows a
    /// [`SqliteStore`](crate::SqliteStore) may have left (their workers are gone, or
    /// the file could not be locked), and builds the index of the keys it holds.
    ///
    /// # Errors
    /// [`ExclusiveOpenError::InUse`] while another connection holds the file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, ExclusiveOpenError> {
        Self::open_with(path, ExclusiveConfig::default()).await
    }

    /// As [`ExclusiveSqliteStore::open`], with the given bounds.
    pub async fn open_with(
        path: impl AsRef<Path>,
        config: ExclusiveConfig,
    ) -> Result<Self, ExclusiveOpenError> {
        let path = path.as_ref().to_path_buf();
        let failed = |source: sqlx::Error| {
            if is_locked(&source) {
                ExclusiveOpenError::InUse(path.clone())
            } else {
                ExclusiveOpenError::Database {
                    path: path.clone(),
                    source,
                }
            }
        };
        let options: SqliteConnectOptions = SqliteStore::connect_options(&path)
            .locking_mode(SqliteLockingMode::Exclusive)
            .busy_timeout(OPEN_BUSY_TIMEOUT);
        let connection = SqliteWriter::connect(&options).await.map_err(failed)?;
        migrate_through(&connection)
            .await
            .map_err(|error| match error {
                sqlx::migrate::MigrateError::Execute(source) => failed(source),
                other => failed(sqlx::Error::Migrate(Box::new(other))),
            })?;
        let shards = config.shards.max(1);
        let state = Arc::new(State {
            path: path.clone(),
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            connection,
            config,
            unwritten: AtomicUsize::new(0),
            queued_total: AtomicU64::new(0),
            settled_total: AtomicU64::new(0),
            settled: Notify::new(),
            sequence: AtomicU64::new(0),
        });
        {
            let mut connection = state.connection.acquire().await.map_err(failed)?;
            // A write: in exclusive locking mode, SQLite keeps the file locked from
            // here on. A shared store's rows move over: its completed records into
            // this store's table, its in-flight ones dropped (their workers are gone).
            sqlx::raw_sql(
                "BEGIN IMMEDIATE;
                 INSERT INTO idempotency_completed
                     (scope, key, fingerprint, status, headers, body, created_at, expires_at)
                 SELECT scope, key, fingerprint, status, headers, body, created_at, expires_at
                 FROM idempotency_records WHERE state = 'completed' ORDER BY created_at;
                 DELETE FROM idempotency_records;
                 COMMIT;",
            )
            .execute(&mut *connection)
            .await
            .map_err(failed)?;
            let mut rows = sqlx::query_as::<_, (i64, String, String)>(
                "SELECT id, scope, key FROM idempotency_completed",
            )
            .fetch(&mut *connection);
            while let Some((row, scope, key)) = rows.try_next().await.map_err(failed)? {
                let hash = state.key_hash(&scope, &key);
                state.lock(hash).stored.add(hash, row);
            }
        }
        let (queue, unwritten) = mpsc::unbounded_channel();
        tokio::spawn(write_behind(state.clone(), unwritten));
        tracing::debug!(path = %path.display(), records = state.stored_records(), "opened the exclusive idempotency store");
        Ok(Self { state, queue })
    }

    /// How many records the file holds, as the index counts them.
    pub fn stored_records(&self) -> usize {
        self.state.stored_records()
    }

    /// How many completions wait to be written.
    pub fn unwritten(&self) -> usize {
        self.state.unwritten.load(Ordering::Relaxed)
    }

    /// Writes `records` into the file now (not behind), skipping any whose key the
    /// store already holds; returns how many it wrote. For a host moving completed
    /// records from another store before serving.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be written.
    pub async fn import(&self, records: Vec<ImportedRecord>) -> Result<usize, StoreError> {
        let mut imported = 0;
        let mut connection = self
            .state
            .connection
            .acquire()
            .await
            .map_err(record::unavailable)?;
        for record in records {
            let hash = self.state.key_hash(&record.id.scope, &record.id.key);
            if self.state.lock(hash).stored.contains(hash) {
                continue;
            }
            let row = Unwritten::imported(record, hash);
            let written = insert_rows(&mut connection, std::slice::from_ref(&row))
                .await
                .map_err(record::unavailable)?;
            for (id, _, _) in written {
                self.state.lock(hash).stored.add(hash, id);
            }
            imported += 1;
        }
        Ok(imported)
    }

    /// Writes what is queued, then releases the file (and its lock). Later calls fail
    /// with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        if let Err(error) = self.flush().await {
            tracing::warn!(%error, "closing the idempotency store with completions unwritten");
        }
        self.state.connection.close().await;
    }

    fn queue(&self, row: Unwritten) -> Result<(), StoreError> {
        self.state.unwritten.fetch_add(1, Ordering::Relaxed);
        self.state.queued_total.fetch_add(1, Ordering::AcqRel);
        self.queue.send(row).map_err(|_| {
            self.state.unwritten.fetch_sub(1, Ordering::Relaxed);
            StoreError::Unavailable("the idempotency store's writer has stopped".into())
        })
    }

    /// The file's row of `id` among the rows the index lists under `hash` (the latest,
    /// should an expired one linger beside it), if any.
    async fn read_row(&self, id: &RecordId, hash: u64) -> Result<Option<StoredRow>, StoreError> {
        let rows = self.state.lock(hash).stored.rows(hash);
        if rows.is_empty() {
            return Ok(None);
        }
        let mut connection = self
            .state
            .connection
            .acquire()
            .await
            .map_err(record::unavailable)?;
        let candidates: Vec<StoredRow> = sqlx::query_as(
            "SELECT id, scope, key, fingerprint, status, headers, body, expires_at \
             FROM idempotency_completed WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(format!("{rows:?}"))
        .fetch_all(&mut *connection)
        .await
        .map_err(record::unavailable)?;
        Ok(candidates
            .into_iter()
            .filter(|row| row.scope == id.scope && row.key == id.key)
            .max_by_key(|row| row.expires_at))
    }
}

impl State {
    fn key_hash(&self, scope: &str, key: &str) -> u64 {
        self.hasher.hash_one((scope, key))
    }

    fn lock(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The high bits choose the shard: the index's tables use the low ones.
        let index = ((hash >> 40) as usize) % self.shards.len();
        // Every mutation under the lock is a few infallible steps, so a poisoned lock
        // holds consistent data.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stored_records(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .stored
                    .len()
            })
            .sum()
    }

    /// Counts `count` queued rows as written or given up, and wakes flushers.
    fn settle(&self, count: usize) {
        self.unwritten.fetch_sub(count, Ordering::Relaxed);
        self.settled_total.fetch_add(count as u64, Ordering::AcqRel);
        self.settled.notify_waiters();
    }
}

impl Unwritten {
    fn imported(record: ImportedRecord, hash: u64) -> Self {
        Self {
            hash,
            fingerprint: *record.fingerprint.as_bytes(),
            status: i32::from(record.response.status),
            headers: record.response.encode_headers(),
            body: record.response.body,
            expires_at: unix_millis(record.expires_at),
            created_at: unix_millis(record.created_at),
            replaces_row: false,
            sequence: 0,
            id: record.id,
        }
    }
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
    expires_at: i64,
}

impl StoredRow {
    fn into_existing(self) -> Result<ExistingRecord, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| StoreError::Corrupt("stored fingerprint is not 32 bytes".into()))?;
        let status = u16::try_from(self.status).map_err(|_| {
            StoreError::Corrupt(format!("stored status {} is invalid", self.status))
        })?;
        Ok(ExistingRecord {
            fingerprint,
            state: RecordState::Completed(StoredResponse {
                status,
                headers: StoredResponse::decode_headers(&self.headers)?,
                body: Bytes::from(self.body),
            }),
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

fn wake(waiters: &mut Option<Arc<Notify>>) {
    if let Some(waiters) = waiters.take() {
        waiters.notify_waiters();
    }
}

/// What a reservation found under the lock.
enum Claim {
    Answer(ReserveOutcome),
    /// Reserved in memory; the file must be read before it counts.
    Check,
    /// Another caller is reading the file for this key: read it too, and if the key
    /// is not completed there, wait for that caller's decision.
    Peek(OwnedNotified),
}

#[async_trait]
impl Store for ExclusiveSqliteStore {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        let now = unix_millis(request.now);
        let hash = self.state.key_hash(&request.id.scope, &request.id.key);
        loop {
            match self.claim(&request, now, hash)? {
                Claim::Answer(outcome) => return Ok(outcome),
                Claim::Check => {}
                Claim::Peek(decided) => {
                    if let Some(row) = self.read_row(request.id, hash).await? {
                        if row.expires_at > now {
                            return Ok(ReserveOutcome::Existing(row.into_existing()?));
                        }
                    }
                    // Bounded so that a lost wake-up costs a pause, not a hang.
                    let _ = tokio::time::timeout(CHECK_WAIT, decided).await;
                    continue;
                }
            }
            // The key is ours in memory while the file is read, so nothing can write
            // it meanwhile: every write of a key needs its completion, hence its owner.
            let row = match self.read_row(request.id, hash).await {
                Ok(row) => row,
                Err(error) => {
                    self.release(request.id, request.token).await.ok();
                    return Err(error);
                }
            };
            let mut shard = self.state.lock(hash);
            let ours = matches!(
                shard.live.get(request.id),
                Some(Live::InFlight { token, .. }) if *token == request.token
            );
            if !ours {
                // Taken over while the file was read (a lease shorter than a read):
                // decide again on what is there now.
                continue;
            }
            match row {
                Some(row) if row.expires_at > now => {
                    if let Some(Live::InFlight { mut waiters, .. }) = shard.live.remove(request.id)
                    {
                        wake(&mut waiters);
                    }
                    drop(shard);
                    return Ok(ReserveOutcome::Existing(row.into_existing()?));
                }
                row => {
                    if let Some(Live::InFlight {
                        row_in_file,
                        checking,
                        waiters,
                        ..
                    }) = shard.live.get_mut(request.id)
                    {
                        *row_in_file = row.is_some();
                        *checking = false;
                        wake(waiters);
                    }
                    return Ok(ReserveOutcome::Reserved { took_over: false });
                }
            }
        }
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let hash = self.state.key_hash(&id.scope, &id.key);
        let sequence = self.state.sequence.fetch_add(1, Ordering::Relaxed);
        let row = {
            let mut shard = self.state.lock(hash);
            let Some(live) = shard.live.get_mut(id) else {
                return Err(StoreError::NotOwner);
            };
            let Live::InFlight {
                fingerprint,
                token: owner,
                expires_at,
                reserved_at,
                row_in_file,
                waiters,
                ..
            } = live
            else {
                return Err(StoreError::NotOwner);
            };
            if *owner != token {
                return Err(StoreError::NotOwner);
            }
            let row = Unwritten {
                id: id.clone(),
                hash,
                fingerprint: *fingerprint.as_bytes(),
                status: i32::from(response.status),
                headers: response.encode_headers(),
                body: response.body.clone(),
                expires_at: *expires_at,
                created_at: *reserved_at,
                replaces_row: *row_in_file,
                sequence,
            };
            let mut waiters = waiters.take();
            *live = Live::Unwritten {
                fingerprint: *fingerprint,
                response: response.clone(),
                expires_at: *expires_at,
                sequence,
            };
            wake(&mut waiters);
            row
        };
        self.queue(row)
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        let hash = self.state.key_hash(&id.scope, &id.key);
        let mut shard = self.state.lock(hash);
        match shard.live.get(id) {
            Some(Live::InFlight { token: owner, .. }) if *owner == token => {
                if let Some(Live::InFlight { mut waiters, .. }) = shard.live.remove(id) {
                    wake(&mut waiters);
                }
                Ok(())
            }
            _ => Err(StoreError::NotOwner),
        }
    }

    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        let now_ms = unix_millis(now);
        let hash = self.state.key_hash(&id.scope, &id.key);
        {
            let shard = self.state.lock(hash);
            match shard.live.get(id) {
                // A reservation still reading the file is not yet in flight: the file
                // decides.
                Some(Live::InFlight { checking: true, .. }) => {}
                Some(live) if live.expires_at() > now_ms => return Ok(Some(live.view())),
                _ => {}
            }
            if !shard.stored.contains(hash) {
                return Ok(None);
            }
        }
        let row = self.read_row(id, hash).await?;
        row.filter(|row| row.expires_at > now_ms)
            .map(StoredRow::into_existing)
            .transpose()
    }

    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        let hash = self.state.key_hash(&id.scope, &id.key);
        let notified = {
            let mut shard = self.state.lock(hash);
            let Some(Live::InFlight { waiters, .. }) = shard.live.get_mut(id) else {
                return Ok(());
            };
            // Made under the lock, so a completion right after unlocking still wakes us.
            waiters
                .get_or_insert_with(|| Arc::new(Notify::new()))
                .clone()
                .notified_owned()
        };
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = unix_millis(now);
        // Rows queued before now are written first, so that they are purged with the
        // file's (a queued row may itself be expired).
        self.flush().await?;
        let mut purged = 0;
        for shard in self.state.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = shard.live.len();
            shard.live.retain(|_, live| match live {
                Live::InFlight {
                    expires_at,
                    waiters,
                    ..
                } if *expires_at <= now => {
                    wake(waiters);
                    false
                }
                _ => true,
            });
            purged += (before - shard.live.len()) as u64;
        }
        let batch = i64::from(self.state.config.purge_batch.max(1));
        loop {
            // Batches keep each write short; the subquery walks the `expires_at` index,
            // so the cost follows what expired, not the size of the file.
            let deleted: Vec<(i64, String, String)> = {
                let mut connection = self
                    .state
                    .connection
                    .acquire()
                    .await
                    .map_err(record::unavailable)?;
                sqlx::query_as(
                    "DELETE FROM idempotency_completed WHERE id IN (
                         SELECT id FROM idempotency_completed WHERE expires_at <= $1 LIMIT $2
                     ) RETURNING id, scope, key",
                )
                .bind(now)
                .bind(batch)
                .fetch_all(&mut *connection)
                .await
                .map_err(record::unavailable)?
            };
            for (row, scope, key) in &deleted {
                let hash = self.state.key_hash(scope, key);
                self.state.lock(hash).stored.remove(hash, *row);
            }
            purged += deleted.len() as u64;
            if (deleted.len() as i64) < batch {
                return Ok(purged);
            }
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let target = self.state.queued_total.load(Ordering::Acquire);
        loop {
            let settled = self.state.settled.notified();
            if self.state.settled_total.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if self.queue.is_closed() {
                return Err(StoreError::Unavailable(
                    "the idempotency store's writer has stopped".into(),
                ));
            }
            // Woken by every settled batch; the timeout only guards a lost wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(100), settled).await;
        }
    }

    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        let now = unix_millis(now);
        let hash = self.state.key_hash(&id.scope, &id.key);
        let shard = self.state.lock(hash);
        match shard.live.get(id) {
            Some(live @ Live::Unwritten { expires_at, .. }) if *expires_at > now => {
                Some(live.view())
            }
            _ => None,
        }
    }
}

impl ExclusiveSqliteStore {
    /// Decides a reservation in memory, under the shard lock.
    fn claim(
        &self,
        request: &ReserveRequest<'_>,
        now: i64,
        hash: u64,
    ) -> Result<Claim, StoreError> {
        let mut shard = self.state.lock(hash);
        let mut row_in_file = shard.stored.contains(hash);
        match shard.live.get_mut(request.id) {
            Some(Live::InFlight {
                checking: true,
                waiters,
                ..
            }) => {
                // Made under the lock, so the checker's decision right after still
                // wakes us.
                let decided = waiters
                    .get_or_insert_with(|| Arc::new(Notify::new()))
                    .clone()
                    .notified_owned();
                return Ok(Claim::Peek(decided));
            }
            Some(live) if live.expires_at() <= now => {
                // Expired: an unwritten record's row is still to come, and will be
                // replaced.
                row_in_file |= matches!(live, Live::Unwritten { .. });
                if let Live::InFlight { waiters, .. } = live {
                    wake(waiters);
                }
            }
            Some(Live::InFlight {
                fingerprint,
                token,
                lease_expires_at,
                ..
            }) if *lease_expires_at <= now && fingerprint == request.fingerprint => {
                // The owner's lease ended: presumed dead. Take over with a new token;
                // the old owner can no longer complete or release.
                *token = request.token;
                *lease_expires_at = unix_millis(request.lease_expires_at());
                return Ok(Claim::Answer(ReserveOutcome::Reserved { took_over: true }));
            }
            Some(live) => return Ok(Claim::Answer(ReserveOutcome::Existing(live.view()))),
            None => {}
        }
        if self.unwritten() >= self.state.config.max_unwritten {
            return Err(StoreError::Unavailable(format!(
                "{} completions are waiting to be written to {}; refusing new work until \
                 they are",
                self.unwritten(),
                self.state.path.display()
            )));
        }
        shard.live.insert(
            request.id.clone(),
            Live::InFlight {
                fingerprint: *request.fingerprint,
                token: request.token,
                lease_expires_at: unix_millis(request.lease_expires_at()),
                expires_at: unix_millis(request.expires_at()),
                reserved_at: now,
                row_in_file,
                checking: row_in_file,
                waiters: None,
            },
        );
        Ok(if row_in_file {
            Claim::Check
        } else {
            Claim::Answer(ReserveOutcome::Reserved { took_over: false })
        })
    }
}

/// The write-behind task: takes queued rows in batches and writes each batch with
/// one insert, retrying what fails. Ends when every store handle is gone and the
/// queue is empty.
async fn write_behind(state: Arc<State>, mut queue: mpsc::UnboundedReceiver<Unwritten>) {
    let mut pending: VecDeque<Unwritten> = VecDeque::new();
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(row) => pending.push_back(row),
                None => return,
            }
        }
        while pending.len() < MAX_WRITE_ROWS {
            match queue.try_recv() {
                Ok(row) => pending.push_back(row),
                Err(_) => break,
            }
        }
        let batch = take_batch(&mut pending);
        match write_batch(&state, batch).await {
            Ok(()) => pause = FIRST_RETRY_PAUSE,
            Err(Unwritable::Closed(rows)) => {
                // The store was closed; nothing can be written any more.
                tracing::warn!(
                    rows = rows.len() + pending.len(),
                    "idempotency store closed with completions unwritten"
                );
                let given_up = rows.len() + pending.len();
                state.settle(given_up);
                return;
            }
            Err(Unwritable::Retry(failed)) => {
                // Back to the front, in order, for the next attempt after a pause.
                for row in failed.into_iter().rev() {
                    pending.push_front(row);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// The next batch: rows from the front, at most one per key (a second completion of
/// a key, possible once the first expired, must replace the first's row, so it waits
/// for the next turn).
fn take_batch(pending: &mut VecDeque<Unwritten>) -> Vec<Unwritten> {
    let mut batch: Vec<Unwritten> = Vec::with_capacity(pending.len().min(MAX_WRITE_ROWS));
    while let Some(row) = pending.front() {
        if batch.len() == MAX_WRITE_ROWS || batch.iter().any(|other| other.id == row.id) {
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
async fn write_batch(state: &State, batch: Vec<Unwritten>) -> Result<(), Unwritable> {
    let mut connection = match state.connection.acquire().await {
        Ok(connection) => connection,
        Err(sqlx::Error::PoolClosed) => return Err(Unwritable::Closed(batch)),
        Err(error) => {
            tracing::error!(%error, rows = batch.len(), "cannot write completed idempotency records; will retry");
            return Err(Unwritable::Retry(batch));
        }
    };
    // Expired rows of the same keys go first (rare: a key used again after expiry).
    for row in batch.iter().filter(|row| row.replaces_row) {
        let rows = state.lock(row.hash).stored.rows(row.hash);
        match delete_expired(&mut connection, row, &rows).await {
            Ok(deleted) => {
                let mut shard = state.lock(row.hash);
                for id in deleted {
                    shard.stored.remove(row.hash, id);
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
            drop(connection);
            settle_written(state, &batch, &written);
            Ok(())
        }
        Err(error) => {
            tracing::debug!(%error, rows = batch.len(), "batched write failed; writing each row alone");
            let mut retry = Vec::new();
            for row in batch {
                match insert_rows(&mut connection, std::slice::from_ref(&row)).await {
                    Ok(written) => settle_written(state, std::slice::from_ref(&row), &written),
                    Err(sqlx::Error::Database(error)) if error.is_check_violation() => {
                        // The row itself is refused (a malformed fingerprint, say): no
                        // retry could write it, so it is dropped, with its copy in
                        // memory, rather than retried forever.
                        tracing::error!(
                            %error,
                            key_hash = %row.id.log_tag(),
                            "a completed idempotency record cannot be written; dropped"
                        );
                        forget(state, &row);
                        state.settle(1);
                    }
                    Err(error) => {
                        tracing::error!(%error, key_hash = %row.id.log_tag(), "cannot write a completed idempotency record; will retry");
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

/// Notes `rows` as in the file under the ids `written` reports (id, scope, key):
/// indexed, and no longer held in memory.
fn settle_written(state: &State, rows: &[Unwritten], written: &[(i64, String, String)]) {
    for row in rows {
        let id = written
            .iter()
            .find(|(_, scope, key)| *scope == row.id.scope && *key == row.id.key)
            .map(|(id, _, _)| *id);
        let Some(id) = id else {
            // Unreachable: an insert that succeeded returns every row it wrote.
            tracing::error!(key_hash = %row.id.log_tag(), "a written idempotency record came back without its id");
            continue;
        };
        let mut shard = state.lock(row.hash);
        // The index first, under the same lock: the key is never unknown to both.
        shard.stored.add(row.hash, id);
        drop(shard);
        forget(state, row);
    }
    state.settle(rows.len());
}

/// Drops the in-memory copy of `row`'s record, unless a newer record of the key
/// replaced it meanwhile.
fn forget(state: &State, row: &Unwritten) {
    let mut shard = state.lock(row.hash);
    if matches!(
        shard.live.get(&row.id),
        Some(Live::Unwritten { sequence, .. }) if *sequence == row.sequence
    ) {
        shard.live.remove(&row.id);
    }
}

/// Deletes the expired rows of `row`'s key among `rows` (the index's ids under its
/// hash); answers the ids deleted.
async fn delete_expired(
    connection: &mut WriterConnection,
    row: &Unwritten,
    rows: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "DELETE FROM idempotency_completed \
         WHERE id IN (SELECT value FROM json_each($1)) AND scope = $2 AND key = $3 \
         AND expires_at <= $4 RETURNING id",
    )
    .bind(format!("{rows:?}"))
    .bind(row.id.scope.as_str())
    .bind(row.id.key.as_str())
    .bind(row.created_at)
    .fetch_all(&mut **connection)
    .await
}

/// Inserts `rows`; answers (id, scope, key) of each row written.
async fn insert_rows(
    connection: &mut WriterConnection,
    rows: &[Unwritten],
) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let mut query = sqlx::query_as(&INSERT_SQL[rows.len() - 1]);
    for row in rows {
        query = query
            .bind(row.id.scope.as_str())
            .bind(row.id.key.as_str())
            .bind(row.fingerprint.as_slice())
            .bind(row.status)
            .bind(row.headers.as_slice())
            .bind(row.body.as_ref())
            .bind(row.created_at)
            .bind(row.expires_at);
    }
    query.fetch_all(&mut **connection).await
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
        index.add(7, 100);
        index.add(7, 101);
        index.add(7, 101); // the same row again is not a second row
        index.add(9, 200);
        assert_eq!(index.len(), 3);
        assert_eq!(index.rows(7), vec![100, 101]);
        index.remove(7, 100);
        assert!(index.contains(7), "row 101 is left under hash 7");
        assert_eq!(index.rows(7), vec![101]);
        index.remove(7, 101);
        assert!(!index.contains(7));
        assert_eq!(index.rows(9), vec![200]);
        index.remove(9, 999); // not there: nothing changes
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_batch_takes_one_row_per_key_in_order() {
        let row = |key: &str, sequence: u64| Unwritten {
            id: RecordId::new("s", key),
            hash: 0,
            fingerprint: [0; 32],
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
            expires_at: 0,
            created_at: 0,
            replaces_row: false,
            sequence,
        };
        let mut pending: VecDeque<Unwritten> =
            [row("a", 1), row("b", 2), row("a", 3), row("c", 4)].into();
        let first: Vec<u64> = take_batch(&mut pending)
            .iter()
            .map(|r| r.sequence)
            .collect();
        assert_eq!(
            first,
            vec![1, 2],
            "the second row of `a` waits, and so does what follows"
        );
        let second: Vec<u64> = take_batch(&mut pending)
            .iter()
            .map(|r| r.sequence)
            .collect();
        assert_eq!(second, vec![3, 4]);
    }
}
