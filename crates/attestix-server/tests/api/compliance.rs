//! /v1/compliance: profiles (create, merge-patch, get, list, status), Article 43
//! assessments, Annex V declarations with their credential, the identity's
//! `eu_compliance`, signatures after every change, Idempotency-Key on every
//! mutation, scopes and bad input.

use attestix_core::DidKey;
use attestix_server::compliance::signature_valid;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    a_high_risk_profile_is_taken_to_workflow_complete_through_the_api,
    a_profile_needs_an_agent_of_the_callers_and_is_one_per_agent,
    every_bad_create_field_is_a_422_naming_it_and_records_nothing,
    article_43_decides_who_may_assess_a_high_risk_system,
    a_declaration_names_what_the_profile_lacks,
    a_patch_is_a_merge_patch_of_known_fields_only,
    every_mutation_replays_under_its_idempotency_key_without_a_second_record,
    another_principal_sees_and_changes_none_of_it,
    profiles_are_listed_by_risk_and_declaration_with_paging,
    concurrent_changes_of_one_profile_are_all_kept_and_signed,
    entries_written_before_the_evidence_records_existed_still_count,
);

async fn send(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut request = server
        .client
        .request(method, server.url(path))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(body);
    }
    Reply::of(request.send()).await
}

async fn admin(server: &TestServer, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let key = server.admin_key.clone();
    send(server, &key, method, path, body).await
}

async fn new_agent(server: &TestServer, name: &str) -> String {
    let created = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body(name))
            .send(),
    )
    .await;
    assert_eq!(created.status, 201);
    created.json()["agent_id"].as_str().unwrap().to_owned()
}

fn profile_body(agent: &str, risk: &str) -> Value {
    json!({"agent_id": agent, "risk_category": risk, "provider_name": "Acme AI",
           "intended_purpose": "Triage of support tickets",
           "provider_address": "1 Rue de la Loi, Brussels"})
}

/// The document's signature verifies with the key of its `did` field (`provider.did`
/// of a profile, `issuer_did` of a declaration, `assessed_by` of an assessment).
fn signed_by_server(document: &Value, did: &str) -> bool {
    let key = DidKey::parse(did).expect("a did:key").verifying_key();
    signature_valid(document, &key)
}

fn assert_profile_signed(profile: &Value) {
    let did = profile["provider"]["did"].as_str().unwrap();
    assert!(
        signed_by_server(profile, did),
        "profile signature: {profile}"
    );
}

