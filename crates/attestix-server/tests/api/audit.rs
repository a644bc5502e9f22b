//! /v1/audit: every mutation appends one hash-chained event in its own transaction;
//! concurrent writers never fork the chain, tampering is found, scopes are separate,
//! and a replayed request appends nothing.

use std::collections::HashSet;

use attestix_server::storage::records::{self, Stmt};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    sixty_four_concurrent_mutations_make_one_chain_without_a_fork,
    a_tampered_event_breaks_the_chain_where_it_was_changed,
    another_principal_sees_no_events_and_has_its_own_chain,
    a_replayed_request_appends_no_second_event,
    every_existing_mutation_appends_its_reference_event,
    bad_list_parameters_are_422s_naming_the_field,
);

async fn events(server: &TestServer, key: &str, query: &str) -> Vec<Value> {
    server
        .all_pages(&format!("/v1/audit/events?limit=7{query}"), key)
        .await
}

async fn verify(server: &TestServer, key: &str) -> Value {
    let reply = Reply::of(
        server
            .client
            .get(server.url("/v1/audit/verify"))
            .header("x-api-key", key)
            .send(),
    )
    .await;
    assert_eq!(reply.status, 200);
    reply.json()
}

/// Each event's `prev_hash` is the previous one's `chain_hash`, and no two events
/// share a `prev_hash` (a fork would).
fn assert_one_chain(events: &[Value]) {
    let mut prev = "0".repeat(64);
    let mut seen = HashSet::new();
    for event in events {
        assert_eq!(event["prev_hash"], prev.as_str(), "{event}");
        assert!(seen.insert(prev.clone()), "two events follow {prev}");
        prev = event["chain_hash"].as_str().unwrap().to_owned();
    }
}

async fn create_identity(server: &TestServer, key: Option<&str>, name: &str) -> Reply {
    let mut request = server.request(Method::POST, "/v1/identities");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    Reply::of(request.json(&identity_body(name)).send()).await
}

async fn interaction(server: &TestServer, key: Option<&str>, agent: &str) -> Reply {
    let mut request = server.request(Method::POST, "/v1/reputation/interactions");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let body = json!({"agent_id": agent, "counterparty_id": "attestix:peer", "outcome": "success"});
    Reply::of(request.json(&body).send()).await
}

async fn sixty_four_concurrent_mutations_make_one_chain_without_a_fork(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for n in 0..64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            // Identities (some keyed) through the batched insert, interactions
            // through a write transaction: both paths append to the same chain.
            let reply = match n % 4 {
                0 => interaction(&server, None, &format!("agent-{n}")).await,
                1 => create_identity(&server, Some(&format!("k-{n}")), &format!("A{n}")).await,
                _ => create_identity(&server, None, &format!("A{n}")).await,
            };
            assert_eq!(
                reply.status,
                201,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admin = server.admin_key.clone();
    let report = verify(&server, &admin).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["events"], 64, "{report}");
    assert_eq!(report["redacted"], 0);
    assert_eq!(report["broken_at"], Value::Null);
    let listed = events(&server, &admin, "").await;
    assert_eq!(listed.len(), 64);
    assert_one_chain(&listed);
    let creates = listed
        .iter()
        .filter(|event| event["action"] == "identity.create")
        .count();
    assert_eq!(creates, 48);
    let server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    server.finish().await;
}

async fn a_tampered_event_breaks_the_chain_where_it_was_changed(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for n in 0..3 {
        assert_eq!(
            create_identity(&server, None, &format!("T{n}"))
                .await
                .status,
            201
        );
    }
    let admin = server.admin_key.clone();
    let listed = events(&server, &admin, "").await;
    let victim = listed[1]["event_id"].as_str().unwrap().to_owned();
    let mut forged = listed[1].clone();
    forged["actor"] = json!("did:key:zMallory");
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    let document = forged.to_string();
    let changed = records::write_with(&*storage, move |tx| {
        Box::pin(async move {
            tx.execute(
                Stmt::new("UPDATE records SET document = ")
                    .bind(document)
                    .sql(" WHERE kind = 'audit_event' AND id = ")
                    .bind(victim),
            )
            .await
        })
    })
    .await
    .unwrap();
    assert_eq!(changed, 1);
    let report = verify(&server, &admin).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["broken_at"], listed[1]["event_id"], "{report}");
    assert_eq!(report["events"], 3);
    server.finish().await;
}

async fn another_principal_sees_no_events_and_has_its_own_chain(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    assert_eq!(create_identity(&server, None, "Mine").await.status, 201);
    let bob = server.key_for("bob").await;
    assert!(events(&server, &bob, "").await.is_empty());
    let report = verify(&server, &bob).await;
    assert_eq!(
        report,
        json!({"valid": true, "events": 0, "redacted": 0, "broken_at": null})
    );
    // Bob's own mutation starts his own chain from the genesis hash.
    let reply = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", &bob)
            .json(&identity_body("Bob's"))
            .send(),
    )
    .await;
    assert_eq!(reply.status, 201);
    let bobs = events(&server, &bob, "").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["prev_hash"], "0".repeat(64));
    // A tenant of the same principal is another scope too.
    let tenant = Reply::of(
        server
            .request(Method::GET, "/v1/audit/events")
            .header("x-attestix-tenant", "acme")
            .send(),
    )
    .await;
    assert_eq!(tenant.status, 200);
    assert_eq!(tenant.json(), json!([]));
    let admin = server.admin_key.clone();
    assert_eq!(events(&server, &admin, "").await.len(), 1);
    server.finish().await;
}

