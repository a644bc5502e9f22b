//! /v1/delegations: UCAN-style tokens, chains with attenuation, revocation from the
//! database, idempotent creates and revocations, scopes, and bad input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    a_delegation_is_created_verified_listed_and_revoked,
    a_chain_attenuates_and_falls_with_a_revoked_parent,
    keyed_creates_and_revocations_replay_byte_identical_without_a_second_record,
    another_principal_sees_and_changes_nothing,
    every_bad_field_is_a_422_naming_it_and_writes_nothing,
    only_an_active_identity_of_the_callers_scope_can_delegate,
    delegations_list_by_agent_and_role_with_cursor_paging,
);

/// Creates an identity as `key`'s principal and returns its agent id.
async fn identity(server: &TestServer, key: &str, name: &str) -> String {
    let reply = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", key)
            .json(&identity_body(name))
            .send(),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["agent_id"].as_str().unwrap().to_owned()
}

fn send(server: &TestServer, key: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    server
        .client
        .request(method, server.url(path))
        .header("x-api-key", key)
}

async fn create(server: &TestServer, key: &str, body: &Value) -> Reply {
    Reply::of(
        send(server, key, Method::POST, "/v1/delegations")
            .json(body)
            .send(),
    )
    .await
}

async fn verify(server: &TestServer, token: &str) -> Value {
    let reply = Reply::of(
        server
            .request(Method::POST, "/v1/delegations/verify")
            .json(&json!({ "token": token }))
            .send(),
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

async fn list(server: &TestServer, key: &str, query: &str) -> Reply {
    Reply::of(send(server, key, Method::GET, &format!("/v1/delegations{query}")).send()).await
}

fn jtis(reply: &Reply) -> Vec<String> {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["jti"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_delegation_is_created_verified_listed_and_revoked(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let alice = identity(&server, &admin, "Alice").await;
    let reply = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zBob",
                "capabilities": ["read", "wrïte"], "expiry_hours": 2}),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let created = reply.json();
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["token", "delegation"]);
    let record = &created["delegation"];
    let record_keys: Vec<&String> = record.as_object().unwrap().keys().collect();
    assert_eq!(
        record_keys,
        [
            "jti",
            "issuer",
            "audience",
            "capabilities",
            "created_at",
            "expires_at",
            "revoked"
        ]
    );
    let jti = record["jti"].as_str().unwrap().to_owned();
    assert_eq!(jti.len(), 22);
    assert_eq!(record["issuer"], alice.as_str());
    assert_eq!(record["revoked"], false);

    // The token's layout, as the reference writes it.
    let token = created["token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
        br#"{"alg":"EdDSA","typ":"JWT","ucv":"0.9.0"}"#
    );
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert!(
        payload.contains(r#""att":["read","wr\u00efte"]"#),
        "{payload}"
    );
    let payload: Value = serde_json::from_str(&payload).unwrap();
    let payload_keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
    assert_eq!(
        payload_keys,
        [
            "iss",
            "aud",
            "sub",
            "iat",
            "exp",
            "nbf",
            "jti",
            "att",
            "delegator",
            "prf",
            "attestix_version",
            "typ"
        ]
    );
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        7200
    );
    assert_eq!(payload["jti"], jti.as_str());
    assert_eq!(payload["delegator"], alice.as_str());

    let verified = verify(&server, &token).await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["jti"], jti.as_str());
    assert_eq!(verified["delegator"], alice.as_str());
    assert_eq!(verified["audience"], "did:key:zBob");
    assert_eq!(verified["capabilities"], json!(["read", "wrïte"]));
    assert_eq!(verified["proof_chain"], json!([]));
    assert_eq!(verified["expired"], false);
    assert_eq!(verified["type"], "ucan/delegation");
    assert_eq!(verified["expires_at"], record["expires_at"]);

    assert_eq!(jtis(&list(&server, &admin, "").await), [jti.as_str()]);
    let listed = list(&server, &admin, "").await.json();
    assert_eq!(listed[0], *record, "the record lists as it was created");

    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/delegations/{jti}"))
            .json(&json!({"reason": "compromised"}))
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        revoked.json(),
        json!({"revoked": true, "jti": jti, "reason": "compromised"})
    );
    assert_eq!(
        verify(&server, &token).await,
        json!({"valid": false, "reason": "Token has been revoked"})
    );
    assert!(jtis(&list(&server, &admin, "").await).is_empty());
    let with_revoked = list(&server, &admin, "?include_revoked=true").await.json();
    assert_eq!(with_revoked[0]["revoked"], true);
    assert_eq!(with_revoked[0]["revocation_reason"], "compromised");
    assert!(with_revoked[0]["revoked_at"].is_string());

    let again = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/delegations/{jti}"))
            .send(),
    )
    .await;
    assert_eq!(again.status, 409);
    assert!(again.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("already revoked"));
    let unknown = Reply::of(
        server
            .request(Method::DELETE, "/v1/delegations/no-such-jti")
            .send(),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.problem()["status"], 404);

    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        verify(&server, &tampered).await,
        json!({"valid": false, "reason": "Invalid token"})
    );
    server.finish().await;
}

