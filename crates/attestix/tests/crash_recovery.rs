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
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let client = reqwest::Client::new();

    // A subject for credentials exists before the crash run.
    let mut body = body;
    let agent_field = ["subject_id", "issuer_agent_id"]
        .into_iter()
        .find(|field| body.get(*field).is_some());
    if let Some(agent_field) = agent_field {
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
        body[agent_field] = agent["agent_id"].clone();
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
    assert!(
        after
            .iter()
            .any(|item| resource_id(item) == resource_id(&recovered)),
        "the retry returned the resource made before the crash"
    );
    // And from now on it is a plain replay.
    let replay = post(&client, &url, &api_key, "crash-key", &body)
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(resource_id(&replayed), resource_id(&recovered));
    recovered
}

/// The id of a created resource, or of a listed one: an identity's `agent_id`, a
/// credential's `id`, a delegation's `jti`.
fn resource_id(document: &Value) -> &Value {
    ["/agent_id", "/id", "/delegation/jti", "/jti"]
        .into_iter()
        .find_map(|pointer| document.pointer(pointer))
        .unwrap_or(&Value::Null)
}

fn identity() -> Value {
    json!({"display_name": "Crash Bot", "source_protocol": "api_key"})
}

fn delegation() -> Value {
    json!({"issuer_agent_id": "", "audience_agent_id": "did:key:zCrash", "capabilities": ["read"]})
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

/// The token of a delegation recovered after a crash is signed again from the stored
/// record: it must verify, and name the record that was made before the crash.
async fn a_recovered_delegation_token_verifies(database_url: Option<&str>) {
    let recovered = crash_after_commit_then_retry(
        database_url,
        "delegation.after_commit",
        "/v1/delegations",
        delegation(),
        "/v1/delegations",
    )
    .await;
    let token = recovered["token"].as_str().expect("a token");
    let claims = token.split('.').nth(1).expect("three segments");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
            .expect("base64url"),
    )
    .expect("JSON claims");
    assert_eq!(claims["jti"], recovered["delegation"]["jti"]);
    let created_at = recovered["delegation"]["created_at"].as_str().unwrap();
    let iat =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
    assert_eq!(
        claims["iat"], iat,
        "the token keeps the first execution's time"
    );
}

#[tokio::test]
async fn sqlite_delegation_created_before_a_crash_is_returned_to_the_retry() {
    a_recovered_delegation_token_verifies(None).await;
}

#[tokio::test]
async fn postgres_delegation_created_before_a_crash_is_returned_to_the_retry() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    a_recovered_delegation_token_verifies(Some(database.url())).await;
    let _ = database.drop_database().await;
}
