//! /v1/provenance: the per-agent action log, chained without forks under concurrent
//! appends, verified, filtered by type and date, scoped, idempotent, bounded.

use attestix_server::storage::records::{self, Stmt};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Backend, Reply, TestServer};

crate::on_both_backends!(
    concurrent_actions_of_one_agent_make_one_verified_chain,
    a_changed_entry_breaks_the_trail_where_it_was_changed,
    the_trail_filters_by_type_and_date_and_is_scoped,
    a_keyed_action_replays_without_a_second_entry,
    every_bad_field_is_a_422_naming_it,
    training_data_and_model_lineage_are_signed_entries_with_events,
    the_aggregate_counts_the_logs_and_shows_the_newest_entries,
);

fn action(agent: &str, action_type: &str) -> Value {
    json!({"agent_id": agent, "action_type": action_type, "input_summary": "q — ünïcode",
           "output_summary": "a", "decision_rationale": "r"})
}

async fn log(server: &TestServer, body: &Value) -> Reply {
    Reply::of(
        server
            .request(Method::POST, "/v1/provenance/actions")
            .json(body)
            .send(),
    )
    .await
}

async fn verify(server: &TestServer, agent: &str) -> Value {
    Reply::of(
        server
            .request(
                Method::GET,
                &format!("/v1/provenance/audit-trail/{agent}/verify"),
            )
            .send(),
    )
    .await
    .json()
}

async fn concurrent_actions_of_one_agent_make_one_verified_chain(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let agent = if n % 5 == 0 { "agent-b" } else { "agent-a" };
            let reply = log(&server, &action(agent, "inference")).await;
            assert_eq!(
                reply.status,
                201,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            reply.json()
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    let keys: Vec<&str> = created[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "log_id",
            "agent_id",
            "action_type",
            "input_summary",
            "output_summary",
            "decision_rationale",
            "human_override",
            "timestamp",
            "logged_by",
            "prev_hash",
            "chain_hash",
            "signature"
        ]
    );
    assert_eq!(
        verify(&server, "agent-a").await,
        json!({"valid": true, "entries": 32, "broken_at": null})
    );
    assert_eq!(verify(&server, "agent-b").await["entries"], 8);
    let trail = server
        .all_pages(
            "/v1/provenance/audit-trail/agent-a?limit=5",
            &server.admin_key,
        )
        .await;
    let mut prev = "0".repeat(64);
    for entry in &trail {
        assert_eq!(entry["prev_hash"], prev.as_str());
        prev = entry["chain_hash"].as_str().unwrap().to_owned();
    }
    assert_eq!(trail.len(), 32);
    // One provenance.log_action event each, in the scope's audit chain.
    let audit = Reply::of(server.request(Method::GET, "/v1/audit/verify").send()).await;
    assert_eq!(audit.json()["events"], 40);
    assert_eq!(audit.json()["valid"], true);
    let server = std::sync::Arc::into_inner(server).unwrap();
    server.finish().await;
}

async fn a_changed_entry_breaks_the_trail_where_it_was_changed(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(log(&server, &action("agent-t", "data_access")).await.json());
    }
    let mut forged = ids[1].clone();
    forged["human_override"] = json!(true);
    let victim = forged["log_id"].as_str().unwrap().to_owned();
    let document = forged.to_string();
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    let changed = records::write_with(&*storage, move |tx| {
        Box::pin(async move {
            tx.execute(
                Stmt::new("UPDATE records SET document = ")
                    .bind(document)
                    .sql(" WHERE kind = 'action' AND id = ")
                    .bind(victim),
            )
            .await
        })
    })
    .await
    .unwrap();
    assert_eq!(changed, 1);
    let report = verify(&server, "agent-t").await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["broken_at"], ids[1]["log_id"]);
    server.finish().await;
}

