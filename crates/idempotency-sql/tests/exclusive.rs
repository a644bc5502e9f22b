//! `ExclusiveSqliteStore`: the shared SQL scenarios, and what only a store that owns
//! its file has: the lock, records written behind and surviving a reopen, what a
//! crash before the write loses, the key index, back-pressure, imports.

#![cfg(feature = "sqlite")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use idempotency::{FencingToken, RecordId, RecordState, ReserveOutcome, Store, StoreError};
use idempotency_sql::{
    ExclusiveConfig, ExclusiveOpenError, ExclusiveSqliteStore, ImportedRecord, SqliteStore,
};
use tempfile::TempDir;

async fn open(path: &Path) -> ExclusiveSqliteStore {
    ExclusiveSqliteStore::open(path)
        .await
        .expect("the database file opens")
}

async fn fresh_store() -> (ExclusiveSqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(&dir.path().join("idempotency.db")).await;
    (store, dir)
}

macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod scenarios {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    let (store, _dir) = fresh_store().await;
                    common::$scenario(store).await;
                }
            )*
        }
    };
}

scenarios!(
    a_fresh_key_is_reserved_once_and_then_seen_in_flight,
    a_completed_response_is_replayed_byte_for_byte,
    stale_tokens_cannot_complete_or_release,
    an_expired_lease_is_taken_over_and_fences_the_old_worker,
    expired_records_are_invisible_and_replaced_without_takeover,
    purge_removes_exactly_the_expired_records,
    concurrent_reservations_of_one_key_have_exactly_one_winner,
    a_key_is_never_held_by_two_workers_at_once,
    concurrent_work_on_many_keys_all_succeeds,
);