async fn status(server: &TestServer, agent: &str) -> Value {
    let reply = admin(
        server,
        Method::GET,
        &format!("/v1/compliance/profiles/{agent}/status"),
        None,
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

async fn a_high_risk_profile_is_taken_to_workflow_complete_through_the_api(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server, "Triage Bot").await;
    let mut body = profile_body(&agent, "high");
    body["annex_iii_category"] = json!(4);
    let created = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&body),
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let profile = created.json();
    assert_profile_signed(&profile);
    let profile_id = profile["profile_id"].as_str().unwrap().to_owned();
    assert!(profile_id.starts_with("comp:") && profile_id.len() == 17);
    let keys: Vec<&str> = profile
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "profile_id",
            "agent_id",
            "risk_category",
            "annex_iii_category",
            "annex_iii_exception",
            "provider",
            "ai_system",
            "transparency",
            "required_obligations",
            "conformity",
            "created_at",
            "updated_at",
            "signature"
        ]
    );
    assert_eq!(profile["ai_system"]["display_name"], "Triage Bot");
    assert_eq!(
        profile["required_obligations"].as_array().unwrap().len(),
        12
    );
    assert_eq!(profile["provider"]["address"], "1 Rue de la Loi, Brussels");
    // The identity names its profile, and its own signature still holds.
    let identity = admin(
        &server,
        Method::GET,
        &format!("/v1/identities/{agent}"),
        None,
    )
    .await;
    assert_eq!(identity.json()["eu_compliance"], profile_id.as_str());
    let verified = admin(
        &server,
        Method::POST,
        &format!("/v1/identities/{agent}/verify"),
        None,
    )
    .await;
    assert_eq!(
        verified.json()["valid"],
        true,
        "{}",
        String::from_utf8_lossy(&verified.body)
    );

    let first = status(&server, &agent).await;
    assert_eq!(first["workflow_complete"], false);
    assert_eq!(first["completion_pct"], 12.5);
    assert_eq!(first["missing"].as_array().unwrap().len(), 14);

    // The provider documents what the checklist reads.
    let patch = json!({"transparency_obligations": "Users are told they talk to an AI",
                       "human_oversight_measures": "A human reviews every escalation",
                       "risk_management": {"documented": true},
                       "post_market_monitoring": {"plan_documented": true},
                       "incident_reporting": {"process_documented": true}});
    let patched = admin(
        &server,
        Method::PATCH,
        &format!("/v1/compliance/profiles/{agent}"),
        Some(&patch),
    )
    .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    let patched = patched.json();
    assert_profile_signed(&patched);
    assert_eq!(patched["risk_management"]["documented"], true);
    assert_eq!(patched["profile_id"], profile_id.as_str());
    assert_eq!(patched["created_at"], profile["created_at"]);

    // Entries without governance measures or metrics are provenance, not Art. 10/15
    // evidence.
    for (path, evidence) in [
        (
            "/v1/provenance/training-data",
            json!({"agent_id": agent, "dataset_name": "raw"}),
        ),
        (
            "/v1/provenance/model-lineage",
            json!({"agent_id": agent, "base_model": "m-1b"}),
        ),
    ] {
        let reply = admin(&server, Method::POST, path, Some(&evidence)).await;
        assert_eq!(reply.status, 201, "{path}");
    }
    let partial = status(&server, &agent).await;
    let missing: Vec<&str> = partial["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(missing.contains(&"data_governance"), "{partial}");
    assert!(
        missing.contains(&"accuracy_robustness_cybersecurity"),
        "{partial}"
    );
    assert!(!missing.contains(&"training_data_provenance"), "{partial}");
    assert!(!missing.contains(&"model_lineage_recorded"), "{partial}");
    // Evidence from the provenance router.
    for (path, evidence) in [
        (
            "/v1/provenance/training-data",
            json!({"agent_id": agent, "dataset_name": "tickets",
            "data_governance_measures": "PII removed"}),
        ),
        (
            "/v1/provenance/model-lineage",
            json!({"agent_id": agent, "base_model": "m-7b",
            "evaluation_metrics": {"f1": 0.91}}),
        ),
        (
            "/v1/provenance/actions",
            json!({"agent_id": agent, "action_type": "inference"}),
        ),
    ] {
        let reply = admin(&server, Method::POST, path, Some(&evidence)).await;
        assert_eq!(
            reply.status,
            201,
            "{path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let before_assessment = status(&server, &agent).await;
    assert_eq!(
        before_assessment["missing"],
        json!([
            "conformity_assessment_passed",
            "declaration_of_conformity_issued"
        ])
    );
    assert_eq!(before_assessment["completion_pct"], 87.5);

    // Point 4 may self-assess (Annex VI).
    let assessment = admin(
        &server,
        Method::POST,
        "/v1/compliance/assessments",
        Some(
            &json!({"agent_id": agent, "assessment_type": "self", "assessor_name": "Acme QA",
                     "result": "pass", "ce_marking_eligible": true}),
        ),
    )
    .await;
    assert_eq!(
        assessment.status,
        201,
        "{}",
        String::from_utf8_lossy(&assessment.body)
    );
    let assessment = assessment.json();
    assert!(signed_by_server(
        &assessment,
        assessment["assessed_by"].as_str().unwrap()
    ));
    assert_eq!(assessment["ce_marking_eligible"], true);
    let assessed = admin(
        &server,
        Method::GET,
        &format!("/v1/compliance/profiles/{agent}"),
        None,
    )
    .await
    .json();
    assert_profile_signed(&assessed);
    assert_eq!(
        assessed["conformity"]["assessment_id"],
        assessment["assessment_id"]
    );
    assert_eq!(assessed["conformity"]["assessment_completed"], true);

    let declared = admin(
        &server,
        Method::POST,
        "/v1/compliance/declarations",
        Some(&json!({"agent_id": agent})),
    )
    .await;
    assert_eq!(
        declared.status,
        201,
        "{}",
        String::from_utf8_lossy(&declared.body)
    );
    let declaration = declared.json();
    // `credential_id` is signed with the rest.
    assert!(signed_by_server(
        &declaration,
        declaration["issuer_did"].as_str().unwrap()
    ));
    let mut forged = declaration.clone();
    forged["credential_id"] = json!("urn:uuid:00000000-0000-4000-8000-000000000000");
    assert!(!signed_by_server(
        &forged,
        declaration["issuer_did"].as_str().unwrap()
    ));
    let fields = &declaration["annex_v_fields"];
    assert_eq!(fields["1_provider_name"], "Acme AI");
    assert_eq!(fields["3_ai_system_name"], "Triage Bot");
    assert_eq!(fields["5a_annex_iii_category"], 4);
    assert_eq!(fields["6a_assessment_type"], "self");
    assert_eq!(fields["6b_assessor_name"], "Acme QA");
    assert_eq!(fields["10_ce_marking_eligible"], true);
    assert_eq!(declaration["legal_conformity"], "not_assessed");

    let done = status(&server, &agent).await;
    assert_eq!(done["workflow_complete"], true, "{done}");
    assert_eq!(done["compliant"], true);
    assert_eq!(done["completion_pct"], 100.0);
    assert_eq!(done["missing"], json!([]));
    let final_profile = admin(
        &server,
        Method::GET,
        &format!("/v1/compliance/profiles/{agent}"),
        None,
    )
    .await
    .json();
    assert_profile_signed(&final_profile);
    assert_eq!(
        final_profile["conformity"]["declaration_id"],
        declaration["declaration_id"]
    );

    // The companion credential is a credential like any other.
    let credential_id = declaration["credential_id"].as_str().unwrap().to_owned();
    let listed = admin(
        &server,
        Method::GET,
        &format!("/v1/credentials?agent_id={agent}&credential_type=EUAIActComplianceCredential"),
        None,
    )
    .await
    .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let credential = &listed[0];
    assert_eq!(credential["id"], credential_id.as_str());
    let claims = &credential["credentialSubject"];
    assert_eq!(claims["declaration_id"], declaration["declaration_id"]);
    assert_eq!(claims["workflow_complete"], true);
    assert_eq!(claims["legal_conformity"], "not_assessed");
    assert_eq!(credential["issuer"]["name"], "Acme AI");
    let verify_path = format!("/v1/credentials/{credential_id}/verify");
    let verified = admin(&server, Method::POST, &verify_path, None)
        .await
        .json();
    assert_eq!(verified["valid"], true, "{verified}");
    let revoked = admin(
        &server,
        Method::DELETE,
        &format!("/v1/credentials/{credential_id}"),
        Some(&json!({"reason": "superseded"})),
    )
    .await;
    assert_eq!(
        revoked.status,
        200,
        "{}",
        String::from_utf8_lossy(&revoked.body)
    );
    let verified = admin(&server, Method::POST, &verify_path, None)
        .await
        .json();
    assert_eq!(verified["valid"], false);

    // Every step is in the audit chain, which verifies.
    let events = server
        .all_pages("/v1/audit/events", &server.admin_key)
        .await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "compliance.create_profile",
        "compliance.update_profile",
        "compliance.record_assessment",
        "credential.issue",
        "compliance.generate_declaration",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let chain = admin(&server, Method::GET, "/v1/audit/verify", None)
        .await
        .json();
    assert_eq!(chain["valid"], true, "{chain}");
    server.finish().await;
}

async fn a_profile_needs_an_agent_of_the_callers_and_is_one_per_agent(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let unknown = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&profile_body("attestix:0000000000000000", "minimal")),
    )
    .await;
    assert_eq!(unknown.status, 404);
    unknown.problem();
    let agent = new_agent(&server, "Once").await;
    let body = profile_body(&agent, "minimal");
    let first = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&body),
    )
    .await;
    assert_eq!(first.status, 201);
    assert_eq!(
        first.json()["required_obligations"],
        json!(["registration_in_eu_database", "voluntary_code_of_conduct"])
    );
    let second = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&body),
    )
    .await;
    assert_eq!(second.status, 409);
    assert!(second.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let missing = admin(
        &server,
        Method::GET,
        "/v1/compliance/profiles/attestix:0000000000000000",
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    missing.problem();
    let no_status = admin(
        &server,
        Method::GET,
        "/v1/compliance/profiles/attestix:0000000000000000/status",
        None,
    )
    .await;
    assert_eq!(no_status.status, 404);
    no_status.problem();
    // A minimal profile's checklist: 6 checks, 2 done.
    let minimal = status(&server, &agent).await;
    assert_eq!(minimal["completion_pct"], 33.3);
    assert_eq!(
        minimal["completed"],
        json!(["compliance_profile_created", "intended_purpose_documented"])
    );
    server.finish().await;
}

async fn every_bad_create_field_is_a_422_naming_it_and_records_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server, "Strict").await;
    let cases = [
        (
            json!({"risk_category": "extreme"}),
            "risk_category",
            "Invalid risk_category 'extreme'. Must be one of: high, limited, minimal, unacceptable",
        ),
        (
            json!({"risk_category": "unacceptable"}),
            "risk_category",
            "prohibited under the EU AI Act (Article 5)",
        ),
        (
            json!({"annex_iii_category": 9}),
            "annex_iii_category",
            "Invalid annex_iii_category '9'. Must be one of: [1, 2, 3, 4, 5, 6, 7, 8]",
        ),
        (
            json!({"annex_iii_exception": "sports"}),
            "annex_iii_exception",
            "Invalid annex_iii_exception 'sports'",
        ),
        (json!({"provider_name": ""}), "provider_name", "1 to 1024"),
        (
            json!({"intended_purpose": "x".repeat(4097)}),
            "intended_purpose",
            "0 to 4096",
        ),
        (json!({"agent_id": "a".repeat(257)}), "agent_id", "1 to 256"),
        (
            json!({"provider_address": "nul\u{0}"}),
            "provider_address",
            "NUL",
        ),
        (
            json!({"annex_iii_category": "four"}),
            "annex_iii_category",
            "invalid type",
        ),
    ];
    for (change, field, message) in cases {
        let mut body = profile_body(&agent, "high");
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&body),
        )
        .await;
        assert_eq!(
            reply.status,
            422,
            "{field}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        let errors = problem["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].as_str().unwrap().contains(message)),
            "{field}: {problem}"
        );
    }
    let listed = admin(&server, Method::GET, "/v1/compliance/profiles", None).await;
    assert_eq!(listed.json(), json!([]));
    let identity = admin(
        &server,
        Method::GET,
        &format!("/v1/identities/{agent}"),
        None,
    )
    .await;
    assert_eq!(identity.json()["eu_compliance"], Value::Null);
    server.finish().await;
}

