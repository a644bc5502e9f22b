//! [`BatchQueue`]: concurrent writes sharing turns on one connection (group commit),
//! written once for every kind of batched write and every connection source.

use std::fmt;
use std::sync::Arc;

/// Where a [`BatchQueue`] gets the connection each turn runs on.
pub trait Checkout: Clone + fmt::Debug + Send + Sync + 'static {
    /// The checked-out connection; dropping it gives it back.
    type Connection: Send;

    /// How many turns may run at once, each on its own connection: 1 for a single
    /// writer; more for a server database, whose row locks order what turns share.
    fn turns(&self) -> usize {
        1
    }

    /// Waits for a connection.
    fn checkout(
        &self,
    ) -> impl std::future::Future<Output = Result<Self::Connection, sqlx::Error>> + Send;
}

/// Operations that can share one turn of a connection: the state of one batch
/// being gathered, for a [`BatchQueue`].
///
/// The loop that gathers and runs batches is written once, in [`BatchQueue`]; each
/// kind of batched write says only how to add to a batch and how to run it.
pub trait WriterBatch: Send + 'static {
    /// Where each turn's connection comes from.
    type Source: Checkout;
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
        connection: &mut <Self::Source as Checkout>::Connection,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// The connection could not be checked out: answers every pushed operation with that
    /// error and leaves the batch empty.
    fn fail(&mut self, error: &sqlx::Error);
}

/// A queue in front of a connection source whose operations share turns.
///
/// One task (started on first use, inside the caller's runtime) takes the first
/// queued operation, checks out the writer, adds every operation queued meanwhile
/// while the batch has room, and runs the batch. Nothing waits on purpose: a lone
/// operation goes out at once, and batches grow only while the writer is busy, which
/// is when they pay. The task ends when every handle is gone.
pub struct BatchQueue<B: WriterBatch> {
    writer: B::Source,
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
    pub fn new(writer: B::Source, new_batch: impl Fn() -> B + Send + Sync + 'static) -> Self {
        Self {
            writer,
            queue: Arc::new(std::sync::OnceLock::new()),
            new_batch: Arc::new(new_batch),
        }
    }

    /// The writer the batches run on.
    pub fn writer(&self) -> &B::Source {
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
                Arc::clone(&self.new_batch),
            ));
            sender
        });
        queue.send(operation).map_err(|error| error.0)
    }
}

/// The batching task of a [`BatchQueue`]: up to [`Checkout::turns`] turns at once.
async fn run_batches<B: WriterBatch>(
    writer: B::Source,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<B::Operation>,
    new_batch: Arc<dyn Fn() -> B + Send + Sync>,
) {
    let parallel = writer.turns().max(1);
    let turns = Arc::new(tokio::sync::Semaphore::new(parallel));
    // An operation taken from the queue that did not fit in the last batch.
    let mut carried: Option<B::Operation> = None;
    loop {
        // Wait for a free turn first: everything queued meanwhile joins the next one.
        let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(operation) => operation,
            None => match queue.recv().await {
                Some(operation) => operation,
                None => return,
            },
        };
        // Check out the writer first: everything queued while waiting for it joins.
        let connection = writer.checkout().await;
        let mut batch = new_batch();
        let mut next = Some(first);
        while let Some(operation) = next.take() {
            if let Err(no_room) = batch.push(operation) {
                carried = Some(no_room);
                break;
            }
            next = queue.try_recv().ok();
        }
        let run = async move {
            match connection {
                Ok(mut connection) => batch.run(&mut connection).await,
                Err(error) => batch.fail(&error),
            }
            drop(turn);
        };
        if parallel == 1 {
            run.await;
        } else {
            tokio::spawn(run);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Mutex as StdMutex;

    use tokio::sync::oneshot;

    use super::*;
    use crate::storage::sqlite_connections::{SqliteCheckout, SqliteConnections};
    use sqlx::sqlite::SqliteConnectOptions;

    /// Room for two operations per turn; records the size of every turn it runs.
    struct TwoAtATime {
        pending: Vec<(u32, oneshot::Sender<u32>)>,
        turns: Arc<StdMutex<Vec<Vec<u32>>>>,
    }

    impl WriterBatch for TwoAtATime {
        type Source = SqliteConnections;
        type Operation = (u32, oneshot::Sender<u32>);

        fn push(&mut self, operation: Self::Operation) -> Result<(), Self::Operation> {
            if self.pending.len() == 2 {
                return Err(operation);
            }
            self.pending.push(operation);
            Ok(())
        }

        async fn run(&mut self, connection: &mut SqliteCheckout) {
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

    async fn memory_writer() -> SqliteConnections {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("valid URL");
        SqliteConnections::connect(&options, 1)
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
