//! [`Storage`] in a SQLite database file: the embedded default.
//!
//! # Write concurrency
//!
//! SQLite admits one writer at a time, and a writer that meets another's lock either
//! waits in the busy handler or, when a deferred transaction tries to upgrade a read
//! lock, fails with `SQLITE_BUSY` at once whatever the busy timeout. So
//! [`SqliteStorage::open`] keeps two kinds of connection on the file:
//!
//! - one dedicated **writer** connection, through which every statement that writes
//!   goes: writers queue fairly for it inside the process instead of contending for
//!   the file lock (the batched write turns run on its handle directly, in one
//!   hand-off to its worker thread: `sqlite_turn`);
//! - dedicated **reader** connections (four by default) for `get`, `list`, API-key
//!   lookups and `ping`; in WAL mode readers never block the writer nor wait for it.
//!
//! Both are [`SqliteConnections`](super::sqlite_connections::SqliteConnections)
//! sets rather than sqlx pools: a pool pings every connection it takes back, a second
//! hand-off to the connection's worker thread per statement.
//!
//! The write-ahead log is checkpointed by a task of its own on a reader connection
//! (`sqlite_checkpoint`), not inside the writer's commits.
//!
//! The one multi-statement write (an insert kept out by a taken id or by its recovery
//! point, which must then be read to tell which) runs in a `BEGIN IMMEDIATE`
//! transaction, which takes the write lock at its first statement, so it stays
//! correct even on a pool with several writing connections; the 5 s busy timeout then
//! absorbs the waits.
//!
//! # Recovery points
//!
//! A keyed create's id is derived from its recovery point ([`crate::recovery`]), so
//! there is no index on (scope, key): the insert is the same `INSERT … ON CONFLICT
//! (id) DO NOTHING` as an unkeyed one, and only when it inserts nothing is the row at
//! the id read, to tell the request's own resource (recovered) from another one (the
//! caller moves to the key's next id). That keeps a keyed insert as cheap as an
//! unkeyed one; the index it replaces took a random page write per keyed row.
//!
//! The idempotency records are not in this file: they live in their own
//! (`idempotency.db`, an `idempotency_sql::SqliteLog`), whose writes never wait for
//! these.
//!
//! # Migrations
//!
//! The embedded migrations (`migrations/sqlite`) are applied by sqlx's
//! [`Migrator`], which records them in `_sqlx_migrations`. Their versions are
//! date-based, `2026112801` onwards, so they cannot collide with the small sequential
//! versions (`0001`…) a library would use. The migrator ignores applied versions it does
//! not know (`ignore_missing`), so another component's sqlx migrations recorded in the
//! same ledger do not make it fail. (`idempotency-sql` keeps its own ledger,
//! `_idempotency_sql_migrations`, and never touches `_sqlx_migrations`.)

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::sqlite_connections::{SqliteCheckout, SqliteConnections};
use async_trait::async_trait;

use super::insert_batch::{InsertBatcher, OwnedRow};
use super::new_row::{self, NewRow};
use super::sqlite_checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder};

use super::records::{append_event, Col, Conn, Job, Tx};
use super::{
    delegations, dids, judge_holder, ApiKeyRecord, CredentialFilter, DelegationFilter, Holder,
    IdentityFilter, Inserted, NewCredential, NewDelegation, NewDid, NewIdentity, Page, PageRequest,
    RecordState, RecoveryPoint, Storage, StorageError,
};

/// How long a connection waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a pooled connection before failing (the server then
/// answers 500/503 rather than hanging).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections opened by [`SqliteStorage::open`].
const DEFAULT_READERS: u32 = 4;

/// The migrations of `migrations/sqlite`, tolerant of versions applied by others.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.set_ignore_missing(true);
    migrator
}