async fn assess(server: &TestServer, agent: &str, kind: &str, result: &str) -> Reply {
    admin(
        server,
        Method::POST,
        "/v1/compliance/assessments",
        Some(&json!({"agent_id": agent, "assessment_type": kind,
                     "assessor_name": "Notified Body 0123", "result": result})),
    )
    .await
}

async fn article_43_decides_who_may_assess_a_high_risk_system(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let no_profile = assess(&server, "attestix:0000000000000000", "third_party", "pass").await;
    assert_eq!(no_profile.status, 404);
    no_profile.problem();
    let cases: [(Value, bool, &str); 5] = [
        (json!({}), false, "Annex III category not specified for high-risk system; defaulting to third-party assessment per Article 43 (fail-safe)."),
        (json!({"annex_iii_category": 1}), false, "Annex III Point 1 (biometrics) requires third-party conformity assessment via notified body per Article 43 (Annex VII procedure)."),
        (json!({"annex_iii_category": 5, "annex_iii_exception": "financial_fraud_detection"}), false, "Annex III exception 'financial_fraud_detection' requires third-party conformity assessment per Article 43 (Annex VII procedure)."),
        (json!({"annex_iii_category": 3}), true, ""),
        (json!({"risk": "limited"}), true, ""),
    ];
    for (n, (extra, self_allowed, reason)) in cases.into_iter().enumerate() {
        let agent = new_agent(&server, &format!("Assessed {n}")).await;
        let risk = extra.get("risk").and_then(Value::as_str).unwrap_or("high");
        let mut body = profile_body(&agent, risk);
        for key in ["annex_iii_category", "annex_iii_exception"] {
            if let Some(value) = extra.get(key) {
                body[key] = value.clone();
            }
        }
        let created = admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&body),
        )
        .await;
        assert_eq!(created.status, 201);
        let by_self = assess(&server, &agent, "self", "pass").await;
        if self_allowed {
            assert_eq!(by_self.status, 201, "case {n}");
        } else {
            assert_eq!(by_self.status, 422, "case {n}");
            let problem = by_self.problem();
            assert_eq!(problem["errors"][0]["field"], "assessment_type");
            assert_eq!(
                problem["errors"][0]["message"],
                format!("Self-assessment not permitted: {reason} Use assessment_type='third_party' with a notified body.")
            );
            let profile = admin(
                &server,
                Method::GET,
                &format!("/v1/compliance/profiles/{agent}"),
                None,
            )
            .await
            .json();
            assert_eq!(
                profile["conformity"]["assessment_id"],
                Value::Null,
                "case {n}"
            );
            let third = assess(&server, &agent, "third_party", "fail").await;
            assert_eq!(third.status, 201);
            let third = third.json();
            assert_eq!(third["ce_marking_eligible"], false);
            let profile = admin(
                &server,
                Method::GET,
                &format!("/v1/compliance/profiles/{agent}"),
                None,
            )
            .await
            .json();
            // A failed assessment is recorded but does not complete the step.
            assert_eq!(
                profile["conformity"]["assessment_id"],
                third["assessment_id"]
            );
            assert_eq!(profile["conformity"]["assessment_completed"], false);
            assert_profile_signed(&profile);
        }
    }
    let agent = new_agent(&server, "Typo").await;
    let created = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&profile_body(&agent, "minimal")),
    )
    .await;
    assert_eq!(created.status, 201);
    let bad = assess(&server, &agent, "peer", "great").await;
    assert_eq!(bad.status, 422);
    let fields: Vec<Value> = bad.problem()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, [json!("assessment_type"), json!("result")]);
    server.finish().await;
}

