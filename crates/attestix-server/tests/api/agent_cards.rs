//! /v1/agent-cards: generate, parse, and discover through the outbound fetcher.

use std::sync::Arc;

use attestix_server::fetch::{FetchSettings, StaticResolver};
use attestix_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Backend, Reply, TestServer};

crate::on_both_backends!(
    a_card_is_generated_and_parsed_with_every_bound_enforced,
    keyed_card_generation_replays_the_same_card,
);

async fn post(server: &TestServer, path: &str, body: &Value) -> Reply {
    Reply::of(server.request(Method::POST, path).json(body).send()).await
}

async fn a_card_is_generated_and_parsed_with_every_bound_enforced(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = json!({"name": "Search Bot", "url": "https://bot.example/",
                      "skills": [{"id": "s1", "name": "search"}]});
    let generated = post(&server, "/v1/agent-cards/generate", &body).await;
    assert_eq!(generated.status, 201);
    let generated = generated.json();
    let card = &generated["agent_card"];
    assert!(card["id"].as_str().unwrap().starts_with("attestix-"));
    assert_eq!(card["version"], "1.0.0");
    assert_eq!(card["endpoints"][0]["url"], "https://bot.example/tasks");
    assert_eq!(
        generated["instructions"],
        "Host this JSON at https://bot.example/.well-known/agent.json to make the agent discoverable via A2A protocol."
    );
    let first = Reply::of(
        server
            .post_keyed("/v1/agent-cards/generate", "card-1", &body)
            .send(),
    )
    .await;
    let again = Reply::of(
        server
            .post_keyed("/v1/agent-cards/generate", "card-1", &body)
            .send(),
    )
    .await;
    assert!(again.replayed());
    assert_eq!(first.body, again.body);

    let parsed = post(&server, "/v1/agent-cards/parse", &json!({"card": card})).await;
    assert_eq!(parsed.status, 200);
    let parsed = parsed.json();
    assert_eq!(parsed["name"], "Search Bot");
    assert_eq!(parsed["capabilities"], json!(["search"]));
    assert_eq!(parsed["authentication_schemes"], json!(["bearer"]));

    for (body, field) in [
        (json!({"name": "", "url": "https://a.example"}), "name"),
        (
            json!({"name": "n".repeat(501), "url": "https://a.example"}),
            "name",
        ),
        (json!({"name": "A", "url": "not a url"}), "url"),
        (json!({"name": "A", "url": "ftp://a.example"}), "url"),
        (
            json!({"name": "A", "url": "https://a.example", "version": ""}),
            "version",
        ),
        (
            json!({"name": "A", "url": "https://a.example", "skills": [{"id": "", "name": "x"}]}),
            "skills[0].id",
        ),
        (
            json!({"name": "A", "url": "https://a.example", "description": "d".repeat(5001)}),
            "description",
        ),
        (json!({"url": "https://a.example"}), "name"),
    ] {
        let reply = post(&server, "/v1/agent-cards/generate", &body).await;
        assert_eq!(reply.status, 422, "{body}");
        assert_eq!(reply.problem()["errors"][0]["field"], field, "{body}");
    }
    for (card, field) in [
        (json!({"card": {"skills": "x"}}), "card.skills"),
        (json!({"card": []}), "card"),
        (json!({}), "card"),
    ] {
        let reply = post(&server, "/v1/agent-cards/parse", &card).await;
        assert_eq!(reply.status, 422, "{card}");
        assert_eq!(reply.problem()["errors"][0]["field"], field, "{card}");
    }
    server.finish().await;
}

