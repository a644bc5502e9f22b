//! [`SqliteWriter`]: the one connection through which the SQLite storage file is
//! written, and [`BatchQueue`], which lets concurrent writes share its turns.
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

/// Operations that can share one turn of a [`SqliteWriter`]: the state of one batch
/// being gathered, for a [`BatchQueue`].
///
/// The loop that gathers and runs batches is written once, in [`BatchQueue`]; each
/// kind of batched write says only how to add to a batch and how to run it.
pub trait WriterBatch: Send + 'static {
    /// One queued operation, carrying whatever its caller awaits the answer on.
    type Operation: Send + 'static;

    /// Adds `operation` to this batch, or hands it back when the batch has no room for
    /// it (it then opens the next batch). An empty batch must take any operation.
    ///
    /// # Errors
    /// The operation itself, when there is no room.
    fn push(&mut self, operation: Self::Operation) -> Result<(), Self::Operation>;

    /// Runs everything pushed since the last turn on the checked-out writer, answers
    /// each caller, and leaves the batch empty.
    fn run(
        &mut self,
        connection: &mut WriterConnection,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// The writer could not be checked out: answers every pushed operation with that
    /// error and leaves the batch empty.
    fn fail(&mut self, error: &sqlx::Error);
}

/// A queue in front of a [`SqliteWriter`] whose operations share writer turns.
///
/// One task (started on first use, inside the caller's runtime) takes the first
/// queued operation, checks out the writer, adds every operation queued meanwhile
/// while the batch has room, and runs the batch. Nothing waits on purpose: a lone
/// operation goes out at once, and batches grow only while the writer is busy, which
/// is when they pay. The task ends when every handle is gone.
pub struct BatchQueue<B: WriterBatch> {
    writer: SqliteWriter,
    queue: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<B::Operation>>>,
    new_batch: Arc<dyn Fn() -> B + Send + Sync>,
}

impl<B: WriterBatch> Clone for BatchQueue<B> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            queue: self.queue.clone(),
            new_batch: self.new_batch.clone(),
        }
    }
}

impl<B: WriterBatch> fmt::Debug for BatchQueue<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchQueue")
            .field("writer", &self.writer)
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

impl<B: WriterBatch> BatchQueue<B> {
    /// A queue on `writer`; its task starts on first use, with the empty batch
    /// `new_batch` makes.
    pub fn new(writer: SqliteWriter, new_batch: impl Fn() -> B + Send + Sync + 'static) -> Self {
        Self {
            writer,
            queue: Arc::new(std::sync::OnceLock::new()),
            new_batch: Arc::new(new_batch),
        }
    }

    /// The writer the batches run on.
    pub fn writer(&self) -> &SqliteWriter {
        &self.writer
    }

    /// Queues `operation` for the next batch.
    ///
    /// # Errors
    /// The operation, when the batching task is gone (its runtime shut down); the
    /// caller should then run it alone.
    pub fn send(&self, operation: B::Operation) -> Result<(), B::Operation> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(run_batches(
                self.writer.clone(),
                receiver,
                (self.new_batch)(),
            ));
            sender
        });
        queue.send(operation).map_err(|error| error.0)
    }
}

/// The batching task of a [`BatchQueue`].
async fn run_batches<B: WriterBatch>(
    writer: SqliteWriter,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<B::Operation>,
    mut batch: B,
) {
    // An operation taken from the queue that did not fit in the last batch.
    let mut carried: Option<B::Operation> = None;
    loop {
        let first = match carried.take() {
            Some(operation) => operation,
            None => match queue.recv().await {
                Some(operation) => operation,
                None => return,
            },
        };
        // Check out the writer first: everything queued while waiting for it joins.
        let connection = writer.acquire().await;
        let mut next = Some(first);
        while let Some(operation) = next.take() {
            if let Err(no_room) = batch.push(operation) {
                carried = Some(no_room);
                break;
            }
            next = queue.try_recv().ok();
        }
        match connection {
            Ok(mut connection) => batch.run(&mut connection).await,
            Err(error) => batch.fail(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Mutex as StdMutex;

    use tokio::sync::oneshot;

    use super::*;

    /// Room for two operations per turn; records the size of every turn it runs.
    struct TwoAtATime {
        pending: Vec<(u32, oneshot::Sender<u32>)>,
        turns: Arc<StdMutex<Vec<Vec<u32>>>>,
    }

    impl WriterBatch for TwoAtATime {
        type Operation = (u32, oneshot::Sender<u32>);

        fn push(&mut self, operation: Self::Operation) -> Result<(), Self::Operation> {
            if self.pending.len() == 2 {
                return Err(operation);
            }
            self.pending.push(operation);
            Ok(())
        }

        async fn run(&mut self, connection: &mut WriterConnection) {
            // A real statement on the writer, so the turn really holds it.
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut **connection)
                .await
                .expect("the writer answers");
            assert_eq!(one, 1);
            let mut turn = Vec::new();
            for (value, reply) in self.pending.drain(..) {
                turn.push(value);
                let _ = reply.send(value * 10);
            }
            self.turns.lock().unwrap().push(turn);
        }

        fn fail(&mut self, _: &sqlx::Error) {
            self.pending.clear();
        }
    }

    async fn memory_writer() -> SqliteWriter {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("valid URL");
        SqliteWriter::connect(&options)
            .await
            .expect("an in-memory database opens")
    }

    #[tokio::test]
    async fn operations_queued_while_the_writer_is_busy_share_turns_in_order() {
        let writer = memory_writer().await;
        let turns = Arc::new(StdMutex::new(Vec::new()));
        let recorded = turns.clone();
        let queue = BatchQueue::new(writer.clone(), move || TwoAtATime {
            pending: Vec::new(),
            turns: recorded.clone(),
        });

        // Hold the writer so that everything sent queues up behind it.
        let held = writer.acquire().await.expect("the writer is free");
        let mut answers = Vec::new();
        for value in 1..=5 {
            let (reply, answer) = oneshot::channel();
            assert!(queue.send((value, reply)).is_ok(), "the task is running");
            answers.push(answer);
        }
        // Let the task take the first operation and wait for the writer.
        tokio::task::yield_now().await;
        drop(held);

        for (value, answer) in (1..=5).zip(answers) {
            assert_eq!(answer.await.expect("every caller is answered"), value * 10);
        }
        // Room for two: the five queued operations ran as 2 + 2 + 1, none reordered,
        // the one that did not fit carried into the next turn.
        assert_eq!(
            *turns.lock().unwrap(),
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
    }

    #[tokio::test]
    async fn a_lone_operation_goes_out_at_once() {
        let writer = memory_writer().await;
        let turns = Arc::new(StdMutex::new(Vec::new()));
        let recorded = turns.clone();
        let queue = BatchQueue::new(writer, move || TwoAtATime {
            pending: Vec::new(),
            turns: recorded.clone(),
        });
        let (reply, answer) = oneshot::channel();
        assert!(queue.send((7, reply)).is_ok());
        assert_eq!(answer.await.expect("answered"), 70);
        assert_eq!(*turns.lock().unwrap(), vec![vec![7]]);
    }
}
