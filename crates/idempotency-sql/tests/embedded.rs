//! The embedded store, a `MemoryStore` with a `SqliteLog`: the shared conformance
//! suite and SQL scenarios, and what only a durable single-process store has: the
//! file lock, records written behind and read back after eviction or a reopen, what
//! a crash before the write loses, purging, replacing an expired row, imports.

#![cfg(feature = "sqlite")]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use idempotency::testkit::Guarded;
use idempotency::{
    CompletedRecord, CompletionLog, FencingToken, MemoryStore, MemoryStoreConfig, RecordId,
    RecordState, ReserveOutcome, Store, StoreError,
};
use idempotency_sql::{OpenError, SqliteLog};
use sqlx::Connection;
use tempfile::TempDir;

type Embedded = Arc<MemoryStore>;

async fn open_log(path: &Path) -> SqliteLog {
    SqliteLog::open(path)
        .await
        .expect("the database file opens")
}

/// An embedded store on the log at `path`, holding at most `max_records` in memory.
async fn open_with(path: &Path, max_records: usize) -> (Embedded, SqliteLog) {
    let log = open_log(path).await;
    let config = MemoryStoreConfig {
        max_records,
        ..MemoryStoreConfig::default()
    };
    (
        Arc::new(MemoryStore::with_log(config, Arc::new(log.clone()))),
        log,
    )
}

async fn open(path: &Path) -> (Embedded, SqliteLog) {
    open_with(path, MemoryStoreConfig::default().max_records).await
}

async fn fresh_store() -> Guarded<Embedded, (SqliteLog, Arc<TempDir>)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, log) = open(&dir.path().join("idempotency.db")).await;
    Guarded::new(store, (log, Arc::new(dir)))
}

idempotency::store_conformance_tests!(fresh_store);

macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod scenarios {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    common::$scenario(fresh_store().await).await;
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
async fn complete_key(store: &impl Store, key: &str) {
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

async fn assert_replays(store: &impl Store, key: &str) {
    let id = RecordId::new("scope", key);
    match reserve(store, &id, &fingerprint(1), FencingToken::generate(), t0()).await {
        ReserveOutcome::Existing(existing) => {
            assert_eq!(existing.state, RecordState::Completed(response()));
            assert_eq!(existing.fingerprint, fingerprint(1));
        }
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_opener_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let log = open_log(&path).await;
    match SqliteLog::open(&path).await {
        Err(OpenError::InUse(named)) => assert_eq!(named, path),
        other => panic!("a second log opened the file: {other:?}"),
    }
    log.close().await;
    open_log(&path).await.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_records_are_written_behind_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    {
        let (store, log) = open(&path).await;
        for n in 0..100 {
            complete_key(&store, &format!("key-{n}")).await;
        }
        store.flush().await.expect("the queued rows are written");
        assert_eq!(log.unwritten(), 0);
        assert_eq!(log.stored_records(), 100);
        log.close().await;
    }
    let (store, log) = open(&path).await;
    assert_eq!(
        log.stored_records(),
        100,
        "the index is rebuilt from the file"
    );
    for n in [0, 42, 99] {
        // Read from the file: a retry after the restart replays, byte for byte.
        assert_replays(&store, &format!("key-{n}")).await;
        // And a different request under the key is still told apart.
        let id = RecordId::new("scope", format!("key-{n}"));
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
    log.close().await;
}

/// Memory holds a few records; the log holds them all. A record evicted from memory
/// is read back, and many callers at once all get it, never "in flight".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_evicted_from_memory_replay_from_the_log_to_every_concurrent_caller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let (store, log) = open_with(&path, 8).await;
    for n in 0..200 {
        complete_key(&store, &format!("key-{n}")).await;
        if n % 4 == 0 {
            // Only what the log holds may leave memory.
            store.flush().await.unwrap();
        }
    }
    store.flush().await.unwrap();
    complete_key(&store, "pushes-the-rest-out").await;
    assert!(store.len() <= 9, "memory holds {} records", store.len());
    assert_eq!(log.stored_records(), 200);
    for n in [0, 57, 150] {
        assert_replays(&store, &format!("key-{n}")).await;
    }
    let storm = |store: Embedded| async move {
        let id = RecordId::new("scope", "key-3");
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await
                })
            })
            .collect();
        for caller in callers {
            match caller.await.unwrap() {
                ReserveOutcome::Existing(existing) => {
                    assert_eq!(existing.state, RecordState::Completed(response()))
                }
                other => panic!("a concurrent caller got {other:?}"),
            }
        }
    };
    storm(store.clone()).await;
    log.close().await;
    // After a restart the record is only in the file.
    let (store, log) = open_with(&path, 8).await;
    storm(store).await;
    log.close().await;
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
        let (store, log) = open(&path).await;
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
        assert_eq!(log.unwritten(), 1);
        // No close, no flush: the writer task is dropped with the runtime before its
        // next turn, as a killed process's would be.
        drop((store, log));
    });
    drop(runtime);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (store, log) = open(&path).await;
        assert_replays(&store, "written").await;
        for key in ["lost", "in-flight"] {
            let id = RecordId::new("scope", key);
            assert_eq!(
                reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await,
                ReserveOutcome::Reserved { took_over: false },
                "{key} is free at once after the restart"
            );
        }
        log.close().await;
    });
}

