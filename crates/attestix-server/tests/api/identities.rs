//! POST /v1/identities and friends: the seed's acceptance cases and bad input.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    retry_with_the_same_key_returns_the_original_identity_byte_identical,
    many_retries_with_one_key_leave_exactly_one_identity,
    different_keys_create_distinct_identities,
    same_key_with_a_different_body_is_a_409_and_creates_nothing,
    requests_without_a_key_create_a_new_identity_every_time,
    reordered_json_with_the_same_meaning_is_replayed,
    sixty_four_concurrent_requests_with_one_key_create_one_identity,
    bad_input_gets_a_precise_problem_and_writes_nothing,
    an_identity_can_be_read_verified_and_revoked,
    listing_pages_with_a_cursor_and_filters,
    metrics_count_requests_by_route_status_and_idempotency_outcome,
    every_answer_carries_its_own_request_id,
    a_key_used_again_after_its_retention_creates_a_second_identity,
);

async fn retry_with_the_same_key_returns_the_original_identity_byte_identical(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Report Bot");
    let first = Reply::of(server.post_keyed("/v1/identities", "seed-1", &body).send()).await;
    let retry = Reply::of(server.post_keyed("/v1/identities", "seed-1", &body).send()).await;

    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert_eq!(retry.status, 201);
    assert!(retry.replayed());
    assert_eq!(
        retry.body, first.body,
        "the replayed body is byte-identical"
    );
    for header in ["content-type", "content-length"] {
        assert_eq!(
            retry.headers.get(header),
            first.headers.get(header),
            "{header}"
        );
    }
    let identity = first.json();
    assert!(identity["agent_id"]
        .as_str()
        .unwrap()
        .starts_with("attestix:"));
    assert_eq!(server.all_identities().await.len(), 1);
    server.finish().await;
}

async fn a_key_used_again_after_its_retention_creates_a_second_identity(backend: Backend) {
    // Keyed creates get ids derived from (scope, key, use): the second use finds the
    // first one's identity at the key's first id, too old to be its own, and moves on
    // to the key's next id; its retry then replays.
    let Some(server) = TestServer::start_with(backend, |mut config| {
        // Long enough that the second use's retry, on a loaded machine, still falls
        // inside its retention.
        config.idempotency.retention = std::time::Duration::from_millis(2_000);
        config
    })
    .await
    else {
        return;
    };
    let body = identity_body("Nightly Bot");
    let first = Reply::of(server.post_keyed("/v1/identities", "nightly", &body).send()).await;
    assert_eq!(first.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let second = Reply::of(server.post_keyed("/v1/identities", "nightly", &body).send()).await;
    assert_eq!(second.status, 201);
    assert!(!second.replayed(), "the first use's record has expired");
    assert_ne!(second.json()["agent_id"], first.json()["agent_id"]);
    let retry = Reply::of(server.post_keyed("/v1/identities", "nightly", &body).send()).await;
    assert!(retry.replayed());
    assert_eq!(retry.body, second.body);
    assert_eq!(server.all_identities().await.len(), 2);
    server.finish().await;
}

async fn many_retries_with_one_key_leave_exactly_one_identity(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Retry Bot");
    let mut agent_ids = HashSet::new();
    for _ in 0..10 {
        let reply = Reply::of(
            server
                .post_keyed("/v1/identities", "retry-key", &body)
                .send(),
        )
        .await;
        assert_eq!(reply.status, 201);
        agent_ids.insert(reply.json()["agent_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(agent_ids.len(), 1);
    let all = server.all_identities().await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0]["agent_id"].as_str(),
        agent_ids.iter().next().map(String::as_str)
    );
    server.finish().await;
}

async fn different_keys_create_distinct_identities(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Twin");
    let a = Reply::of(server.post_keyed("/v1/identities", "key-a", &body).send()).await;
    let b = Reply::of(server.post_keyed("/v1/identities", "key-b", &body).send()).await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_ne!(a.json()["agent_id"], b.json()["agent_id"]);
    assert_eq!(server.all_identities().await.len(), 2);
    server.finish().await;
}

async fn same_key_with_a_different_body_is_a_409_and_creates_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    Reply::of(
        server
            .post_keyed("/v1/identities", "k", &identity_body("One"))
            .send(),
    )
    .await;
    let other = Reply::of(
        server
            .post_keyed("/v1/identities", "k", &identity_body("Two"))
            .send(),
    )
    .await;
    assert_eq!(other.status, 409);
    let problem = other.problem();
    assert!(
        problem["type"].as_str().unwrap().ends_with("/key-reused"),
        "{problem}"
    );
    assert_eq!(server.all_identities().await.len(), 1);
    server.finish().await;
}

async fn requests_without_a_key_create_a_new_identity_every_time(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Unkeyed");
    for _ in 0..3 {
        let reply = Reply::of(
            server
                .request(Method::POST, "/v1/identities")
                .json(&body)
                .send(),
        )
        .await;
        assert_eq!(reply.status, 201);
        assert!(!reply.replayed());
    }
    assert_eq!(server.all_identities().await.len(), 3);
    server.finish().await;
}

async fn reordered_json_with_the_same_meaning_is_replayed(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let first = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .header("idempotency-key", "reordered")
            .header("content-type", "application/json")
            .body(r#"{"display_name":"R","source_protocol":"api_key","capabilities":["a","b"]}"#)
            .send(),
    )
    .await;
    let retry = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .header("idempotency-key", "reordered")
            .header("content-type", "application/json")
            .body("{ \"capabilities\": [\"a\", \"b\"],\n  \"source_protocol\": \"api_key\", \"display_name\": \"R\" }")
            .send(),
    )
    .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    server.finish().await;
}

