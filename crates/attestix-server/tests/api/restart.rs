//! Stored idempotency records survive a restart of the server.

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(a_retry_after_a_restart_replays_the_original_response);

async fn a_retry_after_a_restart_replays_the_original_response(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Durable");
    let first = Reply::of(server.post_keyed("/v1/identities", "durable", &body).send()).await;
    assert_eq!(first.status, 201);
    let server = server.restart().await;
    let retry = Reply::of(server.post_keyed("/v1/identities", "durable", &body).send()).await;
    assert_eq!(retry.status, 201);
    assert!(retry.replayed(), "the record outlived the process");
    assert_eq!(retry.body, first.body);
    assert_eq!(server.all_identities().await.len(), 1);
    server.finish().await;
}

/// An upgrade from a release that kept idempotency records inside `attestix.db`: the
/// record of a request made before the upgrade still replays after it, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_left_in_the_main_file_by_an_older_release_still_replays() {
    use std::time::SystemTime;

    use idempotency::{FencingToken, RecordId, RecordState, ReserveOutcome, ReserveRequest, Store};
    use idempotency_sql::{ExclusiveSqliteStore, SqliteStore};

    let server = TestServer::start(Backend::Sqlite)
        .await
        .expect("SQLite runs");
    let body = identity_body("Upgraded");
    let first = Reply::of(
        server
            .post_keyed("/v1/identities", "before-upgrade", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    let server = server
        .restart_with(|config| async move {
            // Lay the data directory out as the older release did: the record in
            // attestix.db's own idempotency table, no idempotency file.
            let own_file = config.data_dir.join(attestix_server::IDEMPOTENCY_FILE);
            let id = RecordId::new("admin/default", "before-upgrade");
            let store = ExclusiveSqliteStore::open(&own_file).await.unwrap();
            let record = store
                .lookup(&id, SystemTime::now())
                .await
                .unwrap()
                .expect("the server stored the record");
            store.close().await;
            drop(store);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", own_file.display()));
            }
            let RecordState::Completed(response) = record.state else {
                panic!("the record is completed");
            };
            let old = SqliteStore::open(config.data_dir.join(attestix_server::DATABASE_FILE))
                .await
                .unwrap();
            old.migrate().await.unwrap();
            let token = FencingToken::generate();
            let reserved = old
                .reserve(ReserveRequest {
                    id: &id,
                    fingerprint: &record.fingerprint,
                    token,
                    now: SystemTime::now(),
                    lease: std::time::Duration::from_secs(60),
                    retention: std::time::Duration::from_secs(3600),
                })
                .await
                .unwrap();
            assert_eq!(reserved, ReserveOutcome::Reserved { took_over: false });
            old.complete(&id, token, &response).await.unwrap();
            old.close().await;
        })
        .await;
    let retry = Reply::of(
        server
            .post_keyed("/v1/identities", "before-upgrade", &body)
            .send(),
    )
    .await;
    assert_eq!(retry.status, 201);
    assert!(retry.replayed(), "the record moved to the idempotency file");
    assert_eq!(retry.body, first.body);
    assert_eq!(server.all_identities().await.len(), 1);
    server.finish().await;
}
