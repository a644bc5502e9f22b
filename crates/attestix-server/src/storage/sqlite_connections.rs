//! [`SqliteConnections`]: a fixed set of connections to one SQLite file, handed out in
//! order of arrival. The storage keeps two: the one writer through which every write
//! goes (the [`Checkout`](super::batch_queue::Checkout) source of its batch queues),
//! and the readers.
//!
//! SQLite admits one writer at a time, so writes queue for the writer inside the
//! process rather than race for the file lock (SQLite's busy handler sleeps up to
//! 100 ms between attempts).
//!
//! # Why not sqlx's pool
//!
//! sqlx returns a pooled connection by spawning a task that pings it (a round trip to
//! the connection's worker thread) before the next waiter may have it, so every
//! statement cost two hand-offs to a worker thread instead of one: for the writer, the
//! writer rather than the CPU limited the server; for the readers, the pings were a
//! third of the server's thread wake-ups, and each wake-up costs a context switch.
//! A dedicated connection goes back to the set when its checkout is dropped, with no
//! statement and no task. [`SqliteConnections::from_pool`] keeps the pool form for
//! hosts that have one.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::sqlite_checkpoint::CatchUpRequest;

/// How long a statement waits for a connection before it is reported as unavailable
/// (the layer then answers 503 instead of hanging), as a pool's acquire timeout would.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to one SQLite database: a set of dedicated ones (see
/// [`SqliteConnections::connect`]) or a host's pool.
///
/// Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteConnections(Kind);

#[derive(Clone)]
enum Kind {
    Dedicated(Arc<Dedicated>),
    Pool(SqlitePool),
}

/// The dedicated connections: one permit per connection, and the idle ones. A
/// checkout holds a permit and the connection it popped, so the idle list is never
/// empty while a permit is free.
struct Dedicated {
    idle: StdMutex<Vec<Member>>,
    permits: Arc<Semaphore>,
    size: u32,
    /// Set by the checkpoint task when the set is the writer (`sqlite_checkpoint`).
    catch_up: Arc<CatchUpRequest>,
}

/// One connection of a dedicated set, and for the writer its own rusqlite connection
/// to the same file, on which its write turns run (`sqlite_turn`): checked out
/// together, so the two never write at once.
struct Member {
    connection: SqliteConnection,
    turns: Option<rusqlite::Connection>,
}

impl Dedicated {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // The list is consistent after any panic (a push or a pop).
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SqliteConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Dedicated(set) => f
                .debug_struct("SqliteConnections::Dedicated")
                .field("size", &set.size)
                .finish(),
            Kind::Pool(pool) => f
                .debug_tuple("SqliteConnections::Pool")
                .field(pool)
                .finish(),
        }
    }
}

/// A checked-out connection; dereferences to it. Dropping it hands the connection
/// to the next waiter, in the order they asked.
pub struct SqliteCheckout(Guard);

enum Guard {
    Dedicated(DedicatedCheckout),
    Pool(PoolConnection<Sqlite>),
}

struct DedicatedCheckout {
    /// `Some` until dropped.
    member: Option<Member>,
    home: Arc<Dedicated>,
    /// Released after the connection is back in the idle list (fields drop after
    /// `Drop::drop`).
    _permit: OwnedSemaphorePermit,
}

impl Drop for DedicatedCheckout {
    fn drop(&mut self) {
        if let Some(member) = self.member.take() {
            self.home.idle().push(member);
        }
    }
}

impl SqliteCheckout {
    /// Whether the checkpoint task asked this connection's set to catch up with the
    /// log since the last call (which clears the request).
    pub(crate) fn catch_up_requested(&self) -> bool {
        match &self.0 {
            Guard::Dedicated(checkout) => checkout.home.catch_up.take(),
            Guard::Pool(_) => false,
        }
    }

