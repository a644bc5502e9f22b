//! A SQLite write turn run where the turn runs, in one piece, not one hand-off per
//! statement.
//!
//! sqlx runs each statement on its connection's worker thread: a hand-off there and
//! back per statement, and a turn of the batch queues (`BEGIN`, an insert per table,
//! the chain links' statements, `COMMIT`) is several, each a thread switch on both
//! sides and, when the cores are busy, a wait for one (what that costs is in
//! docs/BENCHMARKS.md). So a turn runs its statements through rusqlite on the thread
//! that runs the turn, on one of two handles ([`TurnHandle`]):
//!
//! - the writer's **own** rusqlite connection to the same file, opened beside its sqlx
//!   connection ([`open_beside`]) and checked out with it, so the two never write at
//!   once. No thread takes part but the turn's, and its prepared statements live from
//!   one turn to the next;
//! - otherwise (a database in memory, a host's pool, a file locked exclusively) the
//!   sqlx connection's handle, **lent** by its worker for the turn
//!   ([`SqliteConnection::lock_handle`], one hand-off; the worker thread waits until
//!   the handle is given back).
//!
//! Those statements block the turn's thread, so on a multi-thread runtime the turn
//! runs inside `block_in_place`
//! ([`TurnConnection::drive`](super::job_batch::TurnConnection::drive)): the worker
//! first hands its other tasks to another thread, and the requests queued behind the
//! turn are not held up by it.
//!
//! rusqlite rather than raw `libsqlite3-sys` calls: it is the well-kept safe binding
//! of the same library (one `libsqlite3-sys` for both), and only the adoption of a
//! lent handle needs `unsafe`.

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};
use sqlx::sqlite::{LockedSqliteHandle, SqliteConnection};

use super::records::{self, ChainLink, Col, DbRow, Stmt, Tx, Value};
use super::StorageError;

/// The per-connection settings an own connection copies from the sqlx connection it
/// stands beside, so that a turn writes as every other statement of the writer does
/// (the file's own settings, such as the journal mode, need no copy).
const COPIED_PRAGMAS: [&str; 9] = [
    "synchronous",
    "foreign_keys",
    "secure_delete",
    "temp_store",
    "busy_timeout",
    "wal_autocheckpoint",
    "cache_size",
    "journal_size_limit",
    "recursive_triggers",
];

/// Prepared statements an own connection keeps between turns: a turn's statements
/// differ with its number of rows, so more than rusqlite's default of 16.
const CACHED_STATEMENTS: usize = 128;

/// Opens a rusqlite connection to the file `connection` has open, with its
/// per-connection settings, for the turns of a writer; `None` where the file cannot be
/// shared that way (a database in memory or a temporary one, exclusive locking).
///
/// # Errors
/// A failed statement on `connection`, or a file that cannot be opened again.
pub(crate) async fn open_beside(
    connection: &mut SqliteConnection,
) -> Result<Option<rusqlite::Connection>, StorageError> {
    use sqlx::Row;
    let databases = sqlx::query("PRAGMA database_list")
        .fetch_all(&mut *connection)
        .await
        .map_err(StorageError::database)?;
    let file = databases.iter().find_map(|row| {
        let name: String = row.try_get(1).ok()?;
        let file: String = row.try_get(2).ok()?;
        (name == "main" && !file.is_empty()).then_some(file)
    });
    let Some(file) = file else {
        return Ok(None);
    };
    let locking: String = sqlx::query_scalar("PRAGMA locking_mode")
        .fetch_one(&mut *connection)
        .await
        .map_err(StorageError::database)?;
    if locking.eq_ignore_ascii_case("exclusive") {
        return Ok(None);
    }
    let mut settings = Vec::with_capacity(COPIED_PRAGMAS.len());
    for name in COPIED_PRAGMAS {
        let value: i64 = sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(&mut *connection)
            .await
            .map_err(StorageError::database)?;
        settings.push((name, value));
    }
    // The file exists (the sqlx connection has it open): never create one.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let own =
        rusqlite::Connection::open_with_flags(&file, flags).map_err(StorageError::database)?;
    for (name, value) in settings {
        own.pragma_update(None, name, value)
            .map_err(StorageError::database)?;
    }
    own.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(Some(own))
}

