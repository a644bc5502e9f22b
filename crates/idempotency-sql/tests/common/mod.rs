//! Behaviour every SQL store must show, written once and run against each backend.
//!
//! Time is a fixed instant moved by hand: no test sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use idempotency::{
    FencingToken, Fingerprint, RecordId, RecordState, ReserveOutcome, ReserveRequest, Store,
    StoreError, StoredResponse,
};

pub const LEASE: Duration = Duration::from_secs(60);
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A fixed "now" well after the epoch, so that millisecond arithmetic is plain.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn fingerprint(byte: u8) -> Fingerprint {
    Fingerprint::from_bytes([byte; 32])
}

pub async fn reserve<S: Store>(
    store: &S,
    id: &RecordId,
    fingerprint: &Fingerprint,
    token: FencingToken,
    now: SystemTime,
) -> ReserveOutcome {
    store
        .reserve(ReserveRequest {
            id,
            fingerprint,
            token,
            now,
            lease: LEASE,
            retention: RETENTION,
        })
        .await
        .expect("the store is reachable")
}

pub fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("set-thing".into(), Bytes::from_static(b"one")),
            ("x-binary".into(), Bytes::from_static(b"\x80\xff raw")),
            ("set-thing".into(), Bytes::from_static(b"two")),
            ("x-empty".into(), Bytes::new()),
        ],
        body: Bytes::from_static(b"{\"id\":\"42\"}\n\x00\x01 bytes"),
    }
}