    /// The writer's own connection for its write turns, if it has one (see
    /// [`SqliteConnections::connect_writer`]).
    pub(crate) fn turn_connection(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.0 {
            Guard::Dedicated(checkout) => checkout.member.as_mut()?.turns.as_mut(),
            Guard::Pool(_) => None,
        }
    }

    /// Closes the writer's own turn connection (which rolls back whatever it left
    /// open); later turns borrow the sqlx connection's handle instead.
    pub(crate) fn close_turn_connection(&mut self) {
        if let Guard::Dedicated(checkout) = &mut self.0 {
            if let Some(member) = checkout.member.as_mut() {
                member.turns = None;
            }
        }
    }
}

impl std::ops::Deref for SqliteCheckout {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match &self.0 {
            Guard::Dedicated(checkout) => &checkout.member.as_ref().expect("held").connection,
            Guard::Pool(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for SqliteCheckout {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.0 {
            Guard::Dedicated(checkout) => &mut checkout.member.as_mut().expect("held").connection,
            Guard::Pool(connection) => connection,
        }
    }
}

impl SqliteConnections {
    /// Opens `size` (at least one) dedicated connections with `options`, one after
    /// another: the first creates the file if the options say so, and switches it to
    /// WAL before the others connect when the options ask for WAL.
    pub async fn connect(options: &SqliteConnectOptions, size: u32) -> Result<Self, sqlx::Error> {
        let size = size.max(1);
        let mut idle = Vec::with_capacity(size as usize);
        for _ in 0..size {
            idle.push(Member {
                connection: SqliteConnection::connect_with(options).await?,
                turns: None,
            });
        }
        Ok(Self::dedicated(idle))
    }

    /// Opens the one writer connection with `options` and, where its file can be
    /// opened again, its own rusqlite connection for the write turns
    /// ([`sqlite_turn::open_beside`](super::sqlite_turn::open_beside)), so that a turn
    /// needs no hand-off to the sqlx connection's worker thread.
    pub async fn connect_writer(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let mut connection = SqliteConnection::connect_with(options).await?;
        let turns = super::sqlite_turn::open_beside(&mut connection)
            .await
            .map_err(|error| sqlx::Error::Configuration(Box::new(error)))?;
        Ok(Self::dedicated(vec![Member { connection, turns }]))
    }

    fn dedicated(idle: Vec<Member>) -> Self {
        let size = idle.len() as u32;
        Self(Kind::Dedicated(Arc::new(Dedicated {
            idle: StdMutex::new(idle),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            catch_up: Arc::default(),
        })))
    }

    /// Uses `pool` (for a host that already has one; as a writer, a pool of one
    /// connection keeps the writes queued rather than racing for SQLite's lock).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self(Kind::Pool(pool))
    }

    /// Waits (in order of arrival, at most 10 s) for a connection.
    ///
    /// # Errors
    /// [`sqlx::Error::PoolTimedOut`] after the wait, [`sqlx::Error::PoolClosed`] after
    /// [`SqliteConnections::close`], or the pool's error.
    pub async fn acquire(&self) -> Result<SqliteCheckout, sqlx::Error> {
        match &self.0 {
            Kind::Dedicated(set) => {
                let permit =
                    tokio::time::timeout(CHECKOUT_TIMEOUT, set.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| sqlx::Error::PoolTimedOut)?
                        .map_err(|_| sqlx::Error::PoolClosed)?;
                let connection = set.idle().pop().ok_or(sqlx::Error::PoolClosed)?;
                Ok(SqliteCheckout(Guard::Dedicated(DedicatedCheckout {
                    member: Some(connection),
                    home: set.clone(),
                    _permit: permit,
                })))
            }
            Kind::Pool(pool) => Ok(SqliteCheckout(Guard::Pool(pool.acquire().await?))),
        }
    }

