//! A cache in front of a store keeps the store's contract, and answers repeated
//! replays without asking the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use idempotency::testkit::{epoch, sample_response};
use idempotency::{
    CacheConfig, CachedStore, ExistingRecord, FencingToken, Fingerprint, MemoryStore, RecordId,
    RecordState, ReserveOutcome, ReserveRequest, Store, StoreError, StoredResponse,
};

async fn fresh_store() -> CachedStore<MemoryStore> {
    CachedStore::new(MemoryStore::default(), CacheConfig::default())
}

idempotency::store_conformance_tests!(fresh_store);

/// Counts the reservations that reach the inner store.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    reserves: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        self.reserves.fetch_add(1, Ordering::SeqCst);
        self.inner.reserve(request).await
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
        self.inner.lookup(id, now).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
}

fn request<'a>(
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

#[tokio::test]
async fn repeated_replays_are_answered_from_the_cache_until_the_record_expires() {
    let store = Arc::new(CachedStore::new(
        Counting::default(),
        CacheConfig::default(),
    ));
    let id = RecordId::new("s", "k");
    let fingerprint = Fingerprint::from_bytes([1; 32]);
    let first = request(&id, &fingerprint, epoch());
    let token = first.token;
    store.reserve(first).await.unwrap();
    store
        .complete(&id, token, &sample_response())
        .await
        .unwrap();

    for _ in 0..5 {
        let outcome = store
            .reserve(request(&id, &fingerprint, epoch()))
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            ReserveOutcome::Existing(ExistingRecord {
                state: RecordState::Completed(_),
                ..
            })
        ));
    }
    // The first reservation and the first replay reached the store; the rest did not.
    assert_eq!(store.inner().reserves.load(Ordering::SeqCst), 2);

    // After expiry the cache steps aside and the key is free again.
    let later = epoch() + Duration::from_secs(3601);
    let outcome = store
        .reserve(request(&id, &fingerprint, later))
        .await
        .unwrap();
    assert_eq!(outcome, ReserveOutcome::Reserved { took_over: false });
    assert_eq!(store.inner().reserves.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn in_flight_records_are_never_cached() {
    let store = CachedStore::new(Counting::default(), CacheConfig::default());
    let id = RecordId::new("s", "busy");
    let fingerprint = Fingerprint::from_bytes([2; 32]);
    store
        .reserve(request(&id, &fingerprint, epoch()))
        .await
        .unwrap();
    for _ in 0..3 {
        let outcome = store
            .reserve(request(&id, &fingerprint, epoch()))
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            ReserveOutcome::Existing(ExistingRecord {
                state: RecordState::InFlight { .. },
                ..
            })
        ));
    }
    assert_eq!(store.inner().reserves.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_cache_stays_within_its_record_bound() {
    let store = CachedStore::new(
        MemoryStore::default(),
        CacheConfig {
            shards: 1,
            max_records: 10,
            max_bytes: usize::MAX,
        },
    );
    let fingerprint = Fingerprint::from_bytes([3; 32]);
    for index in 0..50 {
        let id = RecordId::new("s", format!("k{index}"));
        let first = request(&id, &fingerprint, epoch());
        let token = first.token;
        store.reserve(first).await.unwrap();
        store
            .complete(&id, token, &sample_response())
            .await
            .unwrap();
        store
            .reserve(request(&id, &fingerprint, epoch()))
            .await
            .unwrap();
    }
    // Every record is still answered correctly, cached or not.
    for index in 0..50 {
        let id = RecordId::new("s", format!("k{index}"));
        let outcome = store
            .reserve(request(&id, &fingerprint, epoch()))
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Existing(_)));
    }
}

/// A purge drops the cached copies that expired, oldest first, and keeps the rest.
#[tokio::test]
async fn purging_drops_expired_copies_and_keeps_live_ones() {
    let store = CachedStore::new(
        MemoryStore::default(),
        CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        },
    );
    let fingerprint = Fingerprint::from_bytes([4; 32]);
    for second in 0..20_u64 {
        let now = epoch() + Duration::from_secs(second);
        let id = RecordId::new("s", format!("k{second}"));
        let first = request(&id, &fingerprint, now);
        let token = first.token;
        store.reserve(first).await.unwrap();
        store
            .complete(&id, token, &sample_response())
            .await
            .unwrap();
        // The replay reads the completed record back and caches it.
        store
            .reserve(request(&id, &fingerprint, now))
            .await
            .unwrap();
    }
    assert_eq!(store.cached_records(), 20);
    // Records made at seconds 0..=9 expire by 3,600 + 9.5 s; 10..=19 do not.
    let later = epoch() + Duration::from_millis(3_609_500);
    store.purge_expired(later).await.unwrap();
    assert_eq!(store.cached_records(), 10);
    for second in 10..20_u64 {
        let id = RecordId::new("s", format!("k{second}"));
        assert!(
            store.peek_completed(&id, later).is_some(),
            "k{second} is still cached"
        );
    }
    store
        .purge_expired(epoch() + Duration::from_secs(3_620))
        .await
        .unwrap();
    assert_eq!(store.cached_records(), 0);
}
