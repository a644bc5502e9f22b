//! Group commit for the resource inserts of both backends: the identities,
//! credentials, delegations and DIDs created by concurrent requests share one
//! transaction and one statement per table.
//!
//! Each statement costs a round trip (a hand-off to sqlx's worker thread on SQLite,
//! a network round trip on PostgreSQL), and each transaction a commit, so one
//! transaction per insert, or one savepoint and insert per job of a write turn,
//! bounded the server (docs/BENCHMARKS.md).
//!
//! A [`BatchQueue`] takes the first queued insert, checks out a connection, takes
//! every insert queued meanwhile (up to [`MAX_INSERT_ROWS`] per table), and runs one
//! multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` per table, then the
//! audit events of the rows that went in ([`records::append_links`]), then commits.
//! A row whose id comes back was inserted; one that does not met a uniqueness
//! constraint (its recovery point, or a taken id), and its caller resolves that as
//! after a single-row insert. If the turn fails (a deadlock on PostgreSQL, say), it
//! is rolled back and its rows are inserted one by one, so each caller gets its own
//! answer. Nothing waits on purpose: a lone insert goes out at once.

use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::batch_queue::{BatchQueue, Checkout, WriterBatch};
use super::job_batch::{run_transaction, TurnBody, TurnConnection};
use super::new_row::{self, NewRow};
use super::records::{self, Col, Stmt, Tx};
use super::{NewCredential, NewDelegation, NewDid, NewIdentity, StorageError};
use crate::audit::AuditDraft;

/// The most rows one insert statement carries.
pub(super) const MAX_INSERT_ROWS: usize = 32;

/// `Ok(true)`: inserted; `Ok(false)`: it met a uniqueness constraint.
type Reply = Result<bool, StorageError>;

/// A row to insert, owned so that it can cross to the batching task.
pub(super) enum OwnedRow {
    Identity(NewIdentity),
    Credential(NewCredential),
    Delegation(NewDelegation),
    Did(NewDid),
}

impl From<NewRow<'_>> for OwnedRow {
    fn from(row: NewRow<'_>) -> Self {
        match row {
            NewRow::Identity(identity) => Self::Identity(identity.clone()),
            NewRow::Credential(credential) => Self::Credential(credential.clone()),
            NewRow::Delegation(delegation) => Self::Delegation(delegation.clone()),
            NewRow::Did(did) => Self::Did(did.clone()),
        }
    }
}

impl OwnedRow {
    fn as_row(&self) -> NewRow<'_> {
        match self {
            Self::Identity(identity) => NewRow::Identity(identity),
            Self::Credential(credential) => NewRow::Credential(credential),
            Self::Delegation(delegation) => NewRow::Delegation(delegation),
            Self::Did(did) => NewRow::Did(did),
        }
    }

    /// The index of the row's table in [`Inserts::tables`].
    fn table(&self) -> usize {
        match self {
            Self::Identity(_) => 0,
            Self::Credential(_) => 1,
            Self::Delegation(_) => 2,
            Self::Did(_) => 3,
        }
    }
}

/// How many tables [`OwnedRow`] inserts into.
const TABLES: usize = 4;

type Pending = (OwnedRow, oneshot::Sender<Reply>);

/// The handle; the batching task starts on first use, inside the caller's runtime.
#[derive(Debug, Clone)]
pub(super) struct InsertBatcher<S>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    queue: BatchQueue<Inserts<S>>,
}

/// The inserts gathered for one turn, by table ([`OwnedRow::table`]).
struct Inserts<S> {
    tables: [Vec<Pending>; TABLES],
    source: PhantomData<fn() -> S>,
}

impl<S> Default for Inserts<S> {
    fn default() -> Self {
        Self {
            tables: Default::default(),
            source: PhantomData,
        }
    }
}

impl<S> InsertBatcher<S>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    /// Batches inserts on connections of `source`.
    pub(super) fn new(source: S) -> Self {
        Self {
            queue: BatchQueue::new(source, Inserts::default),
        }
    }

    /// Inserts `row` (and, when it goes in, its audit event) in the next turn.
    pub(super) async fn insert(&self, row: OwnedRow) -> Reply {
        let (reply, answer) = oneshot::channel();
        if let Err((row, reply)) = self.queue.send((row, reply)) {
            // The task is gone (its runtime shut down): insert alone.
            let mut connection = self
                .queue
                .writer()
                .checkout()
                .await
                .map_err(StorageError::database)?;
            let _ = reply.send(insert_alone(&mut connection, row.as_row()).await);
        }
        answer.await.unwrap_or_else(|_| {
            Err(StorageError::Database(
                "the insert batch ended unanswered (shutting down)".into(),
            ))
        })
    }
}