    /// Where the checkpoint task asks these connections, as the writer, to catch up
    /// with the log; `None` for a host's pool, which the task does not serve.
    pub(crate) fn catch_up_request(&self) -> Option<Arc<CatchUpRequest>> {
        match &self.0 {
            Kind::Dedicated(set) => Some(set.catch_up.clone()),
            Kind::Pool(_) => None,
        }
    }

    /// Whether [`SqliteConnections::close`] has been called.
    pub fn is_closed(&self) -> bool {
        match &self.0 {
            Kind::Dedicated(set) => set.permits.is_closed(),
            Kind::Pool(pool) => pool.is_closed(),
        }
    }

    /// Closes the connections once their current holders are done; later checkouts
    /// fail with [`sqlx::Error::PoolClosed`].
    pub async fn close(&self) {
        match &self.0 {
            Kind::Dedicated(set) => {
                // Every permit: no connection is out once they are all held.
                let Ok(all) = set.permits.acquire_many(set.size).await else {
                    return;
                };
                set.permits.close();
                drop(all);
                let members: Vec<Member> = set.idle().drain(..).collect();
                for Member { connection, turns } in members {
                    drop(turns);
                    if let Err(error) = connection.close().await {
                        tracing::warn!(%error, "closing a SQLite connection failed");
                    }
                }
            }
            Kind::Pool(pool) => pool.close().await,
        }
    }
}

impl super::batch_queue::Checkout for SqliteConnections {
    type Connection = SqliteCheckout;

    async fn checkout(&self) -> Result<SqliteCheckout, sqlx::Error> {
        self.acquire().await
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    async fn memory_set(size: u32) -> SqliteConnections {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("valid URL");
        SqliteConnections::connect(&options, size)
            .await
            .expect("in-memory databases open")
    }

    #[tokio::test]
    async fn a_dropped_checkout_goes_to_the_next_waiter() {
        let set = memory_set(1).await;
        let held = set.acquire().await.expect("the only connection");
        let waiter = tokio::spawn({
            let set = set.clone();
            async move {
                let mut connection = set.acquire().await.expect("handed over");
                sqlx::query_scalar::<_, i32>("SELECT 2")
                    .fetch_one(&mut *connection)
                    .await
                    .expect("the connection answers")
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a second checkout waits for the first"
        );
        drop(held);
        assert_eq!(waiter.await.expect("no panic"), 2);
    }

    #[tokio::test]
    async fn every_connection_of_a_set_is_out_at_once_and_each_is_its_own() {
        let set = memory_set(3).await;
        let mut out = Vec::new();
        for value in 0..3 {
            let mut connection = set.acquire().await.expect("a free connection");
            // A temporary table is private to its connection.
            sqlx::query("CREATE TEMP TABLE mark (value INTEGER)")
                .execute(&mut *connection)
                .await
                .expect("each connection is a fresh one");
            sqlx::query("INSERT INTO mark VALUES (?)")
                .bind(value)
                .execute(&mut *connection)
                .await
                .expect("insert");
            out.push(connection);
        }
        let fourth = tokio::time::timeout(Duration::from_millis(50), set.acquire()).await;
        assert!(
            fourth.is_err(),
            "a fourth checkout waits while three are out"
        );
        drop(out);
        let mut connection = set.acquire().await.expect("returned connections");
        let marks: i64 = sqlx::query_scalar("SELECT count(*) FROM mark")
            .fetch_one(&mut *connection)
            .await
            .expect("the returned connection kept its state");
        assert_eq!(marks, 1);
    }

    #[tokio::test]
    async fn close_waits_for_the_holder_and_refuses_later_checkouts() {
        let set = memory_set(2).await;
        let held = set.acquire().await.expect("a connection");
        let closing = tokio::spawn({
            let set = set.clone();
            async move { set.close().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "close waits for the checkout");
        drop(held);
        closing.await.expect("no panic");
        assert!(set.is_closed());
        assert!(matches!(set.acquire().await, Err(sqlx::Error::PoolClosed)));
    }
}
