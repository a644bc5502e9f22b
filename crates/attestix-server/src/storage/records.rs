//! The record kinds added after delegations and DIDs (audit events, reputation
//! interactions, provenance entries, compliance records, ...), stored by one
//! implementation for both dialects.
//!
//! Every kind lives in the `records` table (scope, kind, id, subject, label,
//! created_at_ms, document), the agents a record mentions in `record_refs`, and the
//! head of each hash chain in `chain_heads`. The logic is written once against
//! [`Tx`], a two-method view of a connection; its only implementation, [`Conn`], is
//! generic over the sqlx [`Database`], so SQLite and PostgreSQL run the same code and
//! the backends only say how a read connection or a write transaction is obtained
//! ([`Storage::write`](super::Storage::write), [`Storage::read`](super::Storage::read)).
//!
//! The SQL here is the subset both dialects share: `?`-free text (the query builder
//! writes each dialect's placeholders), integers rather than booleans, `ON CONFLICT
//! … DO UPDATE … RETURNING` for the chain heads (on PostgreSQL the upsert takes the
//! head row's lock until the transaction ends, which serializes appends to a chain
//! across instances; SQLite has a single writer).

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::{Arguments, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use std::sync::{Arc, Mutex};

use super::{Storage, StorageError};
use crate::audit::AuditDraft;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
    /// An integer column's NULL (typed, for PostgreSQL's parameter inference).
    NullInt,
    /// A text column's NULL.
    NullText,
    /// A boolean (SQLite stores it as 0 or 1).
    Bool(bool),
    /// Bytes (BLOB, BYTEA).
    Bytes(Vec<u8>),
    /// A bytes column's NULL.
    NullBytes,
}

impl From<Option<&[u8]>> for Value {
    fn from(value: Option<&[u8]>) -> Self {
        value.map_or(Self::NullBytes, |bytes| Self::Bytes(bytes.to_vec()))
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Self::Bytes(value.to_vec())
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        value.map_or(Self::NullText, Self::from)
    }
}

/// The type of a column a statement returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// An integer, possibly NULL.
    Int,
    /// Text, possibly NULL.
    Text,
}

/// A statement: SQL text interleaved with bound values, rendered with each dialect's
/// placeholders by the query builder.
#[derive(Debug, Clone, Default)]
pub struct Stmt {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Sql(String),
    Bind(Value),
}

impl Stmt {
    /// A statement starting with `sql`.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            pieces: vec![Piece::Sql(sql.into())],
        }
    }

    /// Appends SQL text.
    pub fn sql(mut self, sql: impl Into<String>) -> Self {
        self.pieces.push(Piece::Sql(sql.into()));
        self
    }

    /// Appends a bound value.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.pieces.push(Piece::Bind(value.into()));
        self
    }

    /// Appends another statement's text and values.
    pub fn sql_stmt(mut self, other: Stmt) -> Self {
        self.pieces.extend(other.pieces);
        self
    }

    /// Appends values separated by commas (for `IN (…)`).
    pub fn bind_list(mut self, values: impl IntoIterator<Item = Value>) -> Self {
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.pieces.push(Piece::Sql(", ".into()));
            }
            self.pieces.push(Piece::Bind(value));
        }
        self
    }

    /// The SQL text with a `?` for each bound value, and the values in order (SQLite's
    /// placeholders, for code that binds outside sqlx).
    pub(crate) fn into_question_marks(self) -> (String, Vec<Value>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        for piece in self.pieces {
            match piece {
                Piece::Sql(text) => sql.push_str(&text),
                Piece::Bind(value) => {
                    sql.push('?');
                    values.push(value);
                }
            }
        }
        (sql, values)
    }
}

/// One row read, its columns as asked for by [`Col`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRow(pub(crate) Vec<Value>);

impl DbRow {
    /// Column `index` as an integer.
    pub fn int(&self, index: usize) -> Result<i64, StorageError> {
        match self.0.get(index) {
            Some(Value::Int(value)) => Ok(*value),
            other => Err(StorageError::database(format!(
                "column {index}: expected an integer, found {other:?}"
            ))),
        }
    }

