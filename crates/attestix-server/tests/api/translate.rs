//! POST /v1/identities/{agent_id}/translate: the four formats, scopes and bad input.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    an_identity_translates_to_each_format,
    an_unknown_format_or_another_scopes_identity_is_refused,
    a_keyed_translation_replays_byte_identical,
);

async fn a_keyed_translation_replays_byte_identical(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let created = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body("Translator"))
            .send(),
    )
    .await
    .json();
    let path = format!(
        "/v1/identities/{}/translate",
        created["agent_id"].as_str().unwrap()
    );
    let body = json!({"target_format": "summary"});
    let first = Reply::of(server.post_keyed(&path, "tr-1", &body).send()).await;
    let retry = Reply::of(server.post_keyed(&path, "tr-1", &body).send()).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert!(!first.replayed());
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    let other = json!({"target_format": "oauth_claims"});
    assert_eq!(
        Reply::of(server.post_keyed(&path, "tr-1", &other).send())
            .await
            .status,
        409
    );
    server.finish().await;
}

async fn translate(server: &TestServer, key: &str, agent_id: &str, format: &str) -> Reply {
    Reply::of(
        server
            .client
            .post(server.url(&format!("/v1/identities/{agent_id}/translate")))
            .header("x-api-key", key)
            .json(&json!({ "target_format": format }))
            .send(),
    )
    .await
}

async fn an_identity_translates_to_each_format(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let created = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body("Translator"))
            .send(),
    )
    .await
    .json();
    let agent_id = created["agent_id"].as_str().unwrap();
    let admin = server.admin_key.clone();
    let did = created["issuer"]["did"].as_str().unwrap();

    let document = translate(&server, &admin, agent_id, "did_document").await;
    assert_eq!(document.status, 200);
    let document = document.json();
    assert_eq!(document["id"], did);
    let multibase = did.strip_prefix("did:key:").unwrap();
    assert_eq!(
        document["verificationMethod"][0]["id"],
        format!("{did}#{multibase}")
    );
    assert_eq!(
        document["verificationMethod"][0]["publicKeyMultibase"],
        multibase
    );
    assert_eq!(
        document["service"][0]["serviceEndpoint"]["agent_id"],
        agent_id
    );

    let card = translate(&server, &admin, agent_id, "a2a_agent_card")
        .await
        .json();
    assert_eq!(card["name"], "Translator");
    assert_eq!(card["url"], format!("attestix://{agent_id}"));
    assert_eq!(card["skills"][0]["name"], "summarize");
    assert_eq!(card["id"].as_str().unwrap().len(), 16);

    let claims = translate(&server, &admin, agent_id, "oauth_claims")
        .await
        .json();
    assert_eq!(claims["sub"], agent_id);
    assert_eq!(claims["iss"], did);
    assert_eq!(claims["scope"], "summarize");
    assert_eq!(claims["iat"], created["created_at"]);

    let summary = translate(&server, &admin, agent_id, "summary").await.json();
    let keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "agent_id",
            "display_name",
            "description",
            "source_protocol",
            "capabilities",
            "issuer",
            "created_at",
            "expires_at",
            "revoked",
            "reputation_score",
            "eu_compliance",
            "signature_present"
        ]
    );
    assert_eq!(summary["signature_present"], true);
    assert_eq!(summary["revoked"], false);

    // Keyed, it replays byte for byte.
    let path = format!("/v1/identities/{agent_id}/translate");
    let body = json!({"target_format": "summary"});
    let first = Reply::of(server.post_keyed(&path, "translate-1", &body).send()).await;
    let again = Reply::of(server.post_keyed(&path, "translate-1", &body).send()).await;
    assert_eq!((first.status, again.status), (200, 200));
    assert!(again.replayed());
    assert_eq!(first.body, again.body);
    server.finish().await;
}

async fn an_unknown_format_or_another_scopes_identity_is_refused(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let created: Value = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body("Private"))
            .send(),
    )
    .await
    .json();
    let agent_id = created["agent_id"].as_str().unwrap();
    let admin = server.admin_key.clone();
    let unknown = translate(&server, &admin, agent_id, "xml").await;
    assert_eq!(unknown.status, 422);
    let problem = unknown.problem();
    assert_eq!(problem["errors"][0]["field"], "target_format");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    for name in ["a2a_agent_card", "did_document", "oauth_claims", "summary"] {
        assert!(message.contains(name), "{message}");
    }
    let missing = Reply::of(
        server
            .request(
                Method::POST,
                &format!("/v1/identities/{agent_id}/translate"),
            )
            .json(&json!({}))
            .send(),
    )
    .await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.problem()["errors"][0]["field"], "target_format");
    let bob = server.key_for("bob").await;
    assert_eq!(
        translate(&server, &bob, agent_id, "summary").await.status,
        404
    );
    assert_eq!(
        translate(&server, &admin, "attestix:0000000000000000", "summary")
            .await
            .status,
        404
    );
    server.finish().await;
}
