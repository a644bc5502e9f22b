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

    use idempotency::{CompletionLog, RecordId};
    use idempotency_sql::SqliteLog;
    use sqlx::Connection;

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
            let log = SqliteLog::open(&own_file).await.unwrap();
            let record = log
                .read(&id, SystemTime::now())
                .await
                .unwrap()
                .expect("the server stored the record");
            log.close().await;
            drop(log);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", own_file.display()));
            }
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(config.data_dir.join(attestix_server::DATABASE_FILE));
            let mut old = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            // The table as the older release's migration made it.
            sqlx::raw_sql(
                "CREATE TABLE idempotency_records (
                     scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint BLOB NOT NULL,
                     state TEXT NOT NULL, token INTEGER NOT NULL,
                     lease_expires_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                     takeovers INTEGER NOT NULL DEFAULT 0, status INTEGER, headers BLOB,
                     body BLOB, created_at INTEGER NOT NULL, PRIMARY KEY (scope, key))",
            )
            .execute(&mut old)
            .await
            .unwrap();
            let millis = idempotency_sql::codec::unix_millis;
            sqlx::query(
                "INSERT INTO idempotency_records VALUES \
                 (?1, ?2, ?3, 'completed', 7, ?4, ?5, 0, ?6, ?7, ?8, ?4)",
            )
            .bind(&id.scope)
            .bind(&id.key)
            .bind(record.fingerprint.as_bytes().as_slice())
            .bind(millis(record.created_at))
            .bind(millis(record.expires_at))
            .bind(i32::from(record.response.status))
            .bind(idempotency_sql::codec::encode_headers(
                &record.response.headers,
            ))
            .bind(record.response.body.as_ref())
            .execute(&mut old)
            .await
            .unwrap();
            old.close().await.unwrap();
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