    /// Column `index` as text.
    pub fn text(&self, index: usize) -> Result<String, StorageError> {
        match self.0.get(index) {
            Some(Value::Text(value)) => Ok(value.clone()),
            other => Err(StorageError::database(format!(
                "column {index}: expected text, found {other:?}"
            ))),
        }
    }

    /// Column `index` as text, `None` for NULL.
    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StorageError> {
        match self.0.get(index) {
            Some(Value::NullText) => Ok(None),
            _ => self.text(index).map(Some),
        }
    }
}

/// A connection (inside a transaction for writes) that the record logic runs on.
#[async_trait]
pub trait Tx: Send {
    /// Runs `stmt`; the number of rows it changed.
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, StorageError>;
    /// Runs `stmt` and reads every row, its columns typed as `cols`.
    async fn fetch(&mut self, stmt: Stmt, cols: &[Col]) -> Result<Vec<DbRow>, StorageError>;
    /// Appends `link` to its hash chain, in this transaction: at once on a plain
    /// connection, at the end of the turn inside a shared write turn
    /// ([`super::job_batch`]), where a turn's links of one chain are made together.
    async fn link(&mut self, link: ChainLink) -> Result<(), StorageError>;

    /// Appends the audit event `draft` to its scope's chain (see [`Tx::link`]).
    async fn audit(&mut self, draft: &AuditDraft) -> Result<(), StorageError> {
        self.link(draft.chain_link()).await
    }
}

/// A record to append to a hash chain, made once the hash it follows is known.
pub struct ChainLink {
    /// The chain's scope.
    pub scope: String,
    /// The chain's name within the scope (`chain_heads.chain`).
    pub chain: String,
    /// Makes the record from the previous link's hash; returns it with its own hash.
    pub make: LinkMaker,
}

/// How a [`ChainLink`] makes its record and hash from the hash it follows.
pub type LinkMaker =
    Box<dyn FnOnce(&str) -> Result<(NewRecord, String), StorageError> + Send + 'static>;

/// Appends `links` in order, with one statement per table whatever their number:
/// each chain's head advances once by its count of links, the links are made in
/// memory, and the records and their refs go in as multi-row inserts (a chain's
/// records in chain order, which is `seq` order). The head rows stay locked
/// (PostgreSQL) until the caller's transaction ends.
pub async fn append_links(tx: &mut dyn Tx, links: Vec<ChainLink>) -> Result<(), StorageError> {
    let mut chains: Vec<(String, String, Vec<LinkMaker>)> = Vec::new();
    for link in links {
        match chains
            .iter_mut()
            .find(|(scope, chain, _)| *scope == link.scope && *chain == link.chain)
        {
            Some((_, _, makers)) => makers.push(link.make),
            None => chains.push((link.scope, link.chain, vec![link.make])),
        }
    }
    // One locking order for every transaction, so that concurrent turns never
    // deadlock on chain heads.
    chains.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut records = Vec::new();
    for (scope, chain, makers) in chains {
        let count = i64::try_from(makers.len()).map_err(StorageError::database)?;
        let mut head = advance_chain(tx, &scope, &chain, count).await?;
        for make in makers {
            let (record, hash) = make(&head)?;
            records.push(record);
            head = hash;
        }
        set_chain_head(tx, &scope, &chain, &head).await?;
    }
    insert_many(tx, &records).await
}

/// Work to run in one transaction (or on one read connection): given the connection,
/// a future borrowing it.
pub type Job =
    Box<dyn for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<(), StorageError>> + Send>;

/// A connection of any sqlx database that has the types the records use: the one
/// implementation of [`Tx`].
pub struct Conn<'a, DB: Database>(pub &'a mut DB::Connection);