async fn a_chain_attenuates_and_falls_with_a_revoked_parent(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let alice = identity(&server, &admin, "Alice").await;
    let bob = identity(&server, &admin, "Bob").await;
    let carol = identity(&server, &admin, "Carol").await;
    let root = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": alice, "audience_agent_id": bob,
                "capabilities": ["read", "write", "delete"]}),
    )
    .await
    .json();
    let root_token = root["token"].as_str().unwrap();
    let root_jti = root["delegation"]["jti"].as_str().unwrap();

    // Bob, the root's audience, passes on part of it.
    let child = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": bob, "audience_agent_id": carol,
                "capabilities": ["read", "write"], "parent_token": root_token}),
    )
    .await;
    assert_eq!(
        child.status,
        201,
        "{}",
        String::from_utf8_lossy(&child.body)
    );
    let child_token = child.json()["token"].as_str().unwrap().to_owned();
    let grandchild = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": carol, "audience_agent_id": "did:key:zDave",
                "capabilities": ["read"], "parent_token": child_token}),
    )
    .await;
    assert_eq!(grandchild.status, 201);
    let grandchild_token = grandchild.json()["token"].as_str().unwrap().to_owned();
    let verified = verify(&server, &grandchild_token).await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["proof_chain"], json!([child_token]));

    // More than the parent holds.
    let escalated = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": bob, "audience_agent_id": carol,
                "capabilities": ["read", "admin"], "parent_token": root_token}),
    )
    .await;
    assert_eq!(escalated.status, 422);
    let problem = escalated.problem();
    assert_eq!(problem["errors"][0]["field"], "capabilities");
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("['admin']"));
    // Someone other than the parent's audience.
    let usurped = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": alice, "audience_agent_id": carol,
                "capabilities": ["read"], "parent_token": root_token}),
    )
    .await;
    assert_eq!(usurped.status, 422);
    assert_eq!(usurped.problem()["errors"][0]["field"], "issuer_agent_id");
    // A parent that is not a token of this server.
    let forged = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": bob, "audience_agent_id": carol,
                "capabilities": ["read"], "parent_token": "a.b.c"}),
    )
    .await;
    assert_eq!(forged.status, 422);
    assert_eq!(
        forged.problem()["errors"][0],
        json!({"field": "parent_token", "message": "Invalid parent delegation: Invalid token"})
    );

    // Revoking the root brings down the whole chain below it.
    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/delegations/{root_jti}"))
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        verify(&server, &grandchild_token).await,
        json!({"valid": false, "reason":
            "Invalid parent in proof chain: Invalid parent in proof chain: Token has been revoked"})
    );
    let from_revoked = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": bob, "audience_agent_id": carol,
                "capabilities": ["read"], "parent_token": root_token}),
    )
    .await;
    assert_eq!(from_revoked.status, 422);
    assert_eq!(
        from_revoked.problem()["errors"][0]["message"],
        "Invalid parent delegation: Token has been revoked"
    );
    server.finish().await;
}

