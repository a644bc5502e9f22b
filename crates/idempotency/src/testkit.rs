//! The store conformance suite: every [`Store`] backend must pass it.
//!
//! A backend runs the whole suite with one line in a test file, naming an
//! `async fn` that returns a fresh, empty store:
//!
//! ```ignore
//! async fn fresh_store() -> MyStore { MyStore::connect_to_a_new_database().await }
//! idempotency::store_conformance_tests!(fresh_store);
//! ```
//!
//! Each check becomes its own `#[tokio::test]`, so the test crate needs `tokio`
//! with the `macros` and `rt-multi-thread` features. Time is driven through the
//! `now` arguments of the store, so no check sleeps through a lease or a retention.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::fingerprint::Fingerprint;
use crate::store::{
    ExistingRecord, FencingToken, RecordId, RecordState, ReserveOutcome, ReserveRequest, Store,
    StoreError, StoredResponse,
};

/// A store together with something that must live as long as it: the temporary
/// directory of its database file, a test database dropped with its last clone.
///
/// Conformance factories return a store by value; `Guarded` lets them return one
/// whose resources are released only when the suite is done with it, without a
/// hand-written forwarding [`Store`] impl per backend. Every method, including
/// [`Store::peek_completed`], goes to the inner store.
#[derive(Debug, Clone)]
pub struct Guarded<S, G> {
    store: S,
    guard: G,
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive until the returned value is dropped.
    pub fn new(store: S, guard: G) -> Self {
        Self { store, guard }
    }

    /// What this store keeps alive.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The store and its guard, apart (drop the guard last).
    pub fn into_parts(self) -> (S, G) {
        (self.store, self.guard)
    }
}

impl<S, G> std::ops::Deref for Guarded<S, G> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.store
    }
}

#[async_trait::async_trait]
impl<S: Store, G: Send + Sync + 'static> Store for Guarded<S, G> {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        self.store.reserve(request).await
    }
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.store.complete(id, token, response).await
    }
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        self.store.release(id, token).await
    }
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        self.store.lookup(id, now).await
    }
    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        self.store.wait(id, timeout).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.store.purge_expired(now).await
    }
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        self.store.erase_mentioning(scope, needle).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }
    fn peek_completed(&self, id: &RecordId, now: SystemTime) -> Option<ExistingRecord> {
        self.store.peek_completed(id, now)
    }
}

const LEASE: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A fixed starting instant (2026-01-01T00:00:00Z) so that checks are repeatable.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn fingerprint(tag: u8) -> Fingerprint {
    Fingerprint::from_bytes([tag; 32])
}

/// A response with repeated headers, a binary header value and a non-UTF-8 body.
pub fn sample_response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("x-trace".into(), Bytes::from_static(b"first")),
            ("location".into(), Bytes::from_static(b"/v1/things/42")),
            ("x-trace".into(), Bytes::from_static(b"second")),
            ("x-opaque".into(), Bytes::from_static(b"\x80\xff tail")),
        ],
        body: Bytes::from_static(b"{\"id\":42}\x00\xff\xfe binary tail"),
    }
}

async fn reserve(
    store: &dyn Store,
    id: &RecordId,
    fp: Fingerprint,
    token: FencingToken,
    now: SystemTime,
) -> ReserveOutcome {
    store
        .reserve(ReserveRequest {
            id,
            fingerprint: &fp,
            token,
            now,
            lease: LEASE,
            retention: RETENTION,
        })
        .await
        .expect("reserve on a healthy store succeeds")
}

fn id(key: &str) -> RecordId {
    RecordId::new("principal-a", key)
}

/// A first reservation succeeds; a second one sees the in-flight record.
pub async fn first_reserve_owns_the_key_and_second_sees_it_in_flight(store: Arc<dyn Store>) {
    let key = id("k-in-flight");
    let now = epoch();
    let outcome = reserve(&*store, &key, fingerprint(1), FencingToken::generate(), now).await;
    assert_eq!(outcome, ReserveOutcome::Reserved { took_over: false });
    match reserve(&*store, &key, fingerprint(1), FencingToken::generate(), now).await {
        ReserveOutcome::Existing(ExistingRecord {
            fingerprint: fp,
            state: RecordState::InFlight { lease_expires_at },
            expires_at,
        }) => {
            assert_eq!(expires_at, now + RETENTION);
            assert_eq!(fp, fingerprint(1));
            assert_eq!(lease_expires_at, now + LEASE);
        }
        other => panic!("expected an in-flight record, got {other:?}"),
    }
}

