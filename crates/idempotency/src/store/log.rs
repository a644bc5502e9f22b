//! The durable side of an embedded store: a [`CompletionLog`] behind a
//! [`MemoryStore`](super::MemoryStore).
//!
//! The memory store decides everything (reservations, leases, takeovers, fencing);
//! the log only keeps completed records so that they outlive the process. A log is a
//! sink with a read path, not a second state machine:
//!
//! - every completion is [appended](CompletionLog::append) (queued, no I/O on the
//!   request's path) and given a position; the log reports how far it has made its
//!   records durable ([`CompletionLog::durable_through`]), and the memory store never
//!   evicts a completed record the log does not hold yet;
//! - a key the memory store does not hold is looked up in the log only when the log
//!   says it may hold it ([`CompletionLog::may_hold`], answered from memory), so a
//!   fresh key costs no I/O; a record read back is put into the memory store before
//!   anything is decided about its key.
//!
//! In-flight reservations are never written: they mean something only while their
//! worker lives, and every worker of an embedded store lives in its process.

use std::time::SystemTime;

use async_trait::async_trait;

use super::{RecordId, StoreError, StoredResponse};
use crate::fingerprint::Fingerprint;

/// A completed record as a [`CompletionLog`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedRecord {
    /// Its scope and key.
    pub id: RecordId,
    /// The fingerprint of the request that made it.
    pub fingerprint: Fingerprint,
    /// The response it replays.
    pub response: StoredResponse,
    /// When its key was reserved.
    pub created_at: SystemTime,
    /// When it expires and its key may be used again.
    pub expires_at: SystemTime,
}

/// A place in a [`CompletionLog`]: positions grow with every append, from 1.
pub type LogPosition = u64;

/// Where a [`MemoryStore`](super::MemoryStore) keeps completed records durable (see
/// the module docs). Implementations live in storage crates (`idempotency-sql` has a
/// SQLite file); the memory store is the only caller.
#[async_trait]
pub trait CompletionLog: Send + Sync + 'static {
    /// Queues `record` to be made durable and answers its position. Must not wait for
    /// I/O. A record of a key the log already holds (expired, since the memory store
    /// reserves a held key only after it expired) replaces it.
    fn append(&self, record: CompletedRecord) -> Result<LogPosition, StoreError>;

    /// Every record appended at or before this position is durable (or was refused
    /// for good and logged as such).
    fn durable_through(&self) -> LogPosition;

    /// Waits until the record at `position` is durable.
    async fn wait_durable(&self, position: LogPosition) -> Result<(), StoreError>;

    /// `false` when the log surely holds no record of `id`; answered without I/O.
    fn may_hold(&self, id: &RecordId) -> bool;

    /// The record of `id` the log holds, if it is still live at `now`.
    async fn read(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<CompletedRecord>, StoreError>;

    /// Deletes the records that expired at or before `now`; answers how many.
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError>;

    /// Deletes every record of `scope` the log holds (expired or not, appended and
    /// not yet durable included) whose key or response mentions `needle`, as
    /// [`Store::erase_mentioning`](super::Store::erase_mentioning) defines it; answers
    /// how many it deleted. An empty `needle` matches nothing. When it answers, nothing
    /// of a deleted record may be left readable in the log's storage (free pages,
    /// journals), and [`CompletionLog::may_hold`] no longer counts it.
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError>;

    /// Waits until everything appended so far is durable.
    async fn flush(&self) -> Result<(), StoreError>;
}
