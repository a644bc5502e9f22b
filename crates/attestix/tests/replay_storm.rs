//! A completed key replays to every caller: many connections retrying at once a
//! request that finished seconds ago all get the stored 201, on every store, and
//! again right after a restart when the record is only on disk.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{create_api_key, post_keyed, ServerOptions, ServerProcess};
use idempotency_sql::pg_test::TestDatabase;
use serde_json::{json, Value};
use tokio::sync::Barrier;

const CALLERS: usize = 32;

/// Sends `CALLERS` copies of the request together, each on its own connection,
/// and asserts every one is the stored 201 with the replay header.
async fn every_caller_gets_the_replay(
    server: &ServerProcess,
    api_key: &str,
    body: &Value,
    first: &Value,
) {
    let url = server.url("/v1/identities");
    let barrier = Arc::new(Barrier::new(CALLERS));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        // One client per caller: a fresh connection each, like separate retrying clients.
        let client = reqwest::Client::new();
        let (url, api_key, body, barrier) = (
            url.clone(),
            api_key.to_owned(),
            body.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Connect before the barrier so the requests really arrive together.
            let _ = client
                .get(url.replace("/v1/identities", "/health"))
                .send()
                .await;
            barrier.wait().await;
            let response = post_keyed(&client, &url, &api_key, "storm-key", &body)
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotency-replayed");
            let document: Value = response.json().await.unwrap();
            (status, replayed, document)
        }));
    }
    for task in tasks {
        let (status, replayed, document) = task.await.unwrap();
        assert_eq!(status, 201, "a completed key must replay, got: {document}");
        assert!(replayed, "the answer must be marked as a replay");
        assert_eq!(&document, first, "the replay is the stored response");
    }
}

async fn completed_key_replays_to_a_storm(database_url: Option<&str>, store: &str, restart: bool) {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let options = ServerOptions {
        database_url,
        lease: Some("60s"),
        extra_args: vec!["--idempotency-store", store],
        ..Default::default()
    };
    let server = ServerProcess::start(dir.path(), options.clone());
    let client = reqwest::Client::new();
    let body = json!({"display_name": "Storm", "source_protocol": "api_key"});
    let response = post_keyed(
        &client,
        &server.url("/v1/identities"),
        &api_key,
        "storm-key",
        &body,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let first: Value = response.json().await.unwrap();

    // Long enough for a write-behind store to have moved the record to disk.
    tokio::time::sleep(Duration::from_secs(2)).await;
    every_caller_gets_the_replay(&server, &api_key, &body, &first).await;

    if restart {
        drop(server);
        let server = ServerProcess::start(dir.path(), options);
        every_caller_gets_the_replay(&server, &api_key, &body, &first).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_replays_a_completed_key_to_a_storm_and_after_restart() {
    completed_key_replays_to_a_storm(None, "database", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_replays_a_completed_key_to_a_storm() {
    completed_key_replays_to_a_storm(None, "memory", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_replays_a_completed_key_to_a_storm_and_after_restart() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    completed_key_replays_to_a_storm(Some(database.url()), "database", true).await;
    let _ = database.drop_database().await;
}
