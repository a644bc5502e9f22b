//! The storage contract behind the layer, and the in-memory backend.
//!
//! A [`Store`] keeps one record per [`RecordId`] (scope + key). A record is either
//! *in flight* (reserved by one worker, which holds a lease and a [`FencingToken`]) or
//! *completed* (it holds the [`StoredResponse`] to replay). Every backend must make
//! [`Store::reserve`] a single atomic step and must check the fencing token on
//! [`Store::complete`] and [`Store::release`]; the shared conformance suite in
//! `idempotency::testkit` (feature `testkit`) checks exactly that.
//!
//! Time is passed in by the caller (`now`) rather than read by the store, so that
//! a test can move a clock forward by a day without sleeping, and so that all the
//! decisions of one request use one instant.

pub mod log;
mod memory;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

pub use log::{CompletedRecord, CompletionLog, LogPosition};
pub use memory::{MemoryStore, MemoryStoreConfig};

use crate::fingerprint::Fingerprint;

/// Identifies one idempotency record: the principal's scope and the client's key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// The authenticated principal (plus tenant) the key belongs to.
    pub scope: String,
    /// The client-chosen `Idempotency-Key`, already validated.
    pub key: String,
}

impl RecordId {
    /// Builds a record id from a scope and a key.
    pub fn new(scope: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            key: key.into(),
        }
    }

    /// A short, non-reversible tag for logs: keys are never logged in full.
    pub fn log_tag(&self) -> String {
        crate::fingerprint::short_hash(&self.scope, &self.key)
    }
}

impl fmt::Debug for RecordId {
    // Debug output ends up in logs and panics, so it carries the hash, not the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordId")
            .field("scope", &self.scope)
            .field("key_hash", &self.log_tag())
            .finish()
    }
}

/// Proof of ownership of an in-flight reservation.
///
/// A fresh random value is drawn for every reservation and every takeover, so a
/// worker whose lease was taken over (or whose record was released and reserved
/// again by someone else) can never complete or release the new owner's record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FencingToken(i64);

impl FencingToken {
    /// Draws a new random token. Zero is never drawn so that it can mean "none" in SQL.
    pub fn generate() -> Self {
        loop {
            let value: i64 = rand::random();
            if value != 0 {
                return Self(value);
            }
        }
    }

    /// Rebuilds a token from its stored form.
    pub fn from_i64(value: i64) -> Self {
        Self(value)
    }

    /// The stored form of the token.
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

/// What [`Store::reserve`] is asked to do.
#[derive(Debug, Clone)]
pub struct ReserveRequest<'a> {
    /// The record to reserve.
    pub id: &'a RecordId,
    /// The fingerprint of the request that wants to execute.
    pub fingerprint: &'a Fingerprint,
    /// The token the new owner will hold if the reservation succeeds.
    pub token: FencingToken,
    /// The caller's current time.
    pub now: SystemTime,
    /// How long the in-flight reservation stays exclusive before another worker may
    /// take it over (its worker is then presumed dead).
    pub lease: Duration,
    /// How long the record (in flight or completed) is kept, counted from `now`.
    pub retention: Duration,
}

impl ReserveRequest<'_> {
    /// When the lease of a reservation made by this request ends.
    pub fn lease_expires_at(&self) -> SystemTime {
        self.now + self.lease
    }

    /// When a record created by this request expires.
    pub fn expires_at(&self) -> SystemTime {
        self.now + self.retention
    }
}

/// The result of an atomic reservation attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReserveOutcome {
    /// The caller now owns the record with the token it passed in and must execute,
    /// then [`Store::complete`] or [`Store::release`].
    Reserved {
        /// `true` when an in-flight record whose lease had expired was taken over.
        took_over: bool,
    },
    /// A live record already exists; the caller must not execute.
    Existing(ExistingRecord),
}

/// A live record as seen by a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRecord {
    /// The fingerprint of the request that created the record.
    pub fingerprint: Fingerprint,
    /// Whether it is still running or finished.
    pub state: RecordState,
    /// When the record expires and its key may be used again. A completed record
    /// does not change before then, which is what makes caching it safe.
    pub expires_at: SystemTime,
}

/// The state of a live record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordState {
    /// A worker holds the reservation until `lease_expires_at`.
    InFlight {
        /// The instant after which another worker may take the record over.
        lease_expires_at: SystemTime,
    },
    /// The response is stored and will be replayed.
    Completed(StoredResponse),
}