/// [`Storage`] in a SQLite database (see the module docs for the pool design).
///
/// Cloning is cheap and shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    writer: SqliteConnections,
    reader: SqliteConnections,
    batcher: InsertBatcher<SqliteConnections>,
    jobs: super::job_batch::SqliteJobs,
    /// Checkpoints the log of a database file opened here (none for pools a host
    /// passes in, nor in memory).
    checkpointer: Option<Arc<Checkpointer>>,
}

impl SqliteStorage {
    /// The connection options used for a database file: created if missing, WAL
    /// journal, `synchronous = NORMAL` (durable across process crashes; a power loss
    /// may lose the last transactions, never corrupt the file), foreign keys on,
    /// `secure_delete` (deleted content is overwritten with zeros, so a purge leaves
    /// no bytes behind), statement and savepoint journals in memory (`temp_store =
    /// MEMORY`: a write turn's journal outgrows SQLite's 64 KiB spill threshold, and
    /// a spilled one is a temporary file created and deleted by every turn), and a
    /// 5 s busy timeout.
    pub fn connect_options(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("secure_delete", "ON")
            .pragma("temp_store", "MEMORY")
            .busy_timeout(BUSY_TIMEOUT)
    }

    /// Opens (creating if needed) the database file at `path` with
    /// [`SqliteStorage::connect_options`], one writer connection and four readers.
    ///
    /// Call [`SqliteStorage::migrate`] before first use.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(Self::connect_options(path), DEFAULT_READERS).await
    }

    /// Opens a database with the given options, one writer connection and `readers`
    /// reader connections (at least one).
    pub async fn open_with(
        options: SqliteConnectOptions,
        readers: u32,
    ) -> Result<Self, StorageError> {
        // The writer first: it creates the file and switches it to WAL before any
        // reader connects. It leaves checkpoints to the checkpointer.
        let writer_options = options.clone().pragma(
            "wal_autocheckpoint",
            WRITER_AUTOCHECKPOINT_PAGES.to_string(),
        );
        let writer = SqliteConnections::connect_writer(&writer_options)
            .await
            .map_err(StorageError::database)?;
        let reader = SqliteConnections::connect(&options, readers)
            .await
            .map_err(StorageError::database)?;
        // `connect` makes dedicated connections, which always take requests.
        let catch_up = writer.catch_up_request().unwrap_or_default();
        let checkpointer = Checkpointer::start(reader.clone(), catch_up);
        let mut storage = Self::from_writer(writer, reader);
        storage.checkpointer = Some(Arc::new(checkpointer));
        Ok(storage)
    }

    /// Uses `writer` for every statement that writes and `reader` for the reads. Both
    /// must open the same database; `writer` should have a single connection (see the
    /// module docs), and both should use WAL and a busy timeout.
    ///
    /// Call [`SqliteStorage::migrate`] before first use.
    pub fn from_pools(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self::from_writer(
            SqliteConnections::from_pool(writer),
            SqliteConnections::from_pool(reader),
        )
    }

    /// Writes through `writer` and reads through `reader`; both must open the same
    /// database.
    fn from_writer(writer: SqliteConnections, reader: SqliteConnections) -> Self {
        Self {
            batcher: InsertBatcher::new(writer.clone()),
            jobs: super::job_batch::queue(writer.clone()),
            writer,
            reader,
            checkpointer: None,
        }
    }

    /// A private in-memory database, already migrated, for tests.
    ///
    /// It lives in one connection that is never closed (an in-memory SQLite database
    /// disappears with its last connection), used for reads and writes alike.
    pub async fn in_memory() -> Result<Self, StorageError> {
        // `sqlite::memory:` gives every pool its own database.
        let options =
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(StorageError::database)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.foreign_keys(true))
            .await
            .map_err(StorageError::database)?;
        let storage = Self::from_pools(pool.clone(), pool);
        storage.migrate().await?;
        Ok(storage)
    }

    /// Creates or updates the tables `identities`, `credentials` and `api_keys`.
    ///
    /// Idempotent. Runs on the writer connection, so it queues behind other writes.
    /// Applied versions unknown to this build (another component's, or a newer
    /// release's) are tolerated; see the module docs for the versioning.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        migrator()
            .run(
                &mut *self
                    .writer()
                    .acquire()
                    .await
                    .map_err(StorageError::database)?,
            )
            .await
            .map_err(StorageError::database)
    }

    /// The writer: one connection, through which every write goes.
    pub fn writer(&self) -> &SqliteConnections {
        &self.writer
    }

    /// The reader connections (the writer's pool too, for
    /// [`SqliteStorage::in_memory`]).
    pub fn readers(&self) -> &SqliteConnections {
        &self.reader
    }

    /// Closes both pools, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Waits for a reader (in order of arrival; an error after 10 s).
    async fn checkout_reader(&self) -> Result<SqliteCheckout, StorageError> {
        self.reader.acquire().await.map_err(StorageError::database)
    }

    /// Waits for the writer (in order of arrival; an error after 10 s).
    async fn checkout_writer(&self) -> Result<SqliteCheckout, StorageError> {
        self.writer.acquire().await.map_err(StorageError::database)
    }

    /// Inserts a row; with a recovery point, resolves what kept it out (see
    /// [`Storage::insert_identity`]).
    async fn insert(&self, row: NewRow<'_>) -> Result<Inserted, StorageError> {
        // Fast path: one statement that inserts unless the row's id is taken, shared
        // with the inserts of concurrent requests (see `sqlite_batch`).
        if self.batcher.insert(OwnedRow::from(row)).await? {
            return Ok(Inserted::Created);
        }
        let (Some(recovery), Some(sql)) = (row.recovery(), statements(row)) else {
            return Err(StorageError::Duplicate);
        };
        // Decide under the write lock, so that nothing changes between the read and
        // the insert that may follow it.
        let mut writer = self.checkout_writer().await?;
        let mut tx = (*writer)
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StorageError::database)?;
        let holder: Option<HolderRow> = sqlx::query_as(sql.find_holder)
            .bind(row.id())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StorageError::database)?;
        if let Some(holder) = holder {
            tx.rollback().await.map_err(StorageError::database)?;
            match holder.judge(recovery) {
                Some(Holder::SameRequest) => return Ok(Inserted::Recovered(holder.document)),
                Some(Holder::OtherRequest) => return Ok(Inserted::KeyReused),
                // Another resource holds this id: the key's earlier use, older than
                // the retention, or a collision; the caller tries the key's next id.
                Some(Holder::Expired) | None => return Err(StorageError::Duplicate),
            }
        }
        // Nothing in the way any more (unreachable while identities and credentials are
        // never deleted, but cheap to handle honestly).
        let mut conn = Conn::<Sqlite>(&mut tx);
        let inserted = conn
            .fetch(new_row::insert(&[row], ""), &[Col::Text])
            .await?;
        if inserted.is_empty() {
            return Err(StorageError::database(format!(
                "a row of {} appeared during an exclusive transaction",
                sql.table
            )));
        }
        append_event(&mut conn, row.audit()).await?;
        tx.commit().await.map_err(StorageError::database)?;
        Ok(Inserted::Created)
    }

    /// Runs a listing query built by `query` and turns its rows into a page.
    async fn list(
        &self,
        mut query: QueryBuilder<'_, Sqlite>,
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
            .fetch_all(&mut *self.checkout_reader().await?)
            .await
            .map_err(StorageError::database)?;
        Ok(page_of(rows, page.limit))
    }
}

