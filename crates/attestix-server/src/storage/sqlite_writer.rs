//! [`SqliteWriter`]: the one connection through which the SQLite storage file is
//! written (the [`Checkout`](super::batch_queue::Checkout) source of its batch queues).
//!
//! SQLite admits one writer at a time, so writes queue for this connection inside the
//! process rather than race for the file lock (SQLite's busy handler sleeps up to
//! 100 ms between attempts).
//!
//! # Why not a pool of one connection
//!
//! That was the first design. sqlx returns a pooled connection by spawning a task that
//! pings it (a round trip to the connection's worker thread) before the next waiter
//! may have it, so every write cost two hand-offs instead of one, and the writer,
//! not the CPU, limited the server: on a 2-core machine the CPUs sat 40-60 % idle
//! under load. A dedicated connection behind an async FIFO mutex hands over with a
//! wake-up. [`SqliteWriter::from_pool`] keeps the pool form for hosts that have one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::Connection;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// How long a write waits for the writer before it is reported as unavailable (the
/// layer then answers 503 instead of hanging), as a pool's acquire timeout would.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection every write of a SQLite database goes through: a dedicated
/// connection (see [`SqliteWriter::connect`]) or a host's pool.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteWriter(Kind);

#[derive(Clone)]
enum Kind {
    /// `None` once closed.
    Dedicated(Arc<Mutex<Option<SqliteConnection>>>),
    Pool(SqlitePool),
}

impl fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Dedicated(_) => f.write_str("SqliteWriter::Dedicated"),
            Kind::Pool(pool) => f.debug_tuple("SqliteWriter::Pool").field(pool).finish(),
        }
    }
}

/// A checked-out writer; dereferences to the connection. Dropping it hands the
/// writer to the next waiter, in the order they asked.
pub struct WriterConnection(Guard);

enum Guard {
    Dedicated(OwnedMappedMutexGuard<Option<SqliteConnection>, SqliteConnection>),
    Pool(PoolConnection<Sqlite>),
}

impl std::ops::Deref for WriterConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match &self.0 {
            Guard::Dedicated(connection) => connection,
            Guard::Pool(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for WriterConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.0 {
            Guard::Dedicated(connection) => connection,
            Guard::Pool(connection) => connection,
        }
    }
}

impl SqliteWriter {
    /// Opens a dedicated writer connection with `options` (the file is created if the
    /// options say so, and switched to WAL before any reader connects when the
    /// options ask for WAL).
    pub async fn connect(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let connection = SqliteConnection::connect_with(options).await?;
        Ok(Self(Kind::Dedicated(Arc::new(Mutex::new(Some(
            connection,
        ))))))
    }

    /// Writes through `pool` (for a host that already writes through a pool; a pool of
    /// one connection keeps the writes queued rather than racing for SQLite's lock).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self(Kind::Pool(pool))
    }

    /// Waits (in order of arrival, at most 10 s) for the writer.
    ///
    /// # Errors
    /// [`sqlx::Error::PoolTimedOut`] after the wait, [`sqlx::Error::PoolClosed`] after
    /// [`SqliteWriter::close`], or the pool's error.
    pub async fn acquire(&self) -> Result<WriterConnection, sqlx::Error> {
        match &self.0 {
            Kind::Dedicated(connection) => {
                let guard: OwnedMutexGuard<Option<SqliteConnection>> =
                    tokio::time::timeout(CHECKOUT_TIMEOUT, connection.clone().lock_owned())
                        .await
                        .map_err(|_| sqlx::Error::PoolTimedOut)?;
                let guard = OwnedMutexGuard::try_map(guard, Option::as_mut)
                    .map_err(|_| sqlx::Error::PoolClosed)?;
                Ok(WriterConnection(Guard::Dedicated(guard)))
            }
            Kind::Pool(pool) => Ok(WriterConnection(Guard::Pool(pool.acquire().await?))),
        }
    }

    /// Closes the writer once the current holder is done; later writes fail with
    /// [`sqlx::Error::PoolClosed`].
    pub async fn close(&self) {
        match &self.0 {
            Kind::Dedicated(connection) => {
                if let Some(connection) = connection.lock().await.take() {
                    if let Err(error) = connection.close().await {
                        tracing::warn!(%error, "closing the SQLite writer connection failed");
                    }
                }
            }
            Kind::Pool(pool) => pool.close().await,
        }
    }
}

impl super::batch_queue::Checkout for SqliteWriter {
    type Connection = WriterConnection;

    async fn checkout(&self) -> Result<WriterConnection, sqlx::Error> {
        self.acquire().await
    }
}
