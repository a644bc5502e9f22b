//! The in-memory store: the default for a single process.
//!
//! Records live in shards, each a mutex over a hash map plus two ordered indexes:
//! one by expiry (so purging costs time proportional to what expired, not to the
//! store) and one by completion order (so eviction can drop the oldest completed
//! record without a scan). In-flight records are never evicted: dropping one would
//! let a duplicate execute.
//!
//! The bounds (`max_records`, `max_bytes`) are enforced before each insert. Under
//! heavy concurrency the store can overshoot them by at most one record per
//! concurrent insert. When every record is in flight and the store is full, a new
//! reservation fails with [`StoreError::Unavailable`] and the layer answers 503:
//! refusing is safe, executing unguarded is not.
//!
//! With a [`CompletionLog`] ([`MemoryStore::with_log`]) the same engine is the
//! embedded, durable store: completions are appended to the log as they happen, a
//! completed record leaves memory only once the log holds it, and a key memory does
//! not hold is read back from the log when the log may hold it (see [`super::log`]).
//! Completions the log has not made durable yet cannot be evicted, so a log that
//! falls behind fills the store and new reservations are refused (503) rather than
//! queued without bound.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Notify, RwLock};

use super::log::{CompletedRecord, CompletionLog, LogPosition};
use super::{
    contains_bytes, from_unix_millis, unix_millis, ExistingRecord, FencingToken, RecordId,
    RecordState, ReserveOutcome, ReserveRequest, Store, StoreError, StoredResponse,
};
use crate::fingerprint::Fingerprint;
use crate::metrics::MemoryStoreGauges;

/// Bounds and layout of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreConfig {
    /// Number of independently locked shards (rounded up to at least 1).
    pub shards: usize,
    /// The most records held at once.
    pub max_records: usize,
    /// The most bytes held at once (keys, responses and bookkeeping, estimated).
    pub max_bytes: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            shards: 32,
            max_records: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Bookkeeping bytes per record beyond its strings and response: the table slot,
/// two B-tree index entries (a key and the entry's hash each), the boxed entry, and
/// the allocator's own overhead on the record's small allocations. Calibrated
/// against the process's resident memory plus 5 % for allocator variance, so that
/// the cap is a cap on real memory and the estimate errs high, never low (the
/// calibration runs are in docs/BENCHMARKS.md, target 7b).
const RECORD_OVERHEAD: usize = 633;

#[derive(Debug)]
struct Entry {
    /// The id's hash, computed once per store call: it picks the shard and the
    /// table slot, and it is what the indexes hold to find the entry again.
    hash: u64,
    /// The scope followed by the key, in one allocation.
    id: Box<str>,
    /// Where the scope ends in `id`.
    scope_len: usize,
    fingerprint: Fingerprint,
    token: FencingToken,
    state: EntryState,
    /// When the key was reserved (or, for a record read back from the log, made).
    created_at: i64,
    expires_at: i64,
    /// Where the completion sits in the log; 0 when there is no log to wait for.
    log_position: LogPosition,
    /// Disambiguates entries with the same expiry in the expiry index.
    expiry_seq: u64,
    /// Position in the completion index, once completed.
    completion_seq: Option<u64>,
    bytes: usize,
    /// Created only when somebody waits, so the common path allocates nothing for it.
    waiters: Option<Arc<Notify>>,
}

#[derive(Debug)]
enum EntryState {
    InFlight { lease_expires_at: i64 },
    Completed(StoredResponse),
}

impl Entry {
    fn is(&self, id: &RecordId) -> bool {
        let (scope, key) = self.id.split_at(self.scope_len);
        scope == id.scope && key == id.key
    }

    fn view(&self) -> ExistingRecord {
        ExistingRecord {
            fingerprint: self.fingerprint,
            state: match &self.state {
                EntryState::InFlight { lease_expires_at } => RecordState::InFlight {
                    lease_expires_at: super::from_unix_millis(*lease_expires_at),
                },
                EntryState::Completed(response) => RecordState::Completed(response.clone()),
            },
            expires_at: super::from_unix_millis(self.expires_at),
        }
    }

    fn scope(&self) -> &str {
        &self.id[..self.scope_len]
    }

    /// Whether the record's key or response mentions `needle` (see
    /// [`Store::erase_mentioning`]).
    fn mentions(&self, needle: &[u8]) -> bool {
        contains_bytes(self.id[self.scope_len..].as_bytes(), needle)
            || matches!(&self.state, EntryState::Completed(response) if response.mentions(needle))
    }

    fn wake_waiters(&mut self) {
        if let Some(waiters) = self.waiters.take() {
            waiters.notify_waiters();
        }
    }
}