async fn keyed_card_generation_replays_the_same_card(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = json!({"name": "Search Bot", "url": "https://bot.example/"});
    let send = |key: &str, body: &Value| {
        Reply::of(
            server
                .post_keyed("/v1/agent-cards/generate", key, body)
                .send(),
        )
    };
    let first = send("card-1", &body).await;
    assert_eq!(first.status, 201);
    let retry = send("card-1", &body).await;
    assert!(!first.replayed());
    assert!(retry.replayed());
    assert_eq!(
        retry.body, first.body,
        "the retry gets the first card, same id"
    );
    // Without a key the handler runs again (the card id derives from name and url).
    let fresh = post(&server, "/v1/agent-cards/generate", &body).await;
    assert!(!fresh.replayed());
    assert_eq!(
        fresh.json()["agent_card"]["id"],
        first.json()["agent_card"]["id"]
    );
    let other = json!({"name": "Other Bot", "url": "https://bot.example/"});
    assert_eq!(send("card-1", &other).await.status, 409);
    // Parse is keyed the same way.
    let card = json!({"card": first.json()["agent_card"]});
    let parsed = Reply::of(
        server
            .post_keyed("/v1/agent-cards/parse", "parse-1", &card)
            .send(),
    )
    .await;
    let again = Reply::of(
        server
            .post_keyed("/v1/agent-cards/parse", "parse-1", &card)
            .send(),
    )
    .await;
    assert_eq!(
        parsed.status,
        200,
        "{}",
        String::from_utf8_lossy(&parsed.body)
    );
    assert!(again.replayed());
    assert_eq!(again.body, parsed.body);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_fetches_the_card_falls_back_to_the_a2a_path_and_refuses_bad_cards() {
    let card = json!({"name": "Remote", "skills": [{"id": "x", "name": "lookup"}]});
    let (ca, port) = crate::dids::did_web_host(|_| {
        vec![
            ("/.well-known/agent.json".to_owned(), card.to_string()),
            (
                "/v2/.well-known/agent-card.json".to_owned(),
                card.to_string(),
            ),
            (
                "/bad/.well-known/agent.json".to_owned(),
                json!({"skills": "x"}).to_string(),
            ),
            ("/list/.well-known/agent.json".to_owned(), "[]".to_owned()),
        ]
    })
    .await;
    let names = [(
        "attestix.test".to_owned(),
        vec!["127.0.0.1".parse().unwrap()],
    )]
    .into_iter()
    .collect();
    let server = TestServer::start_with(Backend::Sqlite, |config| ServerConfig {
        fetch: FetchSettings {
            extra_roots: vec![ca.der()],
            allow_loopback: true,
        },
        fetch_resolver: Some(Arc::new(StaticResolver(names))),
        ..config
    })
    .await
    .unwrap();
    let base = format!("https://attestix.test:{port}");
    let discover = |base_url: String| {
        Reply::of(
            server
                .request(Method::POST, "/v1/agent-cards/discover")
                .json(&json!({ "base_url": base_url }))
                .send(),
        )
    };
    let found = discover(format!("{base}/")).await;
    assert_eq!(
        found.status,
        200,
        "{}",
        String::from_utf8_lossy(&found.body)
    );
    let found = found.json();
    assert_eq!(
        found["source_url"],
        format!("{base}/.well-known/agent.json")
    );
    assert_eq!(found["agent_card"], card);
    assert_eq!(found["parsed"]["capabilities"], json!(["lookup"]));

    let fallback = discover(format!("{base}/v2")).await.json();
    assert_eq!(
        fallback["source_url"],
        format!("{base}/v2/.well-known/agent-card.json")
    );

    for path in ["/bad", "/list", "/missing"] {
        let reply = discover(format!("{base}{path}")).await;
        assert_eq!(
            reply.status,
            502,
            "{path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    for (base_url, status) in [
        ("http://attestix.test".to_owned(), 422),
        ("https://db.internal".to_owned(), 422),
        ("https://169.254.169.254".to_owned(), 422),
    ] {
        let reply = discover(base_url.clone()).await;
        assert_eq!(reply.status, status, "{base_url}");
        assert_eq!(reply.problem()["errors"][0]["field"], "base_url");
    }
    server.finish().await;
}
