//! Authentication, its place before the idempotency layer, and isolation.

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(
    missing_and_wrong_keys_are_401_and_403,
    an_unauthenticated_request_never_sees_or_poisons_a_stored_response,
    one_principals_keys_and_resources_are_invisible_to_another,
    tenants_of_one_principal_are_separate_scopes,
    a_revoked_api_key_stops_working_at_once,
    the_legacy_api_key_is_the_default_principal,
);

async fn missing_and_wrong_keys_are_401_and_403(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let none = Reply::of(server.client.get(server.url("/v1/identities")).send()).await;
    assert_eq!(none.status, 401);
    assert!(none.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("X-API-Key"));
    let wrong = Reply::of(
        server
            .client
            .get(server.url("/v1/identities"))
            .header("authorization", "Bearer atx_not-a-real-key")
            .send(),
    )
    .await;
    assert_eq!(wrong.status, 403);
    let bearer = Reply::of(
        server
            .client
            .get(server.url("/v1/identities"))
            .bearer_auth(&server.admin_key)
            .send(),
    )
    .await;
    assert_eq!(bearer.status, 200);
    // Open paths need no key.
    for path in ["/health", "/openapi.json", "/docs/"] {
        let reply = Reply::of(server.client.get(server.url(path)).send()).await;
        assert_eq!(reply.status, 200, "{path}");
    }
    let metrics = Reply::of(server.client.get(server.url("/metrics")).send()).await;
    assert_eq!(
        metrics.status, 401,
        "metrics are private unless the operator opens them"
    );
    server.finish().await;
}

async fn an_unauthenticated_request_never_sees_or_poisons_a_stored_response(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Guarded");
    // First an unauthenticated request with the key: it must not poison the key.
    let anonymous = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("idempotency-key", "guarded")
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let created = Reply::of(server.post_keyed("/v1/identities", "guarded", &body).send()).await;
    assert_eq!(created.status, 201);
    assert!(!created.replayed(), "the 401 was not stored");
    // Then an unauthenticated and a wrongly authenticated retry: no replay for them.
    let anonymous = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("idempotency-key", "guarded")
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert!(!String::from_utf8_lossy(&anonymous.body).contains("attestix:"));
    let wrong = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", "atx_wrong")
            .header("idempotency-key", "guarded")
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(wrong.status, 403);
    assert!(!wrong.replayed());
    server.finish().await;
}

async fn one_principals_keys_and_resources_are_invisible_to_another(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let alice = server.key_for("alice").await;
    let bob = server.key_for("bob").await;
    let body = identity_body("Shared Key Bot");
    let post = |key: &str| {
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", key)
            .header("idempotency-key", "same-key")
            .json(&body)
            .send()
    };
    let for_alice = Reply::of(post(&alice)).await;
    let for_bob = Reply::of(post(&bob)).await;
    assert_eq!((for_alice.status, for_bob.status), (201, 201));
    assert!(
        !for_bob.replayed(),
        "bob never gets alice's stored response"
    );
    let alice_id = for_alice.json()["agent_id"].as_str().unwrap().to_owned();
    assert_ne!(for_bob.json()["agent_id"].as_str().unwrap(), alice_id);

    let peek = Reply::of(
        server
            .client
            .get(server.url(&format!("/v1/identities/{alice_id}")))
            .header("x-api-key", &bob)
            .send(),
    )
    .await;
    assert_eq!(peek.status, 404, "bob cannot read alice's identity");
    let revoke = Reply::of(
        server
            .client
            .delete(server.url(&format!("/v1/identities/{alice_id}")))
            .header("x-api-key", &bob)
            .send(),
    )
    .await;
    assert_eq!(revoke.status, 404, "nor revoke it");
    let bobs_list = server.all_pages("/v1/identities", &bob).await;
    assert_eq!(bobs_list.len(), 1);
    assert_ne!(bobs_list[0]["agent_id"].as_str().unwrap(), alice_id);
    server.finish().await;
}

async fn tenants_of_one_principal_are_separate_scopes(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Tenant Bot");
    let in_tenant = |tenant: &str| {
        server
            .post_keyed("/v1/identities", "tenant-key", &body)
            .header("x-attestix-tenant", tenant)
            .send()
    };
    let eu = Reply::of(in_tenant("eu")).await;
    let us = Reply::of(in_tenant("us")).await;
    assert!(!us.replayed());
    assert_ne!(eu.json()["agent_id"], us.json()["agent_id"]);
    assert!(Reply::of(in_tenant("eu")).await.replayed());
    let invalid = Reply::of(in_tenant("not/valid")).await;
    assert_eq!(invalid.status, 400);
    server.finish().await;
}

async fn a_revoked_api_key_stops_working_at_once(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    let issued = attestix_server::issue_api_key(storage.as_ref(), "carol", 0)
        .await
        .unwrap();
    let list = |key: String| {
        server
            .client
            .get(server.url("/v1/identities"))
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(Reply::of(list(issued.secret.clone())).await.status, 200);
    assert!(storage.revoke_api_key(&issued.record.id, 1).await.unwrap());
    assert_eq!(Reply::of(list(issued.secret)).await.status, 403);
    server.finish().await;
}

async fn the_legacy_api_key_is_the_default_principal(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |mut c| {
        c.legacy_api_key = Some("legacy-secret".into());
        c
    })
    .await
    else {
        return;
    };
    let reply = Reply::of(
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", "legacy-secret")
            .json(&identity_body("Legacy"))
            .send(),
    )
    .await;
    assert_eq!(reply.status, 201);
    let as_admin = server.all_identities().await;
    assert!(
        as_admin.is_empty(),
        "the default principal's identity is not the admin's"
    );
    server.finish().await;
}