/// A completed record is returned byte for byte, repeated headers in order.
pub async fn completed_response_is_returned_byte_identical(store: Arc<dyn Store>) {
    let key = id("k-complete");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(2), token, epoch()).await;
    store
        .complete(&key, token, &sample_response())
        .await
        .expect("the owner completes its record");
    let later = epoch() + Duration::from_secs(3600);
    let expected = ReserveOutcome::Existing(ExistingRecord {
        fingerprint: fingerprint(2),
        state: RecordState::Completed(sample_response()),
        expires_at: epoch() + RETENTION,
    });
    assert_eq!(
        reserve(
            &*store,
            &key,
            fingerprint(2),
            FencingToken::generate(),
            later
        )
        .await,
        expected
    );
    let looked_up = store.lookup(&key, later).await.expect("lookup succeeds");
    assert_eq!(
        looked_up,
        Some(ExistingRecord {
            fingerprint: fingerprint(2),
            state: RecordState::Completed(sample_response()),
            expires_at: epoch() + RETENTION,
        })
    );
}

/// A different fingerprint under the same key is reported, not reserved.
pub async fn different_fingerprint_is_reported_not_reserved(store: Arc<dyn Store>) {
    let key = id("k-mismatch");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(3), token, epoch()).await;
    match reserve(
        &*store,
        &key,
        fingerprint(4),
        FencingToken::generate(),
        epoch(),
    )
    .await
    {
        ReserveOutcome::Existing(existing) => assert_eq!(existing.fingerprint, fingerprint(3)),
        other => panic!("expected the existing record, got {other:?}"),
    }
    store
        .complete(&key, token, &sample_response())
        .await
        .expect("owner completes");
    match reserve(
        &*store,
        &key,
        fingerprint(4),
        FencingToken::generate(),
        epoch(),
    )
    .await
    {
        ReserveOutcome::Existing(existing) => assert_eq!(existing.fingerprint, fingerprint(3)),
        other => panic!("expected the existing record, got {other:?}"),
    }
}