async fn a_declaration_names_what_the_profile_lacks(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let declare = |agent: String| {
        let server = &server;
        async move {
            admin(
                server,
                Method::POST,
                "/v1/compliance/declarations",
                Some(&json!({"agent_id": agent})),
            )
            .await
        }
    };
    let none = declare("attestix:0000000000000000".into()).await;
    assert_eq!(none.status, 404);
    none.problem();
    let agent = new_agent(&server, "Sparse").await;
    let body = json!({"agent_id": agent, "risk_category": "high", "provider_name": "Acme",
                      "annex_iii_category": 2});
    assert_eq!(
        admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&body)
        )
        .await
        .status,
        201
    );
    let unassessed = declare(agent.clone()).await;
    assert_eq!(unassessed.status, 422);
    let problem = unassessed.problem();
    assert_eq!(problem["error"], "invalid_compliance_profile");
    assert_eq!(problem["missing_fields"], json!([]));
    assert!(problem["message"]
        .as_str()
        .unwrap()
        .contains("no completed conformity assessment"));
    assert_eq!(
        assess(&server, &agent, "self", "conditional").await.status,
        201
    );
    let sparse = declare(agent.clone()).await;
    assert_eq!(sparse.status, 422);
    let problem = sparse.problem();
    assert_eq!(
        problem["missing_fields"],
        json!([
            "intended_purpose",
            "transparency_obligations",
            "human_oversight_measures"
        ])
    );
    assert_eq!(
        problem["message"],
        format!("Cannot generate declaration: missing required fields: intended_purpose, transparency_obligations, human_oversight_measures. Update the compliance profile first via PATCH /v1/compliance/profiles/{agent}.")
    );
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "intended_purpose",
            "transparency_obligations",
            "human_oversight_measures"
        ]
    );
    // Nothing was issued.
    let credentials = admin(&server, Method::GET, "/v1/credentials", None)
        .await
        .json();
    assert_eq!(credentials, json!([]));
    // Whitespace is not a value.
    let patched = admin(
        &server,
        Method::PATCH,
        &format!("/v1/compliance/profiles/{agent}"),
        Some(
            &json!({"intended_purpose": "Grid balancing", "transparency_obligations": "  ",
                     "human_oversight_measures": "Operator veto"}),
        ),
    )
    .await;
    assert_eq!(patched.status, 200);
    let still = declare(agent.clone()).await;
    assert_eq!(
        still.problem()["missing_fields"],
        json!(["transparency_obligations"])
    );

    // A limited-risk profile may self-assess; its declaration has no Annex III point.
    let strict = new_agent(&server, "Strict").await;
    let body = json!({"agent_id": strict, "risk_category": "limited", "provider_name": "Acme",
                      "intended_purpose": "Chat", "transparency_obligations": "Disclosed"});
    assert_eq!(
        admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&body)
        )
        .await
        .status,
        201
    );
    assert_eq!(assess(&server, &strict, "self", "pass").await.status, 201);
    let declared = declare(strict.clone()).await;
    assert_eq!(
        declared.status,
        201,
        "{}",
        String::from_utf8_lossy(&declared.body)
    );
    let declaration = declared.json();
    assert_eq!(
        declaration["annex_v_fields"]["5a_annex_iii_category"],
        Value::Null
    );
    let claims = admin(
        &server,
        Method::GET,
        &format!(
            "/v1/credentials/{}",
            declaration["credential_id"].as_str().unwrap()
        ),
        None,
    )
    .await
    .json();
    // No provenance evidence: the workflow is not complete.
    assert_eq!(claims["credentialSubject"]["workflow_complete"], false);
    server.finish().await;
}

