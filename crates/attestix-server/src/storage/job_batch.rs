//! Group commit for [`Storage::write`](super::Storage::write) jobs, on both backends.
//!
//! Every mutation appends an audit event, and the events of a scope form one chain
//! whose head row each append locks until its transaction ends. One transaction per
//! job would therefore serialize every write of a scope on a full commit, and spend
//! four statements per event. Here concurrent jobs share a turn instead: one
//! transaction, each job inside its own savepoint (a job that fails is rolled back
//! alone and gets its own error), and the events of every job that succeeded
//! appended at the end with [`crate::audit::append_many`], one statement per table.
//! A lone job runs without savepoints, so a quiet server pays nothing extra.
//!
//! A job appends its events through [`Tx::audit`], which defers them to the end of
//! the turn; a job therefore does not see the events appended earlier in its turn.
//! The SQL is the shared subset of both dialects, so this runs unchanged on SQLite's
//! writer and on a PostgreSQL pool connection.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite};
use tokio::sync::oneshot;

use super::batch_queue::{BatchQueue, Checkout, WriterBatch};
use super::records::{Col, Conn, DbRow, Job, Stmt, Tx};
use super::sqlite_writer::{SqliteWriter, WriterConnection};
use super::StorageError;
use crate::audit::AuditDraft;

/// At most this many jobs share a turn, so one turn's transaction stays short.
const MAX_JOBS_PER_TURN: usize = 64;

/// A connection a turn runs on, as each dialect opens a write transaction.
pub(crate) trait TurnConnection: Send {
    /// The statement that opens the turn's transaction.
    const BEGIN: &'static str;

    /// The connection as the dialect-free [`Tx`].
    fn tx(&mut self) -> Box<dyn Tx + '_>;

    /// The connection's transaction state is unknown (a rollback failed): it must not
    /// be reused.
    fn discard(&mut self);
}

impl TurnConnection for WriterConnection {
    // IMMEDIATE: the write lock from the first statement, so a job that reads and then
    // writes never meets SQLITE_BUSY on upgrading (another process on the file).
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn tx(&mut self) -> Box<dyn Tx + '_> {
        Box::new(Conn::<Sqlite>(&mut **self))
    }

    fn discard(&mut self) {
        // The one writer cannot be replaced; its next BEGIN fails loudly if SQLite
        // still holds a transaction open.
        tracing::error!("rolling back a SQLite write turn failed");
    }
}

impl TurnConnection for PoolConnection<Postgres> {
    const BEGIN: &'static str = "BEGIN";

    fn tx(&mut self) -> Box<dyn Tx + '_> {
        Box::new(Conn::<Postgres>(&mut **self))
    }

    fn discard(&mut self) {
        self.close_on_drop();
    }
}

impl Checkout for PgPool {
    type Connection = PoolConnection<Postgres>;

    async fn checkout(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.acquire().await
    }
}

type Reply = Result<(), StorageError>;
/// A queued job: the work, whether the events appended before it in its turn must be
/// written first ([`run_after_events`]), and where its outcome goes.
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

/// As [`run`], for a job that reads or rewrites audit events: every event appended
/// before it (earlier in its turn included) is written before it runs.
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
        if self.pending.len() == MAX_JOBS_PER_TURN {
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

/// Runs `jobs` in one transaction on `connection` and answers each.
async fn run_turn<C: TurnConnection>(connection: &mut C, jobs: Vec<Pending>) {
    let (jobs, replies): (Vec<(Job, bool)>, Vec<oneshot::Sender<Reply>>) = jobs
        .into_iter()
        .map(|(job, after_events, reply)| ((job, after_events), reply))
        .unzip();
    let outcome = {
        let mut tx = connection.tx();
        let outcome = turn(&mut *tx, C::BEGIN, jobs).await;
        let rolled_back = match &outcome {
            Ok(_) => true,
            Err(_) => tx.execute(Stmt::new("ROLLBACK")).await.is_ok(),
        };
        (outcome, rolled_back)
    };
    match outcome {
        (Ok(outcomes), _) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        (Err(error), rolled_back) => {
            if !rolled_back {
                connection.discard();
            }
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
async fn turn(
    tx: &mut dyn Tx,
    begin: &str,
    jobs: Vec<(Job, bool)>,
) -> Result<Vec<Reply>, StorageError> {
    tx.execute(Stmt::new(begin)).await?;
    let alone = jobs.len() == 1;
    let mut drafts = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, after_events) in jobs {
        if after_events && !drafts.is_empty() {
            let pending: Vec<&AuditDraft> = drafts.iter().collect();
            crate::audit::append_many(tx, &pending).await?;
            drafts.clear();
        }
        if alone {
            if let Err(error) = job(&mut Deferred::new(tx, &mut drafts)).await {
                tx.execute(Stmt::new("ROLLBACK")).await?;
                return Ok(vec![Err(error)]);
            }
            outcomes.push(Ok(()));
            continue;
        }
        tx.execute(Stmt::new("SAVEPOINT job")).await?;
        let mut own = Vec::new();
        match job(&mut Deferred::new(tx, &mut own)).await {
            Ok(()) => {
                tx.execute(Stmt::new("RELEASE SAVEPOINT job")).await?;
                drafts.append(&mut own);
                outcomes.push(Ok(()));
            }
            Err(error) => {
                tx.execute(Stmt::new("ROLLBACK TO SAVEPOINT job")).await?;
                tx.execute(Stmt::new("RELEASE SAVEPOINT job")).await?;
                outcomes.push(Err(error));
            }
        }
    }
    let drafts: Vec<&AuditDraft> = drafts.iter().collect();
    crate::audit::append_many(tx, &drafts).await?;
    tx.execute(Stmt::new("COMMIT")).await?;
    Ok(outcomes)
}

/// The [`Tx`] a job of a turn sees: statements go to the turn's transaction, audit
/// events wait for the end of the turn.
struct Deferred<'a> {
    inner: &'a mut dyn Tx,
    drafts: &'a mut Vec<AuditDraft>,
}

impl<'a> Deferred<'a> {
    fn new(inner: &'a mut dyn Tx, drafts: &'a mut Vec<AuditDraft>) -> Self {
        Self { inner, drafts }
    }
}

#[async_trait]
impl Tx for Deferred<'_> {
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, StorageError> {
        self.inner.execute(stmt).await
    }

    async fn fetch(&mut self, stmt: Stmt, cols: &[Col]) -> Result<Vec<DbRow>, StorageError> {
        self.inner.fetch(stmt, cols).await
    }

    async fn audit(&mut self, draft: &AuditDraft) -> Result<(), StorageError> {
        self.drafts.push(draft.clone());
        Ok(())
    }
}

/// A queue of write jobs on SQLite's writer.
pub(crate) type SqliteJobs = JobQueue<SqliteWriter>;

/// A queue of write jobs on a PostgreSQL pool.
pub(crate) type PostgresJobs = JobQueue<PgPool>;
