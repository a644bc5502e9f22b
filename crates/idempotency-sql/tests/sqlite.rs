//! `SqliteStore` against the shared scenarios, plus what only a file database has:
//! durability, several connections, migrations beside the host's.

#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use common::*;
use idempotency::{FencingToken, RecordId, RecordState, ReserveOutcome, Store};
use idempotency_sql::{SqliteStore, MIGRATIONS_TABLE};
use sqlx::sqlite::SqlitePoolOptions;
use tempfile::TempDir;

/// A migrated store on a new database file (one writer, four readers). The directory
/// is returned so that it outlives the store.
async fn file_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("idempotency.db"))
        .await
        .expect("the database file opens");
    store.migrate().await.expect("migrations apply");
    (store, dir)
}

/// A migrated store sharing one pool of eight connections for reads and writes, as a
/// host that passes its own pool would.
async fn shared_pool_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(SqliteStore::connect_options(dir.path().join("host.db")))
        .await
        .expect("the database file opens");
    let store = SqliteStore::from_pool(pool);
    store.migrate().await.expect("migrations apply");
    (store, dir)
}

macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    let store = SqliteStore::in_memory().await.expect("in-memory database");
                    common::$scenario(store).await;
                }
            )*
        }
        mod file {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    let (store, _dir) = file_store().await;
                    common::$scenario(store).await;
                }
            )*
        }
        mod shared_pool {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    let (store, _dir) = shared_pool_store().await;
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

#[tokio::test(flavor = "multi_thread")]
async fn records_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    let completed = RecordId::new("scope-a", "completed");
    let in_flight = RecordId::new("scope-a", "in-flight");
    let in_flight_token = FencingToken::generate();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        let token = FencingToken::generate();
        reserve(&store, &completed, &fingerprint(1), token, t0()).await;
        store
            .complete(&completed, token, &response())
            .await
            .unwrap();
        reserve(&store, &in_flight, &fingerprint(2), in_flight_token, t0()).await;
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.expect("migrating again is a no-op");
    assert_eq!(
        store.lookup(&completed, t0()).await.unwrap().unwrap().state,
        RecordState::Completed(response())
    );
    assert!(matches!(
        reserve(
            &store,
            &completed,
            &fingerprint(1),
            FencingToken::generate(),
            t0()
        )
        .await,
        ReserveOutcome::Existing(_)
    ));
    // The in-flight reservation, its lease and its token survived too.
    assert_eq!(
        store.lookup(&in_flight, t0()).await.unwrap().unwrap().state,
        RecordState::InFlight {
            lease_expires_at: t0() + LEASE
        }
    );
    store
        .complete(&in_flight, in_flight_token, &response())
        .await
        .expect("the token from before the restart still owns the record");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_works_through_many_batches() {
    let (store, _dir) = file_store().await;
    let store = store.with_purge_batch_size(3);
    for index in 0..10 {
        let id = RecordId::new("scope-a", format!("key-{index}"));
        reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await;
    }
    let live = RecordId::new("scope-a", "live");
    let later = t0() + Duration::from_secs(3600);
    reserve(
        &store,
        &live,
        &fingerprint(1),
        FencingToken::generate(),
        later,
    )
    .await;

    assert_eq!(store.purge_expired(t0() + RETENTION).await.unwrap(), 10);
    assert!(store.lookup(&live, later).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_recorded_apart_from_the_hosts_sqlx_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("shared.db"))
        .await
        .unwrap();

    // The host's own migrations, run by sqlx's migrator with its default settings
    // (`ignore_missing = false`), before and after the store's.
    let host_migrations = dir.path().join("host-migrations");
    std::fs::create_dir(&host_migrations).unwrap();
    std::fs::write(
        host_migrations.join("1_create_widgets.sql"),
        "CREATE TABLE widgets (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let host = sqlx::migrate::Migrator::new(host_migrations.as_path())
        .await
        .unwrap();
    host.run(&mut *store.writer().acquire().await.unwrap())
        .await
        .unwrap();
    // `migrate` can run on a spawned task (its future is Send).
    let spawned = store.clone();
    tokio::spawn(async move { spawned.migrate().await })
        .await
        .unwrap()
        .unwrap();
    host.run(&mut *store.writer().acquire().await.unwrap())
        .await
        .expect("the host's migrator is undisturbed");
    store.migrate().await.unwrap();

    let ours: Vec<(i64,)> = sqlx::query_as(&format!("SELECT version FROM {MIGRATIONS_TABLE}"))
        .fetch_all(store.reader_pool())
        .await
        .unwrap();
    assert_eq!(ours, vec![(1,), (2,)]);
    let theirs: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations")
        .fetch_all(store.reader_pool())
        .await
        .unwrap();
    assert_eq!(theirs, vec![(1,)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_migration_is_refused() {
    let store = SqliteStore::in_memory().await.unwrap();
    sqlx::query(&format!(
        "UPDATE {MIGRATIONS_TABLE} SET checksum = x'00' WHERE version = 1"
    ))
    .execute(store.reader_pool())
    .await
    .unwrap();
    assert!(matches!(
        store.migrate().await,
        Err(sqlx::migrate::MigrateError::VersionMismatch(1))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_row_is_reported_not_replayed() {
    let store = SqliteStore::in_memory().await.unwrap();
    let id = RecordId::new("scope-a", "key-1");
    let token = FencingToken::generate();
    reserve(&store, &id, &fingerprint(1), token, t0()).await;
    store.complete(&id, token, &response()).await.unwrap();
    sqlx::query("UPDATE idempotency_records SET headers = x'0005'")
        .execute(store.reader_pool())
        .await
        .unwrap();
    assert!(matches!(
        store.lookup(&id, t0()).await,
        Err(idempotency::StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_database_is_reported_unavailable() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.close().await;
    let id = RecordId::new("scope-a", "key-1");
    let outcome = store
        .reserve(idempotency::ReserveRequest {
            id: &id,
            fingerprint: &fingerprint(1),
            token: FencingToken::generate(),
            now: t0(),
            lease: LEASE,
            retention: RETENTION,
        })
        .await;
    assert!(matches!(
        outcome,
        Err(idempotency::StoreError::Unavailable(_))
    ));
}

/// Group commit under load: 200 workers reserve and complete their own keys with
/// their own responses while 20 more race for one key and stale tokens try to
/// complete. Batches must form (fewer statements than rows), every worker must get
/// back exactly its own response, the hot key exactly one owner, and no stale
/// completion may land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_batches_concurrent_writes_and_keeps_every_row_its_own() {
    let (store, _dir) = file_store().await;
    let hot = RecordId::new("scope-hot", "the-key");
    let mut tasks = Vec::new();
    for worker in 0..220_u32 {
        let store = store.clone();
        let hot = hot.clone();
        tasks.push(tokio::spawn(async move {
            if worker >= 200 {
                let outcome = reserve(
                    &store,
                    &hot,
                    &fingerprint(9),
                    FencingToken::generate(),
                    t0(),
                )
                .await;
                return u32::from(matches!(outcome, ReserveOutcome::Reserved { .. }));
            }
            let id = RecordId::new(format!("scope-{}", worker % 7), format!("key-{worker}"));
            let token = FencingToken::generate();
            assert_eq!(
                reserve(&store, &id, &fingerprint((worker % 200) as u8), token, t0()).await,
                ReserveOutcome::Reserved { took_over: false }
            );
            // A stale token for the same record is refused, batched or not.
            assert!(matches!(
                store
                    .complete(&id, FencingToken::generate(), &response())
                    .await,
                Err(idempotency::StoreError::NotOwner)
            ));
            let own = idempotency::StoredResponse {
                status: 200 + (worker % 3) as u16,
                headers: vec![("x-worker".into(), worker.to_string().into())],
                body: format!("response of worker {worker}").into(),
            };
            store
                .complete(&id, token, &own)
                .await
                .expect("the owner completes");
            let stored = store
                .lookup(&id, t0())
                .await
                .expect("lookup")
                .expect("a record");
            assert_eq!(stored.fingerprint, fingerprint((worker % 200) as u8));
            assert_eq!(stored.state, RecordState::Completed(own));
            0
        }));
    }
    let mut hot_owners = 0;
    for task in tasks {
        hot_owners += task.await.expect("no worker panics");
    }
    assert_eq!(hot_owners, 1, "exactly one of the racers owns the hot key");
    let stats = store.group_commit_stats();
    // 200 reservations, 400 completions (200 stale), 20 hot reservations.
    assert!(
        stats.rows >= 600,
        "every write went through group commit: {stats:?}"
    );
    assert!(
        stats.statements < stats.rows,
        "concurrent writes shared statements: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_group_commit_nothing_is_batched() {
    let (store, _dir) = file_store().await;
    let store = store.without_group_commit();
    let id = RecordId::new("scope-a", "key-1");
    let token = FencingToken::generate();
    reserve(&store, &id, &fingerprint(1), token, t0()).await;
    store
        .complete(&id, token, &response())
        .await
        .expect("complete");
    assert_eq!(
        store.group_commit_stats(),
        idempotency_sql::GroupCommitStats::default()
    );
    assert!(store.lookup(&id, t0()).await.expect("lookup").is_some());
}