async fn a_patch_is_a_merge_patch_of_known_fields_only(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server, "Patched").await;
    let created = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&profile_body(&agent, "limited")),
    )
    .await;
    assert_eq!(created.status, 201);
    let path = format!("/v1/compliance/profiles/{agent}");
    let bad = admin(
        &server,
        Method::PATCH,
        &path,
        Some(&json!({"risk_category": "minimal", "provider_name": "", "risk_management": {"documented": "yes", "extra": 1},
                     "incident_reporting": 3, "intended_purpose": 5})),
    )
    .await;
    assert_eq!(bad.status, 422);
    let mut fields: Vec<String> = bad.problem()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "incident_reporting",
            "intended_purpose",
            "provider_name",
            "risk_category",
            "risk_management.documented",
            "risk_management.extra"
        ]
    );
    let unchanged = admin(&server, Method::GET, &path, None).await;
    assert_eq!(
        unchanged.body, created.body,
        "a refused patch changes nothing"
    );

    // application/merge-patch+json; null clears.
    let reply = Reply::of(
        server
            .request(Method::PATCH, &path)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"provider_address": null, "provider_name": "Acme EU", "authorised_representative": "Rep GmbH", "risk_management": {"documented": true}}"#)
            .send(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let profile = reply.json();
    assert_eq!(profile["provider"]["address"], "");
    assert_eq!(profile["provider"]["name"], "Acme EU");
    assert_eq!(profile["provider"]["authorised_representative"], "Rep GmbH");
    assert_eq!(profile["risk_management"], json!({"documented": true}));
    assert_profile_signed(&profile);
    let cleared = admin(
        &server,
        Method::PATCH,
        &path,
        Some(&json!({"risk_management": null})),
    )
    .await
    .json();
    assert!(cleared.get("risk_management").is_none());
    assert_profile_signed(&cleared);
    let unknown = admin(
        &server,
        Method::PATCH,
        "/v1/compliance/profiles/attestix:0000000000000000",
        Some(&json!({"intended_purpose": "x"})),
    )
    .await;
    assert_eq!(unknown.status, 404);
    unknown.problem();
    server.finish().await;
}

