//! POST /v1/credentials (and its alias), verification, revocation, presentations.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    credential_retry_with_the_same_key_returns_the_original_credential,
    credential_with_the_same_key_and_a_different_body_is_a_409,
    credentials_without_a_key_are_issued_every_time,
    the_issue_alias_is_the_same_operation,
    issued_credentials_verify_tampered_ones_do_not_revoked_ones_are_invalid,
    a_claim_named_id_and_other_bad_input_are_rejected,
    presentations_bundle_the_holders_credentials_and_verify,
);

async fn new_agent(server: &TestServer) -> String {
    let reply = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body("Subject"))
            .send(),
    )
    .await;
    reply.json()["agent_id"].as_str().unwrap().to_owned()
}

fn credential_body(subject: &str) -> Value {
    json!({
        "subject_id": subject,
        "credential_type": "AgentIdentityCredential",
        "issuer_name": "Acme",
        "claims": {"role": "reporter", "level": 2},
    })
}

async fn count_credentials(server: &TestServer) -> usize {
    server
        .all_pages("/v1/credentials?limit=1000", &server.admin_key)
        .await
        .len()
}

async fn credential_retry_with_the_same_key_returns_the_original_credential(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    let body = credential_body(&subject);
    let first = Reply::of(server.post_keyed("/v1/credentials", "vc-1", &body).send()).await;
    assert_eq!(first.status, 201);
    let mut last = None;
    for _ in 0..5 {
        let retry = Reply::of(server.post_keyed("/v1/credentials", "vc-1", &body).send()).await;
        assert!(retry.replayed());
        assert_eq!(retry.body, first.body);
        last = Some(retry);
    }
    assert_eq!(
        last.unwrap().headers.get("content-type"),
        first.headers.get("content-type")
    );
    assert_eq!(count_credentials(&server).await, 1);
    server.finish().await;
}

async fn credential_with_the_same_key_and_a_different_body_is_a_409(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    Reply::of(
        server
            .post_keyed("/v1/credentials", "vc-2", &credential_body(&subject))
            .send(),
    )
    .await;
    let mut other = credential_body(&subject);
    other["claims"]["level"] = json!(3);
    let reply = Reply::of(server.post_keyed("/v1/credentials", "vc-2", &other).send()).await;
    assert_eq!(reply.status, 409);
    assert_eq!(count_credentials(&server).await, 1);
    server.finish().await;
}

async fn credentials_without_a_key_are_issued_every_time(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    for _ in 0..2 {
        let reply = Reply::of(
            server
                .request(Method::POST, "/v1/credentials")
                .json(&credential_body(&subject))
                .send(),
        )
        .await;
        assert_eq!(reply.status, 201);
    }
    assert_eq!(count_credentials(&server).await, 2);
    server.finish().await;
}