/// Releasing frees the key for a new reservation.
pub async fn release_frees_the_key(store: Arc<dyn Store>) {
    let key = id("k-release");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(5), token, epoch()).await;
    store.release(&key, token).await.expect("owner releases");
    assert_eq!(store.lookup(&key, epoch()).await.expect("lookup"), None);
    // Even a different request may now use the key.
    assert_eq!(
        reserve(
            &*store,
            &key,
            fingerprint(6),
            FencingToken::generate(),
            epoch()
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
}

/// A token that does not own the record can neither complete nor release it.
pub async fn wrong_token_cannot_complete_or_release(store: Arc<dyn Store>) {
    let key = id("k-wrong-token");
    let owner = FencingToken::generate();
    reserve(&*store, &key, fingerprint(7), owner, epoch()).await;
    let stranger = FencingToken::generate();
    assert!(matches!(
        store.complete(&key, stranger, &sample_response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&key, stranger).await,
        Err(StoreError::NotOwner)
    ));
    // The record is untouched: still in flight, still the owner's.
    assert!(matches!(
        store.lookup(&key, epoch()).await.expect("lookup"),
        Some(ExistingRecord {
            state: RecordState::InFlight { .. },
            ..
        })
    ));
    store
        .complete(&key, owner, &sample_response())
        .await
        .expect("owner completes");
    // A completed record cannot be released or completed again, even by its owner.
    assert!(matches!(
        store.release(&key, owner).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.complete(&key, owner, &sample_response()).await,
        Err(StoreError::NotOwner)
    ));
}

/// Completing or releasing a key nobody reserved fails with `NotOwner`.
pub async fn unknown_key_cannot_be_completed_or_released(store: Arc<dyn Store>) {
    let key = id("k-unknown");
    let token = FencingToken::generate();
    assert!(matches!(
        store.complete(&key, token, &sample_response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&key, token).await,
        Err(StoreError::NotOwner)
    ));
}

/// After the lease ends, a worker with the same request takes the key over; the
/// dead worker's token no longer completes or releases anything.
pub async fn expired_lease_is_taken_over_and_the_stale_owner_is_fenced(store: Arc<dyn Store>) {
    let key = id("k-takeover");
    let stale = FencingToken::generate();
    reserve(&*store, &key, fingerprint(8), stale, epoch()).await;
    // Still inside the lease: no takeover.
    let early = epoch() + LEASE - Duration::from_secs(1);
    assert!(matches!(
        reserve(
            &*store,
            &key,
            fingerprint(8),
            FencingToken::generate(),
            early
        )
        .await,
        ReserveOutcome::Existing(_)
    ));
    let after_lease = epoch() + LEASE + Duration::from_secs(1);
    let fresh = FencingToken::generate();
    assert_eq!(
        reserve(&*store, &key, fingerprint(8), fresh, after_lease).await,
        ReserveOutcome::Reserved { took_over: true }
    );
    assert!(matches!(
        store.complete(&key, stale, &sample_response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&key, stale).await,
        Err(StoreError::NotOwner)
    ));
    store
        .complete(&key, fresh, &sample_response())
        .await
        .expect("the new owner completes");
    assert!(matches!(
        store.lookup(&key, after_lease).await.expect("lookup"),
        Some(ExistingRecord {
            state: RecordState::Completed(_),
            ..
        })
    ));
}

/// A new lease after a takeover protects the new owner in turn.
pub async fn a_taken_over_record_gets_a_fresh_lease(store: Arc<dyn Store>) {
    let key = id("k-fresh-lease");
    reserve(
        &*store,
        &key,
        fingerprint(9),
        FencingToken::generate(),
        epoch(),
    )
    .await;
    let takeover_at = epoch() + LEASE + Duration::from_secs(1);
    assert_eq!(
        reserve(
            &*store,
            &key,
            fingerprint(9),
            FencingToken::generate(),
            takeover_at
        )
        .await,
        ReserveOutcome::Reserved { took_over: true }
    );
    let shortly_after = takeover_at + Duration::from_secs(5);
    assert!(matches!(
        reserve(
            &*store,
            &key,
            fingerprint(9),
            FencingToken::generate(),
            shortly_after
        )
        .await,
        ReserveOutcome::Existing(ExistingRecord {
            state: RecordState::InFlight { .. },
            ..
        })
    ));
}

/// An expired lease is not taken over by a *different* request: that is a mismatch.
pub async fn expired_lease_is_not_taken_over_by_a_different_request(store: Arc<dyn Store>) {
    let key = id("k-takeover-mismatch");
    reserve(
        &*store,
        &key,
        fingerprint(10),
        FencingToken::generate(),
        epoch(),
    )
    .await;
    let after_lease = epoch() + LEASE + Duration::from_secs(1);
    match reserve(
        &*store,
        &key,
        fingerprint(11),
        FencingToken::generate(),
        after_lease,
    )
    .await
    {
        ReserveOutcome::Existing(existing) => assert_eq!(existing.fingerprint, fingerprint(10)),
        other => panic!("a different request must not take over, got {other:?}"),
    }
}

/// After the retention, the key is free again, even for a different request.
pub async fn expired_record_is_replaced_by_a_new_reservation(store: Arc<dyn Store>) {
    let key = id("k-expired");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(12), token, epoch()).await;
    store
        .complete(&key, token, &sample_response())
        .await
        .expect("owner completes");
    let just_before = epoch() + RETENTION - Duration::from_secs(1);
    assert!(store
        .lookup(&key, just_before)
        .await
        .expect("lookup")
        .is_some());
    let expired = epoch() + RETENTION + Duration::from_secs(1);
    assert_eq!(store.lookup(&key, expired).await.expect("lookup"), None);
    assert_eq!(
        reserve(
            &*store,
            &key,
            fingerprint(13),
            FencingToken::generate(),
            expired
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
}

/// Purging removes exactly the expired records.
pub async fn purge_removes_only_expired_records(store: Arc<dyn Store>) {
    for (index, offset) in [0u64, 10, 20].into_iter().enumerate() {
        let key = id(&format!("k-purge-old-{index}"));
        let token = FencingToken::generate();
        let at = epoch() + Duration::from_secs(offset);
        reserve(&*store, &key, fingerprint(14), token, at).await;
        if index != 1 {
            store
                .complete(&key, token, &sample_response())
                .await
                .expect("complete");
        }
    }
    let young = id("k-purge-young");
    let young_at = epoch() + Duration::from_secs(7200);
    reserve(
        &*store,
        &young,
        fingerprint(14),
        FencingToken::generate(),
        young_at,
    )
    .await;

    let purge_at = epoch() + RETENTION + Duration::from_secs(60);
    assert_eq!(store.purge_expired(purge_at).await.expect("purge"), 3);
    assert!(store
        .lookup(&young, purge_at)
        .await
        .expect("lookup")
        .is_some());
    assert_eq!(
        store.purge_expired(purge_at).await.expect("second purge"),
        0
    );
}

/// The same key in two scopes is two independent records.
pub async fn scopes_are_independent(store: Arc<dyn Store>) {
    let in_a = RecordId::new("principal-a", "shared-key");
    let in_b = RecordId::new("principal-b", "shared-key");
    let token_a = FencingToken::generate();
    reserve(&*store, &in_a, fingerprint(15), token_a, epoch()).await;
    store
        .complete(&in_a, token_a, &sample_response())
        .await
        .expect("complete");
    assert_eq!(
        reserve(
            &*store,
            &in_b,
            fingerprint(16),
            FencingToken::generate(),
            epoch()
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
    assert!(matches!(
        store.lookup(&in_a, epoch()).await.expect("lookup"),
        Some(ExistingRecord {
            state: RecordState::Completed(_),
            ..
        })
    ));
}

/// 64 concurrent reservations of one key: exactly one owner.
pub async fn concurrent_reservations_have_exactly_one_winner(store: Arc<dyn Store>) {
    let key = id("k-race");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            reserve(
                &*store,
                &key,
                fingerprint(17),
                FencingToken::generate(),
                epoch(),
            )
            .await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if let ReserveOutcome::Reserved { .. } = task.await.expect("task does not panic") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent reservation may win");
}

/// 32 concurrent takeovers of one dead worker's key: exactly one new owner.
pub async fn concurrent_takeovers_have_exactly_one_winner(store: Arc<dyn Store>) {
    let key = id("k-takeover-race");
    reserve(
        &*store,
        &key,
        fingerprint(18),
        FencingToken::generate(),
        epoch(),
    )
    .await;
    let after_lease = epoch() + LEASE + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            reserve(
                &*store,
                &key,
                fingerprint(18),
                FencingToken::generate(),
                after_lease,
            )
            .await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if let ReserveOutcome::Reserved { took_over } = task.await.expect("task does not panic") {
            assert!(took_over);
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent takeover may win");
}

/// 64 concurrent reservations and lookups of a key completed earlier (and flushed, so
/// a durable store answers from its file): every one gets the completed record.
pub async fn a_completed_key_replays_to_every_concurrent_caller(store: Arc<dyn Store>) {
    let key = id("k-completed-storm");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(21), token, epoch()).await;
    store
        .complete(&key, token, &sample_response())
        .await
        .expect("complete");
    store.flush().await.expect("flush");
    let later = epoch() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for caller in 0..64 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            if caller % 2 == 0 {
                match reserve(
                    &*store,
                    &key,
                    fingerprint(21),
                    FencingToken::generate(),
                    later,
                )
                .await
                {
                    ReserveOutcome::Existing(existing) => Some(existing),
                    ReserveOutcome::Reserved { .. } => None,
                }
            } else {
                store.lookup(&key, later).await.expect("lookup succeeds")
            }
        }));
    }
    let expected = ExistingRecord {
        fingerprint: fingerprint(21),
        state: RecordState::Completed(sample_response()),
        expires_at: epoch() + RETENTION,
    };
    for task in tasks {
        let answer = task.await.expect("task does not panic");
        assert_eq!(
            answer.as_ref(),
            Some(&expected),
            "a completed key must answer its record to every caller"
        );
    }
}

