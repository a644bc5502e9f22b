//! DELETE /v1/identities/{agent_id}/purge: every record of the scope that belongs to
//! or mentions the agent is gone, audit events about it are redacted with the chain
//! still verifying, other agents and other scopes keep theirs, a keyed purge replays,
//! and on SQLite no file of the data directory holds the agent id afterwards.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    a_purge_erases_the_agent_everywhere_and_the_audit_chain_still_verifies,
    a_purge_in_another_scope_touches_nothing,
    a_keyed_purge_replays_its_first_answer,
);

async fn call(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = server.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::of(request.send()).await
}

async fn created(server: &TestServer, path: &str, body: Value) -> Value {
    let reply = call(server, Method::POST, path, Some(body)).await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "{path}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// An agent with an identity, a credential, a delegation to a peer, an interaction,
/// an action-log entry and a training-data entry; and the peer itself, with an
/// interaction of its own. Returns (agent, peer, credential id, jti, the ids of every
/// record made about the agent: the targets of its audit events).
async fn populate(server: &TestServer) -> (String, String, String, String, Vec<String>) {
    let agent = created(server, "/v1/identities", identity_body("Forgotten")).await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let peer = created(server, "/v1/identities", identity_body("Kept")).await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Keyed: its stored response names the agent, and the purge erases it.
    let issued = Reply::of(
        server
            .post_keyed(
                "/v1/credentials",
                "purge-credential",
                &json!({"subject_id": agent, "credential_type": "AgentIdentityCredential",
                        "issuer_name": "Acme", "claims": {"role": "reporter"}}),
            )
            .send(),
    )
    .await;
    assert_eq!(issued.status, 201);
    let credential = issued.json()["id"].as_str().unwrap().to_owned();
    let delegation = created(
        server,
        "/v1/delegations",
        json!({"issuer_agent_id": agent, "audience_agent_id": peer,
               "capabilities": ["read"], "expiry_hours": 2}),
    )
    .await;
    let jti = delegation["delegation"]["jti"]
        .as_str()
        .or_else(|| delegation["jti"].as_str())
        .expect("the delegation's jti")
        .to_owned();
    created(
        server,
        "/v1/reputation/interactions",
        json!({"agent_id": agent, "counterparty_id": peer, "outcome": "success",
               "category": "task"}),
    )
    .await;
    created(
        server,
        "/v1/reputation/interactions",
        json!({"agent_id": peer, "counterparty_id": "attestix:stranger", "outcome": "success",
               "category": "task"}),
    )
    .await;
    let action = created(
        server,
        "/v1/provenance/actions",
        json!({"agent_id": agent, "action_type": "inference", "input_summary": "q",
               "output_summary": "a"}),
    )
    .await["log_id"]
        .as_str()
        .expect("the action's log_id")
        .to_owned();
    let training = created(
        server,
        "/v1/provenance/training-data",
        json!({"agent_id": agent, "dataset_name": "corpus", "source": "https://x",
               "dataset_version": "2", "data_categories": ["text"]}),
    )
    .await["entry_id"]
        .as_str()
        .expect("the entry's entry_id")
        .to_owned();
    // A limited-risk profile (its id is the agent's) and a self-assessment.
    let profile = created(
        server,
        "/v1/compliance/profiles",
        json!({"agent_id": agent, "risk_category": "limited", "provider_name": "Acme AI",
               "intended_purpose": "Triage of support tickets"}),
    )
    .await["profile_id"]
        .as_str()
        .expect("the profile's id")
        .to_owned();
    let assessment = created(
        server,
        "/v1/compliance/assessments",
        json!({"agent_id": agent, "assessment_type": "self", "assessor_name": "Acme QA",
               "result": "pass"}),
    )
    .await["assessment_id"]
        .as_str()
        .expect("the assessment's id")
        .to_owned();
    let about = vec![
        profile,
        assessment,
        agent.clone(),
        credential.clone(),
        jti.clone(),
        action,
        training,
    ];
    (agent, peer, credential, jti, about)
}

async fn events(server: &TestServer) -> Vec<Value> {
    server
        .all_pages("/v1/audit/events?limit=1000", &server.admin_key)
        .await
}

async fn a_purge_erases_the_agent_everywhere_and_the_audit_chain_still_verifies(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (agent, peer, credential, jti, about) = populate(&server).await;
    let before = events(&server).await;
    // Its identity's create, score update and compliance link, the credential, the
    // delegation, the interaction, the action, the training data, the profile and
    // the assessment.
    let about_agent = before
        .iter()
        .filter(|event| about.iter().any(|id| event["target_id"] == id.as_str()))
        .count();
    assert_eq!(about_agent, 10, "{before:?}");

    let path = format!("/v1/identities/{agent}/purge");
    let reply = call(&server, Method::DELETE, &path, None).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let report = reply.json();
    assert_eq!(report["agent_id"], agent.as_str());
    let counts = &report["counts"];
    let keys: Vec<&str> = counts
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "identities",
            "credentials",
            "delegations",
            "compliance_profiles",
            "compliance_assessments",
            "compliance_declarations",
            "reputation_interactions",
            "provenance_entries",
            "audit_log_entries",
            "local_anchor_references",
            "audit_events",
            "idempotency_responses",
        ]
    );
    assert_eq!(counts["identities"], 1, "{report}");
    assert_eq!(counts["credentials"], 1, "{report}");
    assert_eq!(counts["delegations"], 1, "{report}");
    assert_eq!(counts["reputation_interactions"], 1, "{report}");
    assert_eq!(counts["provenance_entries"], 1, "{report}");
    assert_eq!(counts["audit_log_entries"], 1, "{report}");
    assert_eq!(counts["compliance_profiles"], 1, "{report}");
    assert_eq!(counts["compliance_assessments"], 1, "{report}");
    assert_eq!(counts["audit_events"], about_agent, "{report}");
    assert_eq!(counts["idempotency_responses"], 1, "{report}");
    assert!(report["purged_at"].as_str().is_some());
    assert!(report["external_copies"].as_str().is_some());

    // Gone from every read.
    for gone in [
        format!("/v1/identities/{agent}"),
        format!("/v1/credentials/{credential}"),
    ] {
        assert_eq!(
            call(&server, Method::GET, &gone, None).await.status,
            404,
            "{gone}"
        );
    }
    let delegations = server
        .all_pages(
            "/v1/delegations?include_revoked=true&include_expired=true",
            &server.admin_key,
        )
        .await;
    assert!(
        !serde_json::to_string(&delegations).unwrap().contains(&jti),
        "{delegations:?}"
    );
    let trail = call(
        &server,
        Method::GET,
        &format!("/v1/provenance/audit-trail/{agent}"),
        None,
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&trail.body).contains("inference"),
        "{trail:?}"
    );

    // The chain: as long as before plus the purge's own event, valid, the redacted
    // links counted; no event names the agent, the purge's names a digest.
    let after = events(&server).await;
    assert_eq!(after.len(), before.len() + 1);
    let text = serde_json::to_string(&after).unwrap();
    assert!(!text.contains(&agent), "{text}");
    let purge_event = after.last().unwrap();
    assert_eq!(purge_event["action"], "identity.purge");
    assert!(purge_event["target_id"]
        .as_str()
        .unwrap()
        .starts_with("purged:"));
    let verified = call(&server, Method::GET, "/v1/audit/verify", None)
        .await
        .json();
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["events"], after.len());
    assert_eq!(verified["redacted"], about_agent);

    // The peer keeps its identity and its own interaction.
    assert_eq!(
        call(
            &server,
            Method::GET,
            &format!("/v1/identities/{peer}"),
            None
        )
        .await
        .status,
        200
    );
    let peer_rep = call(
        &server,
        Method::GET,
        &format!("/v1/reputation/{peer}"),
        None,
    )
    .await;
    assert_eq!(peer_rep.status, 200);
    assert_eq!(
        peer_rep.json()["total_interactions"],
        1,
        "{:?}",
        peer_rep.json()
    );

    // A second purge finds nothing left (and redacts nothing twice).
    let again = call(&server, Method::DELETE, &path, None).await.json();
    for (name, count) in again["counts"].as_object().unwrap() {
        assert_eq!(count, 0, "{name}: {again}");
    }

    if backend == Backend::Sqlite {
        let dir = server.config().data_dir.clone();
        let _kept = server.stop_keeping_data().await;
        let mut files = Vec::new();
        collect_files(&dir, &mut files);
        assert!(!files.is_empty());
        for file in files {
            // A file removed since it was listed (SQLite's -shm at close) holds nothing.
            let bytes = match std::fs::read(&file) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => panic!("{}: {error}", file.display()),
            };
            let found = bytes
                .windows(agent.len())
                .any(|window| window == agent.as_bytes());
            assert!(!found, "{} still holds {agent}", file.display());
        }
    } else {
        server.finish().await;
    }
}