async fn keyed(server: &TestServer, method: Method, path: &str, key: &str, body: &Value) -> Reply {
    Reply::of(
        server
            .request(method, path)
            .header("idempotency-key", key)
            .json(body)
            .send(),
    )
    .await
}

async fn count_events(server: &TestServer, action: &str) -> usize {
    server
        .all_pages(
            &format!("/v1/audit/events?action={action}"),
            &server.admin_key,
        )
        .await
        .len()
}

async fn every_mutation_replays_under_its_idempotency_key_without_a_second_record(
    backend: Backend,
) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server, "Keyed").await;
    let mut steps = vec![
        (
            Method::POST,
            "/v1/compliance/profiles".to_owned(),
            {
                let mut body = profile_body(&agent, "high");
                body["annex_iii_category"] = json!(6);
                body
            },
            "compliance.create_profile",
        ),
        (
            Method::PATCH,
            format!("/v1/compliance/profiles/{agent}"),
            json!({"transparency_obligations": "Disclosed", "human_oversight_measures": "Reviewed"}),
            "compliance.update_profile",
        ),
        (
            Method::POST,
            "/v1/compliance/assessments".to_owned(),
            json!({"agent_id": agent, "assessment_type": "self", "assessor_name": "QA", "result": "pass"}),
            "compliance.record_assessment",
        ),
        (
            Method::POST,
            "/v1/compliance/declarations".to_owned(),
            json!({"agent_id": agent}),
            "compliance.generate_declaration",
        ),
    ];
    for (n, (method, path, body, action)) in steps.drain(..).enumerate() {
        let key = format!("compliance-key-{n}");
        let first = keyed(&server, method.clone(), &path, &key, &body).await;
        assert!(
            first.status == 200 || first.status == 201,
            "{path}: {}",
            String::from_utf8_lossy(&first.body)
        );
        let profile_before = admin(
            &server,
            Method::GET,
            &format!("/v1/compliance/profiles/{agent}"),
            None,
        )
        .await
        .body;
        let again = keyed(&server, method.clone(), &path, &key, &body).await;
        assert_eq!(again.status, first.status, "{path}");
        assert!(again.replayed(), "{path}");
        assert_eq!(again.body, first.body, "{path}");
        let profile_after = admin(
            &server,
            Method::GET,
            &format!("/v1/compliance/profiles/{agent}"),
            None,
        )
        .await
        .body;
        assert_eq!(
            profile_before, profile_after,
            "{path}: the replay changed nothing"
        );
        assert_eq!(
            count_events(&server, action).await,
            1,
            "{path}: one {action}"
        );
        let mut other = body.clone();
        other["agent_id"] = json!("attestix:ffffffffffffffff");
        if method == Method::PATCH {
            other = json!({"intended_purpose": "something else"});
        }
        let reused = keyed(&server, method, &path, &key, &other).await;
        assert_eq!(reused.status / 100, 4, "{path}: a reused key is refused");
    }
    let credentials = admin(&server, Method::GET, "/v1/credentials", None)
        .await
        .json();
    assert_eq!(
        credentials.as_array().unwrap().len(),
        1,
        "one declaration credential"
    );
    assert_eq!(count_events(&server, "credential.issue").await, 1);
    server.finish().await;
}