async fn a_replayed_request_appends_no_second_event(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let first = create_identity(&server, Some("same-key"), "Once").await;
    let again = create_identity(&server, Some("same-key"), "Once").await;
    assert_eq!(first.status, 201);
    assert!(again.replayed());
    let agent = first.json()["agent_id"].as_str().unwrap().to_owned();
    let revoke = || {
        Reply::of(
            server
                .request(Method::DELETE, &format!("/v1/identities/{agent}"))
                .header("idempotency-key", "revoke-key")
                .send(),
        )
    };
    assert_eq!(revoke().await.status, 200);
    assert!(revoke().await.replayed());
    assert_eq!(
        interaction(&server, Some("rep-key"), "agent-x")
            .await
            .status,
        201
    );
    assert!(interaction(&server, Some("rep-key"), "agent-x")
        .await
        .replayed());
    let admin = server.admin_key.clone();
    let actions: Vec<Value> = events(&server, &admin, "")
        .await
        .iter()
        .map(|event| event["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [
            json!("identity.create"),
            json!("identity.revoke"),
            json!("reputation.record")
        ]
    );
    server.finish().await;
}

fn digest_of_after(after: &Value) -> String {
    // The canonical form of these payloads: sorted keys, no spaces.
    let canonical = attestix_core::canonical_bytes(&json!({ "after": after })).unwrap();
    hex::encode(Sha256::digest(canonical))
}

async fn every_existing_mutation_appends_its_reference_event(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = create_identity(&server, None, "Events").await.json()["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued = Reply::of(
        server
            .request(Method::POST, "/v1/credentials")
            .json(&json!({"subject_id": agent, "credential_type": "TestCredential", "issuer_name": "Test",
                          "claims": {"level": 1}}))
            .send(),
    )
    .await;
    assert_eq!(
        issued.status,
        201,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let credential = issued.json();
    let credential_id = credential["id"].as_str().unwrap().to_owned();
    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/credentials/{credential_id}"))
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    let did = Reply::of(server.request(Method::POST, "/v1/dids/key").send()).await;
    assert_eq!(did.status, 201);
    let did = did.json();
    let admin = server.admin_key.clone();
    let listed = events(&server, &admin, "").await;
    let server_did = listed[0]["actor"].as_str().unwrap().to_owned();
    assert!(server_did.starts_with("did:key:z"));
    let expected = [
        (
            "identity.create",
            agent.as_str(),
            "identities",
            server_did.as_str(),
            json!({"agent_id": agent, "source_protocol": "api_key"}),
        ),
        (
            "credential.issue",
            &credential_id,
            "credentials",
            &server_did,
            json!({"id": credential_id, "type": credential["type"], "subject": agent}),
        ),
        (
            "credential.revoke",
            &credential_id,
            "credentials",
            &server_did,
            json!({"id": credential_id, "revoked": true}),
        ),
        (
            "did.create_did_key",
            did["did"].as_str().unwrap(),
            "did",
            "attestix:did-service",
            json!({"did": did["did"], "keypair_id": did["keypair_id"]}),
        ),
    ];
    assert_eq!(listed.len(), expected.len());
    for (event, (action, target, collection, actor, after)) in listed.iter().zip(expected) {
        assert_eq!(event["action"], action);
        assert_eq!(event["target_id"], target);
        assert_eq!(event["target_collection"], collection);
        assert_eq!(event["actor"], actor);
        assert_eq!(event["tenant_id"], "default");
        assert_eq!(event["change_digest"], digest_of_after(&after), "{action}");
        assert!(event["event_id"].as_str().unwrap().starts_with("evt:"));
        assert_eq!(event["event_id"].as_str().unwrap().len(), 16);
    }
    // Filters: by target, by action, by time.
    let by_target = events(&server, &admin, &format!("&target_id={credential_id}")).await;
    assert_eq!(by_target.len(), 2);
    let by_action = events(&server, &admin, "&action=did.create_did_key").await;
    assert_eq!(by_action.len(), 1);
    let future = events(&server, &admin, "&since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    let past = events(&server, &admin, "&since=2000-01-01T00:00:00%2B00:00").await;
    assert_eq!(past.len(), 4);
    server.finish().await;
}

async fn bad_list_parameters_are_422s_naming_the_field(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zzz", "cursor"),
        ("since=yesterday", "since"),
    ] {
        let reply = Reply::of(
            server
                .request(Method::GET, &format!("/v1/audit/events?{query}"))
                .send(),
        )
        .await;
        assert_eq!(reply.status, 422, "{query}");
        let problem = reply.problem();
        assert!(problem.to_string().contains(field), "{query}: {problem}");
    }
    let long = "x".repeat(513);
    let reply = Reply::of(
        server
            .request(Method::GET, &format!("/v1/audit/events?target_id={long}"))
            .send(),
    )
    .await;
    assert_eq!(reply.status, 422);
    server.finish().await;
}