/// A response as stored for replay: status, headers in order (repeated names kept),
/// and the exact body bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower case) and raw values, in the order the handler produced them.
    pub headers: Vec<(String, Bytes)>,
    /// The body, byte for byte.
    pub body: Bytes,
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl StoredResponse {
    /// Approximate bytes this response occupies, used for memory bounds.
    pub fn size_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2 * std::mem::size_of::<usize>())
            .sum();
        std::mem::size_of::<Self>() + headers + self.body.len()
    }

    /// Whether this response mentions `needle`, in the sense of
    /// [`Store::erase_mentioning`]: its status as three decimal digits, one header
    /// name, one header value or the body contains the bytes `needle` (a match never
    /// spans two of them). An empty `needle` is mentioned nowhere.
    pub fn mentions(&self, needle: &[u8]) -> bool {
        contains_bytes(self.status.to_string().as_bytes(), needle)
            || self.headers.iter().any(|(name, value)| {
                contains_bytes(name.as_bytes(), needle) || contains_bytes(value, needle)
            })
            || contains_bytes(&self.body, needle)
    }
}

/// Whether `haystack` contains the bytes `needle`; an empty `needle` is contained
/// nowhere (see [`Store::erase_mentioning`]). Backends use it to decide a match
/// exactly after a coarser search of their encoded columns.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller's fencing token is not the record's current one: its lease was
    /// taken over, or the record was released or expired. The caller must not touch it.
    #[error("the reservation is no longer owned by this worker")]
    NotOwner,
    /// The backend could not be reached or failed (the cause is its source, or a
    /// description of what failed); the layer answers 503.
    #[error("idempotency store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded.
    #[error("idempotency record is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps any backend error as [`StoreError::Unavailable`], keeping it as the source.
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(error.into())
    }
}

/// The storage contract of the idempotency layer.
///
/// Implementations must be safe to share between many concurrent requests and,
/// for shared backends, between many processes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Atomically reserves `request.id` for the caller with `request.token`, unless a
    /// live record exists.
    ///
    /// - No record, or an expired one (`expires_at <= now`): create an in-flight
    ///   record and answer [`ReserveOutcome::Reserved`] with `took_over: false`.
    /// - An in-flight record whose lease has ended (`lease_expires_at <= now`) and
    ///   whose fingerprint matches: take it over with the new token and lease,
    ///   answer `Reserved { took_over: true }`.
    /// - Otherwise: answer [`ReserveOutcome::Existing`] with the record as it is.
    ///
    /// This must be one atomic step: two concurrent callers never both get `Reserved`.
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError>;

    /// Stores `response` in the record owned by `token` and marks it completed.
    /// Fails with [`StoreError::NotOwner`] if `token` is not the current owner.
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Deletes the in-flight record owned by `token`, so the key can be used again.
    /// Fails with [`StoreError::NotOwner`] if `token` is not the current owner.
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError>;

    /// Reads the live record, if any. Expired records read as `None`.
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError>;

    /// Waits until the record may have left the in-flight state, or `timeout` passes.
    /// Callers re-check with [`Store::reserve`] afterwards. The default polls; a
    /// backend with change notifications should override it.
    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        let _ = id;
        tokio::time::sleep(timeout.min(Duration::from_millis(25))).await;
        Ok(())
    }

    /// Removes every record that expired at or before `now`; returns how many.
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError>;

    /// Deletes every record of `scope` (completed or in flight) whose stored response
    /// (status, headers or body) contains the bytes `needle`; returns how many records
    /// were removed.
    ///
    /// This is the erasure a GDPR purge asks for, so it searches everything a record
    /// keeps that a client or a handler chose: its key (an in-flight record has nothing
    /// else to search) and, once completed, its response as
    /// [`StoredResponse::mentions`] reads it (status digits, each header name and
    /// value, the body). The scope selects the records and is not searched. Expired
    /// records not purged yet are erased too. An empty `needle` matches nothing and
    /// answers 0, so that an empty identifier cannot wipe a scope.
    ///
    /// An erased in-flight record loses its reservation: its worker's
    /// [`Store::complete`] and [`Store::release`] fail with [`StoreError::NotOwner`],
    /// and the key may be reserved again at once. A record created while the call
    /// runs may or may not be erased. A backend must leave nothing of an erased
    /// record readable in its storage (for a file, its free pages and journal).
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError>;

    /// Waits until every completion this store has accepted so far is durable, for a
    /// store that writes completions behind (after `complete` has answered). Call it
    /// before a clean shutdown. The default has nothing to wait for.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A completed, unexpired record this store holds in process memory, if any,
    /// without any I/O. The layer answers replays from it before reserving, which
    /// spares them a task and a store round trip. The default knows nothing.
    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        let _ = (id, now);
        None
    }
}

/// Milliseconds since the Unix epoch, the form the stores compare instants in.
pub(crate) fn unix_millis(instant: SystemTime) -> i64 {
    match instant.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`unix_millis`].
pub(crate) fn from_unix_millis(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        (**self).reserve(request).await
    }
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        (**self).complete(id, token, response).await
    }
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        (**self).release(id, token).await
    }
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        (**self).lookup(id, now).await
    }
    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        (**self).wait(id, timeout).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        (**self).purge_expired(now).await
    }
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        (**self).erase_mentioning(scope, needle).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        (**self).flush().await
    }
    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        (**self).peek_completed(id, now)
    }
}
