//! Hostile verification (issue 16): documents edited where the signature does not
//! look, revoked credentials and holders, repeated keys, non-NFC strings, nesting at
//! the parser's limit, and credentials about revoked identities.

use attestix_core::{
    DisplayName, ExpiryDays, NewCredential as CredentialParams, NewIdentity as IdentityParams,
    SigningKey, SigningKeyFile, Uait, VerifiableCredential,
};
use attestix_server::storage::{NewCredential, NewIdentity};
use reqwest::Method;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    a_revoked_credential_stays_revoked_whatever_its_embedded_status_says,
    a_presentation_stops_verifying_once_its_credential_or_holder_is_revoked,
    presentations_of_revoked_or_expired_holders_and_credentials_are_refused,
    credentials_about_a_revoked_identity_of_this_server_are_refused,
);

/// The owner (scope) of everything the admin key creates: principal `admin`, tenant
/// `default`.
const ADMIN_SCOPE: &str = "admin/default";

/// The deepest `claims` object the server issues, counting the object itself as
/// one level (`{"a":1}` is 1 deep).
const DEEPEST_CLAIMS: usize = 123;

async fn post(server: &TestServer, path: &str, body: &Value) -> Reply {
    Reply::of(server.request(Method::POST, path).json(body).send()).await
}

/// Posts `text` as it is: the tests below write JSON that `serde_json::Value` cannot
/// hold (repeated keys).
async fn post_text(server: &TestServer, path: &str, text: String) -> Reply {
    Reply::of(
        server
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(text)
            .send(),
    )
    .await
}

async fn new_agent(server: &TestServer) -> String {
    let reply = post(server, "/v1/identities", &identity_body("Subject")).await;
    assert_eq!(reply.status, 201);
    reply.json()["agent_id"].as_str().unwrap().to_owned()
}