pub async fn a_fresh_key_is_reserved_once_and_then_seen_in_flight<S: Store>(store: S) {
    let id = RecordId::new("scope-a", "key-1");
    let first = FencingToken::generate();
    assert_eq!(
        reserve(&store, &id, &fingerprint(1), first, t0()).await,
        ReserveOutcome::Reserved { took_over: false }
    );
    for other_fingerprint in [fingerprint(1), fingerprint(2)] {
        match reserve(
            &store,
            &id,
            &other_fingerprint,
            FencingToken::generate(),
            t0(),
        )
        .await
        {
            ReserveOutcome::Existing(existing) => {
                assert_eq!(existing.fingerprint, fingerprint(1));
                assert_eq!(
                    existing.state,
                    RecordState::InFlight {
                        lease_expires_at: t0() + LEASE
                    }
                );
            }
            other => panic!("expected the in-flight record, got {other:?}"),
        }
    }
    // The same key under another scope is another record.
    let elsewhere = RecordId::new("scope-b", "key-1");
    assert_eq!(
        reserve(
            &store,
            &elsewhere,
            &fingerprint(1),
            FencingToken::generate(),
            t0()
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
}

pub async fn a_completed_response_is_replayed_byte_for_byte<S: Store>(store: S) {
    let id = RecordId::new("scope-a", "key-1");
    let token = FencingToken::generate();
    reserve(&store, &id, &fingerprint(1), token, t0()).await;
    store.complete(&id, token, &response()).await.unwrap();

    let found = store
        .lookup(&id, t0())
        .await
        .unwrap()
        .expect("a live record");
    assert_eq!(found.fingerprint, fingerprint(1));
    assert_eq!(found.state, RecordState::Completed(response()));

    // Any later reservation, same fingerprint or not, sees the completed record.
    for other in [fingerprint(1), fingerprint(9)] {
        let later = t0() + Duration::from_secs(3600);
        match reserve(&store, &id, &other, FencingToken::generate(), later).await {
            ReserveOutcome::Existing(existing) => {
                assert_eq!(existing.fingerprint, fingerprint(1));
                assert_eq!(existing.state, RecordState::Completed(response()));
            }
            outcome => panic!("expected the completed record, got {outcome:?}"),
        }
    }
    // Completing twice is refused: the record is no longer in flight.
    assert!(matches!(
        store.complete(&id, token, &response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&id, token).await,
        Err(StoreError::NotOwner)
    ));
}

pub async fn stale_tokens_cannot_complete_or_release<S: Store>(store: S) {
    let id = RecordId::new("scope-a", "key-1");
    let owner = FencingToken::generate();
    let stranger = FencingToken::generate();
    reserve(&store, &id, &fingerprint(1), owner, t0()).await;

    assert!(matches!(
        store.complete(&id, stranger, &response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&id, stranger).await,
        Err(StoreError::NotOwner)
    ));
    // The owner's record is untouched by the refused calls.
    assert!(matches!(
        store.lookup(&id, t0()).await.unwrap().unwrap().state,
        RecordState::InFlight { .. }
    ));

    store.release(&id, owner).await.unwrap();
    assert_eq!(store.lookup(&id, t0()).await.unwrap(), None);
    assert!(matches!(
        store.release(&id, owner).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.complete(&id, owner, &response()).await,
        Err(StoreError::NotOwner)
    ));

    // A released key can be reserved again, by a request with any fingerprint.
    let next = FencingToken::generate();
    assert_eq!(
        reserve(&store, &id, &fingerprint(2), next, t0()).await,
        ReserveOutcome::Reserved { took_over: false }
    );
    // The first owner's token means nothing to the new reservation.
    assert!(matches!(
        store.complete(&id, owner, &response()).await,
        Err(StoreError::NotOwner)
    ));
    store.complete(&id, next, &response()).await.unwrap();
    // Operations on a key that never existed are refused too.
    let missing = RecordId::new("scope-a", "never-reserved");
    assert!(matches!(
        store.release(&missing, next).await,
        Err(StoreError::NotOwner)
    ));
}

pub async fn an_expired_lease_is_taken_over_and_fences_the_old_worker<S: Store>(store: S) {
    let id = RecordId::new("scope-a", "key-1");
    let dead_worker = FencingToken::generate();
    reserve(&store, &id, &fingerprint(1), dead_worker, t0()).await;

    // One millisecond before the lease ends, the record is still held.
    let almost = t0() + LEASE - Duration::from_millis(1);
    assert!(matches!(
        reserve(
            &store,
            &id,
            &fingerprint(1),
            FencingToken::generate(),
            almost
        )
        .await,
        ReserveOutcome::Existing(_)
    ));
    // After the lease, a request with another fingerprint still may not take it over.
    let after = t0() + LEASE;
    match reserve(
        &store,
        &id,
        &fingerprint(2),
        FencingToken::generate(),
        after,
    )
    .await
    {
        ReserveOutcome::Existing(existing) => {
            assert_eq!(existing.fingerprint, fingerprint(1));
            assert!(matches!(existing.state, RecordState::InFlight { .. }));
        }
        other => panic!("a different request must not take over, got {other:?}"),
    }
    // The same request does, with a new token and a new lease.
    let rescuer = FencingToken::generate();
    assert_eq!(
        reserve(&store, &id, &fingerprint(1), rescuer, after).await,
        ReserveOutcome::Reserved { took_over: true }
    );
    assert_eq!(
        store.lookup(&id, after).await.unwrap().unwrap().state,
        RecordState::InFlight {
            lease_expires_at: after + LEASE
        }
    );
    // The dead worker wakes up: it can neither store its response nor free the key.
    assert!(matches!(
        store.complete(&id, dead_worker, &response()).await,
        Err(StoreError::NotOwner)
    ));
    assert!(matches!(
        store.release(&id, dead_worker).await,
        Err(StoreError::NotOwner)
    ));

    // The rescuer dies too: the next takeover is reported as one as well.
    let second_rescuer = FencingToken::generate();
    let later = after + LEASE;
    assert_eq!(
        reserve(&store, &id, &fingerprint(1), second_rescuer, later).await,
        ReserveOutcome::Reserved { took_over: true }
    );
    assert!(matches!(
        store.complete(&id, rescuer, &response()).await,
        Err(StoreError::NotOwner)
    ));
    store
        .complete(&id, second_rescuer, &response())
        .await
        .unwrap();
    assert_eq!(
        store.lookup(&id, later).await.unwrap().unwrap().state,
        RecordState::Completed(response())
    );
}

pub async fn expired_records_are_invisible_and_replaced_without_takeover<S: Store>(store: S) {
    let completed = RecordId::new("scope-a", "completed");
    let token = FencingToken::generate();
    reserve(&store, &completed, &fingerprint(1), token, t0()).await;
    store
        .complete(&completed, token, &response())
        .await
        .unwrap();

    let last_moment = t0() + RETENTION - Duration::from_millis(1);
    let expiry = t0() + RETENTION;
    assert!(store
        .lookup(&completed, last_moment)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.lookup(&completed, expiry).await.unwrap(), None);
    // An expired record is simply replaced, by any request: it is not a takeover.
    let fresh = FencingToken::generate();
    assert_eq!(
        reserve(&store, &completed, &fingerprint(2), fresh, expiry).await,
        ReserveOutcome::Reserved { took_over: false }
    );
    let record = store.lookup(&completed, expiry).await.unwrap().unwrap();
    assert_eq!(record.fingerprint, fingerprint(2));
    assert_eq!(
        record.state,
        RecordState::InFlight {
            lease_expires_at: expiry + LEASE
        }
    );
    // The replaced record's owner lost it.
    assert!(matches!(
        store.complete(&completed, token, &response()).await,
        Err(StoreError::NotOwner)
    ));

    // An abandoned in-flight record past its retention is replaced, not taken over.
    let abandoned = RecordId::new("scope-a", "abandoned");
    reserve(
        &store,
        &abandoned,
        &fingerprint(1),
        FencingToken::generate(),
        t0(),
    )
    .await;
    assert_eq!(
        reserve(
            &store,
            &abandoned,
            &fingerprint(1),
            FencingToken::generate(),
            expiry
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
}

pub async fn purge_removes_exactly_the_expired_records<S: Store>(store: S) {
    // Ten records reserved one minute apart; each expires RETENTION after its reservation.
    for minute in 0..10u64 {
        let id = RecordId::new("scope-a", format!("key-{minute}"));
        let token = FencingToken::generate();
        let at = t0() + Duration::from_secs(60 * minute);
        reserve(&store, &id, &fingerprint(1), token, at).await;
        if minute % 2 == 0 {
            store.complete(&id, token, &response()).await.unwrap();
        }
    }
    assert_eq!(store.purge_expired(t0()).await.unwrap(), 0);
    // At RETENTION + 3 minutes, the records of minutes 0..=3 have expired.
    let sweep = t0() + RETENTION + Duration::from_secs(180);
    assert_eq!(store.purge_expired(sweep).await.unwrap(), 4);
    assert_eq!(store.purge_expired(sweep).await.unwrap(), 0);
    for minute in 0..10u64 {
        let id = RecordId::new("scope-a", format!("key-{minute}"));
        // Looked up at t0, when all of them would still be live: only purged ones are gone.
        let present = store.lookup(&id, t0()).await.unwrap().is_some();
        assert_eq!(present, minute > 3, "record of minute {minute}");
    }
    let everything = t0() + 2 * RETENTION;
    assert_eq!(store.purge_expired(everything).await.unwrap(), 6);
}

/// 64 tasks race to reserve one key: exactly one wins, nobody sees an error.
pub async fn concurrent_reservations_of_one_key_have_exactly_one_winner<S>(store: S)
where
    S: Store + Clone,
{
    let id = RecordId::new("scope-a", "contended");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .reserve(ReserveRequest {
                    id: &id,
                    fingerprint: &fingerprint(1),
                    token: FencingToken::generate(),
                    now: t0(),
                    lease: LEASE,
                    retention: RETENTION,
                })
                .await
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.expect("the task does not panic") {
            Ok(ReserveOutcome::Reserved { took_over }) => {
                assert!(!took_over);
                reserved += 1;
            }
            Ok(ReserveOutcome::Existing(existing)) => {
                assert!(matches!(existing.state, RecordState::InFlight { .. }));
            }
            Ok(other) => panic!("an outcome this test does not know: {other:?}"),
            Err(error) => panic!("a concurrent reservation failed: {error}"),
        }
    }
    assert_eq!(reserved, 1);
}

/// Workers repeatedly reserve, hold and release one key, racing each other: at no
/// moment do two of them hold it, and no call fails. This also drives `reserve`'s
/// retry path (the conflicting record released before it could be read).
pub async fn a_key_is_never_held_by_two_workers_at_once<S>(store: S)
where
    S: Store + Clone,
{
    let id = RecordId::new("scope-a", "mutex");
    let holders = Arc::new(AtomicUsize::new(0));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, id) = (store.clone(), id.clone());
        let (holders, acquisitions) = (holders.clone(), acquisitions.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let token = FencingToken::generate();
                let outcome = reserve(&store, &id, &fingerprint(1), token, t0()).await;
                if let ReserveOutcome::Reserved { took_over } = outcome {
                    assert!(!took_over, "nobody's lease expires in this test");
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    acquisitions.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    store
                        .release(&id, token)
                        .await
                        .expect("the holder may release");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("no worker panics");
    }
    assert!(acquisitions.load(Ordering::SeqCst) > 1);
}

/// Many keys reserved and completed at once: every one succeeds.
pub async fn concurrent_work_on_many_keys_all_succeeds<S>(store: S)
where
    S: Store + Clone,
{
    let mut tasks = Vec::new();
    for task in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                let id = RecordId::new("scope-a", format!("key-{task}-{round}"));
                let token = FencingToken::generate();
                assert_eq!(
                    reserve(&store, &id, &fingerprint(1), token, t0()).await,
                    ReserveOutcome::Reserved { took_over: false }
                );
                store
                    .complete(&id, token, &response())
                    .await
                    .expect("complete");
                assert!(store.lookup(&id, t0()).await.expect("lookup").is_some());
            }
        }));
    }
    for task in tasks {
        task.await.expect("no worker panics");
    }
}
