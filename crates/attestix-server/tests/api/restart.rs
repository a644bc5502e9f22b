//! Stored idempotency records survive a restart of the server.

use crate::helpers::{identity_body, Backend, Reply, TestServer};

crate::on_both_backends!(a_retry_after_a_restart_replays_the_original_response);

async fn a_retry_after_a_restart_replays_the_original_response(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = identity_body("Durable");
    let first = Reply::of(server.post_keyed("/v1/identities", "durable", &body).send()).await;
    assert_eq!(first.status, 201);
    let server = server.restart().await;
    let retry = Reply::of(server.post_keyed("/v1/identities", "durable", &body).send()).await;
    assert_eq!(retry.status, 201);
    assert!(retry.replayed(), "the record outlived the process");
    assert_eq!(retry.body, first.body);
    assert_eq!(server.all_identities().await.len(), 1);
    server.finish().await;
}
