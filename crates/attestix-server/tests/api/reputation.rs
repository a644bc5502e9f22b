//! /v1/reputation: interactions, the recency-weighted score, the identity's
//! `reputation_score`, the deterministic query with cursor paging, Idempotency-Key,
//! scopes and bad input.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    an_interaction_is_recorded_scored_and_kept_on_the_identity,
    the_breakdown_counts_outcomes_per_category,
    the_query_filters_sorts_by_score_then_id_and_pages,
    a_keyed_interaction_replays_without_a_second_record,
    another_principal_sees_none_of_it,
    every_bad_field_is_a_422_naming_it_and_records_nothing,
);

async fn record(server: &TestServer, key: &str, body: &Value) -> Reply {
    Reply::of(
        server
            .client
            .post(server.url("/v1/reputation/interactions"))
            .header("x-api-key", key)
            .json(body)
            .send(),
    )
    .await
}

fn interaction(agent: &str, outcome: &str, category: &str) -> Value {
    json!({"agent_id": agent, "counterparty_id": "attestix:peer", "outcome": outcome,
           "category": category})
}

async fn get(server: &TestServer, key: &str, path: &str) -> Reply {
    Reply::of(
        server
            .client
            .get(server.url(path))
            .header("x-api-key", key)
            .send(),
    )
    .await
}

async fn an_interaction_is_recorded_scored_and_kept_on_the_identity(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let created = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body("Scored"))
            .send(),
    )
    .await;
    let agent = created.json()["agent_id"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    for outcome in ["success", "success", "failure"] {
        let reply = record(&server, &admin, &interaction(&agent, outcome, "task")).await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        last = reply.json();
    }
    assert_eq!(last["recorded"], true);
    let keys: Vec<&str> = last["interaction"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "agent_id",
            "counterparty_id",
            "outcome",
            "category",
            "details",
            "timestamp",
            "epoch"
        ]
    );
    assert_eq!(last["interaction"]["details"], "");
    // Three interactions within a second or two: weights all but equal, 2/3.
    assert_eq!(last["updated_score"]["trust_score"], 0.6667);
    assert_eq!(last["updated_score"]["total_interactions"], 3);
    // The identity carries the score, and its signature still verifies.
    let identity = get(&server, &admin, &format!("/v1/identities/{agent}"))
        .await
        .json();
    assert_eq!(identity["reputation_score"], 0.6667);
    let verified = Reply::of(
        server
            .request(Method::POST, &format!("/v1/identities/{agent}/verify"))
            .send(),
    )
    .await
    .json();
    assert_eq!(verified["valid"], true, "{verified}");
    // One reputation.record per interaction, and an identity.update with the score.
    let events = server
        .all_pages("/v1/audit/events?limit=1000", &admin)
        .await;
    let records = events
        .iter()
        .filter(|e| e["action"] == "reputation.record")
        .count();
    let updates = events
        .iter()
        .filter(|e| e["action"] == "identity.update")
        .count();
    assert_eq!((records, updates), (3, 3));
    let verify = get(&server, &admin, "/v1/audit/verify").await.json();
    assert_eq!(verify["valid"], true);
    server.finish().await;
}

async fn the_breakdown_counts_outcomes_per_category(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    for (outcome, category) in [
        ("success", "task"),
        ("timeout", "task"),
        ("partial", "delegation"),
        ("failure", "task"),
    ] {
        assert_eq!(
            record(&server, &admin, &interaction("a1", outcome, category))
                .await
                .status,
            201
        );
    }
    let reply = get(&server, &admin, "/v1/reputation/a1").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["agent_id"], "a1");
    assert_eq!(body["total_interactions"], 4);
    // (1 + 0.2 + 0.5 + 0) / 4.
    assert_eq!(body["trust_score"], 0.425);
    assert_eq!(
        body["category_breakdown"],
        json!({
            "task": {"success": 1, "failure": 1, "partial": 0, "timeout": 1, "total": 3},
            "delegation": {"success": 0, "failure": 0, "partial": 1, "timeout": 0, "total": 1},
        })
    );
    let keys: Vec<&str> = body["category_breakdown"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["task", "delegation"]);
    let none = get(&server, &admin, "/v1/reputation/nobody").await.json();
    assert_eq!(none["trust_score"], Value::Null);
    assert_eq!(none["total_interactions"], 0);
    server.finish().await;
}

