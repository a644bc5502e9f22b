//! Several server processes sharing one PostgreSQL database, and workers that die
//! holding a reservation.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{create_api_key, list, post_keyed, retry_until_done, ServerOptions, ServerProcess};
use idempotency_sql::pg_test::TestDatabase;
use serde_json::{json, Value};

/// What one of many concurrent requests got back.
#[derive(Debug)]
enum Answer {
    Created(Value),
    Replayed(Value),
    InFlight,
}

async fn storm(
    client: &reqwest::Client,
    servers: &[&ServerProcess],
    path: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> Vec<Answer> {
    let mut tasks = Vec::new();
    for index in 0..64 {
        let url = servers[index % servers.len()].url(path);
        let (client, api_key, key, body) = (
            client.clone(),
            api_key.to_owned(),
            key.to_owned(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let response = post_keyed(&client, &url, &api_key, &key, &body)
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotency-replayed");
            let document: Value = response.json().await.unwrap();
            match (status, replayed) {
                (201, false) => Answer::Created(document),
                (201, true) => Answer::Replayed(document),
                (409, _) => {
                    assert!(
                        document["type"].as_str().unwrap().ends_with("/in-flight"),
                        "a 409 may only mean in flight: {document}"
                    );
                    Answer::InFlight
                }
                other => panic!("unexpected answer {other:?}: {document}"),
            }
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn check_one_execution(answers: &[Answer], id_field: &str) -> String {
    let created: Vec<&Value> = answers
        .iter()
        .filter_map(|a| match a {
            Answer::Created(doc) => Some(doc),
            _ => None,
        })
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one request executed: {answers:?}"
    );
    let id = created[0][id_field].as_str().unwrap().to_owned();
    for answer in answers {
        if let Answer::Replayed(doc) = answer {
            assert_eq!(doc[id_field], id.as_str(), "every replay is the original");
        }
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_execute_each_key_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = Some(database.url());
    let api_key = create_api_key(dir.path(), url);
    let options = || ServerOptions {
        database_url: url,
        lease: Some("60s"),
        ..Default::default()
    };
    let first = ServerProcess::start(dir.path(), options());
    let second = ServerProcess::start(dir.path(), options());
    let client = reqwest::Client::new();

    let identity = json!({"display_name": "Clustered", "source_protocol": "api_key"});
    let answers = storm(
        &client,
        &[&first, &second],
        "/v1/identities",
        &api_key,
        "cluster-id",
        &identity,
    )
    .await;
    let agent_id = check_one_execution(&answers, "agent_id");
    let identities = list(&client, &first.url("/v1/identities"), &api_key).await;
    assert_eq!(identities.len(), 1, "one identity in the shared database");
    assert_eq!(identities[0]["agent_id"], agent_id.as_str());

    let credential = json!({
        "subject_id": agent_id, "credential_type": "AgentIdentityCredential",
        "issuer_name": "Acme", "claims": {"tier": "gold"},
    });
    let answers = storm(
        &client,
        &[&first, &second],
        "/v1/credentials",
        &api_key,
        "cluster-vc",
        &credential,
    )
    .await;
    let credential_id = check_one_execution(&answers, "id");
    let credentials = list(&client, &second.url("/v1/credentials"), &api_key).await;
    assert_eq!(
        credentials.len(),
        1,
        "one credential in the shared database"
    );
    assert_eq!(credentials[0]["id"], credential_id.as_str());

    // After the storm settles, both instances replay the same response.
    for server in [&first, &second] {
        let replay = post_keyed(
            &client,
            &server.url("/v1/identities"),
            &api_key,
            "cluster-id",
            &identity,
        )
        .await
        .unwrap();
        assert_eq!(replay.headers()["idempotency-replayed"], "true");
    }
    drop((first, second));
    let _ = database.drop_database().await;
}

/// A worker SIGKILLed while it holds a reservation (before anything committed):
/// after the lease, a retry on another instance executes, exactly once.
async fn killed_worker_frees_its_key_after_the_lease(url: &str) {
    let database_url = Some(url);
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let client = reqwest::Client::new();
    let body = json!({"display_name": "Orphan", "source_protocol": "api_key"});

    let mut doomed = ServerProcess::start(
        dir.path(),
        ServerOptions {
            database_url,
            failpoints: Some("identity.before_commit=sleep(30000)"),
            lease: Some("2s"),
            ..Default::default()
        },
    );
    let in_flight = {
        let (client, url, api_key, body) = (
            client.clone(),
            doomed.url("/v1/identities"),
            api_key.clone(),
            body.clone(),
        );
        tokio::spawn(async move { post_keyed(&client, &url, &api_key, "orphan", &body).await })
    };
    // The request is parked at the failpoint, holding the key; the key is busy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let survivor = ServerProcess::start(
        dir.path(),
        ServerOptions {
            database_url,
            lease: Some("2s"),
            ..Default::default()
        },
    );
    let busy = post_keyed(
        &client,
        &survivor.url("/v1/identities"),
        &api_key,
        "orphan",
        &body,
    )
    .await
    .unwrap();
    assert_eq!(
        busy.status(),
        409,
        "the dead-to-be worker still holds the key"
    );
    doomed.kill();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the first client lost its connection"
    );

    let response = retry_until_done(
        &client,
        &survivor.url("/v1/identities"),
        &api_key,
        "orphan",
        &body,
    )
    .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let identities = list(&client, &survivor.url("/v1/identities"), &api_key).await;
    assert_eq!(
        identities.len(),
        1,
        "the retry created the identity exactly once"
    );
    assert_eq!(identities[0]["agent_id"], created["agent_id"]);
    let ids: HashSet<_> = identities
        .iter()
        .map(|i| i["agent_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_worker_killed_mid_request_frees_its_key_after_the_lease() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    killed_worker_frees_its_key_after_the_lease(database.url()).await;
    let _ = database.drop_database().await;
}

/// SQLite is for one process: a second server on the same data directory is refused
/// while the first runs. When the first is killed mid-request, the next server takes
/// the key at once: reservations lived in the dead process, so no lease is waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serves_from_one_process_and_a_killed_workers_key_is_free_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), None);
    let client = reqwest::Client::new();
    let body = json!({"display_name": "Orphan", "source_protocol": "api_key"});
    let mut doomed = ServerProcess::start(
        dir.path(),
        ServerOptions {
            failpoints: Some("identity.before_commit=sleep(30000)"),
            lease: Some("60s"),
            ..Default::default()
        },
    );
    let in_flight = {
        let (client, url, api_key, body) = (
            client.clone(),
            doomed.url("/v1/identities"),
            api_key.clone(),
            body.clone(),
        );
        tokio::spawn(async move { post_keyed(&client, &url, &api_key, "orphan", &body).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let refusal = ServerProcess::refused(dir.path(), ServerOptions::default());
    assert!(
        refusal.contains("in use by another process")
            && refusal.contains("is another `attestix serve` running"),
        "the second server says why it cannot start: {refusal}"
    );
    // Tools that only need the storage still work beside the server.
    assert!(!create_api_key(dir.path(), None).is_empty());

    doomed.kill();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the first client lost its connection"
    );
    let restarted = ServerProcess::start(
        dir.path(),
        ServerOptions {
            lease: Some("60s"),
            ..Default::default()
        },
    );
    let retry = post_keyed(
        &client,
        &restarted.url("/v1/identities"),
        &api_key,
        "orphan",
        &body,
    )
    .await
    .unwrap();
    assert_eq!(
        retry.status(),
        201,
        "the key is free at once, not after 60 s"
    );
    let identities = list(&client, &restarted.url("/v1/identities"), &api_key).await;
    assert_eq!(identities.len(), 1, "the killed request made nothing");
}

/// SIGTERM stops accepting connections but lets the request in progress finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), None);
    let client = reqwest::Client::new();
    let mut server = ServerProcess::start(
        dir.path(),
        ServerOptions {
            failpoints: Some("identity.before_commit=sleep(1500)"),
            ..Default::default()
        },
    );
    let body = json!({"display_name": "Drained", "source_protocol": "api_key"});
    let in_flight = {
        let (client, url, api_key, body) = (
            client.clone(),
            server.url("/v1/identities"),
            api_key.clone(),
            body.clone(),
        );
        tokio::spawn(async move { post_keyed(&client, &url, &api_key, "drain", &body).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in progress is answered");
    assert_eq!(response.status(), 201);
    let exit = server.wait_for_exit();
    assert!(exit.success(), "a graceful stop exits 0, got {exit:?}");

    // What it created is there after a restart, and its key replays.
    let server = ServerProcess::start(dir.path(), ServerOptions::default());
    let replay = post_keyed(
        &client,
        &server.url("/v1/identities"),
        &api_key,
        "drain",
        &body,
    )
    .await
    .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(
        list(&client, &server.url("/v1/identities"), &api_key)
            .await
            .len(),
        1
    );
}

/// A delegation revoked through one instance no longer verifies on another: the
/// revocation is read from the shared database, not kept per process (the
/// reference's is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_revoked_on_one_instance_fails_to_verify_on_another() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = Some(database.url());
    let api_key = create_api_key(dir.path(), url);
    let options = || ServerOptions {
        database_url: url,
        ..Default::default()
    };
    let first = ServerProcess::start(dir.path(), options());
    let second = ServerProcess::start(dir.path(), options());
    let client = reqwest::Client::new();

    let agent: Value = post_keyed(
        &client,
        &first.url("/v1/identities"),
        &api_key,
        "delegator",
        &json!({"display_name": "Delegator", "source_protocol": "api_key"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let created: Value = post_keyed(
        &client,
        &first.url("/v1/delegations"),
        &api_key,
        "shared-delegation",
        &json!({"issuer_agent_id": agent["agent_id"], "audience_agent_id": "did:key:zB",
                "capabilities": ["read"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = created["token"].as_str().unwrap();
    let jti = created["delegation"]["jti"].as_str().unwrap();

    let verify = |server: &ServerProcess| {
        let request = client
            .post(server.url("/v1/delegations/verify"))
            .header("x-api-key", &api_key)
            .json(&json!({ "token": token }));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(verify(&second).await["valid"], true);
    let revoked = client
        .delete(second.url(&format!("/v1/delegations/{jti}")))
        .header("x-api-key", &api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        verify(&first).await,
        json!({"valid": false, "reason": "Token has been revoked"})
    );
    drop((first, second));
    let _ = database.drop_database().await;
}
