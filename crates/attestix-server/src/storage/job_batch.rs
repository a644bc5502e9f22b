//! Group commit for [`Storage::write`](super::Storage::write) jobs, on both backends.
//!
//! Every mutation appends an audit event, and the events of a scope form one chain
//! whose head row each append locks until its transaction ends; a provenance action
//! is a link of its agent's chain the same way. One transaction per job would
//! therefore serialize every write of a scope on a full commit, and spend four
//! statements per link. Here concurrent jobs share a turn instead: one transaction,
//! each job inside its own savepoint (a job that fails is rolled back alone and gets
//! its own error), and the chain links of every job that succeeded appended at the
//! end with [`records::append_links`], one statement per table. A savepoint is opened
//! only before a job's first statement, and a lone job runs without one, so a quiet
//! server pays nothing extra.
//!
//! A job appends its links through [`Tx::link`] (and [`Tx::audit`]), which defers
//! them to the end of the turn; a job therefore does not see the links appended
//! earlier in its turn, and a link that cannot be made then fails the whole turn.
//! The SQL is the shared subset of both dialects, so this runs unchanged on SQLite's
//! writer and on a PostgreSQL pool connection.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::oneshot;

use super::batch_queue::{BatchQueue, Checkout, WriterBatch};
use super::records::{self, ChainLink, Col, Conn, DbRow, Job, Stmt, Tx};
use super::sqlite_connections::{SqliteCheckout, SqliteConnections};
use super::sqlite_turn::{LentHandle, TurnHandle};
use super::StorageError;

/// At most this many jobs share a turn, so one turn's transaction stays short.
const MAX_JOBS_PER_TURN: usize = 64;

/// A connection a turn runs on, as each dialect opens a write transaction.
pub(crate) trait TurnConnection: Send {
    /// The statement that opens the turn's transaction.
    const BEGIN: &'static str;

    /// The connection as the dialect-free [`Tx`], for one turn.
    fn tx(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Box<dyn Tx + '_>, StorageError>> + Send;

    /// The connection's transaction state is unknown (a rollback failed): it must not
    /// be reused.
    fn discard(&mut self);

    /// Drives `turn`, a turn's whole future, on this kind of connection (by default
    /// it is awaited as it is).
    fn drive<F: std::future::Future + Send>(
        turn: F,
    ) -> impl std::future::Future<Output = F::Output> + Send {
        turn
    }
}

impl TurnConnection for SqliteCheckout {
    // IMMEDIATE: the write lock from the first statement, so a job that reads and then
    // writes never meets SQLITE_BUSY on upgrading (another process on the file).
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    // The turn's statements run on the handle lent by sqlx's worker thread: one
    // hand-off per turn rather than one per statement (`sqlite_turn`). A catch-up the
    // checkpoint task asked for runs first, outside the turn's transaction.
    async fn tx(&mut self) -> Result<Box<dyn Tx + '_>, StorageError> {
        let catch_up = self.catch_up_requested();
        let handle = if self.turn_connection().is_some() {
            TurnHandle::Own(self.turn_connection().expect("checked just above"))
        } else {
            TurnHandle::Lent(LentHandle::borrow(self).await?)
        };
        if catch_up {
            handle.checkpoint_passive();
        }
        Ok(Box::new(handle))
    }

    // A turn's statements run where the turn runs and block its thread: on a
    // multi-thread runtime the worker hands its other tasks to another thread first.
    async fn drive<F: std::future::Future + Send>(turn: F) -> F::Output {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(turn))
            }
            _ => turn.await,
        }
    }

    fn discard(&mut self) {
        // The writer's own turn connection is closed, which rolls back what it held;
        // the sqlx connection cannot be replaced, and its next BEGIN fails loudly if
        // SQLite still holds a transaction open on it.
        tracing::error!("rolling back a SQLite write turn failed");
        self.close_turn_connection();
    }
}

impl TurnConnection for PoolConnection<Postgres> {
    const BEGIN: &'static str = "BEGIN";

    async fn tx(&mut self) -> Result<Box<dyn Tx + '_>, StorageError> {
        Ok(Box::new(Conn::<Postgres>(&mut **self)))
    }

    fn discard(&mut self) {
        self.close_on_drop();
    }
}

impl Checkout for PgPool {
    type Connection = PoolConnection<Postgres>;

    // One turn's jobs run while another holds its scopes' chain heads and commits;
    // chain heads are locked in one order (`append_links`), so turns never deadlock
    // on them, and a job's own rows are locked inside its savepoint, so a deadlock
    // there fails that job alone. Half the pool at most, so reads and the
    // idempotency store keep connections.
    fn turns(&self) -> usize {
        (self.options().get_max_connections() as usize / 2).clamp(1, 3)
    }