async fn sixty_four_concurrent_requests_with_one_key_create_one_identity(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let server = Arc::new(server);
    let body = identity_body("Storm");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let server = server.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            Reply::of(server.post_keyed("/v1/identities", "storm", &body).send()).await
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            201 => created.push(reply.json()["agent_id"].as_str().unwrap().to_owned()),
            409 => assert!(reply.problem()["type"]
                .as_str()
                .unwrap()
                .ends_with("/in-flight")),
            other => panic!("unexpected status {other}: {:?}", reply.body),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|id| *id == created[0]),
        "every 201 is the same identity"
    );
    assert_eq!(server.all_identities().await.len(), 1);
    Arc::try_unwrap(server)
        .ok()
        .expect("tasks are done")
        .finish()
        .await;
}

async fn bad_input_gets_a_precise_problem_and_writes_nothing(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |mut c| {
        c.max_body_bytes = 4096;
        c
    })
    .await
    else {
        return;
    };
    let raw = |body: &'static str| {
        server
            .request(Method::POST, "/v1/identities")
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (raw("{not json"), 400, "not valid JSON"),
        (
            raw(r#"{"display_name": 42, "source_protocol": "x"}"#),
            422,
            "display_name",
        ),
        (raw(r#"{"source_protocol": "x"}"#), 422, "display_name"),
        (raw(r#"{"display_name": "x"}"#), 422, "source_protocol"),
        (
            raw(r#"{"display_name": "bad\u0007name", "source_protocol": "x"}"#),
            422,
            "control characters",
        ),
        (
            raw(r#"{"display_name": "   ", "source_protocol": "x"}"#),
            422,
            "display_name",
        ),
        (
            raw(r#"{"display_name": "x", "source_protocol": "x", "expiry_days": 0}"#),
            422,
            "expiry_days",
        ),
        (
            raw(r#"{"display_name": "x", "source_protocol": "x", "expiry_days": 36501}"#),
            422,
            "expiry_days",
        ),
        (
            raw(r#"{"display_name": "x", "source_protocol": "x", "expiry_days": 1e400}"#),
            400,
            "JSON",
        ),
        (raw(r#"[1,2,3]"#), 422, "body"),
        (
            server
                .request(Method::POST, "/v1/identities")
                .header("content-type", "text/plain")
                .body(r#"{"display_name": "x", "source_protocol": "x"}"#),
            415,
            "Content-Type",
        ),
        (
            server
                .request(Method::POST, "/v1/identities")
                .json(&json!({"display_name": "x".repeat(5000), "source_protocol": "x"})),
            413,
            "larger",
        ),
        (
            server
                .request(Method::POST, "/v1/identities")
                .header("idempotency-key", "oversize")
                .json(&json!({"display_name": "x".repeat(5000), "source_protocol": "x"})),
            413,
            "larger",
        ),
        (
            server
                .request(Method::POST, "/v1/identities")
                .json(&json!({"display_name": "x".repeat(501), "source_protocol": "x"})),
            422,
            "500",
        ),
    ];
    for (index, (request, status, mention)) in cases.into_iter().enumerate() {
        let reply = Reply::of(request.send()).await;
        assert_eq!(
            reply.status,
            status,
            "case {index}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        assert_eq!(problem["status"], status);
        let text = problem.to_string();
        assert!(
            text.contains(mention),
            "case {index} mentions {mention}: {text}"
        );
    }
    for (path, kind) in [
        ("/v1/identities/attestix:0000000000000000", "identity"),
        (
            "/v1/credentials/urn:uuid:00000000-0000-4000-8000-000000000000",
            "credential",
        ),
    ] {
        let reply = Reply::of(server.request(Method::GET, path).send()).await;
        assert_eq!(reply.status, 404);
        assert!(reply.problem()["detail"].as_str().unwrap().contains(kind));
    }
    let reply = Reply::of(
        server
            .request(Method::DELETE, "/v1/identities/attestix:0000000000000000")
            .send(),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        server.all_identities().await.is_empty(),
        "nothing was written"
    );
    // The server is healthy afterwards.
    let health = Reply::of(server.client.get(server.url("/health")).send()).await;
    assert_eq!(health.json()["status"], "healthy");
    server.finish().await;
}

async fn an_identity_can_be_read_verified_and_revoked(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let mut body = identity_body("Lifecycle");
    body["identity_token"] = json!("sk-live-1234567890abcdef");
    let created = Reply::of(server.post_keyed("/v1/identities", "life", &body).send()).await;
    let uait = created.json();
    let agent_id = uait["agent_id"].as_str().unwrap();
    // The token is masked and never leaks.
    assert_eq!(uait["identity_token"], "sk-l...cdef");
    assert!(!String::from_utf8_lossy(&created.body).contains("1234567890"));

    let fetched = Reply::of(
        server
            .request(Method::GET, &format!("/v1/identities/{agent_id}"))
            .send(),
    )
    .await;
    assert_eq!(
        fetched.body, created.body,
        "GET returns the bytes POST returned"
    );

    // The document verifies offline against the server's DID, and tampering breaks it.
    let did = attestix_core::DidKey::parse(uait["issuer"]["did"].as_str().unwrap()).unwrap();
    assert!(attestix_core::verify_uait_signature(
        &uait,
        &did.verifying_key()
    ));
    let mut tampered = uait.clone();
    tampered["capabilities"] = json!(["admin"]);
    assert!(!attestix_core::verify_uait_signature(
        &tampered,
        &did.verifying_key()
    ));

    let verify = Reply::of(
        server
            .request(Method::POST, &format!("/v1/identities/{agent_id}/verify"))
            .send(),
    )
    .await;
    let verify = verify.json();
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(verify["checks"]["signature_valid"], true);

    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/identities/{agent_id}"))
            .json(&json!({"reason": "compromised"}))
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    let revoked = revoked.json();
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["revocation_reason"], "compromised");

    let verify = Reply::of(
        server
            .request(Method::POST, &format!("/v1/identities/{agent_id}/verify"))
            .send(),
    )
    .await;
    let verify = verify.json();
    assert_eq!(verify["valid"], false, "a revoked identity is not valid");
    assert_eq!(verify["checks"]["not_revoked"], false);
    assert_eq!(
        verify["checks"]["signature_valid"], true,
        "its signature stays valid"
    );

    let unknown = Reply::of(
        server
            .request(
                Method::POST,
                "/v1/identities/attestix:ffffffffffffffff/verify",
            )
            .send(),
    )
    .await;
    assert_eq!(unknown.json()["checks"]["exists"], false);
    server.finish().await;
}

async fn listing_pages_with_a_cursor_and_filters(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for index in 0..25 {
        let mut body = identity_body(&format!("Bot {index}"));
        if index % 5 == 0 {
            body["source_protocol"] = json!("oauth2");
        }
        let reply = Reply::of(
            server
                .request(Method::POST, "/v1/identities")
                .json(&body)
                .send(),
        )
        .await;
        assert_eq!(reply.status, 201);
    }
    let first = Reply::of(
        server
            .request(Method::GET, "/v1/identities?limit=10")
            .send(),
    )
    .await;
    assert_eq!(first.json().as_array().unwrap().len(), 10);
    assert!(first.headers.contains_key("x-next-cursor"));
    let all = server
        .all_pages("/v1/identities?limit=10", &server.admin_key)
        .await;
    let names: HashSet<_> = all
        .iter()
        .map(|i| i["display_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 25, "every identity once, none twice");
    let oauth = server
        .all_pages(
            "/v1/identities?limit=2&source_protocol=oauth2",
            &server.admin_key,
        )
        .await;
    assert_eq!(oauth.len(), 5);
    let bad = Reply::of(
        server
            .request(Method::GET, "/v1/identities?limit=5000")
            .send(),
    )
    .await;
    assert_eq!(bad.status, 422);
    let bad = Reply::of(
        server
            .request(Method::GET, "/v1/identities?cursor=garbage")
            .send(),
    )
    .await;
    assert_eq!(bad.status, 422);
    server.finish().await;
}

/// An existing Python Attestix data directory keeps its identity: the server signs
/// with the key in its `.signing_key.json`.
#[tokio::test]
async fn an_existing_python_signing_key_file_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let key = attestix_core::SigningKey::from_seed(seed);
    // The file as the Python reference writes it.
    let file = json!({
        "did_key": key.did(),
        "algorithm": "Ed25519",
        "note": "Attestix server signing key. Keep this file secret.",
        "private_key_b64": base64_standard(&seed),
    });
    std::fs::write(dir.path().join(".signing_key.json"), file.to_string()).unwrap();
    let config = attestix_server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let app = attestix_server::Application::build(config).await.unwrap();
    assert_eq!(app.did(), key.did());
    assert_eq!(
        app.signing_key_origin(),
        attestix_server::signing_key::KeyOrigin::Loaded
    );
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_method_the_route_lacks_is_a_405_problem_even_with_a_key() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    for _ in 0..2 {
        let reply = Reply::of(
            server
                .request(Method::PATCH, "/v1/identities")
                .header("idempotency-key", "patch-key")
                .json(&identity_body("Patched"))
                .send(),
        )
        .await;
        assert_eq!(
            reply.status, 405,
            "not 409: the idempotency layer never saw it"
        );
        assert!(reply.headers.contains_key("allow"));
        assert_eq!(reply.problem()["status"], 405);
    }
    server.finish().await;
}

#[tokio::test]
async fn revoking_with_a_null_body_or_a_float_expiry_is_accepted() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let mut body = identity_body("Floaty");
    body["expiry_days"] = json!(30.0);
    let created = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    body["expiry_days"] = json!(30.5);
    let fractional = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(fractional.status, 422);
    let agent_id = created.json()["agent_id"].as_str().unwrap().to_owned();
    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/identities/{agent_id}"))
            .header("content-type", "application/json")
            .body("null")
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    server.finish().await;
}

async fn metrics_count_requests_by_route_status_and_idempotency_outcome(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Counted");
    let first = Reply::of(
        server
            .post_keyed("/v1/identities", "metrics-1", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    let retry = Reply::of(
        server
            .post_keyed("/v1/identities", "metrics-1", &body)
            .send(),
    )
    .await;
    assert_eq!(retry.status, 201);
    let metrics = Reply::of(
        server
            .client
            .get(server.url("/metrics"))
            .bearer_auth(&server.admin_key)
            .send(),
    )
    .await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for series in [
        // The route template is the label, never the raw path.
        r#"http_requests_total{method="POST",route="/v1/identities",status="201"}"#,
        r#"idempotency_requests_total{outcome="executed"}"#,
        r#"idempotency_requests_total{outcome="replayed"}"#,
        r#"http_request_duration_seconds_count{method="POST",route="/v1/identities"}"#,
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    server.finish().await;
}

/// Request ids are set around the whole router: on every answer, a 404 and a replay
/// included, and a replay carries the retry's id, not the stored answer's.
async fn every_answer_carries_its_own_request_id(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let request_id = |reply: &Reply| {
        reply
            .headers
            .get("x-request-id")
            .map(|value| value.to_str().expect("ASCII").to_owned())
    };
    let health = Reply::of(server.request(Method::GET, "/health").send()).await;
    let generated = request_id(&health).expect("a generated request id");
    assert!(
        uuid::Uuid::parse_str(&generated).is_ok(),
        "a generated id is a UUID: {generated}"
    );

    let missing = Reply::of(server.request(Method::GET, "/no-such-route").send()).await;
    assert_eq!(missing.status, 404);
    assert!(request_id(&missing).is_some(), "a 404 has a request id too");

    let body = identity_body("Traced");
    let first = Reply::of(
        server
            .post_keyed("/v1/identities", "traced-1", &body)
            .header("x-request-id", "first-attempt")
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    assert_eq!(request_id(&first).as_deref(), Some("first-attempt"));
    let retry = Reply::of(
        server
            .post_keyed("/v1/identities", "traced-1", &body)
            .header("x-request-id", "the-retry")
            .send(),
    )
    .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(request_id(&retry).as_deref(), Some("the-retry"));
    server.finish().await;
}