/// Where a turn runs its statements (see the module docs), as a [`Tx`].
pub(crate) enum TurnHandle<'c> {
    /// The writer's own rusqlite connection, checked out with its sqlx connection.
    Own(&'c mut rusqlite::Connection),
    /// The sqlx connection's handle, lent by its worker for this turn.
    Lent(LentHandle<'c>),
}

/// The sqlx connection's handle, lent by its worker until dropped.
pub(crate) struct LentHandle<'c> {
    /// Declared first so that it drops first: its cached statements are finalized
    /// while the handle is still lent.
    connection: rusqlite::Connection,
    /// Gives the handle back to the worker when dropped.
    _lent: LockedSqliteHandle<'c>,
}

impl<'c> LentHandle<'c> {
    /// Borrows `connection`'s handle from its worker thread until the result drops.
    pub(crate) async fn borrow(connection: &'c mut SqliteConnection) -> Result<Self, StorageError> {
        let mut lent = connection
            .lock_handle()
            .await
            .map_err(StorageError::database)?;
        let raw = lent.as_raw_handle().as_ptr();
        // SAFETY: `raw` is a live, open handle: sqlx closes it only when the connection
        // is dropped, which the borrow of `connection` for 'c rules out while this
        // value lives. The lock keeps sqlx's worker thread off it, so the one user is
        // this value, which is Send but not Sync (no two threads at once); the handle
        // is opened in SQLite's multi-thread mode, which allows a connection to move
        // between threads. `from_handle` does not take ownership (rusqlite never
        // closes it), and the rusqlite connection drops before the lock does.
        #[allow(unsafe_code)]
        let connection =
            unsafe { rusqlite::Connection::from_handle(raw) }.map_err(StorageError::database)?;
        Ok(Self {
            connection,
            _lent: lent,
        })
    }
}

impl TurnHandle<'_> {
    fn connection(&self) -> &rusqlite::Connection {
        match self {
            Self::Own(connection) => connection,
            Self::Lent(lent) => &lent.connection,
        }
    }

    /// A `PASSIVE` checkpoint on this handle (the writer's catch-up with the log,
    /// `sqlite_checkpoint`). A failed one leaves the log as it was, bounded by the
    /// writer's own checkpoint, so it is logged, not returned.
    pub(crate) fn checkpoint_passive(&self) {
        let started = std::time::Instant::now();
        let copied = self
            .connection()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            });
        match copied {
            Ok((busy, log_pages, copied_pages)) => tracing::debug!(
                busy,
                log_pages,
                copied_pages,
                elapsed_us = started.elapsed().as_micros() as u64,
                "the writer caught up with the log"
            ),
            Err(error) => tracing::warn!(%error, "the writer's catch-up checkpoint failed"),
        }
    }

    /// Runs `stmt` to its end; the rows it returned (columns typed as `cols`) and the
    /// number of rows it changed.
    fn run(&self, stmt: Stmt, cols: &[Col]) -> Result<(Vec<DbRow>, u64), StorageError> {
        let (sql, values) = stmt.into_question_marks();
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&sql).map_err(statement_error)?;
        for (index, value) in values.iter().enumerate() {
            statement
                .raw_bind_parameter(index + 1, Bound(value))
                .map_err(statement_error)?;
        }
        let mut rows = statement.raw_query();
        let mut read = Vec::new();
        while let Some(row) = rows.next().map_err(statement_error)? {
            let columns = cols
                .iter()
                .enumerate()
                .map(|(index, col)| column(row, index, *col))
                .collect::<Result<Vec<_>, _>>()?;
            read.push(DbRow(columns));
        }
        Ok((read, connection.changes()))
    }
}

#[async_trait]
impl Tx for TurnHandle<'_> {
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, StorageError> {
        self.run(stmt, &[]).map(|(_, changed)| changed)
    }

    async fn fetch(&mut self, stmt: Stmt, cols: &[Col]) -> Result<Vec<DbRow>, StorageError> {
        self.run(stmt, cols).map(|(rows, _)| rows)
    }

    async fn link(&mut self, link: ChainLink) -> Result<(), StorageError> {
        records::append_links(self, vec![link]).await
    }
}