async fn the_trail_filters_by_type_and_date_and_is_scoped(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for action_type in ["inference", "delegation", "inference"] {
        assert_eq!(
            log(&server, &action("agent-f", action_type)).await.status,
            201
        );
    }
    let admin = server.admin_key.clone();
    let trail = |query: &str| {
        let path = format!("/v1/provenance/audit-trail/agent-f?{query}");
        let server = &server;
        let admin = admin.clone();
        async move { server.all_pages(&path, &admin).await }
    };
    assert_eq!(trail("action_type=inference").await.len(), 2);
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(
        trail(&format!("start_date={today}&end_date={today}"))
            .await
            .len(),
        3
    );
    assert_eq!(trail("start_date=2999-01-01").await.len(), 0);
    assert_eq!(trail("end_date=2000-01-01T00:00:00Z").await.len(), 0);
    let bob = server.key_for("bob").await;
    assert!(server
        .all_pages("/v1/provenance/audit-trail/agent-f", &bob)
        .await
        .is_empty());
    let theirs = Reply::of(
        server
            .client
            .get(server.url("/v1/provenance/audit-trail/agent-f/verify"))
            .header("x-api-key", &bob)
            .send(),
    )
    .await;
    assert_eq!(theirs.json()["entries"], 0);
    server.finish().await;
}

async fn a_keyed_action_replays_without_a_second_entry(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = action("agent-k", "external_call");
    let first = Reply::of(
        server
            .post_keyed("/v1/provenance/actions", "pk", &body)
            .send(),
    )
    .await;
    let again = Reply::of(
        server
            .post_keyed("/v1/provenance/actions", "pk", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    assert!(again.replayed());
    assert_eq!(first.body, again.body);
    assert_eq!(verify(&server, "agent-k").await["entries"], 1);
    server.finish().await;
}

async fn every_bad_field_is_a_422_naming_it(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for (body, field) in [
        (action("a", "dance"), "action_type"),
        (action("", "inference"), "agent_id"),
        (
            json!({"agent_id": "a", "action_type": "inference", "input_summary": "x".repeat(4097)}),
            "input_summary",
        ),
        (
            json!({"agent_id": "a", "action_type": "inference", "human_override": "yes"}),
            "human_override",
        ),
    ] {
        let reply = log(&server, &body).await;
        assert_eq!(reply.status, 422, "{body}");
        assert!(reply.problem().to_string().contains(field), "{field}");
    }
    for query in [
        "action_type=dance",
        "start_date=soon",
        "end_date=2026-13-01",
        "limit=0",
    ] {
        let reply = Reply::of(
            server
                .request(
                    Method::GET,
                    &format!("/v1/provenance/audit-trail/a?{query}"),
                )
                .send(),
        )
        .await;
        assert_eq!(reply.status, 422, "{query}");
    }
    assert_eq!(verify(&server, "a").await["entries"], 0);
    server.finish().await;
}

async fn training_data_and_model_lineage_are_signed_entries_with_events(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let post = |path: &'static str, body: Value| {
        let server = &server;
        async move { Reply::of(server.post_keyed(path, path, &body).send()).await }
    };
    let training = json!({"agent_id": "agent-m", "dataset_name": "corpus", "source": "https://x",
                          "dataset_version": "2", "data_categories": ["text"]});
    let first = post("/v1/provenance/training-data", training.clone()).await;
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let entry = first.json();
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "entry_id",
            "entry_type",
            "agent_id",
            "dataset_name",
            "dataset_version",
            "source_url",
            "license",
            "data_categories",
            "contains_personal_data",
            "data_governance_measures",
            "recorded_at",
            "recorded_by",
            "signature"
        ]
    );
    assert_eq!(entry["source_url"], "https://x");
    assert!(entry["entry_id"].as_str().unwrap().starts_with("prov:"));
    assert!(post("/v1/provenance/training-data", training)
        .await
        .replayed());
    let lineage = json!({"agent_id": "agent-m", "base_model": "m", "evaluation_metrics": {"f1": 0.91},
                         "training_config": {"epochs": 3}});
    let second = post("/v1/provenance/model-lineage", lineage).await;
    assert_eq!(
        second.status,
        201,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(second.json()["training_config"], json!({"epochs": 3}));
    assert_eq!(second.json()["entry_type"], "model_lineage");
    let events = server
        .all_pages("/v1/audit/events", &server.admin_key)
        .await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "provenance.record_training_data",
            "provenance.record_model_lineage"
        ]
    );
    for (path, body, field) in [
        (
            "/v1/provenance/training-data",
            json!({"agent_id": "a"}),
            "dataset_name",
        ),
        (
            "/v1/provenance/model-lineage",
            json!({"agent_id": "a", "base_model": ""}),
            "base_model",
        ),
        (
            "/v1/provenance/model-lineage",
            json!({"agent_id": "a", "base_model": "m", "training_config": {"x": "y".repeat(17000)}}),
            "training_config",
        ),
    ] {
        let reply = Reply::of(server.request(Method::POST, path).json(&body).send()).await;
        assert_eq!(reply.status, 422, "{body}");
        assert!(reply.problem().to_string().contains(field), "{field}");
    }
    server.finish().await;
}