/// Issues a credential and returns the response text (the exact bytes signed).
async fn issue_text(server: &TestServer, subject: &str, claims: Value) -> String {
    let reply = post(
        server,
        "/v1/credentials",
        &json!({
            "subject_id": subject,
            "credential_type": "AgentIdentityCredential",
            "issuer_name": "Acme",
            "claims": claims,
        }),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    String::from_utf8(reply.body.to_vec()).unwrap()
}

async fn issue(server: &TestServer, subject: &str) -> Value {
    serde_json::from_str(&issue_text(server, subject, json!({"role": "reporter"})).await).unwrap()
}

async fn present(server: &TestServer, holder: &str, credential_ids: &[&str]) -> Reply {
    post(
        server,
        "/v1/presentations",
        &json!({"agent_id": holder, "credential_ids": credential_ids}),
    )
    .await
}

async fn verify_external(server: &TestServer, credential: &Value) -> Reply {
    post(
        server,
        "/v1/credentials/verify-external",
        &json!({ "credential": credential }),
    )
    .await
}

async fn verify_presentation(server: &TestServer, presentation: &Value) -> Reply {
    post(
        server,
        "/v1/presentations/verify",
        &json!({ "presentation": presentation }),
    )
    .await
}

async fn revoke(server: &TestServer, path: &str) {
    let reply = Reply::of(
        server
            .request(Method::DELETE, path)
            .json(&json!({"reason": "compromised"}))
            .send(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// The server's own signing key, read from its data directory, so a test can make
/// documents the API no longer issues (expired ones, refused types).
fn server_key(server: &TestServer) -> SigningKey {
    let path = server.config().data_dir.join(".signing_key.json");
    SigningKeyFile::parse_key(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn credential_params(subject: &str, credential_type: &str) -> CredentialParams {
    CredentialParams {
        subject_id: subject.to_owned(),
        credential_type: credential_type.to_owned(),
        issuer_name: "Acme".to_owned(),
        claims: attestix_core::Claims::parse(json!({"role": "reporter"})).unwrap(),
        expiry_days: ExpiryDays::parse(1).unwrap(),
    }
}

/// Stores a credential about `subject`, signed by the server three days ago and
/// valid for one day, as if it had been issued then.
async fn store_expired_credential(server: &TestServer, subject: &str) -> String {
    let issued = OffsetDateTime::now_utc() - Duration::days(3);
    let credential = VerifiableCredential::issue(
        credential_params(subject, "AgentIdentityCredential"),
        &server_key(server),
        issued,
        Uuid::new_v4(),
    )
    .unwrap();
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    storage
        .insert_credential(&NewCredential {
            credential_id: credential.id.clone(),
            owner: ADMIN_SCOPE.to_owned(),
            subject_id: subject.to_owned(),
            credential_type: "AgentIdentityCredential".to_owned(),
            issued_at_ms: issued.unix_timestamp() * 1000,
            expires_at_ms: credential.expiration_date.datetime().unix_timestamp() * 1000,
            document: serde_json::to_string(&credential).unwrap(),
            recovery: None,
            audit: None,
        })
        .await
        .unwrap();
    credential.id
}

/// Stores an identity signed by the server three days ago and valid for one day.
async fn store_expired_identity(server: &TestServer) -> String {
    let issued = OffsetDateTime::now_utc() - Duration::days(3);
    let mut params = IdentityParams::new(DisplayName::parse("Expired").unwrap(), "api_key");
    params.expiry_days = ExpiryDays::parse(1).unwrap();
    let uait = Uait::issue(params, &server_key(server), issued, Uuid::new_v4()).unwrap();
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    storage
        .insert_identity(&NewIdentity {
            agent_id: uait.agent_id.clone(),
            owner: ADMIN_SCOPE.to_owned(),
            source_protocol: "api_key".to_owned(),
            created_at_ms: issued.unix_timestamp() * 1000,
            expires_at_ms: uait.expires_at.datetime().unix_timestamp() * 1000,
            document: serde_json::to_string(&uait).unwrap(),
            recovery: None,
            audit: None,
        })
        .await
        .unwrap();
    uait.agent_id
}

fn id_of(document: &Value) -> &str {
    document["id"].as_str().unwrap()
}

// --- 1. credentialStatus is outside the signature -----------------------------------

async fn a_revoked_credential_stays_revoked_whatever_its_embedded_status_says(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let subject = new_agent(&server).await;
    let credential = issue(&server, &subject).await;
    let fresh = verify_external(&server, &credential).await.json();
    assert_eq!(fresh["valid"], true, "{fresh}");
    assert_eq!(fresh["checks"]["not_revoked"], true, "{fresh}");

    let id = id_of(&credential).to_owned();
    revoke(&server, &format!("/v1/credentials/{id}")).await;

    let mut without_status = credential.clone();
    without_status
        .as_object_mut()
        .unwrap()
        .remove("credentialStatus");
    let mut claims_active = credential.clone();
    claims_active["credentialStatus"]["revoked"] = json!(false);
    for edited in [credential.clone(), without_status, claims_active] {
        let reply = verify_external(&server, &edited).await;
        assert_eq!(reply.status, 200);
        let result = reply.json();
        assert_eq!(result["valid"], false, "{result}");
        assert_eq!(result["checks"]["not_revoked"], false, "{result}");
        assert_eq!(result["checks"]["signature_valid"], true, "{result}");
    }

    // Another issuer's credential: its signature checks, its revocation cannot be.
    let other = SigningKey::from_seed([42; 32]);
    let foreign = VerifiableCredential::issue(
        credential_params(&subject, "AgentIdentityCredential"),
        &other,
        OffsetDateTime::now_utc(),
        Uuid::new_v4(),
    )
    .unwrap()
    .to_value();
    let result = verify_external(&server, &foreign).await.json();
    assert_eq!(result["checks"]["signature_valid"], true, "{result}");
    assert_eq!(result["checks"]["not_revoked"], Value::Null, "{result}");
    assert_eq!(result["revocation_checked"], false, "{result}");
    assert!(
        result["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("revocation")),
        "{result}"
    );
    server.finish().await;
}

// --- 2. presentations and revocation -----------------------------------------------

async fn a_presentation_stops_verifying_once_its_credential_or_holder_is_revoked(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let holder = new_agent(&server).await;
    let first = issue(&server, &holder).await;
    let second = issue(&server, &holder).await;
    let both = present(&server, &holder, &[id_of(&first), id_of(&second)]).await;
    assert_eq!(both.status, 201);
    let both = both.json();
    let only_second = present(&server, &holder, &[id_of(&second)]).await.json();
    let result = verify_presentation(&server, &both).await.json();
    assert_eq!(result["valid"], true, "{result}");

    revoke(&server, &format!("/v1/credentials/{}", id_of(&first))).await;
    let result = verify_presentation(&server, &both).await.json();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["credentials"][0]["not_revoked"], false, "{result}");
    assert_eq!(result["credentials"][1]["not_revoked"], true, "{result}");
    let result = verify_presentation(&server, &only_second).await.json();
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["holder_active"], true, "{result}");

    revoke(&server, &format!("/v1/identities/{holder}")).await;
    let result = verify_presentation(&server, &only_second).await.json();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["holder_active"], false, "{result}");
    server.finish().await;
}

async fn presentations_of_revoked_or_expired_holders_and_credentials_are_refused(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let holder = new_agent(&server).await;
    let revoked = issue(&server, &holder).await;
    let active = issue(&server, &holder).await;
    revoke(&server, &format!("/v1/credentials/{}", id_of(&revoked))).await;
    let expired = store_expired_credential(&server, &holder).await;
    for refused in [id_of(&revoked), expired.as_str()] {
        let reply = present(&server, &holder, &[id_of(&active), refused]).await;
        assert_eq!(
            reply.status,
            409,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        assert!(
            problem["detail"].as_str().unwrap().contains(refused),
            "{problem}"
        );
    }
    assert_eq!(
        present(&server, &holder, &[id_of(&active)]).await.status,
        201
    );

    revoke(&server, &format!("/v1/identities/{holder}")).await;
    let reply = present(&server, &holder, &[id_of(&active)]).await;
    assert_eq!(
        reply.status,
        409,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.problem()["detail"]
        .as_str()
        .unwrap()
        .contains(&holder));

    let expired_holder = store_expired_identity(&server).await;
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    let credential = VerifiableCredential::issue(
        CredentialParams {
            expiry_days: ExpiryDays::DEFAULT,
            ..credential_params(&expired_holder, "AgentIdentityCredential")
        },
        &server_key(&server),
        OffsetDateTime::now_utc(),
        Uuid::new_v4(),
    )
    .unwrap();
    storage
        .insert_credential(&NewCredential {
            credential_id: credential.id.clone(),
            owner: ADMIN_SCOPE.to_owned(),
            subject_id: expired_holder.clone(),
            credential_type: "AgentIdentityCredential".to_owned(),
            issued_at_ms: 0,
            expires_at_ms: credential.expiration_date.datetime().unix_timestamp() * 1000,
            document: serde_json::to_string(&credential).unwrap(),
            recovery: None,
            audit: None,
        })
        .await
        .unwrap();
    let reply = present(&server, &expired_holder, &[&credential.id]).await;
    assert_eq!(
        reply.status,
        409,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    server.finish().await;
}

// --- 7. credentials about revoked identities ----------------------------------------

async fn credentials_about_a_revoked_identity_of_this_server_are_refused(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server).await;
    revoke(&server, &format!("/v1/identities/{agent}")).await;
    let reply = post(
        &server,
        "/v1/credentials",
        &json!({
            "subject_id": agent,
            "credential_type": "AgentIdentityCredential",
            "issuer_name": "Acme",
            "claims": {},
        }),
    )
    .await;
    assert_eq!(
        reply.status,
        409,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let problem = reply.problem();
    assert!(
        problem["detail"].as_str().unwrap().contains(&agent),
        "{problem}"
    );
    // Subjects this server does not know (external DIDs) may be named.
    issue(&server, "did:example:external-subject").await;
    server.finish().await;
}

// --- 3. proof type and purpose ------------------------------------------------------

#[tokio::test]
async fn proof_type_and_purpose_are_checked() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let holder = new_agent(&server).await;
    let credential = issue(&server, &holder).await;

    let mut other_type = credential.clone();
    other_type["proof"]["type"] = json!("JsonWebSignature2020");
    let mut other_purpose = credential.clone();
    other_purpose["proof"]["proofPurpose"] = json!("authentication");
    for edited in [other_type, other_purpose] {
        let result = verify_external(&server, &edited).await.json();
        assert_eq!(result["valid"], false, "{result}");
        assert_eq!(result["checks"]["signature_valid"], false, "{result}");
    }

    let presentation = present(&server, &holder, &[id_of(&credential)])
        .await
        .json();
    let mut as_assertion = presentation.clone();
    as_assertion["proof"]["proofPurpose"] = json!("assertionMethod");
    let result = verify_presentation(&server, &as_assertion).await.json();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["signature_valid"], false, "{result}");

    // A credential typed as a presentation is refused at issue...
    let reply = post(
        &server,
        "/v1/credentials",
        &json!({
            "subject_id": holder,
            "credential_type": "VerifiablePresentation",
            "issuer_name": "Acme",
            "claims": {},
        }),
    )
    .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.problem()["errors"][0]["field"], "credential_type");

    // ...and one signed anyway (as an older server would have) verifies neither as a
    // presentation (the attack: drop the unsigned status, and the credential's
    // signature covers everything but `proof`) nor as a credential.
    let key = server_key(&server);
    let mut disguised = VerifiableCredential::issue(
        credential_params(&holder, "AgentIdentityCredential"),
        &key,
        OffsetDateTime::now_utc(),
        Uuid::new_v4(),
    )
    .unwrap()
    .to_value();
    disguised["type"] = json!(["VerifiableCredential", "VerifiablePresentation"]);
    disguised
        .as_object_mut()
        .unwrap()
        .remove("credentialStatus");
    let signed = attestix_core::canonical_bytes_without(&disguised, &["proof"]).unwrap();
    disguised["proof"]["proofValue"] = json!(key.sign_base64url(&signed));
    let result = verify_presentation(&server, &disguised).await.json();
    assert_eq!(result["valid"], false, "{result}");
    let result = verify_external(&server, &disguised).await.json();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["checks"]["structure_valid"], false, "{result}");
    server.finish().await;
}

// --- 4. repeated keys ---------------------------------------------------------------

#[tokio::test]
async fn documents_with_a_repeated_key_at_any_depth_are_refused() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let holder = new_agent(&server).await;
    let genuine = issue_text(
        &server,
        &holder,
        json!({"role": "reporter", "team": {"name": "a"}}),
    )
    .await;
    let credential: Value = serde_json::from_str(&genuine).unwrap();
    let genuine_ok = post_text(
        &server,
        "/v1/credentials/verify-external",
        format!(r#"{{"credential":{genuine}}}"#),
    )
    .await;
    assert_eq!(genuine_ok.json()["valid"], true);

    // A forged subject before the genuine one: serde_json keeps the last, so the
    // proof verifies, while a parser keeping the first reads the forgery.
    let forged_subject = genuine.replacen(
        r#""credentialSubject":"#,
        r#""credentialSubject":{"id":"attestix:evil","role":"admin"},"credentialSubject":"#,
        1,
    );
    let forged_deep = genuine.replacen(r#""name":"a""#, r#""name":"b","name":"a""#, 1);
    assert_ne!(forged_deep, genuine);
    for forged in [&forged_subject, &forged_deep] {
        let reply = post_text(
            &server,
            "/v1/credentials/verify-external",
            format!(r#"{{"credential":{forged}}}"#),
        )
        .await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        assert!(
            problem["detail"].as_str().unwrap().contains("repeated key"),
            "{problem}"
        );
    }

    let presentation = present(&server, &holder, &[id_of(&credential)]).await;
    let presentation = String::from_utf8(presentation.body.to_vec()).unwrap();
    let inner = presentation.replacen(r#""name":"a""#, r#""name":"b","name":"a""#, 1);
    let outer = presentation.replacen(r#""holder":"#, r#""holder":"attestix:evil","holder":"#, 1);
    for forged in [inner, outer] {
        assert_ne!(forged, presentation);
        let reply = post_text(
            &server,
            "/v1/presentations/verify",
            format!(r#"{{"presentation":{forged}}}"#),
        )
        .await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        let field = problem["errors"][0]["field"].as_str().unwrap();
        assert!(field.starts_with("presentation"), "{problem}");
    }

    // The claims of an issue request are a document too.
    let reply = post_text(
        &server,
        "/v1/credentials",
        format!(
            r#"{{"subject_id":"{holder}","credential_type":"T","issuer_name":"Acme","claims":{{"role":"reporter","role":"admin"}}}}"#
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.problem()["errors"][0]["field"], "claims");
    server.finish().await;
}

// --- 5. strings not in NFC ----------------------------------------------------------

#[tokio::test]
async fn strings_not_in_nfc_are_refused_and_never_issued() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let holder = new_agent(&server).await;
    // U+212A KELVIN SIGN and U+212B ANGSTROM SIGN normalise to K and Å (U+00C5).
    let genuine = issue_text(
        &server,
        &holder,
        json!({"unit": "Kelvin", "\u{c5}ngstr\u{f6}m": 1}),
    )
    .await;
    let kelvin_value = genuine.replacen("\"Kelvin\"", "\"\u{212a}elvin\"", 1);
    let angstrom_key = genuine.replacen("\"\u{c5}ngstr", "\"\u{212b}ngstr", 1);
    for edited in [&kelvin_value, &angstrom_key] {
        assert_ne!(edited, &genuine);
        let reply = post_text(
            &server,
            "/v1/credentials/verify-external",
            format!(r#"{{"credential":{edited}}}"#),
        )
        .await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        let field = problem["errors"][0]["field"].as_str().unwrap();
        assert!(field.starts_with("credential"), "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("NFC"),
            "{problem}"
        );
    }

    let credential: Value = serde_json::from_str(&genuine).unwrap();
    let presentation = present(&server, &holder, &[id_of(&credential)]).await;
    let presentation = String::from_utf8(presentation.body.to_vec()).unwrap();
    let edited = presentation.replacen("\"Kelvin\"", "\"\u{212a}elvin\"", 1);
    assert_ne!(edited, presentation);
    let reply = post_text(
        &server,
        "/v1/presentations/verify",
        format!(r#"{{"presentation":{edited}}}"#),
    )
    .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // What the server issues is NFC, so it verifies.
    let issued: Value = serde_json::from_str(
        &issue_text(
            &server,
            &holder,
            json!({"unit": "\u{212a}elvin", "\u{212b}": 1}),
        )
        .await,
    )
    .unwrap();
    assert_eq!(issued["credentialSubject"]["unit"], "Kelvin", "{issued}");
    assert_eq!(issued["credentialSubject"]["\u{c5}"], 1, "{issued}");
    let result = verify_external(&server, &issued).await.json();
    assert_eq!(result["valid"], true, "{result}");
    server.finish().await;
}

// --- 6. nesting ----------------------------------------------------------------------

/// `{"a":{"a":…{"a":1}}}`, `depth` objects deep.
fn nested_claims(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!({ "a": value });
    }
    value
}

#[tokio::test]
async fn the_deepest_issuable_credential_verifies_inside_a_presentation() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let holder = new_agent(&server).await;
    let deepest: Value =
        serde_json::from_str(&issue_text(&server, &holder, nested_claims(DEEPEST_CLAIMS)).await)
            .unwrap();
    let result = verify_external(&server, &deepest).await;
    assert_eq!(
        result.status,
        200,
        "{}",
        String::from_utf8_lossy(&result.body)
    );
    assert_eq!(result.json()["valid"], true);
    let presentation = present(&server, &holder, &[id_of(&deepest)]).await;
    assert_eq!(presentation.status, 201);
    let result = verify_presentation(&server, &presentation.json()).await;
    assert_eq!(
        result.status,
        200,
        "{}",
        String::from_utf8_lossy(&result.body)
    );
    assert_eq!(result.json()["valid"], true);

    let reply = post(
        &server,
        "/v1/credentials",
        &json!({
            "subject_id": holder,
            "credential_type": "AgentIdentityCredential",
            "issuer_name": "Acme",
            "claims": nested_claims(DEEPEST_CLAIMS + 1),
        }),
    )
    .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let problem = reply.problem();
    assert_eq!(problem["errors"][0]["field"], "claims", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&DEEPEST_CLAIMS.to_string()),
        "{problem}"
    );
    server.finish().await;
}