async fn keyed_creates_and_revocations_replay_byte_identical_without_a_second_record(
    backend: Backend,
) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let alice = identity(&server, &admin, "Alice").await;
    let body = json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zBob",
                      "capabilities": ["read"]});
    let first = Reply::of(
        server
            .post_keyed("/v1/delegations", "deleg-1", &body)
            .send(),
    )
    .await;
    let retry = Reply::of(
        server
            .post_keyed("/v1/delegations", "deleg-1", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert_eq!(retry.status, 201);
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body, "the replay is byte-identical");
    let jti = first.json()["delegation"]["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        jtis(&list(&server, &admin, "?include_revoked=true").await),
        [jti.as_str()]
    );

    let other = json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zEve",
                       "capabilities": ["read"]});
    let reused = Reply::of(
        server
            .post_keyed("/v1/delegations", "deleg-1", &other)
            .send(),
    )
    .await;
    assert_eq!(reused.status, 409);
    assert_eq!(
        jtis(&list(&server, &admin, "?include_revoked=true").await).len(),
        1
    );

    // A keyed verify replays too.
    let token = first.json()["token"].as_str().unwrap().to_owned();
    let verify_body = json!({"token": token});
    let v1 = Reply::of(
        server
            .post_keyed("/v1/delegations/verify", "verify-1", &verify_body)
            .send(),
    )
    .await;
    let v2 = Reply::of(
        server
            .post_keyed("/v1/delegations/verify", "verify-1", &verify_body)
            .send(),
    )
    .await;
    assert_eq!((v1.status, v2.status), (200, 200));
    assert!(v2.replayed());
    assert_eq!(v1.body, v2.body);

    // A retried DELETE with its key replays its first answer instead of a 409.
    let path = format!("/v1/delegations/{jti}");
    let delete = || {
        server
            .request(Method::DELETE, &path)
            .header("idempotency-key", "revoke-1")
            .json(&json!({"reason": "done"}))
            .send()
    };
    let d1 = Reply::of(delete()).await;
    let d2 = Reply::of(delete()).await;
    assert_eq!((d1.status, d2.status), (200, 200));
    assert!(!d1.replayed());
    assert!(d2.replayed());
    assert_eq!(d1.body, d2.body);
    let listed = list(&server, &admin, "?include_revoked=true").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["revocation_reason"], "done");
    // Without the key, the second revocation is what it is: a conflict.
    let unkeyed = Reply::of(server.request(Method::DELETE, &path).send()).await;
    assert_eq!(unkeyed.status, 409);
    server.finish().await;
}

async fn another_principal_sees_and_changes_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let alice_key = server.key_for("alice").await;
    let bob_key = server.key_for("bob").await;
    let alice = identity(&server, &alice_key, "Alice").await;
    let created = create(
        &server,
        &alice_key,
        &json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zX",
                "capabilities": ["read"]}),
    )
    .await
    .json();
    let jti = created["delegation"]["jti"].as_str().unwrap().to_owned();

    assert!(jtis(
        &list(
            &server,
            &bob_key,
            "?include_revoked=true&include_expired=true"
        )
        .await
    )
    .is_empty());
    assert!(jtis(&list(&server, &bob_key, &format!("?agent_id={alice}")).await).is_empty());
    let revoke = Reply::of(
        send(
            &server,
            &bob_key,
            Method::DELETE,
            &format!("/v1/delegations/{jti}"),
        )
        .send(),
    )
    .await;
    assert_eq!(revoke.status, 404);
    // Bob cannot delegate on behalf of Alice's identity either.
    let borrowed = create(
        &server,
        &bob_key,
        &json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zX",
                "capabilities": ["read"]}),
    )
    .await;
    assert_eq!(borrowed.status, 404);
    // Nor extend Alice's delegation: its audience is no identity of his.
    let extended = create(
        &server,
        &bob_key,
        &json!({"issuer_agent_id": "did:key:zX", "audience_agent_id": "did:key:zY",
                "capabilities": ["read"], "parent_token": created["token"]}),
    )
    .await;
    assert_eq!(extended.status, 404);
    // Alice's delegation is untouched.
    let alice_list = list(&server, &alice_key, "").await.json();
    assert_eq!(alice_list[0]["jti"], jti.as_str());
    assert_eq!(alice_list[0]["revoked"], false);
    server.finish().await;
}