/// `GET /v1/provenance/{agent_id}`: the agent's entries as stored, its action count,
/// the events about it (its identity, a credential issued to it, its entries and
/// actions) and the newest five of the action log followed by those events; nothing
/// of another agent or another scope.
async fn the_aggregate_counts_the_logs_and_shows_the_newest_entries(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let post = |path: &str, body: Value| {
        let server = &server;
        let path = path.to_owned();
        async move {
            let reply = Reply::of(server.request(Method::POST, &path).json(&body).send()).await;
            assert_eq!(
                reply.status,
                201,
                "{path}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            reply
        }
    };
    let agent = post("/v1/identities", crate::helpers::identity_body("Traced"))
        .await
        .json()["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        "/v1/credentials",
        json!({"subject_id": agent, "credential_type": "AgentIdentityCredential",
               "issuer_name": "Acme", "claims": {"role": "x"}}),
    )
    .await;
    let mut training = Vec::new();
    for version in ["1", "2"] {
        let reply = post(
            "/v1/provenance/training-data",
            json!({"agent_id": agent, "dataset_name": "corpus", "dataset_version": version}),
        )
        .await;
        training.push(reply.json());
    }
    let lineage = post(
        "/v1/provenance/model-lineage",
        json!({"agent_id": agent, "base_model": "m"}),
    )
    .await
    .json();
    for n in 0..7 {
        post(
            "/v1/provenance/actions",
            action(
                &agent,
                if n % 2 == 0 {
                    "inference"
                } else {
                    "delegation"
                },
            ),
        )
        .await;
    }
    // Another agent's records count for it alone.
    let other_ids = [
        post("/v1/provenance/actions", action("agent-other", "inference"))
            .await
            .json()["log_id"]
            .clone(),
        post(
            "/v1/provenance/training-data",
            json!({"agent_id": "agent-other", "dataset_name": "other"}),
        )
        .await
        .json()["entry_id"]
            .clone(),
    ];

    let reply = Reply::of(
        server
            .request(Method::GET, &format!("/v1/provenance/{agent}"))
            .send(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let aggregate = reply.json();
    let keys: Vec<&str> = aggregate
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "agent_id",
            "training_data",
            "model_lineage",
            "audit_log_count",
            "audit_chain_count_legacy",
            "audit_events_count",
            "latest_audit_entries",
        ]
    );
    assert_eq!(aggregate["training_data"], Value::Array(training));
    assert_eq!(aggregate["model_lineage"], json!([lineage]));
    // identity.create, credential.issue, 3 entries, 7 actions.
    assert_eq!(aggregate["audit_chain_count_legacy"], 7, "{aggregate}");
    assert_eq!(aggregate["audit_events_count"], 12, "{aggregate}");
    assert_eq!(aggregate["audit_log_count"], 19, "{aggregate}");
    // Seven actions then twelve events: the newest five are the last five events.
    let events = server
        .all_pages("/v1/audit/events?limit=1000", &server.admin_key)
        .await;
    let about: Vec<&Value> = events
        .iter()
        .filter(|event| !other_ids.contains(&event["target_id"]))
        .collect();
    assert_eq!(about.len(), 12);
    let latest: Vec<&Value> = aggregate["latest_audit_entries"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(latest, about[about.len() - 5..]);
    assert_eq!(latest.last().unwrap()["action"], "provenance.log_action");

    // Another scope sees an agent with nothing.
    let other = server.key_for("mallory").await;
    let theirs = Reply::of(
        server
            .client
            .get(server.url(&format!("/v1/provenance/{agent}")))
            .header("x-api-key", &other)
            .send(),
    )
    .await
    .json();
    assert_eq!(theirs["audit_log_count"], 0);
    assert_eq!(theirs["training_data"], json!([]));
    server.finish().await;
}