fn collect_files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, into);
        } else {
            into.push(path);
        }
    }
}

async fn a_purge_in_another_scope_touches_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (agent, _, credential, ..) = populate(&server).await;
    let other = server.key_for("mallory").await;
    let reply = Reply::of(
        server
            .client
            .delete(server.url(&format!("/v1/identities/{agent}/purge")))
            .header("x-api-key", &other)
            .send(),
    )
    .await;
    assert_eq!(reply.status, 200);
    for (name, count) in reply.json()["counts"].as_object().unwrap() {
        assert_eq!(count, 0, "{name}");
    }
    assert_eq!(
        call(
            &server,
            Method::GET,
            &format!("/v1/identities/{agent}"),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &server,
            Method::GET,
            &format!("/v1/credentials/{credential}"),
            None
        )
        .await
        .status,
        200
    );
    let verified = call(&server, Method::GET, "/v1/audit/verify", None)
        .await
        .json();
    assert_eq!(verified["redacted"], 0, "{verified}");
    server.finish().await;
}

async fn a_keyed_purge_replays_its_first_answer(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (agent, ..) = populate(&server).await;
    let path = format!("/v1/identities/{agent}/purge");
    let send = || async {
        Reply::of(
            server
                .request(Method::DELETE, &path)
                .header("idempotency-key", "purge-1")
                .send(),
        )
        .await
    };
    let first = send().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["counts"]["identities"], 1);
    let retry = send().await;
    assert!(
        retry.replayed(),
        "the retry is answered from the stored response"
    );
    assert_eq!(retry.body, first.body);
    let events = events(&server).await;
    let purges = events
        .iter()
        .filter(|event| event["action"] == "identity.purge")
        .count();
    assert_eq!(purges, 1, "one purge event for one keyed purge");
    server.finish().await;
}
