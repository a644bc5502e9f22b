//! Group commit for [`SqliteStorage`](super::SqliteStorage)'s inserts: the identities,
//! credentials, delegations and DIDs created by concurrent requests share one trip to
//! the writer.
//!
//! Every write to a SQLite file goes through one connection, and each statement on it
//! costs a hand-off to sqlx's worker thread and back (from a few µs to about 90 µs on
//! the 2-core benchmark machine, the upper end when a sleeping thread must be woken),
//! so the writer, not the CPU, bounded the server.
//!
//! A [`BatchQueue`] takes
//! the first queued insert, checks out the writer, takes every insert queued
//! meanwhile (up to [`MAX_INSERT_ROWS`] per table), and runs one
//! multi-row `INSERT … SELECT … WHERE NOT EXISTS (an earlier execution's resource)
//! ON CONFLICT (id) DO NOTHING RETURNING id` per table. A row whose id comes back was
//! inserted; one that does not met its own recovery point or a taken id, and its
//! caller resolves that as after a single-row insert. If a statement fails (a duplicate id, say), its rows are retried one by
//! one, so each caller gets its own answer. Nothing waits on purpose: a lone insert
//! goes out at once.

use sqlx::{Connection, Sqlite};
use tokio::sync::oneshot;

use super::records::{self, append_event, Conn};
use crate::audit::AuditDraft;

use super::batch_queue::{BatchQueue, WriterBatch};
use super::sqlite::{insert_error, NewRow, MAX_INSERT_ROWS};
use super::sqlite_writer::{SqliteWriter, WriterConnection};
use super::{NewCredential, NewDelegation, NewDid, NewIdentity, StorageError};

/// `Ok(true)`: inserted; `Ok(false)`: its recovery point is taken.
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
pub(super) struct InsertBatcher {
    queue: BatchQueue<Inserts>,
}

/// The inserts gathered for one writer turn, by table ([`OwnedRow::table`]).
#[derive(Default)]
struct Inserts {
    tables: [Vec<Pending>; TABLES],
}

impl InsertBatcher {
    pub(super) fn new(writer: SqliteWriter) -> Self {
        Self {
            queue: BatchQueue::new(writer, Inserts::default),
        }
    }

    /// Inserts `row` in the next batch.
    pub(super) async fn insert(&self, row: OwnedRow) -> Reply {
        let (reply, answer) = oneshot::channel();
        if let Err((row, reply)) = self.queue.send((row, reply)) {
            // The task is gone (its runtime shut down): insert alone.
            let mut writer = self
                .queue
                .writer()
                .acquire()
                .await
                .map_err(StorageError::database)?;
            let _ = reply.send(insert_one(&mut writer, &row).await);
        }
        answer.await.unwrap_or_else(|_| {
            Err(StorageError::Database(
                "the insert batch ended unanswered (shutting down)".into(),
            ))
        })
    }
}

impl WriterBatch for Inserts {
    type Source = SqliteWriter;
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

    async fn run(&mut self, connection: &mut WriterConnection) {
        let mut batches = std::mem::take(&mut self.tables);
        match run_batches(connection, &batches).await {
            Ok(outcomes) => {
                for (batch, inserted) in batches.iter_mut().zip(outcomes) {
                    for ((_, reply), inserted) in batch.drain(..).zip(inserted) {
                        let _ = reply.send(Ok(inserted));
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "batched insert failed; inserting each row alone");
                for (row, reply) in batches.iter_mut().flat_map(|batch| batch.drain(..)) {
                    let _ = reply.send(insert_one(connection, &row).await);
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

/// Runs every table's batch, one statement a table, and appends the audit event of
/// each row inserted, all in one transaction: the rows and their events commit
/// together or not at all. Whether each row was inserted, batch by batch.
async fn run_batches(
    connection: &mut WriterConnection,
    batches: &[Vec<Pending>],
) -> Result<Vec<Vec<bool>>, StorageError> {
    let mut tx = (**connection)
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StorageError::database)?;
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut drafts = Vec::new();
    for batch in batches {
        let Some((first, _)) = batch.first() else {
            outcomes.push(Vec::new());
            continue;
        };
        let sql = &first.as_row().inserts()[batch.len() - 1];
        let mut query = sqlx::query_scalar::<_, String>(sql);
        for (row, _) in batch {
            query = row.as_row().bind_values(query);
        }
        let ids = query.fetch_all(&mut *tx).await.map_err(insert_error)?;
        let mut inserted = Vec::with_capacity(batch.len());
        for (row, _) in batch {
            let row = row.as_row();
            let made = ids.iter().any(|id| id == row.id());
            if made {
                drafts.extend(row.audit());
            }
            inserted.push(made);
        }
        outcomes.push(inserted);
    }
    let links = drafts.into_iter().map(AuditDraft::chain_link).collect();
    records::append_links(&mut Conn::<Sqlite>(&mut tx), links).await?;
    tx.commit().await.map_err(StorageError::database)?;
    Ok(outcomes)
}

/// The single-row insert and its event, in one transaction (the fallback path).
async fn insert_one(connection: &mut WriterConnection, row: &OwnedRow) -> Reply {
    let mut tx = (**connection)
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StorageError::database)?;
    let inserted = row
        .as_row()
        .insert()
        .fetch_optional(&mut *tx)
        .await
        .map_err(insert_error)?
        .is_some();
    if inserted {
        append_event(&mut Conn::<Sqlite>(&mut tx), row.as_row().audit()).await?;
    }
    tx.commit().await.map_err(StorageError::database)?;
    Ok(inserted)
}