/// While the log's writer cannot run, its completions cannot leave memory: a store
/// full of them refuses new keys (the layer answers 503) and still replays them.
#[test]
fn a_store_full_of_unwritten_completions_refuses_new_keys_and_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _log) = open_with(&dir.path().join("idempotency.db"), 2).await;
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
        assert_replays(&store, "a").await;
        store.flush().await.unwrap();
        complete_key(&store, "c").await;
        assert_replays(&store, "a").await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_the_file_frees_its_keys_and_shrinks_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(&dir.path().join("idempotency.db")).await;
    for n in 0..30 {
        complete_key(&store, &format!("key-{n}")).await;
    }
    store.flush().await.unwrap();
    assert_eq!(log.stored_records(), 30);
    let later = t0() + RETENTION + Duration::from_secs(1);
    assert_eq!(store.purge_expired(later).await.unwrap(), 30);
    assert_eq!(log.stored_records(), 0);
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
    log.close().await;
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
        let (store, log) = open(&path).await;
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
        assert_eq!(log.stored_records(), 1, "replaced, not added");
        log.close().await;
    }
    let (store, log) = open(&path).await;
    assert_eq!(log.stored_records(), 1);
    match store.lookup(&id, later).await.unwrap() {
        Some(existing) => {
            assert_eq!(existing.fingerprint, fingerprint(9));
            assert_eq!(existing.state, RecordState::Completed(second));
        }
        None => panic!("the second use was not written"),
    }
    log.close().await;
}

