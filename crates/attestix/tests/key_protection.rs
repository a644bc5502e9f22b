//! A key keeps protecting its request when the idempotency record cannot help: a
//! recovery point answers only the request that made it, and no create produces a
//! response too large to be stored for replay.

mod common;

use common::{create_api_key, list, post_keyed, ServerOptions, ServerProcess};
use idempotency_sql::pg_test::TestDatabase;
use serde_json::{json, Value};

fn is_replay(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|value| value == "true")
}

/// With the memory idempotency store, a restart forgets every record; the resources
/// and their recovery points stay in the database.
async fn a_recovery_point_answers_only_its_own_request(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let options = ServerOptions {
        database_url,
        extra_args: vec!["--idempotency-store", "memory"],
        ..Default::default()
    };
    let client = reqwest::Client::new();
    let first_body = json!({"display_name": "First", "source_protocol": "api_key"});
    let other_body = json!({"display_name": "Other", "source_protocol": "api_key"});

    let server = ServerProcess::start(dir.path(), options.clone());
    let url = server.url("/v1/identities");
    let first = post_keyed(&client, &url, &api_key, "k-1", &first_body)
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    drop(server);

    let server = ServerProcess::start(dir.path(), options);
    let url = server.url("/v1/identities");
    // Another request under the used key: refused like any reuse, nothing made.
    let other = post_keyed(&client, &url, &api_key, "k-1", &other_body)
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    let problem: Value = other.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://attestix.dev/problems/idempotency/key-reused"
    );
    // The same request again: the resource it made, marked as a replay.
    let retry = post_keyed(&client, &url, &api_key, "k-1", &first_body)
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert!(
        is_replay(&retry),
        "a recovered answer is marked as a replay"
    );
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);

    let identities = list(&client, &url, &api_key).await;
    assert_eq!(identities.len(), 1, "only the first request made anything");
    assert_eq!(identities[0]["display_name"], "First");
}

#[tokio::test]
async fn sqlite_recovery_point_answers_only_its_own_request() {
    a_recovery_point_answers_only_its_own_request(None).await;
}

#[tokio::test]
async fn postgres_recovery_point_answers_only_its_own_request() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    a_recovery_point_answers_only_its_own_request(Some(database.url())).await;
    let _ = database.drop_database().await;
}

/// A credential request whose claims are written short (`1e15` comes back as
/// `1000000000000000.0`), as raw JSON text: its response is several times its size.
fn credential_request(subject: &str, numbers: usize) -> String {
    format!(
        r#"{{"subject_id":"{subject}","credential_type":"ReadingsCredential","issuer_name":"Lab","claims":{{"readings":[{}]}}}}"#,
        vec!["1e15"; numbers].join(",")
    )
}

/// A keyed POST of raw JSON text.
async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    key: &str,
    body: &str,
) -> reqwest::Response {
    client
        .post(url)
        .header("x-api-key", api_key)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_create_whose_response_would_outgrow_the_stored_limit_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), None);
    let server = ServerProcess::start(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--max-response-bytes", "100000"],
            ..Default::default()
        },
    );
    let client = reqwest::Client::new();
    let agent: Value = post_keyed(
        &client,
        &server.url("/v1/identities"),
        &api_key,
        "subject",
        &json!({"display_name": "Subject", "source_protocol": "api_key"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let subject = agent["agent_id"].as_str().unwrap();
    let url = server.url("/v1/credentials");

    // 10,000 numbers: a 50 KB request whose credential would be about 190 KB.
    let big = credential_request(subject, 10_000);
    assert!(big.len() < 100_000);
    let refused = post_raw(&client, &url, &api_key, "big", &big).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("response limit"),
        "the problem says why: {problem}"
    );
    assert!(
        list(&client, &url, &api_key).await.is_empty(),
        "nothing was issued"
    );

    // Just under the limit: issued, stored, and a retry replays it (no second one).
    let fits = credential_request(subject, 4_000);
    let first = post_raw(&client, &url, &api_key, "fits", &fits).await;
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    assert!(first.len() > 50_000, "the response outgrew its request");
    let retry = post_raw(&client, &url, &api_key, "fits", &fits).await;
    assert_eq!(retry.status(), 201);
    assert!(is_replay(&retry));
    assert_eq!(retry.bytes().await.unwrap(), first);
    assert_eq!(list(&client, &url, &api_key).await.len(), 1);
}