/// The number of rows a statement changed, read from each dialect's result type
/// (sqlx has no trait for it).
pub trait RowsAffected {
    /// The rows changed.
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Makes a [`Job`] of `work` (a closure passed here gets the higher-ranked signature
/// the box needs).
pub fn job<F>(work: F) -> Job
where
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<(), StorageError>> + Send + 'static,
{
    Box::new(work)
}

/// Runs `work` in one write transaction of `storage` and returns what it made.
pub async fn write_with<S, R, F>(storage: &S, work: F) -> Result<R, StorageError>
where
    S: Storage + ?Sized,
    R: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<R, StorageError>> + Send + 'static,
{
    let (slot, job) = into_job(work);
    storage.write(job).await?;
    take(&slot)
}

/// As [`write_with`], through [`Storage::write_after_events`]: every audit event
/// appended before the work runs is in the table.
pub async fn write_after_events_with<S, R, F>(storage: &S, work: F) -> Result<R, StorageError>
where
    S: Storage + ?Sized,
    R: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<R, StorageError>> + Send + 'static,
{
    let (slot, job) = into_job(work);
    storage.write_after_events(job).await?;
    take(&slot)
}

/// Runs `work` on a read connection of `storage` and returns what it read.
pub async fn read_with<S, R, F>(storage: &S, work: F) -> Result<R, StorageError>
where
    S: Storage + ?Sized,
    R: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<R, StorageError>> + Send + 'static,
{
    let (slot, job) = into_job(work);
    storage.read(job).await?;
    take(&slot)
}

type Slot<R> = Arc<Mutex<Option<R>>>;

/// A job that runs `work` and leaves its result in the slot.
fn into_job<R, F>(work: F) -> (Slot<R>, Job)
where
    R: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<R, StorageError>> + Send + 'static,
{
    let slot: Slot<R> = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let job = job(move |tx| {
        Box::pin(async move {
            let value = work(tx).await?;
            *out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
            Ok(())
        })
    });
    (slot, job)
}

fn take<R>(slot: &Slot<R>) -> Result<R, StorageError> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or_else(|| StorageError::database("a storage job ended without its result"))
}

/// The tables whose rows are revoked in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocable {
    /// `identities`, by `agent_id`.
    Identity,
    /// `credentials`, by `credential_id`.
    Credential,
    /// `delegations`, by `jti`.
    Delegation,
}

/// Stores `document`, the revoked form of `owner`'s row `id`, and marks it revoked,
/// unless it is absent or already revoked (then `false`, nothing changes, and no
/// event); with `audit`, appends the event in the same transaction.
pub async fn revoke<S: Storage + ?Sized>(
    storage: &S,
    what: Revocable,
    owner: &str,
    id: &str,
    document: &str,
    audit: Option<&AuditDraft>,
) -> Result<bool, StorageError> {
    let (table, id_column) = match what {
        Revocable::Identity => ("identities", "agent_id"),
        Revocable::Credential => ("credentials", "credential_id"),
        Revocable::Delegation => ("delegations", "jti"),
    };
    let stmt = Stmt::new(format!("UPDATE {table} SET document = "))
        .bind(document)
        .sql(", revoked = ")
        .bind(true)
        .sql(format!(" WHERE {id_column} = "))
        .bind(id)
        .sql(" AND owner = ")
        .bind(owner)
        .sql(" AND revoked = ")
        .bind(false);
    let audit = audit.cloned();
    write_with(storage, move |tx| {
        Box::pin(async move {
            let revoked = tx.execute(stmt).await? > 0;
            if revoked {
                append_event(tx, audit.as_ref()).await?;
            }
            Ok(revoked)
        })
    })
    .await
}

/// A statement's error: a unique violation is [`StorageError::Duplicate`].
fn statement_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            StorageError::Duplicate
        }
        _ => StorageError::database(error),
    }
}

/// Appends `audit`, when there is one, inside the caller's transaction.
pub async fn append_event(tx: &mut dyn Tx, audit: Option<&AuditDraft>) -> Result<(), StorageError> {
    if let Some(draft) = audit {
        tx.audit(draft).await?;
    }
    Ok(())
}

/// The dialect's SQL text and arguments of `stmt` (placeholders written by the
/// arguments themselves: `?` on SQLite, `$n` on PostgreSQL).
fn build<'q, DB>(stmt: Stmt) -> Result<(String, DB::Arguments<'q>), StorageError>
where
    DB: Database,
    DB::Arguments<'q>: Default,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Vec<u8>: Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
{
    let mut sql = String::new();
    let mut arguments = DB::Arguments::default();
    for piece in stmt.pieces {
        let added = match piece {
            Piece::Sql(text) => {
                sql.push_str(&text);
                continue;
            }
            Piece::Bind(Value::Int(value)) => arguments.add(value),
            Piece::Bind(Value::Text(value)) => arguments.add(value),
            Piece::Bind(Value::NullInt) => arguments.add(None::<i64>),
            Piece::Bind(Value::NullText) => arguments.add(None::<String>),
            Piece::Bind(Value::Bool(value)) => arguments.add(value),
            Piece::Bind(Value::Bytes(value)) => arguments.add(value),
            Piece::Bind(Value::NullBytes) => arguments.add(None::<Vec<u8>>),
        };
        added.map_err(StorageError::Database)?;
        arguments
            .format_placeholder(&mut sql)
            .map_err(StorageError::database)?;
    }
    Ok((sql, arguments))
}