/// A bound [`Value`] as SQLite stores it (booleans as 0 or 1, as sqlx binds them).
struct Bound<'v>(&'v Value);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Int(value) => ValueRef::Integer(*value),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Bool(value) => ValueRef::Integer(i64::from(*value)),
            Value::Bytes(bytes) => ValueRef::Blob(bytes),
            Value::NullInt | Value::NullText | Value::NullBytes => ValueRef::Null,
        }))
    }
}

/// Column `index` of `row` read as `col`.
fn column(row: &rusqlite::Row<'_>, index: usize, col: Col) -> Result<Value, StorageError> {
    let value = match col {
        Col::Int => row
            .get::<_, Option<i64>>(index)
            .map(|value| value.map_or(Value::NullInt, Value::Int)),
        Col::Text => row
            .get::<_, Option<String>>(index)
            .map(|value| value.map_or(Value::NullText, Value::Text)),
    };
    value.map_err(StorageError::database)
}

/// A statement's error: a unique or primary-key violation is
/// [`StorageError::Duplicate`], as on the sqlx path.
fn statement_error(error: rusqlite::Error) -> StorageError {
    let unique = error.sqlite_error().is_some_and(|failure| {
        matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    });
    if unique {
        StorageError::Duplicate
    } else {
        StorageError::database(error)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::Connection;

    use super::*;

    use crate::storage::sqlite::SqliteStorage;
    use crate::storage::sqlite_connections::SqliteConnections;

    /// The writer of a database file as the storage opens it, with a table whose rows
    /// must name a row of another.
    async fn file_writer(dir: &std::path::Path) -> SqliteConnections {
        let options =
            SqliteStorage::connect_options(&dir.join("db")).pragma("wal_autocheckpoint", "7777");
        let writer = SqliteConnections::connect_writer(&options)
            .await
            .expect("the writer opens");
        let mut checkout = writer.acquire().await.expect("the writer is free");
        sqlx::query("CREATE TABLE parent (id TEXT PRIMARY KEY)")
            .execute(&mut *checkout)
            .await
            .expect("create");
        sqlx::query(
            "CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parent (id))",
        )
        .execute(&mut *checkout)
        .await
        .expect("create");
        drop(checkout);
        writer
    }

    #[tokio::test]
    async fn a_file_writers_turns_run_on_its_own_connection_with_the_writers_settings() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let writer = file_writer(dir.path()).await;
        let mut checkout = writer.acquire().await.expect("the writer is free");
        for name in COPIED_PRAGMAS {
            let sqlx_value: i64 = sqlx::query_scalar(&format!("PRAGMA {name}"))
                .fetch_one(&mut *checkout)
                .await
                .expect("the sqlx connection reports it");
            let own = checkout
                .turn_connection()
                .expect("a file writer has its own");
            let own_value: i64 = own
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .expect("the own connection reports it");
            assert_eq!(own_value, sqlx_value, "PRAGMA {name}");
        }

        let mut turn = TurnHandle::Own(checkout.turn_connection().expect("its own"));
        turn.execute(Stmt::new("BEGIN IMMEDIATE"))
            .await
            .expect("begin");
        turn.execute(Stmt::new("INSERT INTO parent VALUES ('p')"))
            .await
            .expect("insert");
        let orphan = turn
            .execute(Stmt::new("INSERT INTO child VALUES ('c', 'nobody')"))
            .await;
        assert!(
            orphan.is_err(),
            "the turn enforces foreign keys, as the writer does: {orphan:?}"
        );
        turn.execute(Stmt::new("COMMIT")).await.expect("commit");
        drop(turn);
        let parents: i64 = sqlx::query_scalar("SELECT count(*) FROM parent")
            .fetch_one(&mut *checkout)
            .await
            .expect("sqlx reads what the turn committed");
        assert_eq!(parents, 1);
    }

    #[tokio::test]
    async fn closing_a_turn_connection_rolls_its_transaction_back_and_frees_the_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let writer = file_writer(dir.path()).await;
        let mut checkout = writer.acquire().await.expect("the writer is free");
        let mut turn = TurnHandle::Own(checkout.turn_connection().expect("its own"));
        turn.execute(Stmt::new("BEGIN IMMEDIATE"))
            .await
            .expect("begin");
        turn.execute(Stmt::new("INSERT INTO parent VALUES ('left open')"))
            .await
            .expect("insert");
        drop(turn);
        checkout.close_turn_connection();
        assert!(checkout.turn_connection().is_none());
        // Were the write lock still held, this would wait out the busy timeout and fail.
        sqlx::query("INSERT INTO parent VALUES ('after')")
            .execute(&mut *checkout)
            .await
            .expect("the sqlx connection writes at once");
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM parent")
            .fetch_all(&mut *checkout)
            .await
            .expect("read");
        assert_eq!(ids, vec!["after".to_owned()]);
    }

    #[tokio::test]
    async fn a_writer_in_memory_has_no_own_connection_and_lends_its_handle() {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("valid URL");
        let writer = SqliteConnections::connect_writer(&options)
            .await
            .expect("the writer opens");
        let mut checkout = writer.acquire().await.expect("the writer is free");
        assert!(checkout.turn_connection().is_none());
    }

    async fn memory() -> SqliteConnection {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("valid URL");
        SqliteConnection::connect_with(&options)
            .await
            .expect("an in-memory database opens")
    }

    #[tokio::test]
    async fn a_lent_handle_writes_what_sqlx_then_reads_and_reads_every_type_back() {
        let mut connection = memory().await;
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, flag INTEGER, b BLOB)")
            .execute(&mut connection)
            .await
            .expect("create");
        {
            let mut lent =
                TurnHandle::Lent(LentHandle::borrow(&mut connection).await.expect("lent"));
            lent.execute(Stmt::new("BEGIN IMMEDIATE"))
                .await
                .expect("begin");
            let inserted = lent
                .execute(
                    Stmt::new("INSERT INTO t VALUES (")
                        .bind("a")
                        .sql(", ")
                        .bind(7_i64)
                        .sql(", ")
                        .bind(true)
                        .sql(", ")
                        .bind(&b"xy"[..])
                        .sql("), (")
                        .bind("b")
                        .sql(", ")
                        .bind(Value::NullInt)
                        .sql(", ")
                        .bind(false)
                        .sql(", ")
                        .bind(Value::NullBytes)
                        .sql(")"),
                )
                .await
                .expect("insert");
            assert_eq!(inserted, 2, "two rows changed");
            let rows = lent
                .fetch(
                    Stmt::new("SELECT id, n FROM t ORDER BY id"),
                    &[Col::Text, Col::Int],
                )
                .await
                .expect("read back in the same transaction");
            assert_eq!(
                rows,
                vec![
                    DbRow(vec![Value::Text("a".into()), Value::Int(7)]),
                    DbRow(vec![Value::Text("b".into()), Value::NullInt]),
                ]
            );
            lent.execute(Stmt::new("COMMIT")).await.expect("commit");
        }
        // The worker has its handle back and sees the committed rows.
        let (flag, blob): (i64, Vec<u8>) = sqlx::query_as("SELECT flag, b FROM t WHERE id = 'a'")
            .fetch_one(&mut connection)
            .await
            .expect("sqlx reads after the turn");
        assert_eq!((flag, blob), (1, b"xy".to_vec()));
    }

    #[tokio::test]
    async fn a_taken_key_is_a_duplicate_and_a_rows_returning_execute_runs_to_its_end() {
        let mut connection = memory().await;
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
            .execute(&mut connection)
            .await
            .expect("create");
        let mut lent = TurnHandle::Lent(LentHandle::borrow(&mut connection).await.expect("lent"));
        let returning = Stmt::new("INSERT INTO t VALUES ('a', 1), ('b', 2) RETURNING id");
        assert_eq!(lent.execute(returning).await.expect("insert"), 2);
        let again = lent
            .execute(Stmt::new("INSERT INTO t VALUES ('a', 3)"))
            .await;
        assert!(
            matches!(again, Err(StorageError::Duplicate)),
            "a taken primary key is a duplicate: {again:?}"
        );
        let broken = lent
            .execute(Stmt::new("INSERT INTO nowhere VALUES (1)"))
            .await;
        let Err(StorageError::Database(error)) = broken else {
            panic!("a missing table is a database error: {broken:?}");
        };
        assert!(error.to_string().contains("nowhere"), "{error}");
    }
}