#[derive(Default)]
struct Shard {
    // A table keyed by the id's hash, computed once per store call by the store's
    // own (randomly seeded) foldhash: the hash picks the shard and the slot, and the
    // indexes hold it rather than a copy of the id, so evicting or purging a record
    // neither hashes nor compares its (by then cold) strings; a sequence number
    // tells apart entries whose hashes are equal. Each record is two allocations
    // (entry, id) plus its response. Entries are boxed so that the table's buckets
    // stay small (8 bytes) when the table doubles and moves them all.
    // Keys are scoped by the authenticated principal and the seed is random, so
    // collisions cannot be planned from outside.
    records: HashTable<Box<Entry>>,
    /// (expires_at, expiry_seq) → the entry's hash.
    by_expiry: BTreeMap<(i64, u64), u64>,
    /// completion_seq → the entry's hash.
    by_completion: BTreeMap<u64, u64>,
    /// Counts removals, so that a reservation that read the log without the lock can
    /// tell whether a record of its key may have left memory for the log meanwhile.
    removals: u64,
}

impl Shard {
    fn get(&self, hash: u64, id: &RecordId) -> Option<&Entry> {
        self.records.find(hash, |entry| entry.is(id)).map(|e| &**e)
    }

    fn get_mut(&mut self, hash: u64, id: &RecordId) -> Option<&mut Entry> {
        self.records
            .find_mut(hash, |entry| entry.is(id))
            .map(|e| &mut **e)
    }
}