#[async_trait]
impl<DB> Tx for Conn<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: Default + IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
    bool: for<'q> Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: for<'q> Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    DB::QueryResult: RowsAffected,
{
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, StorageError> {
        let (sql, arguments) = build::<DB>(stmt)?;
        let done = sqlx::query_with(&sql, arguments)
            .execute(&mut *self.0)
            .await
            .map_err(statement_error)?;
        Ok(done.rows())
    }

    async fn fetch(&mut self, stmt: Stmt, cols: &[Col]) -> Result<Vec<DbRow>, StorageError> {
        let (sql, arguments) = build::<DB>(stmt)?;
        let rows = sqlx::query_with(&sql, arguments)
            .fetch_all(&mut *self.0)
            .await
            .map_err(statement_error)?;
        rows.iter()
            .map(|row| {
                cols.iter()
                    .enumerate()
                    .map(|(index, col)| {
                        let value = match col {
                            Col::Int => row
                                .try_get::<Option<i64>, _>(index)
                                .map(|v| v.map_or(Value::NullInt, Value::Int)),
                            Col::Text => row
                                .try_get::<Option<String>, _>(index)
                                .map(|v| v.map_or(Value::NullText, Value::Text)),
                        };
                        value.map_err(StorageError::database)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(DbRow)
            })
            .collect()
    }

    async fn link(&mut self, link: ChainLink) -> Result<(), StorageError> {
        append_links(self, vec![link]).await
    }
}

/// Kinds of record in the `records` table.
pub mod kind {
    /// An audit event (`evt:` id), one chain per scope.
    pub const AUDIT_EVENT: &str = "audit_event";
    /// A reputation interaction.
    pub const INTERACTION: &str = "interaction";
    /// A provenance action log entry (`audit:` id), one chain per agent.
    pub const ACTION: &str = "action";
    /// A provenance entry (`prov:` id): training data or model lineage.
    pub const PROVENANCE_ENTRY: &str = "provenance_entry";
    /// A blockchain anchor (`anchor:` id) whose transaction is mined; label = the
    /// artifact hash, subject = the agent it is about.
    pub const ANCHOR: &str = "anchor";
    /// The signed transaction of an anchor, stored before it is broadcast (same
    /// id as its anchor): what a retry after a crash waits for instead of sending
    /// a second transaction.
    pub const ANCHOR_TX: &str = "anchor_tx";
    /// An EU AI Act compliance profile, one per agent: its id is the agent's id
    /// (so a second profile of an agent is a duplicate), its label the risk category.
    pub const COMPLIANCE_PROFILE: &str = "compliance_profile";
    /// A conformity assessment (`assess:` id, Article 43).
    pub const COMPLIANCE_ASSESSMENT: &str = "compliance_assessment";
    /// An Annex V declaration of conformity (`decl:` id).
    pub const COMPLIANCE_DECLARATION: &str = "compliance_declaration";
    /// A checklist fact an agent's provenance established (see
    /// `compliance::record_evidence`).
    pub const COMPLIANCE_EVIDENCE: &str = "compliance_evidence";
}

/// The document of `scope`'s record `id` of `kind`, if any.
pub async fn get(
    tx: &mut dyn Tx,
    scope: &str,
    kind: &str,
    id: &str,
) -> Result<Option<String>, StorageError> {
    let rows = tx
        .fetch(
            Stmt::new("SELECT document FROM records WHERE scope = ")
                .bind(scope)
                .sql(" AND kind = ")
                .bind(kind)
                .sql(" AND id = ")
                .bind(id),
            &[Col::Text],
        )
        .await?;
    rows.first().map(|row| row.text(0)).transpose()
}

/// A record to insert.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The owning scope.
    pub scope: String,
    /// One of [`kind`].
    pub kind: &'static str,
    /// The id within the kind and scope.
    pub id: String,
    /// The id the record is about (filters and per-agent reads use it).
    pub subject: Option<String>,
    /// A kind-specific filter value.
    pub label: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// The JSON document, exactly as returned.
    pub document: String,
    /// The agents the record belongs to or mentions (for purge and aggregates).
    pub refs: Vec<String>,
}

impl NewRecord {
    /// The `record_refs` rows of this record: its refs once each, without its
    /// subject, which purge finds through the `subject` column (a row for it would
    /// cost every create another write into a randomly keyed index).
    fn stored_refs(&self) -> Vec<&str> {
        let mut refs: Vec<&str> = self
            .refs
            .iter()
            .map(String::as_str)
            .filter(|agent| self.subject.as_deref() != Some(*agent))
            .collect();
        refs.sort_unstable();
        refs.dedup();
        refs
    }
}

/// Inserts `record` and its references; `Duplicate` when its id is taken.
pub async fn insert(tx: &mut dyn Tx, record: &NewRecord) -> Result<i64, StorageError> {
    let rows = tx
        .fetch(
            Stmt::new(
                "INSERT INTO records (scope, kind, id, subject, label, created_at_ms, document) \
                 VALUES (",
            )
            .bind(record.scope.as_str())
            .sql(", ")
            .bind(record.kind)
            .sql(", ")
            .bind(record.id.as_str())
            .sql(", ")
            .bind(record.subject.as_deref())
            .sql(", ")
            .bind(record.label.as_deref())
            .sql(", ")
            .bind(record.created_at_ms)
            .sql(", ")
            .bind(record.document.as_str())
            .sql(") ON CONFLICT (scope, kind, id) DO NOTHING RETURNING seq"),
            &[Col::Int],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Err(StorageError::Duplicate);
    };
    let seq = row.int(0)?;
    for agent in record.stored_refs() {
        tx.execute(
            Stmt::new("INSERT INTO record_refs (record_seq, scope, agent_id) VALUES (")
                .bind(seq)
                .sql(", ")
                .bind(record.scope.as_str())
                .sql(", ")
                .bind(agent)
                .sql(") ON CONFLICT DO NOTHING"),
        )
        .await?;
    }
    Ok(seq)
}

/// Inserts `records` (none of which may exist) and their refs, one statement each.
pub async fn insert_many(tx: &mut dyn Tx, records: &[NewRecord]) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut insert = Stmt::new(
        "INSERT INTO records (scope, kind, id, subject, label, created_at_ms, document) VALUES ",
    );
    for (index, record) in records.iter().enumerate() {
        insert = insert
            .sql(if index == 0 { "(" } else { ", (" })
            .bind(record.scope.as_str())
            .sql(", ")
            .bind(record.kind)
            .sql(", ")
            .bind(record.id.as_str())
            .sql(", ")
            .bind(record.subject.as_deref())
            .sql(", ")
            .bind(record.label.as_deref())
            .sql(", ")
            .bind(record.created_at_ms)
            .sql(", ")
            .bind(record.document.as_str())
            .sql(")");
    }
    // RETURNING's row order is unspecified: rows are matched by id.
    let rows = tx
        .fetch(
            insert.sql(" ON CONFLICT (scope, kind, id) DO NOTHING RETURNING seq, scope, kind, id"),
            &[Col::Int, Col::Text, Col::Text, Col::Text],
        )
        .await?;
    if rows.len() != records.len() {
        return Err(StorageError::Duplicate);
    }
    let mut refs = Stmt::new("INSERT INTO record_refs (record_seq, scope, agent_id) VALUES ");
    let mut any = false;
    for row in &rows {
        let (seq, scope, kind, id) = (row.int(0)?, row.text(1)?, row.text(2)?, row.text(3)?);
        let record = records
            .iter()
            .find(|r| r.scope == scope && r.kind == kind && r.id == id)
            .ok_or_else(|| StorageError::database("an inserted record came back unknown"))?;
        for agent in record.stored_refs() {
            refs = refs
                .sql(if any { ", (" } else { "(" })
                .bind(seq)
                .sql(", ")
                .bind(scope.as_str())
                .sql(", ")
                .bind(agent)
                .sql(")");
            any = true;
        }
    }
    if any {
        tx.execute(refs.sql(" ON CONFLICT DO NOTHING")).await?;
    }
    Ok(())
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Only records about this id.
    pub subject: Option<String>,
    /// Only records with this label.
    pub label: Option<String>,
    /// Only records created at or after this instant (unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only records created at or before this instant (unix milliseconds).
    pub until_ms: Option<i64>,
}