/// `wait` returns once the record completes, so a waiter can replay it.
pub async fn wait_returns_when_the_record_completes(store: Arc<dyn Store>) {
    let key = id("k-wait");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(19), token, epoch()).await;
    let completer = {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.complete(&key, token, &sample_response()).await
        })
    };
    // Bounded: a waiter gives up after a long timeout rather than hanging the suite.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        store
            .wait(&key, Duration::from_secs(10))
            .await
            .expect("wait succeeds");
        if let Some(ExistingRecord {
            state: RecordState::Completed(response),
            ..
        }) = store.lookup(&key, epoch()).await.expect("lookup")
        {
            assert_eq!(response, sample_response());
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "wait never saw the completion"
        );
    }
    completer
        .await
        .expect("completer task")
        .expect("complete succeeds");
}

/// A peek (no I/O) may know a completed record or nothing, never anything else.
pub async fn peek_reports_only_live_completed_records(store: Arc<dyn Store>) {
    let key = id("k-peek");
    let token = FencingToken::generate();
    reserve(&*store, &key, fingerprint(20), token, epoch()).await;
    assert_eq!(
        store.peek_completed(&key, epoch()),
        None,
        "in flight is never peeked"
    );
    store
        .complete(&key, token, &sample_response())
        .await
        .expect("complete");
    if let Some(peeked) = store.peek_completed(&key, epoch()) {
        assert_eq!(
            peeked,
            ExistingRecord {
                fingerprint: fingerprint(20),
                state: RecordState::Completed(sample_response()),
                expires_at: epoch() + RETENTION,
            }
        );
    }
    let expired = epoch() + RETENTION + Duration::from_secs(1);
    assert_eq!(
        store.peek_completed(&key, expired),
        None,
        "expired is never peeked"
    );
}