/// The statements specific to one resource table.
struct TableStatements {
    table: &'static str,
    /// The row at the new row's id, `?1`.
    find_holder: &'static str,
}

const IDENTITIES: TableStatements = TableStatements {
    table: "identities",
    find_holder: "SELECT document, created_at_ms, idempotency_scope, idempotency_key, \
                  idempotency_fingerprint FROM identities WHERE agent_id = ?1",
};

const CREDENTIALS: TableStatements = TableStatements {
    table: "credentials",
    find_holder: "SELECT document, created_at_ms, idempotency_scope, idempotency_key, \
                  idempotency_fingerprint FROM credentials WHERE credential_id = ?1",
};

const DELEGATIONS: TableStatements = TableStatements {
    table: "delegations",
    find_holder: "SELECT document, created_at_ms, idempotency_scope, idempotency_key, \
                  idempotency_fingerprint FROM delegations WHERE jti = ?1",
};

/// The row holding the id a new row wanted.
#[derive(sqlx::FromRow)]
struct HolderRow {
    document: String,
    created_at_ms: i64,
    idempotency_scope: Option<String>,
    idempotency_key: Option<String>,
    idempotency_fingerprint: Option<Vec<u8>>,
}

impl HolderRow {
    /// What this row is to an insert with `recovery`; `None` when it was made under
    /// another (scope, key), or none.
    fn judge(&self, recovery: &RecoveryPoint) -> Option<Holder> {
        judge_holder(
            recovery,
            self.idempotency_scope.as_deref(),
            self.idempotency_key.as_deref(),
            self.created_at_ms,
            self.idempotency_fingerprint.as_deref(),
        )
    }
}