async fn the_query_filters_sorts_by_score_then_id_and_pages(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    // c and b tie at 1.0 (sorted by id), a at 0.5, d at 0 with two interactions.
    for (agent, outcome, category) in [
        ("c", "success", "task"),
        ("a", "partial", "task"),
        ("b", "success", "general"),
        ("d", "failure", "task"),
        ("d", "failure", "general"),
    ] {
        assert_eq!(
            record(&server, &admin, &interaction(agent, outcome, category))
                .await
                .status,
            201
        );
    }
    let all = server.all_pages("/v1/reputation?limit=1", &admin).await;
    let order: Vec<&str> = all
        .iter()
        .map(|r| r["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["b", "c", "a", "d"]);
    assert_eq!(
        all[2],
        json!({"agent_id": "a", "trust_score": 0.5, "interaction_count": 1})
    );
    let high = get(&server, &admin, "/v1/reputation?min_score=0.6")
        .await
        .json();
    assert_eq!(high.as_array().unwrap().len(), 2);
    let busy = get(&server, &admin, "/v1/reputation?min_interactions=2")
        .await
        .json();
    assert_eq!(
        busy,
        json!([{"agent_id": "d", "trust_score": 0.0, "interaction_count": 2}])
    );
    let tasks = get(&server, &admin, "/v1/reputation?category=task")
        .await
        .json();
    let order: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["c", "a", "d"]);
    assert_eq!(tasks[2]["interaction_count"], 1);
    server.finish().await;
}

async fn a_keyed_interaction_replays_without_a_second_record(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = interaction("k1", "success", "general");
    let first = Reply::of(
        server
            .post_keyed("/v1/reputation/interactions", "rk", &body)
            .send(),
    )
    .await;
    let again = Reply::of(
        server
            .post_keyed("/v1/reputation/interactions", "rk", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    assert_eq!(again.status, 201);
    assert!(again.replayed());
    assert_eq!(first.body, again.body);
    let other = interaction("k1", "failure", "general");
    let reused = Reply::of(
        server
            .post_keyed("/v1/reputation/interactions", "rk", &other)
            .send(),
    )
    .await;
    assert_eq!(reused.status / 100, 4, "a reused key is refused");
    let admin = server.admin_key.clone();
    let summary = get(&server, &admin, "/v1/reputation/k1").await.json();
    assert_eq!(summary["total_interactions"], 1);
    server.finish().await;
}

async fn another_principal_sees_none_of_it(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    assert_eq!(
        record(&server, &admin, &interaction("s1", "success", "general"))
            .await
            .status,
        201
    );
    let bob = server.key_for("bob").await;
    let theirs = get(&server, &bob, "/v1/reputation/s1").await.json();
    assert_eq!(theirs["total_interactions"], 0);
    assert_eq!(get(&server, &bob, "/v1/reputation").await.json(), json!([]));
    // Bob's interactions about the same agent are his own.
    assert_eq!(
        record(&server, &bob, &interaction("s1", "failure", "general"))
            .await
            .status,
        201
    );
    let mine = get(&server, &admin, "/v1/reputation/s1").await.json();
    assert_eq!(mine["trust_score"], 1.0);
    server.finish().await;
}

async fn every_bad_field_is_a_422_naming_it_and_records_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let long = "x".repeat(257);
    for (body, field) in [
        (interaction("a", "great", "general"), "outcome"),
        (interaction("", "success", "general"), "agent_id"),
        (interaction(&long, "success", "general"), "agent_id"),
        (interaction("a", "success", ""), "category"),
        (
            json!({"agent_id": "a", "counterparty_id": "a\u{0}", "outcome": "success"}),
            "counterparty_id",
        ),
        (
            json!({"agent_id": "a", "counterparty_id": "b", "outcome": "success",
                   "details": "d".repeat(4097)}),
            "details",
        ),
        (
            json!({"agent_id": "a", "outcome": "success"}),
            "counterparty_id",
        ),
    ] {
        let reply = record(&server, &admin, &body).await;
        assert_eq!(reply.status, 422, "{body}");
        assert!(reply.problem().to_string().contains(field), "{field}");
    }
    for query in [
        "min_score=2",
        "max_score=-1",
        "min_score=NaN",
        "min_interactions=-1",
        "min_score=abc",
        "limit=0",
        "cursor=c-1",
    ] {
        let reply = get(&server, &admin, &format!("/v1/reputation?{query}")).await;
        assert_eq!(reply.status, 422, "{query}");
    }
    assert_eq!(
        get(&server, &admin, "/v1/reputation").await.json(),
        json!([])
    );
    server.finish().await;
}