    async fn checkout(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.acquire().await
    }
}

type Reply = Result<(), StorageError>;
/// A queued job: the work, whether it must open a turn of its own
/// ([`run_after_events`]), and where its outcome goes.
type Pending = (Job, bool, oneshot::Sender<Reply>);

/// The jobs gathered for one turn.
pub(crate) struct Jobs<S> {
    pending: Vec<Pending>,
    source: PhantomData<fn() -> S>,
}

impl<S> Default for Jobs<S> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            source: PhantomData,
        }
    }
}

/// The queue of write jobs of one backend.
pub(crate) type JobQueue<S> = BatchQueue<Jobs<S>>;

/// A queue of write jobs on `source`.
pub(crate) fn queue<S>(source: S) -> JobQueue<S>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    BatchQueue::new(source, Jobs::default)
}

/// Runs `job` in the next turn of `queue`; its outcome once the turn has committed.
pub(crate) async fn run<S>(queue: &JobQueue<S>, job: Job) -> Result<(), StorageError>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    submit(queue, job, false).await
}

/// As [`run`], for a job that reads or rewrites chain links (audit events, actions):
/// it opens a turn of its own, so every link of the turns before it is written (on
/// PostgreSQL, those of turns still running on other connections are not, as those
/// of another instance are not).
pub(crate) async fn run_after_events<S>(queue: &JobQueue<S>, job: Job) -> Result<(), StorageError>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    submit(queue, job, true).await
}

async fn submit<S>(queue: &JobQueue<S>, job: Job, after_events: bool) -> Result<(), StorageError>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    let (reply, answer) = oneshot::channel();
    if let Err((job, after_events, reply)) = queue.send((job, after_events, reply)) {
        // The batching task is gone (its runtime shut down): run the job alone.
        let mut connection = queue
            .writer()
            .checkout()
            .await
            .map_err(StorageError::database)?;
        run_turn(&mut connection, vec![(job, after_events, reply)]).await;
    }
    answer.await.unwrap_or_else(|_| {
        Err(StorageError::database(
            "the write turn ended unanswered (shutting down)",
        ))
    })
}

impl<S> WriterBatch for Jobs<S>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    type Source = S;
    type Operation = Pending;

    fn push(&mut self, pending: Pending) -> Result<(), Pending> {
        // A job that must see every link appended before it opens a turn of its own,
        // so the turns before it have committed its links (on one writer) and no
        // earlier job of its turn holds any.
        let after_links = pending.1;
        if self.pending.len() == MAX_JOBS_PER_TURN || (after_links && !self.pending.is_empty()) {
            return Err(pending);
        }
        self.pending.push(pending);
        Ok(())
    }

    async fn run(&mut self, connection: &mut S::Connection) {
        run_turn(connection, std::mem::take(&mut self.pending)).await;
    }

    fn fail(&mut self, error: &sqlx::Error) {
        for (_, _, reply) in self.pending.drain(..) {
            let _ = reply.send(Err(StorageError::database(format!(
                "no connection to write on: {error}"
            ))));
        }
    }
}

/// The statements of one write transaction, run by [`run_transaction`].
pub(crate) trait TurnBody: Send {
    /// What the transaction gives back when it commits.
    type Output: Send;

    /// Runs the statements on `tx`, from `begin` to `COMMIT`.
    fn run<'t>(
        self,
        tx: &'t mut dyn Tx,
        begin: &'static str,
    ) -> BoxFuture<'t, Result<Self::Output, StorageError>>
    where
        Self: 't;
}

/// Runs `body` as one transaction on `connection`, driven as the connection's kind
/// drives a turn ([`TurnConnection::drive`]). When it fails the transaction is rolled
/// back, and the connection discarded if even that fails.
pub(crate) async fn run_transaction<C: TurnConnection, B: TurnBody>(
    connection: &mut C,
    body: B,
) -> Result<B::Output, StorageError> {
    let (outcome, rolled_back) = C::drive(async {
        match connection.tx().await {
            Ok(mut tx) => {
                let outcome = body.run(&mut *tx, C::BEGIN).await;
                let rolled_back = match &outcome {
                    Ok(_) => true,
                    Err(_) => tx.execute(Stmt::new("ROLLBACK")).await.is_ok(),
                };
                (outcome, rolled_back)
            }
            // Nothing ran: there is nothing to roll back.
            Err(error) => (Err(error), true),
        }
    })
    .await;
    if !rolled_back {
        connection.discard();
    }
    outcome
}