async fn every_bad_field_is_a_422_naming_it_and_writes_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let alice = identity(&server, &admin, "Alice").await;
    let good = json!({"issuer_agent_id": alice, "audience_agent_id": "did:key:zBob",
                      "capabilities": ["read"]});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let long = |n: usize| Value::String("x".repeat(n));
    let cases = [
        (
            with("expiry_hours", json!(0)),
            "expiry_hours",
            "between 1 and 87600",
        ),
        (
            with("expiry_hours", json!(87_601)),
            "expiry_hours",
            "between 1 and 87600",
        ),
        (
            with("expiry_hours", json!(1.5)),
            "expiry_hours",
            "whole number",
        ),
        (
            with("audience_agent_id", json!("")),
            "audience_agent_id",
            "must not be empty",
        ),
        (
            with("audience_agent_id", long(513)),
            "audience_agent_id",
            "at most 512",
        ),
        (
            with("issuer_agent_id", long(257)),
            "issuer_agent_id",
            "at most 256",
        ),
        (
            with("capabilities", json!(vec!["c"; 257])),
            "capabilities",
            "at most 256 capabilities",
        ),
        (
            with("capabilities", json!([long(257)])),
            "capabilities[0]",
            "at most 256",
        ),
        (
            with("capabilities", json!(["ok", ""])),
            "capabilities[1]",
            "must not be empty",
        ),
        (
            with("capabilities", json!(["a\u{0}b"])),
            "capabilities[0]",
            "NUL",
        ),
        (
            with("capabilities", json!("read")),
            "capabilities",
            "invalid type",
        ),
        (
            with("parent_token", long(65_537)),
            "parent_token",
            "65536 bytes",
        ),
        (
            json!({"issuer_agent_id": alice, "audience_agent_id": "b"}),
            "capabilities",
            "required",
        ),
    ];
    for (body, field, message) in cases {
        let reply = create(&server, &admin, &body).await;
        assert_eq!(
            reply.status,
            422,
            "{field}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.problem();
        let error = &problem["errors"][0];
        assert_eq!(error["field"], field, "{problem}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{field}: {problem}"
        );
    }
    let verify_long = Reply::of(
        server
            .request(Method::POST, "/v1/delegations/verify")
            .json(&json!({"token": "x".repeat(65_537)}))
            .send(),
    )
    .await;
    assert_eq!(verify_long.status, 422);
    assert_eq!(verify_long.problem()["errors"][0]["field"], "token");
    for (query, field) in [
        ("?role=boss", "role"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?cursor=zz", "cursor"),
        ("?include_expired=maybe", "query"),
    ] {
        let reply = list(&server, &admin, query).await;
        assert_eq!(reply.status, 422, "{query}");
        assert_eq!(reply.problem()["errors"][0]["field"], field, "{query}");
    }
    assert!(jtis(
        &list(
            &server,
            &admin,
            "?include_revoked=true&include_expired=true"
        )
        .await
    )
    .is_empty());

    let ok = create(&server, &admin, &good).await.json();
    let jti = ok["delegation"]["jti"].as_str().unwrap();
    let reason = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/delegations/{jti}"))
            .json(&json!({"reason": "r".repeat(1001)}))
            .send(),
    )
    .await;
    assert_eq!(reason.status, 422);
    assert_eq!(reason.problem()["errors"][0]["field"], "reason");
    assert_eq!(list(&server, &admin, "").await.json()[0]["revoked"], false);
    server.finish().await;
}

async fn only_an_active_identity_of_the_callers_scope_can_delegate(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let unknown = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": "attestix:0000000000000000", "audience_agent_id": "b",
                "capabilities": []}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    let alice = identity(&server, &admin, "Alice").await;
    let revoked = Reply::of(
        server
            .request(Method::DELETE, &format!("/v1/identities/{alice}"))
            .send(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    let refused = create(
        &server,
        &admin,
        &json!({"issuer_agent_id": alice, "audience_agent_id": "b", "capabilities": []}),
    )
    .await;
    assert_eq!(refused.status, 409);
    assert!(refused.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    assert!(jtis(&list(&server, &admin, "?include_revoked=true").await).is_empty());
    server.finish().await;
}

async fn delegations_list_by_agent_and_role_with_cursor_paging(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let admin = server.admin_key.clone();
    let alice = identity(&server, &admin, "Alice").await;
    let bob = identity(&server, &admin, "Bob").await;
    let mut made = Vec::new();
    for (issuer, audience) in [
        (&alice, &bob),
        (&bob, &alice),
        (&alice, &"did:key:zC".to_owned()),
    ] {
        let reply = create(
            &server,
            &admin,
            &json!({"issuer_agent_id": issuer, "audience_agent_id": audience,
                    "capabilities": ["read"]}),
        )
        .await;
        made.push(
            reply.json()["delegation"]["jti"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        jtis(&list(&server, &admin, &format!("?agent_id={alice}&role=issuer")).await),
        [made[0].clone(), made[2].clone()]
    );
    assert_eq!(
        jtis(&list(&server, &admin, &format!("?agent_id={alice}&role=audience")).await),
        [made[1].clone()]
    );
    assert_eq!(
        jtis(&list(&server, &admin, &format!("?agent_id={alice}")).await),
        made
    );
    assert_eq!(
        jtis(&list(&server, &admin, &format!("?agent_id={bob}&role=any")).await),
        [made[0].clone(), made[1].clone()]
    );
    // Pages of one, following X-Next-Cursor.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let page = list(&server, &admin, &query).await;
        seen.extend(jtis(&page));
        match page.headers.get("x-next-cursor") {
            Some(cursor) => query = format!("?limit=1&cursor={}", cursor.to_str().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, made);
    server.finish().await;
}