/// How the row holding `row`'s id is found; `None` for a DID, whose recovery point is
/// found by (scope, key) instead (see [`Storage::insert_did`]).
fn statements(row: NewRow<'_>) -> Option<&'static TableStatements> {
    match row {
        NewRow::Identity(_) => Some(&IDENTITIES),
        NewRow::Credential(_) => Some(&CREDENTIALS),
        NewRow::Delegation(_) => Some(&DELEGATIONS),
        NewRow::Did(_) => None,
    }
}

/// Maps an insert's error: a unique violation (of an id; `ON CONFLICT` handles the
/// common case) is [`StorageError::Duplicate`].
pub(super) fn insert_error(error: sqlx::Error) -> StorageError {
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
impl Storage for SqliteStorage {
    async fn insert_identity(&self, identity: &NewIdentity) -> Result<Inserted, StorageError> {
        self.insert(NewRow::Identity(identity)).await
    }

    async fn get_identity(
        &self,
        owner: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar("SELECT document FROM identities WHERE agent_id = ?1 AND owner = ?2")
            .bind(agent_id)
            .bind(owner)
            .fetch_optional(&mut *self.checkout_reader().await?)
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
            query.push(" AND revoked = 0");
        }
        self.list(query, page).await
    }

    async fn identity_state(&self, agent_id: &str) -> Result<Option<RecordState>, StorageError> {
        let row: Option<(bool, i64)> =
            sqlx::query_as("SELECT revoked, expires_at_ms FROM identities WHERE agent_id = ?1")
                .bind(agent_id)
                .fetch_optional(&mut *self.checkout_reader().await?)
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
            "SELECT document FROM credentials WHERE credential_id = ?1 AND owner = ?2",
        )
        .bind(credential_id)
        .bind(owner)
        .fetch_optional(&mut *self.checkout_reader().await?)
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
                .push(" AND revoked = 0 AND expires_at_ms > ")
                .push_bind(filter.now_ms);
        }
        self.list(query, page).await
    }

    async fn credential_state(
        &self,
        credential_id: &str,
    ) -> Result<Option<RecordState>, StorageError> {
        let row: Option<(bool, i64)> = sqlx::query_as(
            "SELECT revoked, expires_at_ms FROM credentials WHERE credential_id = ?1",
        )
        .bind(credential_id)
        .fetch_optional(&mut *self.checkout_reader().await?)
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
        self.insert(NewRow::Delegation(delegation)).await
    }

    async fn get_delegation(&self, owner: &str, jti: &str) -> Result<Option<String>, StorageError> {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT document FROM delegations WHERE jti = ");
        query.push_bind(jti).push(" AND owner = ").push_bind(owner);
        query
            .build_query_scalar()
            .fetch_optional(&mut *self.checkout_reader().await?)
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
        delegations::revoked_among::<Sqlite>(jtis)
            .build_query_scalar()
            .fetch_all(&mut *self.checkout_reader().await?)
            .await
            .map_err(StorageError::database)
    }

    async fn insert_did(&self, did: &NewDid) -> Result<Inserted, StorageError> {
        // An expired holder of the recovery point is released, then the insert is
        // tried again: at most twice, as nothing else releases it.
        for _ in 0..3 {
            if self
                .batcher
                .insert(OwnedRow::from(NewRow::Did(did)))
                .await?
            {
                return Ok(Inserted::Created);
            }
            let Some(recovery) = &did.recovery else {
                return Err(StorageError::Duplicate);
            };
            let holder: Option<dids::HolderRow> =
                dids::find_holder::<Sqlite>(&recovery.scope, &recovery.key)
                    .build_query_as()
                    .fetch_optional(&mut *self.checkout_writer().await?)
                    .await
                    .map_err(StorageError::database)?;
            let Some((seq, document, created_at_ms, fingerprint)) = holder else {
                return Err(StorageError::Duplicate);
            };
            match recovery.judge(created_at_ms, fingerprint.as_deref()) {
                Holder::SameRequest => return Ok(Inserted::Recovered(document)),
                Holder::OtherRequest => return Ok(Inserted::KeyReused),
                Holder::Expired => {
                    dids::clear_recovery::<Sqlite>(seq)
                        .build()
                        .execute(&mut *self.checkout_writer().await?)
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
        dids::private_key::<Sqlite>(owner, keypair_id)
            .build_query_as()
            .fetch_optional(&mut *self.checkout_reader().await?)
            .await
            .map_err(StorageError::database)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO api_keys (id, principal, digest, created_at_ms, revoked_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(key.id.as_str())
        .bind(key.principal.as_str())
        .bind(key.digest.as_slice())
        .bind(key.created_at_ms)
        .bind(key.revoked_at_ms)
        .execute(&mut *self.checkout_writer().await?)
        .await
        .map_err(insert_error)?;
        Ok(())
    }

    async fn find_api_key(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StorageError> {
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "SELECT id, principal, digest, created_at_ms, revoked_at_ms FROM api_keys \
             WHERE digest = ?1 AND revoked_at_ms IS NULL",
        )
        .bind(digest.as_slice())
        .fetch_optional(&mut *self.checkout_reader().await?)
        .await
        .map_err(StorageError::database)?;
        row.map(api_key_record).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(
            "SELECT id, principal, digest, created_at_ms, revoked_at_ms FROM api_keys ORDER BY seq",
        )
        .fetch_all(&mut *self.checkout_reader().await?)
        .await
        .map_err(StorageError::database)?;
        rows.into_iter().map(api_key_record).collect()
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = ?1 WHERE id = ?2 AND revoked_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&mut *self.checkout_writer().await?)
        .await
        .map_err(StorageError::database)?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.checkout_reader().await?)
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

    async fn erase_residue(&self) -> Result<(), StorageError> {
        // TRUNCATE: the log's frames are copied into the database (where deleted
        // cells were zeroed, `secure_delete`) and the log file is emptied.
        let _paused = match &self.checkpointer {
            Some(checkpointer) => Some(checkpointer.pause().await),
            None => None,
        };
        // SQLite waits (busy timeout) for readers, but refuses at once while another
        // connection to the file checkpoints: another process, or the checkpoint task
        // of a storage a command opened beside this one. So busy answers are retried
        // until the busy timeout, with the writer free between tries.
        let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        loop {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *self.checkout_writer().await?)
                .await
                .map_err(StorageError::database)?;
            if busy == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(StorageError::database(
                    "the write-ahead log could not be emptied: another connection held it",
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn read(&self, job: Job) -> Result<(), StorageError> {
        let mut connection = self.checkout_reader().await?;
        job(&mut Conn::<Sqlite>(&mut connection)).await
    }
}