/// A turn's jobs, as a transaction.
struct JobTurn(Vec<Job>);

impl TurnBody for JobTurn {
    type Output = Vec<Reply>;

    fn run<'t>(
        self,
        tx: &'t mut dyn Tx,
        begin: &'static str,
    ) -> BoxFuture<'t, Result<Vec<Reply>, StorageError>>
    where
        Self: 't,
    {
        Box::pin(turn(tx, begin, self.0))
    }
}

/// Runs `jobs` in one transaction on `connection` and answers each.
async fn run_turn<C: TurnConnection>(connection: &mut C, jobs: Vec<Pending>) {
    let (jobs, replies): (Vec<Job>, Vec<oneshot::Sender<Reply>>) =
        jobs.into_iter().map(|(job, _, reply)| (job, reply)).unzip();
    match run_transaction(connection, JobTurn(jobs)).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            // Nothing of the turn committed: every job gets the turn's error.
            let shared = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(StorageError::Database(Box::new(Arc::clone(&shared)))));
            }
        }
    }
}

/// The turn's transaction: each job's own outcome, or the error that failed the whole
/// turn (the caller rolls back). A lone job that fails rolls the transaction back here.
async fn turn(tx: &mut dyn Tx, begin: &str, jobs: Vec<Job>) -> Result<Vec<Reply>, StorageError> {
    tx.execute(Stmt::new(begin)).await?;
    let alone = jobs.len() == 1;
    let mut links = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut own = Vec::new();
        let savepoint = if alone {
            Savepoint::Unneeded
        } else {
            Savepoint::Lazy
        };
        let mut job_tx = Deferred {
            inner: tx,
            links: &mut own,
            savepoint,
        };
        let outcome = job(&mut job_tx).await;
        let opened = job_tx.savepoint == Savepoint::Open;
        match outcome {
            Ok(()) => {
                if opened {
                    tx.execute(Stmt::new("RELEASE SAVEPOINT job")).await?;
                }
                links.append(&mut own);
                outcomes.push(Ok(()));
            }
            Err(error) if alone => {
                tx.execute(Stmt::new("ROLLBACK")).await?;
                return Ok(vec![Err(error)]);
            }
            Err(error) => {
                if opened {
                    tx.execute(Stmt::new("ROLLBACK TO SAVEPOINT job")).await?;
                    tx.execute(Stmt::new("RELEASE SAVEPOINT job")).await?;
                }
                outcomes.push(Err(error));
            }
        }
    }
    records::append_links(tx, links).await?;
    tx.execute(Stmt::new("COMMIT")).await?;
    Ok(outcomes)
}

/// Whether a job of a turn runs in a savepoint of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// The job is alone in its turn: its failure rolls the whole transaction back.
    Unneeded,
    /// Not yet: opened before the job's first statement, so a job that only appends
    /// chain links (a provenance action) costs no statement until the turn's end.
    Lazy,
    /// Opened; released or rolled back to when the job ends.
    Open,
}

/// The [`Tx`] a job of a turn sees: statements go to the turn's transaction (inside
/// the job's savepoint when it shares the turn), chain links wait for the turn's end.
struct Deferred<'a> {
    inner: &'a mut dyn Tx,
    links: &'a mut Vec<ChainLink>,
    savepoint: Savepoint,
}

impl Deferred<'_> {
    async fn before_statement(&mut self) -> Result<(), StorageError> {
        if self.savepoint == Savepoint::Lazy {
            self.inner.execute(Stmt::new("SAVEPOINT job")).await?;
            self.savepoint = Savepoint::Open;
        }
        Ok(())
    }
}

#[async_trait]
impl Tx for Deferred<'_> {
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, StorageError> {
        self.before_statement().await?;
        self.inner.execute(stmt).await
    }

    async fn fetch(&mut self, stmt: Stmt, cols: &[Col]) -> Result<Vec<DbRow>, StorageError> {
        self.before_statement().await?;
        self.inner.fetch(stmt, cols).await
    }

    async fn link(&mut self, link: ChainLink) -> Result<(), StorageError> {
        self.links.push(link);
        Ok(())
    }
}

/// A queue of write jobs on SQLite's writer.
pub(crate) type SqliteJobs = JobQueue<SqliteConnections>;

/// A queue of write jobs on a PostgreSQL pool.
pub(crate) type PostgresJobs = JobQueue<PgPool>;