/// A database of an earlier release, with completed and in-flight records in the
/// one-table layout: the completed ones move into the log, the others are dropped.
#[tokio::test(flavor = "multi_thread")]
async fn records_of_the_old_table_move_into_the_log_and_reservations_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let old_path = dir.path().join("attestix.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&old_path)
        .create_if_missing(true);
    let mut old = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE idempotency_records (scope TEXT, key TEXT, fingerprint BLOB,
             state TEXT, token INTEGER, lease_expires_at INTEGER, expires_at INTEGER,
             takeovers INTEGER, status INTEGER, headers BLOB, body BLOB, created_at INTEGER)",
    )
    .execute(&mut old)
    .await
    .unwrap();
    let now = idempotency_sql::codec::unix_millis(std::time::SystemTime::now());
    let stored = response();
    for (key, state, expires_at) in [
        ("completed", "completed", now + 60_000),
        ("expired", "completed", now - 1),
        ("left-in-flight", "in_flight", now + 60_000),
    ] {
        sqlx::query(
            "INSERT INTO idempotency_records VALUES (?1, ?2, ?3, ?4, 7, ?5, ?5, 0, ?6, ?7, ?8, ?9)",
        )
        .bind("scope")
        .bind(key)
        .bind(fingerprint(2).as_bytes().as_slice())
        .bind(state)
        .bind(expires_at)
        .bind(i32::from(stored.status))
        .bind(idempotency_sql::codec::encode_headers(&stored.headers))
        .bind(stored.body.as_ref())
        .bind(now - 1_000)
        .execute(&mut old)
        .await
        .unwrap();
    }
    let (store, log) = open(&dir.path().join("idempotency.db")).await;
    assert_eq!(log.import_legacy_table(&mut old).await.unwrap(), 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_records")
        .fetch_one(&mut old)
        .await
        .unwrap();
    assert_eq!(left, 0, "the old table is emptied");
    let now = std::time::SystemTime::now();
    match store
        .lookup(&RecordId::new("scope", "completed"), now)
        .await
        .unwrap()
    {
        Some(existing) => {
            assert_eq!(existing.fingerprint, fingerprint(2));
            assert_eq!(existing.state, RecordState::Completed(response()));
        }
        None => panic!("the old completed record did not move"),
    }
    for key in ["expired", "left-in-flight"] {
        assert_eq!(
            store
                .lookup(&RecordId::new("scope", key), now)
                .await
                .unwrap(),
            None,
            "{key} moved"
        );
    }
    // A database without the table is left alone.
    assert_eq!(log.import_legacy_table(&mut old).await.unwrap(), 0);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_records_replay_and_existing_keys_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(&dir.path().join("idempotency.db")).await;
    complete_key(&store, "kept").await;
    store.flush().await.unwrap();
    let imported = |key: &str, tag: u8| CompletedRecord {
        id: RecordId::new("scope", key),
        fingerprint: fingerprint(tag),
        response: response(),
        created_at: t0(),
        expires_at: t0() + RETENTION,
    };
    let written = log
        .import(vec![imported("moved", 5), imported("kept", 6)])
        .await
        .unwrap();
    assert_eq!(written, 1, "the key the log holds is skipped");
    let moved = store
        .lookup(&RecordId::new("scope", "moved"), t0())
        .await
        .unwrap()
        .expect("the imported record is there");
    assert_eq!(moved.fingerprint, fingerprint(5));
    let kept = store
        .lookup(&RecordId::new("scope", "kept"), t0())
        .await
        .unwrap();
    assert_eq!(
        kept.map(|existing| existing.fingerprint),
        Some(fingerprint(1))
    );
    assert!(log.may_hold(&RecordId::new("scope", "moved")));
    log.close().await;
}

/// Many tasks at once, on many keys and a few shared ones: every key completes once,
/// and after a reopen the file holds exactly the completed keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_are_all_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let (store, log) = open(&path).await;
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
    log.close().await;
    let (_store, log) = open(&path).await;
    assert_eq!(log.stored_records(), 32 * 40 + 10);
    log.close().await;
}

/// Whether any file in `dir` holds the bytes `marker`.
fn any_file_holds(dir: &Path, marker: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("the directory lists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            let bytes = std::fs::read(path).expect("the file reads");
            bytes.windows(marker.len()).any(|window| window == marker)
        })
        .map(|path| path.display().to_string())
        .collect()
}