async fn the_issue_alias_is_the_same_operation(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    let body = credential_body(&subject);
    let first = Reply::of(
        server
            .post_keyed("/v1/credentials/issue", "alias", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    let retry = Reply::of(
        server
            .post_keyed("/v1/credentials/issue", "alias", &body)
            .send(),
    )
    .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(count_credentials(&server).await, 1);
    server.finish().await;
}

async fn issued_credentials_verify_tampered_ones_do_not_revoked_ones_are_invalid(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    let vc = Reply::of(
        server
            .request(Method::POST, "/v1/credentials")
            .json(&credential_body(&subject))
            .send(),
    )
    .await
    .json();
    let id = vc["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("urn:uuid:"));
    assert_eq!(vc["credentialSubject"]["id"], subject.as_str());

    let stored = Reply::of(
        server
            .request(Method::POST, &format!("/v1/credentials/{id}/verify"))
            .send(),
    )
    .await
    .json();
    assert_eq!(stored["valid"], true, "{stored}");

    let external = |credential: Value| {
        server
            .request(Method::POST, "/v1/credentials/verify-external")
            .json(&json!({ "credential": credential }))
            .send()
    };
    let good = Reply::of(external(vc.clone())).await.json();
    assert_eq!(good["valid"], true, "{good}");
    let mut tampered = vc.clone();
    tampered["credentialSubject"]["level"] = json!(99);
    let bad = Reply::of(external(tampered)).await.json();
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["checks"]["signature_valid"], false);
    // Random JSON is answered, not a crash.
    let junk = Reply::of(external(json!([1, {"proof": null}]))).await;
    assert_eq!(junk.status, 200);
    assert_eq!(junk.json()["checks"]["structure_valid"], false);

    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/credentials/{id}"))
            .json(&json!({"reason": "superseded"}))
            .send(),
    )
    .await
    .json();
    // The Python API's three fields, and the revocation time (issue 16: a second
    // revocation answers the first one's reason and time).
    let revoked_at = revoked["revoked_at"].clone();
    assert!(revoked_at.is_string(), "{revoked}");
    assert_eq!(
        revoked,
        json!({"revoked": true, "credential_id": id, "reason": "superseded", "revoked_at": revoked_at})
    );
    let after = Reply::of(
        server
            .request(Method::POST, &format!("/v1/credentials/{id}/verify"))
            .send(),
    )
    .await
    .json();
    assert_eq!(after["valid"], false);
    assert_eq!(after["checks"]["not_revoked"], false);
    assert_eq!(after["checks"]["signature_valid"], true);
    let listed = server
        .all_pages("/v1/credentials?valid_only=true", &server.admin_key)
        .await;
    assert!(listed.is_empty(), "valid_only hides the revoked credential");
    server.finish().await;
}

async fn a_claim_named_id_and_other_bad_input_are_rejected(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    let mut with_id = credential_body(&subject);
    with_id["claims"]["id"] = json!("attestix:evil");
    let mut not_object = credential_body(&subject);
    not_object["claims"] = json!(["a"]);
    let mut expiry = credential_body(&subject);
    expiry["expiry_days"] = json!(-1);
    let mut missing = credential_body(&subject);
    missing.as_object_mut().unwrap().remove("issuer_name");
    for (body, field) in [
        (with_id, "claims"),
        (not_object, "claims"),
        (expiry, "expiry_days"),
        (missing, "issuer_name"),
    ] {
        let reply = Reply::of(server.post_keyed("/v1/credentials", "bad", &body).send()).await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(count_credentials(&server).await, 0, "nothing was written");
    // A rejected request released its key: the corrected request executes.
    let fixed = Reply::of(
        server
            .post_keyed("/v1/credentials", "bad", &credential_body(&subject))
            .send(),
    )
    .await;
    assert_eq!(fixed.status, 201);
    assert!(!fixed.replayed());
    server.finish().await;
}

async fn presentations_bundle_the_holders_credentials_and_verify(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let holder = new_agent(&server).await;
    let stranger = new_agent(&server).await;
    let issue = |subject: String| {
        let server = &server;
        async move {
            Reply::of(
                server
                    .request(Method::POST, "/v1/credentials")
                    .json(&credential_body(&subject))
                    .send(),
            )
            .await
            .json()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mine = issue(holder.clone()).await;
    let theirs = issue(stranger.clone()).await;

    let create = |body: Value| {
        server
            .post_keyed("/v1/presentations", &format!("vp-{}", body), &body)
            .send()
    };
    let vp = Reply::of(create(json!({"agent_id": holder, "credential_ids": [mine], "challenge": "nonce-1", "audience_did": "did:web:verifier"}))).await;
    assert_eq!(vp.status, 201, "{}", String::from_utf8_lossy(&vp.body));
    let vp = vp.json();
    assert_eq!(vp["holder"], holder.as_str());
    assert_eq!(vp["proof"]["proofPurpose"], "authentication");

    let verify = |body: Value| {
        server
            .request(Method::POST, "/v1/presentations/verify")
            .json(&body)
            .send()
    };
    let ok = Reply::of(verify(
        json!({"presentation": vp, "challenge": "nonce-1", "domain": "did:web:verifier"}),
    ))
    .await
    .json();
    assert_eq!(ok["valid"], true, "{ok}");
    let wrong_challenge = Reply::of(verify(json!({"presentation": vp, "challenge": "other"})))
        .await
        .json();
    assert_eq!(wrong_challenge["valid"], false);

    let foreign = Reply::of(create(
        json!({"agent_id": holder, "credential_ids": [theirs]}),
    ))
    .await;
    assert_eq!(foreign.status, 400);
    let unknown_credential = Reply::of(create(
        json!({"agent_id": holder, "credential_ids": ["urn:uuid:nope"]}),
    ))
    .await;
    assert_eq!(unknown_credential.status, 404);
    let unknown_agent = Reply::of(create(
        json!({"agent_id": "attestix:0000000000000000", "credential_ids": [mine]}),
    ))
    .await;
    assert_eq!(unknown_agent.status, 404);
    server.finish().await;
}
