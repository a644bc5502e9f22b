//! A real crash between "resource committed" and "response stored": the server
//! process aborts at a failpoint, is started again, and the client's retry with the
//! same key gets the resource that was already made, never a second one.
//!
//! The failpoints are compiled into the binary only for tests (the `failpoints`
//! feature of attestix-server, turned on by this crate's dev-dependencies).

mod common;

use common::{
    create_api_key, list, post_keyed as post, retry_until_done, ServerOptions,
    ServerProcess as Server,
};
use idempotency_sql::pg_test::TestDatabase;
use serde_json::{json, Value};

/// Crashes the server after the resource of `path` commits, restarts it, retries.
async fn crash_after_commit_then_retry(
    database_url: Option<&str>,
    failpoint: &str,
    path: &str,
    body: Value,
    list_path: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let client = reqwest::Client::new();

    // A subject for credentials exists before the crash run.
    let mut body = body;
    if body.get("subject_id").is_some() {
        let setup = Server::start(
            dir.path(),
            ServerOptions {
                database_url,
                ..Default::default()
            },
        );
        let agent: Value = post(
            &client,
            &format!("{}/v1/identities", setup.base),
            &api_key,
            "subject",
            &json!({"display_name": "Subject", "source_protocol": "api_key"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        body["subject_id"] = agent["agent_id"].clone();
        drop(setup);
    }
    let before = {
        let server = Server::start(
            dir.path(),
            ServerOptions {
                database_url,
                ..Default::default()
            },
        );
        let count = list(&client, &format!("{}{list_path}", server.base), &api_key)
            .await
            .len();
        drop(server);
        count
    };

    let failpoint_spec = format!("{failpoint}=return(abort)");
    let mut crashing = Server::start(
        dir.path(),
        ServerOptions {
            database_url,
            failpoints: Some(&failpoint_spec),
            ..Default::default()
        },
    );
    let url = format!("{}{path}", crashing.base);
    let outcome = post(&client, &url, &api_key, "crash-key", &body).await;
    assert!(
        outcome.is_err(),
        "the client sees the connection die: {outcome:?}"
    );
    let status = crashing.wait_for_exit();
    assert!(!status.success(), "the server died at the failpoint");

    let server = Server::start(
        dir.path(),
        ServerOptions {
            database_url,
            ..Default::default()
        },
    );
    let url = format!("{}{path}", server.base);
    // The dead worker's reservation frees itself after its 1 s lease.
    let response = retry_until_done(&client, &url, &api_key, "crash-key", &body).await;
    assert_eq!(response.status(), 201);
    let recovered: Value = response.json().await.unwrap();

    let after = list(&client, &format!("{}{list_path}", server.base), &api_key).await;
    assert_eq!(
        after.len(),
        before + 1,
        "exactly one resource exists for the key"
    );
    let id_field = if path.contains("credentials") {
        "id"
    } else {
        "agent_id"
    };
    assert!(
        after
            .iter()
            .any(|item| item[id_field] == recovered[id_field]),
        "the retry returned the resource made before the crash"
    );
    // And from now on it is a plain replay.
    let replay = post(&client, &url, &api_key, "crash-key", &body)
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed[id_field], recovered[id_field]);
}

fn identity() -> Value {
    json!({"display_name": "Crash Bot", "source_protocol": "api_key"})
}

fn credential() -> Value {
    json!({"subject_id": "", "credential_type": "AgentIdentityCredential", "issuer_name": "Acme", "claims": {"role": "tester"}})
}

#[tokio::test]
async fn sqlite_identity_created_before_a_crash_is_returned_to_the_retry() {
    crash_after_commit_then_retry(
        None,
        "identity.after_commit",
        "/v1/identities",
        identity(),
        "/v1/identities",
    )
    .await;
}

#[tokio::test]
async fn sqlite_credential_issued_before_a_crash_is_returned_to_the_retry() {
    crash_after_commit_then_retry(
        None,
        "credential.after_commit",
        "/v1/credentials",
        credential(),
        "/v1/credentials",
    )
    .await;
}

#[tokio::test]
async fn postgres_identity_created_before_a_crash_is_returned_to_the_retry() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    crash_after_commit_then_retry(
        Some(database.url()),
        "identity.after_commit",
        "/v1/identities",
        identity(),
        "/v1/identities",
    )
    .await;
    let _ = database.drop_database().await;
}

#[tokio::test]
async fn postgres_credential_issued_before_a_crash_is_returned_to_the_retry() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    crash_after_commit_then_retry(
        Some(database.url()),
        "credential.after_commit",
        "/v1/credentials",
        credential(),
        "/v1/credentials",
    )
    .await;
    let _ = database.drop_database().await;
}