/// Reserves and completes `id` at `t0()` with fingerprint 1 and `body`.
async fn complete_with_body(store: &impl Store, id: &RecordId, body: Vec<u8>) {
    let token = FencingToken::generate();
    assert_eq!(
        reserve(store, id, &fingerprint(1), token, t0()).await,
        ReserveOutcome::Reserved { took_over: false }
    );
    let response = idempotency::StoredResponse {
        body: body.into(),
        ..response()
    };
    store
        .complete(id, token, &response)
        .await
        .expect("the owner completes");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_response_leaves_no_trace_in_the_files() {
    const NEEDLE: &[u8] = b"agent-0b5e-purged";
    // What only the erased responses hold, looked for byte by byte in every file: one
    // small enough to sit in its table page, one that spills into overflow pages.
    const SMALL_SECRET: &[u8] = b"small-secret-6c1d";
    const LARGE_SECRET: &[u8] = b"large-secret-93fa";
    const WAL_SECRET: &[u8] = b"wal-secret-4e27";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idempotency.db");
    let small = RecordId::new("scope-a", "small");
    let large = RecordId::new("scope-a", "large");
    let kept = RecordId::new("scope-a", "kept");
    let other_scope = RecordId::new("scope-b", "small");
    {
        let (store, log) = open(&path).await;
        complete_with_body(&store, &small, [NEEDLE, SMALL_SECRET].concat()).await;
        let mut body = NEEDLE.to_vec();
        for _ in 0..2_000 {
            body.extend_from_slice(LARGE_SECRET);
        }
        complete_with_body(&store, &large, body).await;
        complete_with_body(&store, &kept, b"{\"agent\":\"someone-else\"}".to_vec()).await;
        complete_with_body(&store, &other_scope, [NEEDLE, b" of b".as_slice()].concat()).await;
        store.flush().await.unwrap();
        // Closing checkpoints the write-ahead log: the rows are in the main file.
        log.close().await;
    }
    for secret in [SMALL_SECRET, LARGE_SECRET] {
        assert!(
            !any_file_holds(dir.path(), secret).is_empty(),
            "the scan must see a stored response before the erasure"
        );
    }

    // A fresh memory store on the reopened file: every record is in the file only.
    let (store, log) = open(&path).await;
    assert_eq!(log.stored_records(), 4);
    assert_eq!(store.erase_mentioning("scope-a", NEEDLE).await.unwrap(), 2);
    assert_eq!(log.stored_records(), 2);
    assert!(!log.may_hold(&small) && !log.may_hold(&large));
    for secret in [SMALL_SECRET, LARGE_SECRET] {
        assert_eq!(
            any_file_holds(dir.path(), secret),
            Vec::<String>::new(),
            "erased bytes are left in the open log's files"
        );
    }
    // A record written since the reopen is in the write-ahead log only, until the
    // erasure's checkpoint.
    let wal_only = RecordId::new("scope-a", "wal-only");
    complete_with_body(&store, &wal_only, [NEEDLE, WAL_SECRET].concat()).await;
    store.flush().await.unwrap();
    assert!(
        !any_file_holds(dir.path(), WAL_SECRET).is_empty(),
        "the scan must see a response in the write-ahead log"
    );
    assert_eq!(store.erase_mentioning("scope-a", NEEDLE).await.unwrap(), 1);
    assert_eq!(log.stored_records(), 2);
    assert_eq!(
        any_file_holds(dir.path(), WAL_SECRET),
        Vec::<String>::new(),
        "erased bytes are left in the write-ahead log"
    );
    log.close().await;
    for secret in [SMALL_SECRET, LARGE_SECRET, WAL_SECRET] {
        assert_eq!(
            any_file_holds(dir.path(), secret),
            Vec::<String>::new(),
            "erased bytes are left in the closed log's files"
        );
    }

    let (store, log) = open(&path).await;
    for erased in [&small, &large, &wal_only] {
        assert_eq!(store.lookup(erased, t0()).await.unwrap(), None);
    }
    match store.lookup(&kept, t0()).await.unwrap() {
        Some(existing) => assert_eq!(
            existing.state,
            RecordState::Completed(idempotency::StoredResponse {
                body: b"{\"agent\":\"someone-else\"}".to_vec().into(),
                ..response()
            })
        ),
        None => panic!("the response without the needle was erased"),
    }
    match store.lookup(&other_scope, t0()).await.unwrap() {
        Some(existing) => assert!(matches!(
            existing.state,
            RecordState::Completed(ref stored) if stored.mentions(NEEDLE)
        )),
        None => panic!("the needle in another scope was erased"),
    }
    log.close().await;
}