/// `response` with `needle` in its body, among non-UTF-8 bytes.
fn with_needle_in_body(needle: &[u8]) -> StoredResponse {
    let mut body = b"{\"agent\":\"".to_vec();
    body.extend_from_slice(needle);
    body.extend_from_slice(b"\"}\x00\xff tail");
    StoredResponse {
        body: Bytes::from(body),
        ..sample_response()
    }
}

/// `response` with `needle` in a header value only.
fn with_needle_in_header(needle: &[u8]) -> StoredResponse {
    let mut response = sample_response();
    let mut location = b"/v1/identities/".to_vec();
    location.extend_from_slice(needle);
    response
        .headers
        .push(("location".into(), Bytes::from(location)));
    response
}

/// Erasing what mentions a needle removes exactly the records of the scope whose
/// response (body, header) or key holds it, in flight or completed: they read as
/// absent and their keys are free again; the rest of the scope and the same needle
/// in another scope stay, and an empty needle erases nothing.
pub async fn erase_mentioning_removes_exactly_the_scopes_records_that_mention_it(
    store: Arc<dyn Store>,
) {
    const NEEDLE: &[u8] = b"agent-7f3a9c-erase";
    let now = epoch();
    let complete = |id: RecordId, response: StoredResponse| {
        let store = store.clone();
        async move {
            let token = FencingToken::generate();
            reserve(&*store, &id, fingerprint(22), token, now).await;
            store
                .complete(&id, token, &response)
                .await
                .expect("the owner completes");
            id
        }
    };
    let in_body = complete(id("k-erase-body"), with_needle_in_body(NEEDLE)).await;
    let in_header = complete(id("k-erase-header"), with_needle_in_header(NEEDLE)).await;
    let without = complete(id("k-erase-without"), sample_response()).await;
    let other_scope = complete(
        RecordId::new("principal-b", "k-erase-body"),
        with_needle_in_body(NEEDLE),
    )
    .await;
    // An in-flight record has no response yet: its key is what mentions the needle.
    let in_flight = id("k-erase-in-flight-agent-7f3a9c-erase");
    let in_flight_owner = FencingToken::generate();
    reserve(&*store, &in_flight, fingerprint(23), in_flight_owner, now).await;
    let in_flight_without = id("k-erase-in-flight-without");
    reserve(
        &*store,
        &in_flight_without,
        fingerprint(23),
        FencingToken::generate(),
        now,
    )
    .await;

    assert_eq!(
        store
            .erase_mentioning("principal-a", b"")
            .await
            .expect("erase with an empty needle"),
        0,
        "an empty needle matches nothing"
    );
    // Stored side by side, the two headers could look like one string to a backend
    // that searches its encoded header list: a match never spans two headers (the
    // needle is the first value, the second name's length prefix and that name).
    let spanning_response = StoredResponse {
        headers: vec![
            ("x-left".into(), Bytes::from_static(b"agent-7f3a")),
            ("x-right".into(), Bytes::from_static(b"9c-erase")),
        ],
        ..sample_response()
    };
    let spanning = complete(id("k-erase-spanning"), spanning_response.clone()).await;
    assert_eq!(
        store
            .erase_mentioning("principal-a", b"agent-7f3a\x00\x07x-right")
            .await
            .expect("erase with a needle across two headers"),
        0,
        "a needle spanning two headers matches nothing"
    );
    assert_eq!(
        store
            .erase_mentioning("principal-a", NEEDLE)
            .await
            .expect("erase"),
        3,
        "the body, the header and the in-flight key of scope A mention the needle"
    );

    for erased in [&in_body, &in_header, &in_flight] {
        assert_eq!(
            store.lookup(erased, now).await.expect("lookup"),
            None,
            "{erased:?} was erased"
        );
    }
    // The erased reservation's worker no longer owns anything.
    assert!(matches!(
        store
            .complete(&in_flight, in_flight_owner, &with_needle_in_body(NEEDLE))
            .await,
        Err(StoreError::NotOwner)
    ));
    assert_eq!(
        store
            .erase_mentioning("principal-a", NEEDLE)
            .await
            .expect("second erase"),
        0,
        "nothing is left to erase"
    );
    store.flush().await.expect("flush");
    for erased in [&in_body, &in_header, &in_flight] {
        assert_eq!(
            reserve(
                &*store,
                erased,
                fingerprint(24),
                FencingToken::generate(),
                now
            )
            .await,
            ReserveOutcome::Reserved { took_over: false },
            "the key of {erased:?} is free again"
        );
    }

    let completed = |response: StoredResponse| {
        Some(ExistingRecord {
            fingerprint: fingerprint(22),
            state: RecordState::Completed(response),
            expires_at: now + RETENTION,
        })
    };
    assert_eq!(
        store.lookup(&without, now).await.expect("lookup"),
        completed(sample_response())
    );
    assert_eq!(
        store.lookup(&other_scope, now).await.expect("lookup"),
        completed(with_needle_in_body(NEEDLE)),
        "the same needle in another scope stays"
    );
    assert_eq!(
        store.lookup(&spanning, now).await.expect("lookup"),
        completed(spanning_response),
        "the needle's halves in two headers are no mention"
    );
    assert!(matches!(
        store.lookup(&in_flight_without, now).await.expect("lookup"),
        Some(ExistingRecord {
            state: RecordState::InFlight { .. },
            ..
        })
    ));
}

