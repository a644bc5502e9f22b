//! /v1/dids: did:key and did:web creation with the private key sealed on the
//! server, and resolution.

use attestix_core::SigningKey;
use reqwest::Method;
use serde_json::{json, Value};

use attestix_server::fetch::{FetchSettings, StaticResolver};
use attestix_server::ServerConfig;

use crate::helpers::{Backend, Reply, TestServer};

crate::on_both_backends!(
    a_did_key_is_created_in_the_standard_form_and_resolves,
    the_private_key_is_stored_sealed_and_never_answered,
    a_did_web_is_created_with_where_to_host_it_and_once_per_scope,
    keyed_did_creates_replay_byte_identical_without_a_second_record,
    bad_did_web_names_are_422_and_unsupported_resolution_is_503,
);

async fn post(server: &TestServer, path: &str, body: Option<Value>) -> Reply {
    let request = server.request(Method::POST, path);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    Reply::of(request.send()).await
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

async fn a_did_key_is_created_in_the_standard_form_and_resolves(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let reply = post(&server, "/v1/dids/key", None).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let created = reply.json();
    assert_eq!(
        keys(&created),
        [
            "did",
            "did_document",
            "keypair_id",
            "public_key_multibase",
            "note"
        ]
    );
    let did = created["did"].as_str().unwrap();
    let multibase = did.strip_prefix("did:key:").unwrap();
    assert!(multibase.starts_with("z6Mk"), "{did}");
    assert_eq!(created["public_key_multibase"], multibase);
    assert_eq!(
        created["keypair_id"],
        format!("keypair:{}", &multibase[..16])
    );
    let document = &created["did_document"];
    let method = format!("{did}#{multibase}");
    assert_eq!(document["id"], did);
    assert_eq!(document["verificationMethod"][0]["id"], method.as_str());
    assert_eq!(
        document["verificationMethod"][0]["publicKeyMultibase"],
        multibase
    );
    assert_eq!(document["authentication"], json!([method]));
    assert_eq!(document["assertionMethod"], json!([method]));

    let resolved = Reply::of(
        server
            .request(Method::GET, &format!("/v1/dids/resolve/{did}"))
            .send(),
    )
    .await;
    assert_eq!(resolved.status, 200);
    assert_eq!(resolved.json(), *document);
    // Any did:key resolves, not only the server's own.
    let other = SigningKey::from_seed([7; 32]);
    let resolved = Reply::of(
        server
            .request(Method::GET, &format!("/v1/dids/resolve/{}", other.did()))
            .send(),
    )
    .await;
    assert_eq!(
        resolved.json()["verificationMethod"][0]["id"],
        other.verification_method()
    );
    server.finish().await;
}

async fn the_private_key_is_stored_sealed_and_never_answered(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let reply = post(&server, "/v1/dids/key", None).await;
    let created = reply.json();
    let did = created["did"].as_str().unwrap().to_owned();
    let keypair_id = created["keypair_id"].as_str().unwrap();

    let storage = attestix_server::open_storage(server.config())
        .await
        .unwrap();
    let (stored_did, sealed) = storage
        .did_private_key("admin/default", keypair_id)
        .await
        .unwrap()
        .expect("the key pair is stored for its owner");
    assert_eq!(stored_did, did);
    assert!(storage
        .did_private_key("bob/default", keypair_id)
        .await
        .unwrap()
        .is_none());
    let data_key = attestix_server::data_key::load_or_create(&server.config().data_dir).unwrap();
    let seed: [u8; 32] = data_key
        .open(&sealed, did.as_bytes())
        .expect("the data key opens it")
        .try_into()
        .unwrap();
    assert_eq!(
        SigningKey::from_seed(seed).did(),
        did,
        "the sealed key is the DID's"
    );
    assert!(data_key.open(&sealed, b"did:key:zOther").is_none());

    // The seed appears nowhere in clear: not in the answer, not in any file of the
    // data directory (the SQLite database, its WAL, the idempotency records).
    let hex_seed: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = |engine: &base64::engine::GeneralPurpose| base64::Engine::encode(engine, seed);
    let encodings = [
        seed.to_vec(),
        hex_seed.into_bytes(),
        b64(&base64::engine::general_purpose::STANDARD).into_bytes(),
        b64(&base64::engine::general_purpose::URL_SAFE).into_bytes(),
    ];
    for encoding in &encodings {
        assert!(!reply
            .body
            .windows(encoding.len())
            .any(|w| w == encoding.as_slice()));
    }
    for entry in std::fs::read_dir(&server.config().data_dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for encoding in &encodings {
            assert!(
                !bytes
                    .windows(encoding.len())
                    .any(|w| w == encoding.as_slice()),
                "{} holds the private key in clear",
                path.display()
            );
        }
    }
    server.finish().await;
}

async fn a_did_web_is_created_with_where_to_host_it_and_once_per_scope(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let body = json!({"domain": "example.com%3A8443", "path": "agents/bot"});
    let reply = post(&server, "/v1/dids/web", Some(body.clone())).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let created = reply.json();
    assert_eq!(
        keys(&created),
        [
            "did",
            "did_document",
            "hosting_url",
            "keypair_id",
            "public_key_multibase",
            "note",
            "instructions"
        ]
    );
    assert_eq!(created["did"], "did:web:example.com%3A8443:agents:bot");
    assert_eq!(
        created["hosting_url"],
        "https://example.com:8443/agents/bot/did.json"
    );
    assert!(created["instructions"]
        .as_str()
        .unwrap()
        .contains("https://example.com:8443/agents/bot/did.json"));
    assert!(!created["instructions"]
        .as_str()
        .unwrap()
        .contains("//agents"));
    let multibase = created["public_key_multibase"].as_str().unwrap();
    assert_eq!(
        created["did_document"]["verificationMethod"][0]["id"],
        format!("did:web:example.com%3A8443:agents:bot#{multibase}")
    );

    let again = post(&server, "/v1/dids/web", Some(body.clone())).await;
    assert_eq!(again.status, 409);
    assert!(again.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("already created"));
    // Another principal's scope is its own.
    let bob = server.key_for("bob").await;
    let theirs = Reply::of(
        server
            .client
            .post(server.url("/v1/dids/web"))
            .header("x-api-key", &bob)
            .json(&body)
            .send(),
    )
    .await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.json()["keypair_id"], created["keypair_id"]);
    server.finish().await;
}

