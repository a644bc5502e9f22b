//! The OpenAPI document and the Swagger UI.

use serde_json::Value;

use crate::helpers::{Backend, Reply, TestServer};

#[tokio::test]
async fn every_post_and_delete_documents_the_idempotency_header_and_its_responses() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let document = Reply::of(server.client.get(server.url("/openapi.json")).send())
        .await
        .json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    let mut posts = 0;
    let mut deletes = 0;
    let mutations = paths.iter().flat_map(|(path, item)| {
        ["post", "delete"]
            .into_iter()
            .filter_map(move |method| item.get(method).map(|operation| (path, method, operation)))
    });
    for (path, method, post) in mutations {
        if method == "post" {
            posts += 1;
        } else {
            deletes += 1;
        }
        let key = post["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "Idempotency-Key"))
            .unwrap_or_else(|| panic!("{method} {path} lacks the Idempotency-Key parameter"));
        assert_eq!(key["in"], "header", "{path}");
        assert_eq!(key["schema"]["type"], "string", "{path}");
        assert_eq!(key["schema"]["maxLength"], 255, "{path}");
        let responses = post["responses"].as_object().unwrap();
        for status in ["400", "409", "422", "503"] {
            let response = responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {path} lacks the {status} response"));
            assert!(
                response["content"]
                    .get("application/problem+json")
                    .is_some(),
                "{method} {path} {status} is problem+json"
            );
        }
        let successes: Vec<&Value> = responses
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .map(|(_, r)| r)
            .collect();
        assert!(
            !successes.is_empty(),
            "{method} {path} has a success response"
        );
        for success in successes {
            assert!(
                success["headers"].get("Idempotency-Replayed").is_some(),
                "{method} {path} documents Idempotency-Replayed"
            );
        }
    }
    assert!(posts >= 7, "found only {posts} POST operations");
    assert!(deletes >= 3, "found only {deletes} DELETE operations");
    server.finish().await;
}

#[tokio::test]
async fn every_v1_read_and_revocation_documents_its_access_and_availability_problems() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let document = Reply::of(server.client.get(server.url("/openapi.json")).send())
        .await
        .json();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for method in ["get", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            operations += 1;
            for status in ["401", "403", "503"] {
                let response = &operation["responses"][status];
                assert!(
                    response["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{method} {path} documents {status} as problem+json"
                );
            }
        }
    }
    assert!(
        operations >= 6,
        "found only {operations} GET/DELETE operations"
    );
    server.finish().await;
}

#[tokio::test]
async fn swagger_ui_is_served_without_any_cdn() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let page = Reply::of(server.client.get(server.url("/docs/")).send()).await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("swagger"), "{html}");
    for marker in ["unpkg.com", "cdn.jsdelivr", "cdnjs"] {
        assert!(
            !html.contains(marker),
            "the page loads nothing from {marker}"
        );
    }
    let script = Reply::of(
        server
            .client
            .get(server.url("/docs/swagger-ui-bundle.js"))
            .send(),
    )
    .await;
    assert_eq!(script.status, 200, "the bundle is served locally");
    assert!(script.body.len() > 100_000);
    server.finish().await;
}