impl<S> WriterBatch for Inserts<S>
where
    S: Checkout,
    S::Connection: TurnConnection,
{
    type Source = S;
    type Operation = Pending;

    fn push(&mut self, pending: Pending) -> Result<(), Pending> {
        let batch = &mut self.tables[pending.0.table()];
        // Rows with one id never share a statement: its RETURNING would name the id
        // once, for whichever row got in, and both would read it as their own. (Two
        // executions of one request, a lease taken over from a worker still running,
        // derive the same id.) The later row goes to the next turn, and then finds
        // the earlier one's resource.
        let id = pending.0.as_row().id();
        let same_id = |(other, _): &Pending| other.as_row().id() == id;
        if batch.len() == MAX_INSERT_ROWS || batch.iter().any(same_id) {
            return Err(pending);
        }
        batch.push(pending);
        Ok(())
    }

    async fn run(&mut self, connection: &mut S::Connection) {
        let mut batches = std::mem::take(&mut self.tables);
        let rows: Vec<Vec<NewRow<'_>>> = batches
            .iter()
            .map(|batch| batch.iter().map(|(row, _)| row.as_row()).collect())
            .collect();
        match run_turn(connection, &rows).await {
            Ok(outcomes) => {
                drop(rows);
                for (batch, inserted) in batches.iter_mut().zip(outcomes) {
                    for ((_, reply), inserted) in batch.drain(..).zip(inserted) {
                        let _ = reply.send(Ok(inserted));
                    }
                }
            }
            Err(error) => {
                drop(rows);
                tracing::debug!(%error, "batched insert failed; inserting each row alone");
                for (row, reply) in batches.iter_mut().flat_map(|batch| batch.drain(..)) {
                    let _ = reply.send(insert_alone(connection, row.as_row()).await);
                }
            }
        }
    }

    fn fail(&mut self, error: &sqlx::Error) {
        for (_, reply) in self.tables.iter_mut().flat_map(|batch| batch.drain(..)) {
            let _ = reply.send(Err(StorageError::database(error.to_string())));
        }
    }
}

/// Inserts `row` and its event in a transaction of its own.
async fn insert_alone<C: TurnConnection>(connection: &mut C, row: NewRow<'_>) -> Reply {
    let outcomes = run_turn(connection, &[vec![row]]).await?;
    Ok(outcomes[0][0])
}

/// Runs every table's rows, one statement a table, and appends the audit event of
/// each row inserted, all in one transaction: the rows and their events commit
/// together or not at all. Whether each row was inserted, table by table. On an
/// error the transaction is rolled back (the connection discarded if even that fails).
async fn run_turn<C: TurnConnection>(
    connection: &mut C,
    tables: &[Vec<NewRow<'_>>],
) -> Result<Vec<Vec<bool>>, StorageError> {
    run_transaction(connection, InsertTurn(tables)).await
}

/// The rows of a turn, table by table, as a transaction.
struct InsertTurn<'r, 'a>(&'r [Vec<NewRow<'a>>]);

impl TurnBody for InsertTurn<'_, '_> {
    type Output = Vec<Vec<bool>>;

    fn run<'t>(
        self,
        tx: &'t mut dyn Tx,
        begin: &'static str,
    ) -> BoxFuture<'t, Result<Vec<Vec<bool>>, StorageError>>
    where
        Self: 't,
    {
        Box::pin(turn(tx, begin, self.0))
    }
}

/// The statements of [`run_turn`]'s transaction.
async fn turn(
    tx: &mut dyn Tx,
    begin: &str,
    tables: &[Vec<NewRow<'_>>],
) -> Result<Vec<Vec<bool>>, StorageError> {
    tx.execute(Stmt::new(begin)).await?;
    let mut outcomes = Vec::with_capacity(tables.len());
    let mut drafts = Vec::new();
    for rows in tables {
        if rows.is_empty() {
            outcomes.push(Vec::new());
            continue;
        }
        let ids = tx.fetch(new_row::insert(rows, ""), &[Col::Text]).await?;
        let ids = ids
            .iter()
            .map(|row| row.text(0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inserted = Vec::with_capacity(rows.len());
        for row in rows {
            let made = ids.iter().any(|id| id == row.id());
            if made {
                drafts.extend(row.audit());
            }
            inserted.push(made);
        }
        outcomes.push(inserted);
    }
    let links = drafts.into_iter().map(AuditDraft::chain_link).collect();
    records::append_links(tx, links).await?;
    tx.execute(Stmt::new("COMMIT")).await?;
    Ok(outcomes)
}