/// An in-memory [`Store`]: fast, bounded, and lost when the process exits.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    config: MemoryStoreConfig,
    records: AtomicUsize,
    bytes: AtomicUsize,
    sequence: AtomicU64,
    /// Where the next eviction pass starts, so eviction spreads over all shards.
    eviction_cursor: AtomicUsize,
    /// The latest `now` a caller passed in, for purges triggered by `complete`.
    latest_now: AtomicI64,
    /// No record expires before this instant (a lower bound: it may name a record
    /// already gone). A full store evicts on nearly every insert, and before this
    /// bound existed each eviction first swept all the shards for expired records:
    /// 32 locks per insert, for nothing until a day has passed.
    earliest_expiry: AtomicI64,
    gauges: MemoryStoreGauges,
    /// Where completed records are made durable, for the embedded store.
    log: Option<Arc<dyn CompletionLog>>,
    /// Taken for writing by [`Store::erase_mentioning`] for its whole run, and for
    /// reading by a reservation from before it reads the log until it is done, so
    /// that no reservation puts back into memory a record it read from the log
    /// before the erasure deleted it there.
    erasing: RwLock<()>,
    /// Tests set this to give every id the same hash, to check that entries with
    /// equal hashes are kept apart.
    #[cfg(test)]
    same_hash_for_all: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(MemoryStoreConfig::default())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .field("records", &self.len())
            .field("bytes", &self.bytes_held())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store with the given bounds.
    pub fn new(config: MemoryStoreConfig) -> Self {
        let shard_count = config.shards.max(1);
        Self {
            shards: (0..shard_count)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            hasher: RandomState::default(),
            config,
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            sequence: AtomicU64::new(0),
            eviction_cursor: AtomicUsize::new(0),
            latest_now: AtomicI64::new(i64::MIN),
            earliest_expiry: AtomicI64::new(i64::MAX),
            gauges: MemoryStoreGauges::default(),
            log: None,
            erasing: RwLock::new(()),
            #[cfg(test)]
            same_hash_for_all: false,
        }
    }

    /// The embedded store: this engine with `log` keeping its completed records
    /// durable (see the module docs). The bounds are those of memory; the log holds
    /// every live completed record, evicted from memory or not.
    pub fn with_log(config: MemoryStoreConfig, log: Arc<dyn CompletionLog>) -> Self {
        Self {
            log: Some(log),
            ..Self::new(config)
        }
    }

    /// The log behind this store, if it is an embedded one.
    pub fn log(&self) -> Option<&Arc<dyn CompletionLog>> {
        self.log.as_ref()
    }

    /// The log, when it may hold a record of `id`.
    fn log_holding(&self, id: &RecordId) -> Option<&Arc<dyn CompletionLog>> {
        self.log.as_ref().filter(|log| log.may_hold(id))
    }

    /// Records held now (live or expired but not yet purged).
    pub fn len(&self) -> usize {
        self.records.load(Ordering::Relaxed)
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes held now.
    pub fn bytes_held(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn hash(&self, id: &RecordId) -> u64 {
        #[cfg(test)]
        if self.same_hash_for_all {
            return 0x5eed_0000_0000_0001;
        }
        self.hasher.hash_one(id)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // The high half picks the shard: the table takes its slot from the low bits
        // and its tag from the top seven, so within a shard both still vary.
        ((hash >> 32) as usize) % self.shards.len()
    }

    /// The hash of `id` and its shard, locked.
    fn shard_of(&self, id: &RecordId) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hash(id);
        (hash, self.lock(self.shard_index(hash)))
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave a half-updated entry
        // (every mutation is a few infallible steps), so a poisoned lock is usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }

    fn report_size(&self) {
        self.gauges.set(self.len(), self.bytes_held());
    }

    /// Removes the entry with `hash` for which `is_it` holds, and its index entries.
    fn remove_entry(
        &self,
        shard: &mut Shard,
        hash: u64,
        is_it: impl FnMut(&Box<Entry>) -> bool,
    ) -> Option<Box<Entry>> {
        let (mut entry, _) = shard.records.find_entry(hash, is_it).ok()?.remove();
        shard.removals += 1;
        shard
            .by_expiry
            .remove(&(entry.expires_at, entry.expiry_seq));
        if let Some(seq) = entry.completion_seq {
            shard.by_completion.remove(&seq);
        }
        entry.wake_waiters();
        self.records.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(entry.bytes, Ordering::Relaxed);
        Some(entry)
    }

    fn purge_shard(&self, shard: &mut Shard, now: i64) -> u64 {
        let mut purged = 0;
        while let Some((&(expires_at, _), _)) = shard.by_expiry.first_key_value() {
            if expires_at > now {
                break;
            }
            let Some(((_, expiry_seq), hash)) = shard.by_expiry.pop_first() else {
                break;
            };
            // The index entry is gone already; remove_entry tolerates that.
            if self
                .remove_entry(shard, hash, |entry| entry.expiry_seq == expiry_seq)
                .is_some()
            {
                purged += 1;
            }
        }
        purged
    }

    /// Purges every shard, and recomputes the bound on the earliest expiry.
    fn purge_all(&self, now: i64) -> u64 {
        // Reset first, then lower it shard by shard: an insert that races with this
        // pass lowers it itself, so the bound stays a lower bound.
        self.earliest_expiry.store(i64::MAX, Ordering::Relaxed);
        let mut purged = 0;
        for index in 0..self.shards.len() {
            let mut shard = self.lock(index);
            purged += self.purge_shard(&mut shard, now);
            if let Some((&(expires_at, _), _)) = shard.by_expiry.first_key_value() {
                self.earliest_expiry
                    .fetch_min(expires_at, Ordering::Relaxed);
            }
        }
        purged
    }

    /// Lowers the bound to `expires_at` if it is later, under the lock of the shard
    /// that holds the record. With one retention for all keys a new record expires
    /// after every other, so this is almost always a read, not a write to a cache
    /// line both workers share. A purge that raced past the load has reset the bound
    /// before and visits this shard after, so the bound stays a lower bound.
    fn lower_earliest_expiry(&self, expires_at: i64) {
        if expires_at < self.earliest_expiry.load(Ordering::Relaxed) {
            self.earliest_expiry
                .fetch_min(expires_at, Ordering::Relaxed);
        }
    }

    fn over_budget(&self, incoming_records: usize, incoming_bytes: usize) -> bool {
        self.len() + incoming_records > self.config.max_records
            || self.bytes_held() + incoming_bytes > self.config.max_bytes
    }

    /// Frees room for `incoming_records` more records of `incoming_bytes`: expired
    /// records first, then the oldest completed ones, shard by shard. Never touches
    /// in-flight records.
    fn make_room(
        &self,
        incoming_records: usize,
        incoming_bytes: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        if !self.over_budget(incoming_records, incoming_bytes) {
            return Ok(());
        }
        if now >= self.earliest_expiry.load(Ordering::Relaxed) {
            self.purge_all(now);
        }
        let shard_count = self.shards.len();
        let mut idle_passes = 0;
        while self.over_budget(incoming_records, incoming_bytes) {
            let index = self.eviction_cursor.fetch_add(1, Ordering::Relaxed) % shard_count;
            let mut shard = self.lock(index);
            let durable_through = self.log.as_ref().map(|log| log.durable_through());
            let oldest = shard
                .by_completion
                .first_key_value()
                .map(|(&seq, &hash)| (seq, hash))
                // A completion the log does not hold yet would be lost with its copy here.
                .filter(|&(seq, hash)| {
                    durable_through.is_none_or(|through| {
                        shard
                            .records
                            .find(hash, |entry| entry.completion_seq == Some(seq))
                            .is_some_and(|entry| entry.log_position <= through)
                    })
                });
            match oldest {
                Some((seq, hash)) => {
                    self.remove_entry(&mut shard, hash, |entry| entry.completion_seq == Some(seq));
                    idle_passes = 0;
                }
                None => {
                    idle_passes += 1;
                    if idle_passes >= shard_count {
                        return Err(StoreError::Unavailable(
                            "the idempotency store is full of records in flight or not yet \
                             written"
                                .into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn record_bytes(id: &RecordId) -> usize {
    // The id's strings are held once, in the entry; RECORD_OVERHEAD covers
    // everything else a record costs beyond its response.
    RECORD_OVERHEAD + id.scope.len() + id.key.len()
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        let now = unix_millis(request.now);
        let hash = self.hash(request.id);
        let index = self.shard_index(hash);
        self.latest_now.fetch_max(now, Ordering::Relaxed);
        let mut read_back = None;
        let mut room_made = false;
        let mut erasure_excluded = None;
        loop {
            // Every decision is made under the shard's lock; what needs I/O or other
            // shards' locks (reading the log, making room) happens between turns.
            let step = self.reserve_step(
                &mut self.lock(index),
                hash,
                &request,
                read_back.take(),
                room_made,
            );
            match step {
                ReserveStep::Done(outcome) => {
                    self.report_size();
                    return Ok(outcome);
                }
                ReserveStep::ReadLog { removals } => {
                    // Kept until this reservation returns: what it reads is put into
                    // memory on its next turn, and must not be a record an erasure
                    // running meanwhile has deleted from the log.
                    if erasure_excluded.is_none() {
                        erasure_excluded = Some(self.erasing.read().await);
                    }
                    let log = self
                        .log
                        .as_ref()
                        .expect("only an embedded store reads its log");
                    read_back = Some(ReadBack {
                        record: log.read(request.id, request.now).await?,
                        removals,
                    });
                }
                ReserveStep::MakeRoom => {
                    self.make_room(1, record_bytes(request.id), now)?;
                    room_made = true;
                }
            }
        }
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let (hash, mut shard) = self.shard_of(id);
        let completion_seq = self.next_sequence();
        let entry = shard.get_mut(hash, id).ok_or(StoreError::NotOwner)?;
        if entry.token != token || !matches!(entry.state, EntryState::InFlight { .. }) {
            return Err(StoreError::NotOwner);
        }
        // Appended before the record changes here, so that a log that refuses leaves
        // the key in flight, as a failed completion must.
        if let Some(log) = &self.log {
            entry.log_position = log.append(CompletedRecord {
                id: id.clone(),
                fingerprint: entry.fingerprint,
                response: response.clone(),
                created_at: from_unix_millis(entry.created_at),
                expires_at: from_unix_millis(entry.expires_at),
            })?;
        }
        let added = response.size_bytes();
        entry.state = EntryState::Completed(response.clone());
        entry.completion_seq = Some(completion_seq);
        entry.bytes += added;
        entry.wake_waiters();
        shard.by_completion.insert(completion_seq, hash);
        drop(shard);
        self.bytes.fetch_add(added, Ordering::Relaxed);
        // The response may push the store over its byte cap: evict older records.
        // Only completed records are evicted, so at worst this one goes, and a
        // retry then executes again rather than the store outgrowing its bound.
        let now = self.latest_now.load(Ordering::Relaxed);
        if let Err(error) = self.make_room(0, 0, now) {
            tracing::warn!(%error, "memory store over its byte cap after completion");
        }
        self.report_size();
        Ok(())
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        let (hash, mut shard) = self.shard_of(id);
        match shard.get(hash, id) {
            Some(entry)
                if entry.token == token && matches!(entry.state, EntryState::InFlight { .. }) =>
            {
                self.remove_entry(&mut shard, hash, |entry| entry.is(id));
                drop(shard);
                self.report_size();
                Ok(())
            }
            _ => Err(StoreError::NotOwner),
        }
    }

    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        let millis = unix_millis(now);
        let in_memory = {
            let (hash, shard) = self.shard_of(id);
            if let Some(entry) = shard.get(hash, id) {
                return Ok((entry.expires_at > millis).then(|| entry.view()));
            }
            self.log_holding(id).cloned()
        };
        match in_memory {
            Some(log) => Ok(log.read(id, now).await?.map(|record| ExistingRecord {
                fingerprint: record.fingerprint,
                state: RecordState::Completed(record.response),
                expires_at: record.expires_at,
            })),
            None => Ok(None),
        }
    }

    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        let notified = {
            let (hash, mut shard) = self.shard_of(id);
            let Some(entry) = shard.get_mut(hash, id) else {
                return Ok(());
            };
            if !matches!(entry.state, EntryState::InFlight { .. }) {
                return Ok(());
            }
            // Created under the lock, so a completion right after unlocking still wakes us.
            let waiters = entry.waiters.get_or_insert_with(|| Arc::new(Notify::new()));
            waiters.clone().notified_owned()
        };
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }

    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        let now = unix_millis(now);
        let (hash, shard) = self.shard_of(id);
        shard
            .get(hash, id)
            .filter(|entry| entry.expires_at > now)
            .filter(|entry| matches!(entry.state, EntryState::Completed(_)))
            .map(|entry| entry.view())
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        let mut purged = self.purge_all(unix_millis(now));
        if purged > 0 {
            self.report_size();
        }
        if let Some(log) = &self.log {
            // A record may be in memory, in the log or in both: the larger count is
            // the closest to the number of records gone that is known without a join.
            purged = purged.max(log.purge_expired(now).await?);
        }
        Ok(purged)
    }

    /// Erases the matching records of every shard, then, for the embedded store, has
    /// the log erase its own (it first writes what is queued, so a completion still
    /// on its way is erased there too). Reservations that would read the log wait
    /// until the erasure is done.
    ///
    /// The count: in-flight records live only in memory, and every completed one is
    /// in the log once it is written, so with a log the answer is the in-flight
    /// records erased plus the log's rows erased, or the records erased from memory
    /// if that is more (a completion the log refused for good lives only in memory).
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        if needle.is_empty() {
            return Ok(0);
        }
        let _erasing = self.erasing.write().await;
        let (mut in_flight, mut completed) = (0u64, 0u64);
        for index in 0..self.shards.len() {
            let mut shard = self.lock(index);
            // The expiry sequence number tells apart entries whose hashes are equal.
            let doomed: Vec<(u64, u64)> = shard
                .records
                .iter()
                .filter(|entry| entry.scope() == scope && entry.mentions(needle))
                .map(|entry| (entry.hash, entry.expiry_seq))
                .collect();
            for (hash, expiry_seq) in doomed {
                // Index entries, counts, bytes and waiters, as for any removal; the
                // earliest-expiry bound stays a lower bound.
                let removed =
                    self.remove_entry(&mut shard, hash, |entry| entry.expiry_seq == expiry_seq);
                match removed.map(|entry| entry.state) {
                    Some(EntryState::InFlight { .. }) => in_flight += 1,
                    Some(EntryState::Completed(_)) => completed += 1,
                    None => {}
                }
            }
        }
        if in_flight + completed > 0 {
            self.report_size();
        }
        match &self.log {
            Some(log) => {
                let logged = log.erase_mentioning(scope, needle).await?;
                Ok((in_flight + logged).max(in_flight + completed))
            }
            None => Ok(in_flight + completed),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match &self.log {
            Some(log) => log.flush().await,
            None => Ok(()),
        }
    }
}

/// What a reservation does next, decided under its shard's lock.
enum ReserveStep {
    Done(ReserveOutcome),
    /// Read the key's record from the log; `removals` is the shard's count when the
    /// decision was made.
    ReadLog {
        removals: u64,
    },
    /// Free room in the store, then decide again.
    MakeRoom,
}

/// What a reservation read from the log without the lock.
struct ReadBack {
    record: Option<CompletedRecord>,
    removals: u64,
}

impl MemoryStore {
    /// One turn of [`Store::reserve`] under the shard's lock.
    fn reserve_step(
        &self,
        shard: &mut Shard,
        hash: u64,
        request: &ReserveRequest<'_>,
        read_back: Option<ReadBack>,
        room_made: bool,
    ) -> ReserveStep {
        let now = unix_millis(request.now);
        let mut log_read = false;
        if let Some(read) = read_back {
            // Another caller may have put the key in memory meanwhile: that decides.
            if shard.get(hash, request.id).is_none() {
                match read.record {
                    Some(record) => self.insert_read_back(shard, hash, record),
                    // A record of this key may have left memory for the log while it
                    // was read: read again.
                    None if shard.removals != read.removals => {
                        return ReserveStep::ReadLog {
                            removals: shard.removals,
                        }
                    }
                    None => log_read = true,
                }
            }
        }
        if let Some(outcome) = self.try_existing(shard, hash, request, now) {
            return ReserveStep::Done(outcome);
        }
        if !log_read && self.log_holding(request.id).is_some() {
            return ReserveStep::ReadLog {
                removals: shard.removals,
            };
        }
        let incoming = record_bytes(request.id);
        if !room_made && self.over_budget(1, incoming) {
            return ReserveStep::MakeRoom;
        }
        let entry = Entry {
            hash,
            id: Box::default(),
            scope_len: 0,
            fingerprint: *request.fingerprint,
            token: request.token,
            state: EntryState::InFlight {
                lease_expires_at: unix_millis(request.lease_expires_at()),
            },
            created_at: now,
            expires_at: unix_millis(request.expires_at()),
            log_position: 0,
            expiry_seq: 0,
            completion_seq: None,
            bytes: incoming,
            waiters: None,
        };
        self.insert(shard, hash, request.id, entry);
        ReserveStep::Done(ReserveOutcome::Reserved { took_over: false })
    }

    /// Inserts `entry` as the record of `id`, which the shard does not hold, with the
    /// id's strings, an expiry position, and its bytes counted.
    fn insert(&self, shard: &mut Shard, hash: u64, id: &RecordId, mut entry: Entry) {
        let mut joined = String::with_capacity(id.scope.len() + id.key.len());
        joined.push_str(&id.scope);
        joined.push_str(&id.key);
        entry.id = joined.into_boxed_str();
        entry.scope_len = id.scope.len();
        entry.expiry_seq = self.next_sequence();
        shard
            .by_expiry
            .insert((entry.expires_at, entry.expiry_seq), hash);
        self.lower_earliest_expiry(entry.expires_at);
        if let EntryState::Completed(_) = entry.state {
            let completion_seq = self.next_sequence();
            entry.completion_seq = Some(completion_seq);
            shard.by_completion.insert(completion_seq, hash);
        }
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(entry.bytes, Ordering::Relaxed);
        shard
            .records
            .insert_unique(hash, Box::new(entry), |entry| entry.hash);
    }

    /// Puts a completed record read back from the log into memory; the log holds it,
    /// so it may be evicted again at once.
    fn insert_read_back(&self, shard: &mut Shard, hash: u64, record: CompletedRecord) {
        let bytes = record_bytes(&record.id) + record.response.size_bytes();
        let entry = Entry {
            hash,
            id: Box::default(),
            scope_len: 0,
            fingerprint: record.fingerprint,
            token: FencingToken::from_i64(0),
            state: EntryState::Completed(record.response),
            created_at: unix_millis(record.created_at),
            expires_at: unix_millis(record.expires_at),
            log_position: 0,
            expiry_seq: 0,
            completion_seq: None,
            bytes,
            waiters: None,
        };
        self.insert(shard, hash, &record.id, entry);
    }

    /// Answers from a live record, takes over a dead worker's record, or clears an
    /// expired one and answers `None` (the caller then inserts).
    fn try_existing(
        &self,
        shard: &mut Shard,
        hash: u64,
        request: &ReserveRequest<'_>,
        now: i64,
    ) -> Option<ReserveOutcome> {
        let id = request.id;
        // The table, not `Shard::get_mut`: the expiry index is updated below while
        // the entry is still borrowed.
        let entry = shard.records.find_mut(hash, |entry| entry.is(id))?;
        if entry.expires_at <= now {
            self.remove_entry(shard, hash, |entry| entry.is(id));
            return None;
        }
        match entry.state {
            EntryState::InFlight { lease_expires_at }
                if lease_expires_at <= now && entry.fingerprint == *request.fingerprint =>
            {
                // The owner's lease ended: it is presumed dead. Take over with a new
                // token (the old owner's complete/release now fail) and a new lease.
                entry.token = request.token;
                entry.state = EntryState::InFlight {
                    lease_expires_at: unix_millis(request.lease_expires_at()),
                };
                let old_key = (entry.expires_at, entry.expiry_seq);
                entry.expires_at = unix_millis(request.expires_at());
                let new_key = (entry.expires_at, entry.expiry_seq);
                if let Some(id) = shard.by_expiry.remove(&old_key) {
                    shard.by_expiry.insert(new_key, id);
                }
                self.lower_earliest_expiry(new_key.0);
                Some(ReserveOutcome::Reserved { took_over: true })
            }
            _ => Some(ReserveOutcome::Existing(entry.view())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reserve_request<'a>(
        id: &'a RecordId,
        fingerprint: &'a Fingerprint,
        now: SystemTime,
    ) -> ReserveRequest<'a> {
        ReserveRequest {
            id,
            fingerprint,
            token: FencingToken::generate(),
            now,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
        }
    }

    fn reserve_request_with<'a>(
        id: &'a RecordId,
        fingerprint: &'a Fingerprint,
        now: SystemTime,
        token: FencingToken,
    ) -> ReserveRequest<'a> {
        ReserveRequest {
            token,
            ..reserve_request(id, fingerprint, now)
        }
    }

    fn response(body_len: usize) -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![(
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            )],
            body: Bytes::from(vec![b'x'; body_len]),
        }
    }

    async fn reserve_and_complete(
        store: &MemoryStore,
        key: &str,
        now: SystemTime,
        body_len: usize,
    ) {
        let id = RecordId::new("s", key);
        let fp = Fingerprint::from_bytes([1; 32]);
        let request = reserve_request(&id, &fp, now);
        let token = request.token;
        assert!(matches!(
            store.reserve(request).await,
            Ok(ReserveOutcome::Reserved { .. })
        ));
        store
            .complete(&id, token, &response(body_len))
            .await
            .unwrap();
    }

    fn single_shard(max_records: usize, max_bytes: usize) -> MemoryStore {
        MemoryStore::new(MemoryStoreConfig {
            shards: 1,
            max_records,
            max_bytes,
        })
    }

    #[tokio::test]
    async fn over_the_record_cap_the_oldest_completed_record_is_evicted() {
        let store = single_shard(3, usize::MAX);
        let now = SystemTime::now();
        for key in ["a", "b", "c", "d"] {
            reserve_and_complete(&store, key, now, 10).await;
        }
        assert_eq!(store.len(), 3);
        assert!(store
            .lookup(&RecordId::new("s", "a"), now)
            .await
            .unwrap()
            .is_none());
        for key in ["b", "c", "d"] {
            assert!(store
                .lookup(&RecordId::new("s", key), now)
                .await
                .unwrap()
                .is_some());
        }
    }

    #[tokio::test]
    async fn expired_records_are_evicted_before_live_ones() {
        let store = single_shard(2, usize::MAX);
        let start = SystemTime::now();
        reserve_and_complete(&store, "old", start, 10).await;
        let later = start + Duration::from_secs(1800);
        reserve_and_complete(&store, "young", later, 10).await;
        // "old" expires at start+1h; at start+1h+1s it goes first even though
        // eviction by age alone would also pick it: check with a young-first order.
        let after = start + Duration::from_secs(3601);
        reserve_and_complete(&store, "newest", after, 10).await;
        assert!(store
            .lookup(&RecordId::new("s", "young"), after)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .lookup(&RecordId::new("s", "newest"), after)
            .await
            .unwrap()
            .is_some());
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn a_full_store_evicts_expired_records_in_any_shard_before_live_ones() {
        // Many shards, so that the expired records sit in shards other than the one
        // the eviction cursor visits first. The short-lived records complete *after*
        // the long-lived ones, so eviction by completion order alone would drop
        // long-lived records first: only the purge of expired records keeps them.
        let store = MemoryStore::new(MemoryStoreConfig {
            shards: 16,
            max_records: 40,
            max_bytes: usize::MAX,
        });
        let start = SystemTime::now();
        let fp = Fingerprint::from_bytes([3; 32]);
        let insert = |key: String, retention: Duration| {
            let store = &store;
            async move {
                let id = RecordId::new("s", key);
                let request = ReserveRequest {
                    retention,
                    ..reserve_request(&id, &fp, start)
                };
                let token = request.token;
                store.reserve(request).await.unwrap();
                store.complete(&id, token, &response(10)).await.unwrap();
            }
        };
        for index in 0..20 {
            insert(format!("long{index}"), Duration::from_secs(3600)).await;
        }
        for index in 0..20 {
            insert(format!("short{index}"), Duration::from_secs(10)).await;
        }
        assert_eq!(store.len(), 40);
        let after = start + Duration::from_secs(11);
        for index in 0..20 {
            let id = RecordId::new("s", format!("new{index}"));
            let request = reserve_request(&id, &fp, after);
            let token = request.token;
            store.reserve(request).await.unwrap();
            store.complete(&id, token, &response(10)).await.unwrap();
        }
        for index in 0..20 {
            let long = RecordId::new("s", format!("long{index}"));
            assert!(
                store.lookup(&long, after).await.unwrap().is_some(),
                "long{index} was evicted while expired records were held"
            );
        }
        assert_eq!(store.len(), 40);
    }

    #[tokio::test]
    async fn records_whose_ids_hash_alike_are_kept_apart() {
        // Every id hashes alike, and the orders differ on purpose: completion order
        // is the reverse of insertion order, so the record eviction must pick is not
        // the first one the table finds for that hash.
        let mut store = single_shard(5, usize::MAX);
        store.same_hash_for_all = true;
        let now = SystemTime::now();
        let fp = Fingerprint::from_bytes([4; 32]);
        let id = |key: &str| RecordId::new("s", key);
        let mut tokens = Vec::new();
        for key in ["a", "b", "c", "d"] {
            let token = FencingToken::generate();
            tokens.push(token);
            let record = id(key);
            let request = reserve_request_with(&record, &fp, now, token);
            store.reserve(request).await.unwrap();
        }
        for (key, token) in ["a", "b", "c", "d"].iter().zip(&tokens).rev() {
            store
                .complete(&id(key), *token, &response(10))
                .await
                .unwrap();
        }
        // A release removes its own record, not the first with its hash.
        let token = FencingToken::generate();
        let e = id("e");
        store
            .reserve(reserve_request_with(&e, &fp, now, token))
            .await
            .unwrap();
        store.release(&id("e"), token).await.unwrap();
        assert!(store.lookup(&id("e"), now).await.unwrap().is_none());
        assert_eq!(store.len(), 4);
        // Full at five: the sixth evicts the oldest completed record, "d".
        reserve_and_complete(&store, "f", now, 10).await;
        reserve_and_complete(&store, "g", now, 10).await;
        assert!(store.lookup(&id("d"), now).await.unwrap().is_none());
        for key in ["a", "b", "c", "f", "g"] {
            assert!(
                store.lookup(&id(key), now).await.unwrap().is_some(),
                "{key} lost"
            );
        }
        // Expiry purges exactly the expired records.
        let later = now + Duration::from_secs(1800);
        let young = id("young");
        let request = reserve_request(&young, &fp, later);
        let token = request.token;
        // Full again: "young" evicts the oldest completed record, "c".
        store.reserve(request).await.unwrap();
        store.complete(&young, token, &response(10)).await.unwrap();
        let after = now + Duration::from_secs(3601);
        let purged = store.purge_expired(after).await.unwrap();
        assert_eq!(purged, 4);
        assert!(store.lookup(&young, after).await.unwrap().is_some());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn the_byte_cap_is_respected() {
        let store = single_shard(usize::MAX, 20_000);
        let now = SystemTime::now();
        for index in 0..50 {
            reserve_and_complete(&store, &format!("k{index}"), now, 1000).await;
            assert!(
                store.bytes_held() <= 20_000,
                "{} bytes held",
                store.bytes_held()
            );
        }
        assert!(store.len() < 50 && store.len() > 5);
    }

    #[tokio::test]
    async fn in_flight_records_are_never_evicted_and_a_full_store_refuses() {
        let store = single_shard(2, usize::MAX);
        let now = SystemTime::now();
        let fp = Fingerprint::from_bytes([2; 32]);
        let (a, b, c) = (
            RecordId::new("s", "a"),
            RecordId::new("s", "b"),
            RecordId::new("s", "c"),
        );
        assert!(store.reserve(reserve_request(&a, &fp, now)).await.is_ok());
        assert!(store.reserve(reserve_request(&b, &fp, now)).await.is_ok());
        assert!(matches!(
            store.reserve(reserve_request(&c, &fp, now)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(store.lookup(&a, now).await.unwrap().is_some());
        assert!(store.lookup(&b, now).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn releasing_and_purging_return_the_bytes() {
        let store = MemoryStore::default();
        let now = SystemTime::now();
        for index in 0..100 {
            reserve_and_complete(&store, &format!("k{index}"), now, 500).await;
        }
        assert!(store.bytes_held() > 50_000);
        let purged = store
            .purge_expired(now + Duration::from_secs(3601))
            .await
            .unwrap();
        assert_eq!(purged, 100);
        assert_eq!(store.len(), 0);
        assert_eq!(store.bytes_held(), 0);
    }

    /// The shard's indexes name exactly its records.
    fn assert_indexes_exact(store: &MemoryStore) {
        for index in 0..store.shards.len() {
            let shard = store.lock(index);
            assert_eq!(shard.by_expiry.len(), shard.records.len());
            let completed = shard
                .records
                .iter()
                .filter(|entry| matches!(entry.state, EntryState::Completed(_)))
                .count();
            assert_eq!(shard.by_completion.len(), completed);
        }
    }

    #[tokio::test]
    async fn erasing_keeps_counts_bytes_and_indexes_exact_among_equal_hashes() {
        let mut store = single_shard(usize::MAX, usize::MAX);
        store.same_hash_for_all = true;
        let now = SystemTime::now();
        let fp = Fingerprint::from_bytes([5; 32]);
        let empty_bytes = store.bytes_held();
        for key in ["a", "b", "c", "d"] {
            reserve_and_complete(&store, key, now, 10).await;
        }
        let bytes_without_needle = store.bytes_held();
        let with_needle = StoredResponse {
            body: Bytes::from_static(b"{\"agent\":\"needle-1\"}"),
            ..response(0)
        };
        for key in ["n1", "n2"] {
            let id = RecordId::new("s", key);
            let request = reserve_request(&id, &fp, now);
            let token = request.token;
            store.reserve(request).await.unwrap();
            store.complete(&id, token, &with_needle).await.unwrap();
        }
        let in_flight = RecordId::new("s", "in-flight-needle-1");
        store
            .reserve(reserve_request(&in_flight, &fp, now))
            .await
            .unwrap();
        assert_eq!(store.len(), 7);

        assert_eq!(store.erase_mentioning("s", b"needle-1").await.unwrap(), 3);
        assert_eq!(store.len(), 4);
        assert_eq!(store.bytes_held(), bytes_without_needle);
        assert_indexes_exact(&store);
        for key in ["a", "b", "c", "d"] {
            assert!(store
                .lookup(&RecordId::new("s", key), now)
                .await
                .unwrap()
                .is_some());
        }
        let later = now + Duration::from_secs(3601);
        assert_eq!(store.purge_expired(later).await.unwrap(), 4);
        assert_eq!(store.len(), 0);
        assert_eq!(store.bytes_held(), empty_bytes);
    }

    /// A log holding one record, whose reads can be held at a gate after they have
    /// copied the record: a read that happened before an erasure, answered after it.
    struct GatedLog {
        record: Mutex<Option<CompletedRecord>>,
        reading: Notify,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl CompletionLog for GatedLog {
        fn append(&self, record: CompletedRecord) -> Result<LogPosition, StoreError> {
            *self.record.lock().unwrap() = Some(record);
            Ok(1)
        }
        fn durable_through(&self) -> LogPosition {
            LogPosition::MAX
        }
        async fn wait_durable(&self, _: LogPosition) -> Result<(), StoreError> {
            Ok(())
        }
        fn may_hold(&self, _: &RecordId) -> bool {
            self.record.lock().unwrap().is_some()
        }
        async fn read(
            &self,
            _: &RecordId,
            _: SystemTime,
        ) -> Result<Option<CompletedRecord>, StoreError> {
            let copy = self.record.lock().unwrap().clone();
            self.reading.notify_one();
            let _pass = self.gate.acquire().await.unwrap();
            Ok(copy)
        }
        async fn purge_expired(&self, _: SystemTime) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn erase_mentioning(&self, _: &str, needle: &[u8]) -> Result<u64, StoreError> {
            let mut record = self.record.lock().unwrap();
            let erase = record
                .as_ref()
                .is_some_and(|record| record.response.mentions(needle));
            if erase {
                *record = None;
            }
            Ok(u64::from(erase))
        }
        async fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_read_from_the_log_before_an_erasure_does_not_come_back() {
        let now = SystemTime::now();
        let id = RecordId::new("s", "k");
        let log = Arc::new(GatedLog {
            record: Mutex::new(Some(CompletedRecord {
                id: id.clone(),
                fingerprint: Fingerprint::from_bytes([6; 32]),
                response: StoredResponse {
                    body: Bytes::from_static(b"needle-2"),
                    ..response(0)
                },
                created_at: now,
                expires_at: now + Duration::from_secs(3600),
            })),
            reading: Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let store = Arc::new(MemoryStore::with_log(
            MemoryStoreConfig::default(),
            log.clone(),
        ));
        let reservation = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let fp = Fingerprint::from_bytes([6; 32]);
                store.reserve(reserve_request(&id, &fp, now)).await
            })
        };
        // The reservation has copied the record out of the log; now erase.
        log.reading.notified().await;
        let erasure = {
            let store = store.clone();
            tokio::spawn(async move { store.erase_mentioning("s", b"needle-2").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.gate.add_permits(1);
        // Read before the erasure, the record is answered to the reservation...
        assert!(matches!(
            reservation.await.unwrap().unwrap(),
            ReserveOutcome::Existing(ExistingRecord {
                state: RecordState::Completed(_),
                ..
            })
        ));
        assert_eq!(erasure.await.unwrap().unwrap(), 1);
        // ...but is not left in memory after it.
        assert_eq!(store.lookup(&id, now).await.unwrap(), None);
        assert_eq!(store.len(), 0);
        assert_eq!(store.bytes_held(), 0);
    }
}