async fn keyed_did_creates_replay_byte_identical_without_a_second_record(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let keyed = |path: &str, body: Option<Value>| {
        let request = server
            .request(Method::POST, path)
            .header("idempotency-key", format!("did-{path}"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        Reply::of(request.send())
    };
    let first = keyed("/v1/dids/key", None).await;
    let retry = keyed("/v1/dids/key", None).await;
    assert_eq!((first.status, retry.status), (201, 201));
    assert!(retry.replayed());
    assert_eq!(first.body, retry.body);

    let body = json!({"domain": "agents.example.org"});
    let first = keyed("/v1/dids/web", Some(body.clone())).await;
    let retry = keyed("/v1/dids/web", Some(body.clone())).await;
    assert_eq!((first.status, retry.status), (201, 201));
    assert!(retry.replayed());
    assert_eq!(first.body, retry.body);
    // One record: an unkeyed create of the same did:web is a conflict.
    assert_eq!(post(&server, "/v1/dids/web", Some(body)).await.status, 409);
    server.finish().await;
}

async fn bad_did_web_names_are_422_and_unsupported_resolution_is_503(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"domain": "Example.com"}), "domain"),
        (json!({"domain": "localhost"}), "domain"),
        (json!({"domain": "192.168.0.1"}), "domain"),
        (json!({"domain": "a.com%3A0"}), "domain"),
        (json!({"domain": "x".repeat(254)}), "domain"),
        (json!({"domain": "a.com", "path": "../etc"}), "path"),
        (json!({"domain": "a.com", "path": "a//b"}), "path"),
        (json!({"domain": "a.com", "path": "p".repeat(257)}), "path"),
        (json!({"domain": "a.com\u{0}"}), "domain"),
        (json!({"path": "a"}), "domain"),
    ] {
        let reply = post(&server, "/v1/dids/web", Some(body.clone())).await;
        assert_eq!(reply.status, 422, "{body}");
        assert_eq!(reply.problem()["errors"][0]["field"], field, "{body}");
    }
    let resolve = |did: String| {
        Reply::of(
            server
                .request(Method::GET, &format!("/v1/dids/resolve/{did}"))
                .send(),
        )
    };
    let malformed = resolve("did:key:zNotBase58!".into()).await;
    assert_eq!(malformed.status, 422);
    assert_eq!(malformed.problem()["errors"][0]["field"], "did");
    assert_eq!(resolve("not-a-did".into()).await.status, 422);
    assert_eq!(resolve("did:web:Bad.com".into()).await.status, 422);
    let blocked = resolve("did:web:db.internal".into()).await;
    assert_eq!(blocked.status, 422);
    assert!(blocked.problem()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("refused"));
    for did in ["did:example:123"] {
        let reply = resolve(did.into()).await;
        assert_eq!(reply.status, 503, "{did}");
        let problem = reply.problem();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/not-configured"),
            "{problem}"
        );
        assert!(reply.headers.get("retry-after").is_none());
    }
    server.finish().await;
}