/// Reserves and completes `key` at `t0()` with fingerprint 1 and [`response`].
async fn complete_key(store: &ExclusiveSqliteStore, key: &str) {
    let id = RecordId::new("scope", key);
    let token = FencingToken::generate();
    assert_eq!(
        reserve(store, &id, &fingerprint(1), token, t0()).await,
        ReserveOutcome::Reserved { took_over: false }
    );
    store
        .complete(&id, token, &response())
        .await
        .expect("the owner completes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_opener_is_refused_until_the_first_closes() {
    let (store, dir) = fresh_store().await;
    let path = dir.path().join("idempotency.db");
    match ExclusiveSqliteStore::open(&path).await {
        Err(ExclusiveOpenError::InUse(named)) => assert_eq!(named, path),
        other => panic!("a second exclusive store opened the file: {other:?}"),
    }
    // A shared store on the same file cannot use it either.
    let shared = SqliteStore::open(&path).await;
    let refused = match shared {
        Err(_) => true,
        Ok(shared) => shared.migrate().await.is_err(),
    };
    assert!(refused, "a shared store wrote a file held exclusively");
    store.close().await;
    let again = open(&path).await;
    again.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_records_are_written_behind_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    {
        let store = open(&path).await;
        for n in 0..100 {
            complete_key(&store, &format!("key-{n}")).await;
        }
        store.flush().await.expect("the queued rows are written");
        assert_eq!(store.unwritten(), 0);
        assert_eq!(store.stored_records(), 100);
        store.close().await;
    }
    let store = open(&path).await;
    assert_eq!(
        store.stored_records(),
        100,
        "the index is rebuilt from the file"
    );
    for n in [0, 42, 99] {
        let id = RecordId::new("scope", format!("key-{n}"));
        // Read from the file: a retry after the restart replays, byte for byte.
        match reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await {
            ReserveOutcome::Existing(existing) => {
                assert_eq!(existing.state, RecordState::Completed(response()));
                assert_eq!(existing.fingerprint, fingerprint(1));
            }
            other => panic!("key-{n} after a reopen: {other:?}"),
        }
        // And a different request under the key is still told apart.
        match reserve(&store, &id, &fingerprint(2), FencingToken::generate(), t0()).await {
            ReserveOutcome::Existing(existing) => assert_eq!(existing.fingerprint, fingerprint(1)),
            other => panic!("key-{n} with another fingerprint: {other:?}"),
        }
        assert!(store.lookup(&id, t0()).await.unwrap().is_some());
    }
    // A key the file does not hold is reserved as new.
    let fresh = RecordId::new("scope", "never-used");
    assert_eq!(
        reserve(
            &store,
            &fresh,
            &fingerprint(1),
            FencingToken::generate(),
            t0()
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
    store.close().await;
}

/// A process that dies right after answering, before the writer's next turn, loses
/// the completion (and its reservation): the key executes again after the restart.
/// This is the window a host's recovery point covers. Modelled by a runtime that is
/// torn down before the write-behind task ever runs.
#[test]
fn a_completion_not_yet_written_is_lost_with_the_process_and_the_key_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(&path).await;
        complete_key(&store, "written").await;
        store.flush().await.unwrap();
        // Not awaited past: the writer task gets no turn before the "crash".
        complete_key(&store, "lost").await;
        let in_flight = RecordId::new("scope", "in-flight");
        reserve(
            &store,
            &in_flight,
            &fingerprint(1),
            FencingToken::generate(),
            t0(),
        )
        .await;
        assert_eq!(store.unwritten(), 1);
        // No close, no flush: dropping writes nothing, and the writer task is dropped
        // with the runtime before its next turn, as a killed process's would be. (The
        // SQLite connection closes, which is what the kernel does for a dead process.)
        drop(store);
    });
    drop(runtime);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = open(&path).await;
        let written = RecordId::new("scope", "written");
        assert!(matches!(
            reserve(
                &store,
                &written,
                &fingerprint(1),
                FencingToken::generate(),
                t0()
            )
            .await,
            ReserveOutcome::Existing(_)
        ));
        for key in ["lost", "in-flight"] {
            let id = RecordId::new("scope", key);
            assert_eq!(
                reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await,
                ReserveOutcome::Reserved { took_over: false },
                "{key} is free at once after the restart"
            );
        }
        store.close().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_the_file_frees_its_keys_and_shrinks_the_index() {
    let (store, _dir) = fresh_store().await;
    for n in 0..30 {
        complete_key(&store, &format!("key-{n}")).await;
    }
    store.flush().await.unwrap();
    assert_eq!(store.stored_records(), 30);
    let later = t0() + RETENTION + Duration::from_secs(1);
    assert_eq!(store.purge_expired(later).await.unwrap(), 30);
    assert_eq!(store.stored_records(), 0);
    let id = RecordId::new("scope", "key-7");
    assert_eq!(store.lookup(&id, later).await.unwrap(), None);
    assert_eq!(
        reserve(
            &store,
            &id,
            &fingerprint(3),
            FencingToken::generate(),
            later
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_reused_after_expiry_replaces_its_row_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let id = RecordId::new("scope", "reused");
    let later = t0() + RETENTION + Duration::from_secs(5);
    let mut second = response();
    second.body = bytes::Bytes::from_static(b"the second use");
    {
        let store = open(&path).await;
        complete_key(&store, "reused").await;
        store.flush().await.unwrap();
        // The record expired but is not purged: its row is still in the file.
        let token = FencingToken::generate();
        assert_eq!(
            reserve(&store, &id, &fingerprint(9), token, later).await,
            ReserveOutcome::Reserved { took_over: false }
        );
        store.complete(&id, token, &second).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.stored_records(), 1, "replaced, not added");
        store.close().await;
    }
    let store = open(&path).await;
    assert_eq!(store.stored_records(), 1);
    match store.lookup(&id, later).await.unwrap() {
        Some(existing) => {
            assert_eq!(existing.fingerprint, fingerprint(9));
            assert_eq!(existing.state, RecordState::Completed(second));
        }
        None => panic!("the second use was not written"),
    }
    store.close().await;
}

/// With the writer behind by `max_unwritten` completions, new reservations are
/// refused (the layer answers 503) until it catches up.
#[test]
fn reservations_are_refused_while_too_many_completions_are_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = ExclusiveConfig {
            max_unwritten: 2,
            ..ExclusiveConfig::default()
        };
        let store = ExclusiveSqliteStore::open_with(dir.path().join("idempotency.db"), config)
            .await
            .unwrap();
        // The writer task cannot run until this task awaits something that yields.
        complete_key(&store, "a").await;
        complete_key(&store, "b").await;
        let refused = store
            .reserve(idempotency::ReserveRequest {
                id: &RecordId::new("scope", "c"),
                fingerprint: &fingerprint(1),
                token: FencingToken::generate(),
                now: t0(),
                lease: LEASE,
                retention: RETENTION,
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        // Replays of what is unwritten still work.
        let a = RecordId::new("scope", "a");
        assert!(store.peek_completed(&a, t0()).is_some());
        store.flush().await.unwrap();
        complete_key(&store, "c").await;
        store.close().await;
    });
}

/// A file a shared `SqliteStore` used: its completed records carry over, its
/// in-flight ones (whose workers are gone) do not.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_stores_records_carry_over_and_its_reservations_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let in_flight = RecordId::new("scope", "left-in-flight");
    let completed = RecordId::new("scope", "completed");
    {
        let shared = SqliteStore::open(&path).await.unwrap();
        shared.migrate().await.unwrap();
        reserve(
            &shared,
            &in_flight,
            &fingerprint(1),
            FencingToken::generate(),
            t0(),
        )
        .await;
        let token = FencingToken::generate();
        reserve(&shared, &completed, &fingerprint(2), token, t0()).await;
        shared
            .complete(&completed, token, &response())
            .await
            .unwrap();
        shared.close().await;
    }
    let store = open(&path).await;
    assert_eq!(store.stored_records(), 1);
    assert_eq!(
        reserve(
            &store,
            &in_flight,
            &fingerprint(1),
            FencingToken::generate(),
            t0()
        )
        .await,
        ReserveOutcome::Reserved { took_over: false }
    );
    match reserve(
        &store,
        &completed,
        &fingerprint(2),
        FencingToken::generate(),
        t0(),
    )
    .await
    {
        ReserveOutcome::Existing(existing) => {
            assert_eq!(existing.state, RecordState::Completed(response()));
        }
        other => panic!("the shared store's completed record is gone: {other:?}"),
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_records_replay_and_existing_keys_are_kept() {
    let (store, _dir) = fresh_store().await;
    complete_key(&store, "kept").await;
    store.flush().await.unwrap();
    let imported = |key: &str, tag: u8| ImportedRecord {
        id: RecordId::new("scope", key),
        fingerprint: fingerprint(tag),
        response: response(),
        created_at: t0(),
        expires_at: t0() + RETENTION,
    };
    let written = store
        .import(vec![imported("moved", 5), imported("kept", 6)])
        .await
        .unwrap();
    assert_eq!(written, 1, "the key the store holds is skipped");
    match store
        .lookup(&RecordId::new("scope", "moved"), t0())
        .await
        .unwrap()
    {
        Some(existing) => {
            assert_eq!(existing.fingerprint, fingerprint(5));
            assert_eq!(existing.state, RecordState::Completed(response()));
        }
        None => panic!("the imported record is not there"),
    }
    let kept = store
        .lookup(&RecordId::new("scope", "kept"), t0())
        .await
        .unwrap();
    assert_eq!(
        kept.map(|existing| existing.fingerprint),
        Some(fingerprint(1))
    );
    store.close().await;
}

/// Many tasks at once, on many keys and a few shared ones: every key completes once,
/// and after a reopen the file holds exactly the completed keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_are_all_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let store = open(&path).await;
    let mut tasks = Vec::new();
    for task in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut executed = 0;
            for n in 0..50 {
                // Every fifth key is shared by all tasks.
                let key = if n % 5 == 0 {
                    format!("shared-{n}")
                } else {
                    format!("own-{task}-{n}")
                };
                let id = RecordId::new("scope", key);
                let token = FencingToken::generate();
                if let ReserveOutcome::Reserved { .. } =
                    reserve(&store, &id, &fingerprint(1), token, t0()).await
                {
                    store.complete(&id, token, &response()).await.unwrap();
                    executed += 1;
                }
            }
            executed
        }));
    }
    let mut executed = 0;
    for task in tasks {
        executed += task.await.unwrap();
    }
    // 32 x 40 own keys, and each of the 10 shared keys once.
    assert_eq!(executed, 32 * 40 + 10);
    store.close().await;
    let store = open(&path).await;
    assert_eq!(store.stored_records(), 32 * 40 + 10);
    store.close().await;
}