/// Generates one `#[tokio::test]` per conformance check for a store backend.
///
/// `$factory` is the path of an `async fn() -> S` where `S: Store` returns a fresh,
/// empty store. With `optional: $factory`, the factory returns `Option<S>` and a
/// check returns early on `None` (a backend that is unreachable outside CI; the
/// factory is expected to say so itself).
#[macro_export]
macro_rules! store_conformance_tests {
    (optional: $factory:path) => {
        $crate::store_conformance_tests!(@list $factory, optional);
    };
    ($factory:path) => {
        $crate::store_conformance_tests!(@list $factory, required);
    };
    (@list $factory:path, $mode:ident) => {
        $crate::store_conformance_tests!(@checks $factory, $mode;
            first_reserve_owns_the_key_and_second_sees_it_in_flight,
            completed_response_is_returned_byte_identical,
            different_fingerprint_is_reported_not_reserved,
            release_frees_the_key,
            wrong_token_cannot_complete_or_release,
            unknown_key_cannot_be_completed_or_released,
            expired_lease_is_taken_over_and_the_stale_owner_is_fenced,
            a_taken_over_record_gets_a_fresh_lease,
            expired_lease_is_not_taken_over_by_a_different_request,
            expired_record_is_replaced_by_a_new_reservation,
            purge_removes_only_expired_records,
            scopes_are_independent,
            concurrent_reservations_have_exactly_one_winner,
            concurrent_takeovers_have_exactly_one_winner,
            a_completed_key_replays_to_every_concurrent_caller,
            wait_returns_when_the_record_completes,
            peek_reports_only_live_completed_records,
            erase_mentioning_removes_exactly_the_scopes_records_that_mention_it,
        );
    };
    (@checks $factory:path, $mode:ident; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(store) = $crate::store_conformance_tests!(@make $factory, $mode) else {
                    return;
                };
                let store: ::std::sync::Arc<dyn $crate::Store> = ::std::sync::Arc::new(store);
                $crate::testkit::$check(store).await;
            }
        )*
    };
    (@make $factory:path, required) => {
        Some($factory().await)
    };
    (@make $factory:path, optional) => {
        $factory().await
    };
}
