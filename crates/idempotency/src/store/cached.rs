//! A bounded in-process cache of completed records in front of any store.
//!
//! A completed record never changes until it expires (nothing may complete or
//! release it again, and only expiry lets its key be reserved anew), so a copy
//! held until its `expires_at` can answer replays and mismatches without a round
//! trip to the database. This matters most for SQL stores, where every
//! reservation is a write statement: with the cache, the second and later replays
//! of a key cost a hash lookup.
//!
//! Only completed records are cached, only as read from the inner store, and each
//! only until its own expiry, so the cache can never make a key look free, never
//! hide a completion, and never outlive the record it copies. In-flight records
//! always go to the inner store, which keeps reservation atomic across instances.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    ExistingRecord, FencingToken, RecordId, RecordState, ReserveOutcome, ReserveRequest, Store,
    StoreError, StoredResponse,
};

/// Bounds of a [`CachedStore`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Independently locked shards.
    pub shards: usize,
    /// The most records cached.
    pub max_records: usize,
    /// The most response bytes cached (estimated as in the memory store).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            shards: 16,
            max_records: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Default)]
struct Shard {
    records: HashMap<RecordId, ExistingRecord>,
    /// Insertion order, for first-in-first-out eviction.
    order: VecDeque<RecordId>,
}

/// Wraps a [`Store`] with a cache of completed records (see the module docs).
pub struct CachedStore<S> {
    inner: S,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_records_per_shard: usize,
    max_bytes: usize,
    bytes: AtomicUsize,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn cached_bytes(id: &RecordId, response: &StoredResponse) -> usize {
    128 + 2 * (id.scope.len() + id.key.len()) + response.size_bytes()
}

impl<S: Store> CachedStore<S> {
    /// A cache with the given bounds in front of `inner`.
    pub fn new(inner: S, config: CacheConfig) -> Self {
        let shards = config.shards.max(1);
        Self {
            inner,
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_records_per_shard: config.max_records.div_ceil(shards).max(1),
            max_bytes: config.max_bytes,
            bytes: AtomicUsize::new(0),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many completed records the cache holds now.
    pub fn cached_records(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .records
                    .len()
            })
            .sum()
    }

    fn shard(&self, id: &RecordId) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(id) as usize) % self.shards.len();
        // Entries are inserted and removed in single steps; a poisoned lock is usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        let mut shard = self.shard(id);
        let hit = shard.records.get(id)?;
        if hit.expires_at > now {
            return Some(hit.clone());
        }
        // Expired: forget it; the inner store decides what the key is now.
        if let Some(expired) = shard.records.remove(id) {
            self.forget_bytes(id, &expired);
        }
        None
    }

    fn forget_bytes(&self, id: &RecordId, record: &ExistingRecord) {
        if let RecordState::Completed(response) = &record.state {
            self.bytes
                .fetch_sub(cached_bytes(id, response), Ordering::Relaxed);
        }
    }

    fn remember(&self, id: &RecordId, record: &ExistingRecord) {
        let RecordState::Completed(response) = &record.state else {
            return;
        };
        let size = cached_bytes(id, response);
        if size > self.max_bytes / 4 {
            return; // a single huge response would flush the cache for little gain
        }
        let mut shard = self.shard(id);
        if shard.records.contains_key(id) {
            return;
        }
        while shard.records.len() >= self.max_records_per_shard
            || (self.bytes.load(Ordering::Relaxed) + size > self.max_bytes
                && !shard.order.is_empty())
        {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            if let Some(evicted) = shard.records.remove(&oldest) {
                self.forget_bytes(&oldest, &evicted);
            }
        }
        shard.records.insert(id.clone(), record.clone());
        shard.order.push_back(id.clone());
        self.bytes.fetch_add(size, Ordering::Relaxed);
        // Keep the order queue from growing with ids already evicted or expired.
        if shard.order.len() > 2 * self.max_records_per_shard {
            let Shard { records, order } = &mut *shard;
            order.retain(|id| records.contains_key(id));
        }
    }
}

#[async_trait]
impl<S: Store> Store for CachedStore<S> {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        if let Some(hit) = self.cached(request.id, request.now) {
            return Ok(ReserveOutcome::Existing(hit));
        }
        let outcome = self.inner.reserve(request.clone()).await?;
        if let ReserveOutcome::Existing(record) = &outcome {
            self.remember(request.id, record);
        }
        Ok(outcome)
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.inner.complete(id, token, response).await
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        self.inner.release(id, token).await
    }

    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        if let Some(hit) = self.cached(id, now) {
            return Ok(Some(hit));
        }
        let found = self.inner.lookup(id, now).await?;
        if let Some(record) = &found {
            self.remember(id, record);
        }
        Ok(found)
    }

    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        self.inner.wait(id, timeout).await
    }

    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        self.cached(id, now)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        // Walk each shard's insertion order from the oldest entry and stop at the first
        // live one, so a purge costs what expired, not the size of the cache. Every
        // record is kept for the same retention, so insertion order is nearly expiry
        // order; a record copied in later but created earlier (read back from the inner
        // store) may wait behind younger ones, and is dropped when it is next looked up
        // (expiry is checked on every read) or evicted.
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Shard { records, order } = &mut *shard;
            while let Some(oldest) = order.front() {
                match records.get(oldest) {
                    Some(record) if record.expires_at > now => break,
                    Some(_) => {
                        if let Some(expired) = records.remove(oldest) {
                            self.forget_bytes(oldest, &expired);
                        }
                    }
                    // Already evicted or expired on a read: only the order entry is left.
                    None => {}
                }
                order.pop_front();
            }
        }
        self.inner.purge_expired(now).await
    }
}
