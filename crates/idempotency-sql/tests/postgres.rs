//! `PostgresStore` against the shared scenarios, each on a database of its own
//! (see `idempotency_sql::pg_test`), plus what only PostgreSQL has.

#![cfg(feature = "postgres")]

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use idempotency::{FencingToken, RecordId, Store};
use idempotency_sql::pg_test::{with_pg_store, TestDatabase};
use idempotency_sql::{PostgresStore, MIGRATIONS_TABLE};

macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $scenario() {
                with_pg_store(common::$scenario).await;
            }
        )*
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
async fn purge_works_through_many_batches() {
    with_pg_store(|store| async move {
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
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migrations_apply_once() {
    with_pg_store(|store| async move {
        // `with_pg_store` migrated already; start over from an empty schema.
        sqlx::raw_sql(&format!(
            "DROP TABLE idempotency_records; DROP TABLE {MIGRATIONS_TABLE};"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.migrate().await }));
        }
        for task in tasks {
            task.await
                .unwrap()
                .expect("every concurrent migrate succeeds");
        }
        let versions: Vec<(i64,)> = sqlx::query_as(&format!(
            "SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"
        ))
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(versions, vec![(1,), (2,)]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_recorded_apart_from_the_hosts_sqlx_migrations() {
    with_pg_store(|store| async move {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("1_create_widgets.sql"),
            "CREATE TABLE widgets (id BIGINT PRIMARY KEY);",
        )
        .unwrap();
        let host = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
        host.run(store.pool())
            .await
            .expect("the host's migrator is undisturbed");
        store.migrate().await.unwrap();
        host.run(store.pool()).await.unwrap();
        let theirs: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(theirs, vec![(1,)]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_connected_by_url_works_and_its_database_is_dropped_with_it() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let name = database.name().to_owned();
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    let id = RecordId::new("scope-a", "key-1");
    reserve(&store, &id, &fingerprint(1), FencingToken::generate(), t0()).await;
    store.close().await;

    assert!(database_exists(&name).await);
    // Dropped without `drop_database`: `Drop` removes it from the server.
    drop(database);
    assert!(
        !database_exists(&name).await,
        "the test database was dropped"
    );
}

/// Whether a database of that name still exists on the server.
async fn database_exists(name: &str) -> bool {
    let server = TestDatabase::create()
        .await
        .expect("the server was reachable a moment ago");
    let found: Option<(String,)> =
        sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(server.pool())
            .await
            .unwrap();
    server.drop_database().await.unwrap();
    found.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_test_still_drops_its_database() {
    let name = Arc::new(Mutex::new(None));
    let seen = name.clone();
    let outcome = AssertUnwindSafe(with_pg_store(|store| async move {
        let (current,): (String,) = sqlx::query_as("SELECT current_database()::text")
            .fetch_one(store.pool())
            .await
            .unwrap();
        *seen.lock().unwrap() = Some(current);
        // `resume_unwind` skips the panic hook: no alarming message in the output.
        std::panic::resume_unwind(Box::new("the test body fails"));
    }))
    .catch_unwind()
    .await;
    let Some(name) = name.lock().unwrap().take() else {
        return; // skipped: PostgreSQL unreachable
    };
    assert!(outcome.is_err(), "the panic reaches the test");
    assert!(!database_exists(&name).await, "the database was dropped");
}