/// A local HTTPS host for `attestix.test` serving, by path, the documents
/// `documents` makes for the port it listens on.
pub(crate) async fn did_web_host(
    documents: impl FnOnce(u16) -> Vec<(String, String)>,
) -> (crate::tls::TestCa, u16) {
    let ca = crate::tls::TestCa::new();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(ca.server_config(&["attestix.test"])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let documents = std::sync::Arc::new(documents(port));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, documents) = (acceptor.clone(), documents.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let found = documents
                            .iter()
                            .find(|(path, _)| path == request.uri().path())
                            .map(|(_, body)| body.clone());
                        async move {
                            let (status, body) = match found {
                                Some(body) => (200, body),
                                None => (404, String::new()),
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (ca, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_did_web_resolves_through_the_fetcher_only_to_its_own_document() {
    // The right document at the root; another DID's document under /wrong.
    let (ca, port) = did_web_host(|port| {
        let did = format!("did:web:attestix.test%3A{port}");
        vec![
            (
                "/.well-known/did.json".to_owned(),
                json!({"id": did, "controller": did}).to_string(),
            ),
            (
                "/wrong/did.json".to_owned(),
                json!({"id": "did:web:evil.example"}).to_string(),
            ),
        ]
    })
    .await;
    let names: std::collections::HashMap<String, Vec<std::net::IpAddr>> = [(
        "attestix.test".to_owned(),
        vec!["127.0.0.1".parse().unwrap()],
    )]
    .into_iter()
    .collect();
    let resolver = std::sync::Arc::new(StaticResolver(names));
    let server = TestServer::start_with(Backend::Sqlite, |config| ServerConfig {
        fetch: FetchSettings {
            extra_roots: vec![ca.der()],
            allow_loopback: true,
        },
        fetch_resolver: Some(resolver.clone()),
        ..config
    })
    .await
    .unwrap();
    let did = format!("did:web:attestix.test%3A{port}");
    let resolve = |did: String| {
        // `%3A` sent bare: the server keeps it (it is the DID's own text).
        Reply::of(
            server
                .request(Method::GET, &format!("/v1/dids/resolve/{did}"))
                .send(),
        )
    };
    let resolved = resolve(did.clone()).await;
    assert_eq!(
        resolved.status,
        200,
        "{}",
        String::from_utf8_lossy(&resolved.body)
    );
    assert_eq!(resolved.json(), json!({"id": did, "controller": did}));
    let wrong = resolve(format!("{did}:wrong")).await;
    assert_eq!(wrong.status, 502);
    assert!(wrong.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("not the document of"));
    let missing = resolve(format!("{did}:missing")).await;
    assert_eq!(missing.status, 502);
    assert!(missing.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("404"));
    server.finish().await;

    // Without the operator's loopback setting, the same DID is refused.
    let strict = TestServer::start_with(Backend::Sqlite, |config| ServerConfig {
        fetch: FetchSettings {
            extra_roots: vec![ca.der()],
            allow_loopback: false,
        },
        fetch_resolver: Some(resolver),
        ..config
    })
    .await
    .unwrap();
    let refused = Reply::of(
        strict
            .request(Method::GET, &format!("/v1/dids/resolve/{did}"))
            .send(),
    )
    .await;
    assert_eq!(
        refused.status,
        422,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    strict.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_resolve_through_the_configured_universal_resolver() {
    let did = "did:example:123";
    let document = json!({"id": did, "verificationMethod": []});
    let (ca, port) = did_web_host(|_| {
        vec![
            (
                format!("/1.0/identifiers/{did}"),
                json!({"didDocument": document, "didResolutionMetadata": {}}).to_string(),
            ),
            (
                "/1.0/identifiers/did:example:impostor".to_owned(),
                json!({"didDocument": {"id": "did:example:other"}}).to_string(),
            ),
        ]
    })
    .await;
    let names: std::collections::HashMap<String, Vec<std::net::IpAddr>> = [(
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
        fetch_resolver: Some(std::sync::Arc::new(StaticResolver(names))),
        universal_resolver: Some(
            format!("https://attestix.test:{port}/1.0/identifiers/")
                .parse()
                .unwrap(),
        ),
        ..config
    })
    .await
    .unwrap();
    let resolve = |did: &str| {
        Reply::of(
            server
                .request(Method::GET, &format!("/v1/dids/resolve/{did}"))
                .send(),
        )
    };
    let resolved = resolve(did).await;
    assert_eq!(
        resolved.status,
        200,
        "{}",
        String::from_utf8_lossy(&resolved.body)
    );
    assert_eq!(resolved.json(), document);
    let impostor = resolve("did:example:impostor").await;
    assert_eq!(impostor.status, 502);
    assert!(impostor.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("not the document of did:example:impostor"));
    let unknown = resolve("did:example:unknown").await;
    assert_eq!(unknown.status, 502);
    assert!(unknown.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("404"));
    // A method-specific id the resolver must never see is refused before any fetch.
    assert_eq!(resolve("did:example:a%2Fb").await.status, 422);
    server.finish().await;
}

#[tokio::test]
async fn a_universal_resolver_that_is_not_https_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let started = attestix_server::Application::build(ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        universal_resolver: Some("http://resolver.example/1.0/identifiers/".parse().unwrap()),
        ..ServerConfig::default()
    })
    .await;
    let error = started.err().expect("an http resolver is refused at start");
    assert!(format!("{error:#}").contains("must be https"), "{error:#}");
}