/// A page of `scope`'s records of `kind` passing `filter`, in insertion order.
pub async fn list(
    tx: &mut dyn Tx,
    scope: &str,
    kind: &str,
    filter: &RecordFilter,
    page: super::PageRequest,
) -> Result<super::Page, StorageError> {
    let (rows, more) = list_rows(tx, scope, kind, filter, page).await?;
    let last = rows.last().map(|(seq, _)| *seq);
    Ok(super::Page {
        documents: rows.into_iter().map(|(_, document)| document).collect(),
        next: if more { last } else { None },
    })
}

/// One page of `scope`'s records of `kind` passing `filter`, each with its `seq` (the
/// cursor position after it), and whether more rows follow: for lists that filter
/// further on the documents themselves.
pub async fn list_rows(
    tx: &mut dyn Tx,
    scope: &str,
    kind: &str,
    filter: &RecordFilter,
    page: super::PageRequest,
) -> Result<(Vec<(i64, String)>, bool), StorageError> {
    if page.limit == 0 {
        return Ok((Vec::new(), false));
    }
    let mut stmt = Stmt::new("SELECT seq, document FROM records WHERE scope = ")
        .bind(scope)
        .sql(" AND kind = ")
        .bind(kind);
    if let Some(subject) = &filter.subject {
        stmt = stmt.sql(" AND subject = ").bind(subject.as_str());
    }
    if let Some(label) = &filter.label {
        stmt = stmt.sql(" AND label = ").bind(label.as_str());
    }
    if let Some(since) = filter.since_ms {
        stmt = stmt.sql(" AND created_at_ms >= ").bind(since);
    }
    if let Some(until) = filter.until_ms {
        stmt = stmt.sql(" AND created_at_ms <= ").bind(until);
    }
    if let Some(after) = page.after {
        stmt = stmt.sql(" AND seq > ").bind(after);
    }
    // One row more than asked tells whether there is a next page.
    stmt = stmt
        .sql(" ORDER BY seq LIMIT ")
        .bind(i64::from(page.limit) + 1);
    let rows = tx.fetch(stmt, &[Col::Int, Col::Text]).await?;
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let rows = rows
        .iter()
        .take(limit)
        .map(|row| Ok((row.int(0)?, row.text(1)?)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok((rows, more))
}

/// Replaces the document of `scope`'s record `id` of `kind` with `document` (and its
/// label with `label`), if it still holds `expected`: a compare-and-swap, so that of
/// two concurrent read-modify-writes (PostgreSQL runs write turns side by side) the
/// second changes nothing and can start over. Whether it replaced it.
pub async fn update_document(
    tx: &mut dyn Tx,
    (scope, kind, id): (&str, &str, &str),
    expected: &str,
    document: &str,
    label: Option<&str>,
) -> Result<bool, StorageError> {
    let changed = tx
        .execute(
            Stmt::new("UPDATE records SET document = ")
                .bind(document)
                .sql(", label = ")
                .bind(label)
                .sql(" WHERE scope = ")
                .bind(scope)
                .sql(" AND kind = ")
                .bind(kind)
                .sql(" AND id = ")
                .bind(id)
                .sql(" AND document = ")
                .bind(expected),
        )
        .await?;
    Ok(changed == 1)
}

/// The stored document of `scope`'s identity `agent_id`, if there is one (for the
/// routes that update an identity's unsigned fields in their own transaction).
pub async fn identity_document(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
) -> Result<Option<String>, StorageError> {
    let rows = tx
        .fetch(
            Stmt::new("SELECT document FROM identities WHERE agent_id = ")
                .bind(agent_id)
                .sql(" AND owner = ")
                .bind(scope),
            &[Col::Text],
        )
        .await?;
    rows.first().map(|row| row.text(0)).transpose()
}

/// Whether `scope` holds a record of `kind` about `subject` (one indexed lookup).
pub async fn exists(
    tx: &mut dyn Tx,
    scope: &str,
    kind: &str,
    subject: &str,
) -> Result<bool, StorageError> {
    let stmt = Stmt::new("SELECT seq FROM records WHERE scope = ")
        .bind(scope)
        .sql(" AND kind = ")
        .bind(kind)
        .sql(" AND subject = ")
        .bind(subject);
    let rows = tx.fetch(stmt.sql(" LIMIT 1"), &[Col::Int]).await?;
    Ok(!rows.is_empty())
}

/// Inserts `credential` (issued by the server inside a larger change, such as a
/// declaration of conformity) into the credentials table in the caller's
/// transaction, with no recovery point: the change it belongs to is what a retry
/// finds. The same row `Storage::insert_credential` writes, so the credential is
/// listed, verified and revoked like any other.
pub async fn insert_credential(
    tx: &mut dyn Tx,
    credential: &super::NewCredential,
) -> Result<(), StorageError> {
    let inserted = tx
        .execute(
            Stmt::new(
                "INSERT INTO credentials (credential_id, owner, subject_id, credential_type, \
                 revoked, created_at_ms, expires_at_ms, document) VALUES (",
            )
            .bind(credential.credential_id.as_str())
            .sql(", ")
            .bind(credential.owner.as_str())
            .sql(", ")
            .bind(credential.subject_id.as_str())
            .sql(", ")
            .bind(credential.credential_type.as_str())
            .sql(", ")
            .bind(false)
            .sql(", ")
            .bind(credential.issued_at_ms)
            .sql(", ")
            .bind(credential.expires_at_ms)
            .sql(", ")
            .bind(credential.document.as_str())
            .sql(") ON CONFLICT DO NOTHING"),
        )
        .await?;
    if inserted != 1 {
        return Err(StorageError::Duplicate);
    }
    append_event(tx, credential.audit.as_ref()).await
}

/// Every document of `scope`'s records of `kind` (about `subject`, when given), in
/// insertion order.
pub async fn all(
    tx: &mut dyn Tx,
    scope: &str,
    kind: &str,
    subject: Option<&str>,
) -> Result<Vec<String>, StorageError> {
    let mut stmt = Stmt::new("SELECT document FROM records WHERE scope = ")
        .bind(scope)
        .sql(" AND kind = ")
        .bind(kind);
    if let Some(subject) = subject {
        stmt = stmt.sql(" AND subject = ").bind(subject);
    }
    let rows = tx.fetch(stmt.sql(" ORDER BY seq"), &[Col::Text]).await?;
    rows.iter().map(|row| row.text(0)).collect()
}

/// The genesis `prev_hash` of every chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Takes the next `count` links of chain `chain` of `scope` at once (creating the
/// chain when missing) and returns the hash the first of them follows.
pub async fn advance_chain(
    tx: &mut dyn Tx,
    scope: &str,
    chain: &str,
    count: i64,
) -> Result<String, StorageError> {
    let rows = tx
        .fetch(
            Stmt::new("INSERT INTO chain_heads (scope, chain, length, head) VALUES (")
                .bind(scope)
                .sql(", ")
                .bind(chain)
                .sql(", ")
                .bind(count)
                .sql(", ")
                .bind(GENESIS_HASH)
                .sql(") ON CONFLICT (scope, chain) DO UPDATE SET length = chain_heads.length + ")
                .bind(count)
                .sql(" RETURNING head"),
            &[Col::Text],
        )
        .await?;
    rows.first()
        .ok_or_else(|| StorageError::database("the chain head upsert returned no row"))?
        .text(0)
}

/// Records `head` as the hash of the newest link of chain `chain` of `scope`.
pub async fn set_chain_head(
    tx: &mut dyn Tx,
    scope: &str,
    chain: &str,
    head: &str,
) -> Result<(), StorageError> {
    tx.execute(
        Stmt::new("UPDATE chain_heads SET head = ")
            .bind(head)
            .sql(" WHERE scope = ")
            .bind(scope)
            .sql(" AND chain = ")
            .bind(chain),
    )
    .await?;
    Ok(())
}