async fn another_principal_sees_and_changes_none_of_it(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_agent(&server, "Mine").await;
    let created = admin(
        &server,
        Method::POST,
        "/v1/compliance/profiles",
        Some(&profile_body(&agent, "limited")),
    )
    .await;
    assert_eq!(created.status, 201);
    let bob = server.key_for("bob").await;
    let profile_path = format!("/v1/compliance/profiles/{agent}");
    let attempts: [(Method, String, Option<Value>); 6] = [
        (Method::GET, profile_path.clone(), None),
        (Method::GET, format!("{profile_path}/status"), None),
        (
            Method::PATCH,
            profile_path.clone(),
            Some(json!({"provider_name": "Mallory"})),
        ),
        (
            Method::POST,
            "/v1/compliance/assessments".into(),
            Some(
                json!({"agent_id": agent, "assessment_type": "third_party", "assessor_name": "X", "result": "pass"}),
            ),
        ),
        (
            Method::POST,
            "/v1/compliance/declarations".into(),
            Some(json!({"agent_id": agent})),
        ),
        // Bob has no identity of that id: no profile of his own either.
        (
            Method::POST,
            "/v1/compliance/profiles".into(),
            Some(profile_body(&agent, "minimal")),
        ),
    ];
    for (method, path, body) in attempts {
        let reply = send(&server, &bob, method.clone(), &path, body.as_ref()).await;
        assert_eq!(
            reply.status,
            404,
            "{method} {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.problem();
    }
    let listed = send(&server, &bob, Method::GET, "/v1/compliance/profiles", None).await;
    assert_eq!(listed.json(), json!([]));
    let unchanged = admin(&server, Method::GET, &profile_path, None).await;
    assert_eq!(unchanged.body, created.body);
    server.finish().await;
}

async fn profiles_are_listed_by_risk_and_declaration_with_paging(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let mut agents = Vec::new();
    for (n, risk) in ["minimal", "limited", "minimal", "limited", "minimal"]
        .iter()
        .enumerate()
    {
        let agent = new_agent(&server, &format!("Listed {n}")).await;
        let mut body = profile_body(&agent, risk);
        body["transparency_obligations"] = json!("Disclosed");
        assert_eq!(
            admin(
                &server,
                Method::POST,
                "/v1/compliance/profiles",
                Some(&body)
            )
            .await
            .status,
            201
        );
        agents.push(agent);
    }
    // Declarations for agents 2 and 4.
    for agent in [&agents[2], &agents[4]] {
        assert_eq!(assess(&server, agent, "self", "pass").await.status, 201);
        let declared = admin(
            &server,
            Method::POST,
            "/v1/compliance/declarations",
            Some(&json!({"agent_id": agent})),
        )
        .await;
        assert_eq!(
            declared.status,
            201,
            "{}",
            String::from_utf8_lossy(&declared.body)
        );
    }
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|p| p["agent_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let admin_key = server.admin_key.clone();
    let all = server
        .all_pages("/v1/compliance/profiles?limit=2", &admin_key)
        .await;
    assert_eq!(ids(all), agents);
    let minimal = server
        .all_pages(
            "/v1/compliance/profiles?risk_category=minimal&limit=1",
            &admin_key,
        )
        .await;
    assert_eq!(
        ids(minimal),
        [agents[0].clone(), agents[2].clone(), agents[4].clone()]
    );
    let declared = server
        .all_pages(
            "/v1/compliance/profiles?compliant_only=true&limit=1",
            &admin_key,
        )
        .await;
    assert_eq!(ids(declared), [agents[2].clone(), agents[4].clone()]);
    let limited_declared = admin(
        &server,
        Method::GET,
        "/v1/compliance/profiles?compliant_only=true&risk_category=limited",
        None,
    )
    .await;
    assert_eq!(limited_declared.json(), json!([]));
    for query in [
        "limit=0",
        "limit=1001",
        "cursor=zz",
        "risk_category=extreme",
        "compliant_only=maybe",
    ] {
        let reply = admin(
            &server,
            Method::GET,
            &format!("/v1/compliance/profiles?{query}"),
            None,
        )
        .await;
        assert_eq!(reply.status, 422, "{query}");
        reply.problem();
    }
    server.finish().await;
}

/// Eight changes of one profile at once (seven patches and an assessment): none is
/// lost and the stored profile's signature covers them all. (Within one instance the
/// writes line up in write turns; the compare-and-swap that protects two instances
/// on one database is tested in `tests/storage.rs`.)
async fn concurrent_changes_of_one_profile_are_all_kept_and_signed(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for round in 0..3 {
        let agent = new_agent(&server, &format!("Busy {round}")).await;
        let mut body = profile_body(&agent, "high");
        body["annex_iii_category"] = json!(3);
        let created = admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&body),
        )
        .await;
        assert_eq!(created.status, 201);
        let path = format!("/v1/compliance/profiles/{agent}");
        let patches = [
            json!({"risk_management": {"documented": true}}),
            json!({"post_market_monitoring": {"plan_documented": true}}),
            json!({"incident_reporting": {"process_documented": true}}),
            json!({"transparency_obligations": "Disclosed"}),
            json!({"human_oversight_measures": "Reviewed"}),
            json!({"provider_address": "Elsewhere"}),
            json!({"authorised_representative": "Rep"}),
        ];
        let assessment = json!({"agent_id": agent, "assessment_type": "self",
                                "assessor_name": "QA", "result": "pass"});
        let mut tasks = Vec::new();
        for patch in patches {
            let (client, url, key) = (
                server.client.clone(),
                server.url(&path),
                server.admin_key.clone(),
            );
            tasks.push(tokio::spawn(async move {
                client
                    .patch(url)
                    .header("x-api-key", key)
                    .json(&patch)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        {
            let (client, url, key) = (
                server.client.clone(),
                server.url("/v1/compliance/assessments"),
                server.admin_key.clone(),
            );
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("x-api-key", key)
                    .json(&assessment)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for task in tasks {
            let status = task.await.unwrap();
            assert!(status == 200 || status == 201, "round {round}: {status}");
        }
        let profile = admin(&server, Method::GET, &path, None).await.json();
        assert_profile_signed(&profile);
        assert_eq!(profile["risk_management"]["documented"], true, "{profile}");
        assert_eq!(
            profile["post_market_monitoring"]["plan_documented"], true,
            "{profile}"
        );
        assert_eq!(
            profile["incident_reporting"]["process_documented"], true,
            "{profile}"
        );
        assert_eq!(
            profile["transparency"]["obligations"], "Disclosed",
            "{profile}"
        );
        assert_eq!(
            profile["transparency"]["human_oversight_measures"], "Reviewed",
            "{profile}"
        );
        assert_eq!(profile["provider"]["address"], "Elsewhere", "{profile}");
        assert_eq!(
            profile["provider"]["authorised_representative"], "Rep",
            "{profile}"
        );
        assert_eq!(
            profile["conformity"]["assessment_completed"], true,
            "{profile}"
        );
    }
    let chain = admin(&server, Method::GET, "/v1/audit/verify", None)
        .await
        .json();
    assert_eq!(chain["valid"], true, "{chain}");
    server.finish().await;
}

/// Provenance written by a build that kept no per-agent evidence records (simulated
/// by deleting them and the migration that backfills them) gives the same checklist
/// after an upgrade: the migration derives the facts from the entries themselves.
async fn entries_written_before_the_evidence_records_existed_still_count(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (governed, raw) = (
        new_agent(&server, "Governed").await,
        new_agent(&server, "Raw").await,
    );
    for agent in [&governed, &raw] {
        let created = admin(
            &server,
            Method::POST,
            "/v1/compliance/profiles",
            Some(&profile_body(agent, "high")),
        )
        .await;
        assert_eq!(created.status, 201);
    }
    let entries = [
        (
            "/v1/provenance/training-data",
            json!({"agent_id": governed, "dataset_name": "tickets",
                   "data_governance_measures": "PII removed"}),
        ),
        (
            "/v1/provenance/model-lineage",
            json!({"agent_id": governed, "base_model": "m-7b",
                   "evaluation_metrics": {"f1": 0.91}}),
        ),
        (
            "/v1/provenance/training-data",
            json!({"agent_id": raw, "dataset_name": "raw"}),
        ),
    ];
    for (path, body) in entries {
        let reply = admin(&server, Method::POST, path, Some(&body)).await;
        assert_eq!(reply.status, 201, "{path}");
    }
    let before = [
        status(&server, &governed).await,
        status(&server, &raw).await,
    ];
    assert!(
        !before[0]["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("data_governance")),
        "{}",
        before[0]
    );
    assert!(
        before[1]["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("data_governance")),
        "{}",
        before[1]
    );

    let server = server
        .restart_with(|config| async move {
            let statements = [
                "DELETE FROM record_refs WHERE record_seq IN \
                 (SELECT seq FROM records WHERE kind = 'compliance_evidence')",
                "DELETE FROM records WHERE kind = 'compliance_evidence'",
                "DELETE FROM _sqlx_migrations WHERE version = 2026120401",
            ];
            match &config.database_url {
                Some(url) => {
                    use sqlx::Connection;
                    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
                    for statement in statements {
                        sqlx::query(statement).execute(&mut db).await.unwrap();
                    }
                }
                None => {
                    use sqlx::Connection;
                    let file = config.data_dir.join(attestix_server::DATABASE_FILE);
                    let url = format!("sqlite://{}", file.display());
                    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    for statement in statements {
                        sqlx::query(statement).execute(&mut db).await.unwrap();
                    }
                }
            }
        })
        .await;
    let after = [
        status(&server, &governed).await,
        status(&server, &raw).await,
    ];
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before["missing"], after["missing"]);
        assert_eq!(before["completed"], after["completed"]);
        assert_eq!(before["completion_pct"], after["completion_pct"]);
    }
    server.finish().await;
}
