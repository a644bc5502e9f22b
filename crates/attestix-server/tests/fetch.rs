//! The outbound fetcher against a local HTTPS server with a test CA: TLS checked
//! against the host name, pinned addresses, no redirects, size caps, timeouts.

mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use attestix_server::fetch::{FetchError, FetchSettings, Fetcher, StaticResolver};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn handler(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let full = |text: Vec<u8>| Full::new(Bytes::from(text)).boxed();
    let response = match request.uri().path() {
        "/.well-known/did.json" => {
            Response::new(full(br#"{"id":"did:web:attestix.test"}"#.to_vec()))
        }
        "/redirect" => Response::builder()
            .status(302)
            .header("location", "https://attestix.test/.well-known/did.json")
            .body(full(Vec::new()))
            .unwrap(),
        "/big" => Response::new(full(vec![b' '; 2 * 1024 * 1024])),
        "/big-unsized" => {
            let chunks = (0..64).map(|_| Ok(Frame::data(Bytes::from(vec![b' '; 32 * 1024]))));
            Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full(b"{}".to_vec()))
        }
        "/not-json" => Response::new(full(b"hello".to_vec())),
        _ => Response::builder()
            .status(404)
            .body(full(Vec::new()))
            .unwrap(),
    };
    Ok(response)
}

/// A local HTTPS server for `attestix.test`, its CA's DER, and its port.
async fn upstream() -> (tls::TestCa, u16) {
    let ca = tls::TestCa::new();
    let config = ca.server_config(&["attestix.test"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(handler),
                    )
                    .await;
            });
        }
    });
    (ca, port)
}

fn fetcher(ca: Option<&tls::TestCa>, allow_loopback: bool) -> Fetcher {
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let names: HashMap<String, Vec<IpAddr>> = [
        ("attestix.test".to_owned(), vec![loopback]),
        ("other.test".to_owned(), vec![loopback]),
    ]
    .into_iter()
    .collect();
    Fetcher::with_resolver(
        FetchSettings {
            extra_roots: ca.map(|ca| vec![ca.der()]).unwrap_or_default(),
            allow_loopback,
        },
        Arc::new(StaticResolver(names)),
    )
}

const CAP: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn json_is_fetched_over_tls_verified_against_the_host_name() {
    let (ca, port) = upstream().await;
    let value = fetcher(Some(&ca), true)
        .get_json(
            &format!("https://attestix.test:{port}/.well-known/did.json"),
            CAP,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(value["id"], "did:web:attestix.test");
}

#[tokio::test]
async fn a_certificate_for_another_name_or_from_an_unknown_ca_is_refused() {
    let (ca, port) = upstream().await;
    // The same server (pinned to the same address), asked for by another name.
    let error = fetcher(Some(&ca), true)
        .get_json(
            &format!("https://other.test:{port}/.well-known/did.json"),
            CAP,
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Connect(_)), "{error}");
    let error = fetcher(None, true)
        .get_json(
            &format!("https://attestix.test:{port}/.well-known/did.json"),
            CAP,
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, FetchError::Connect(detail) if detail.contains("certificate")),
        "{error}"
    );
}

#[tokio::test]
async fn loopback_is_refused_unless_the_operator_allows_it() {
    let (ca, port) = upstream().await;
    let error = fetcher(Some(&ca), false)
        .get_json(
            &format!("https://attestix.test:{port}/.well-known/did.json"),
            CAP,
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, FetchError::Blocked(reason) if reason.contains("127.0.0.1")),
        "{error}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_caps_and_timeouts_hold() {
    let (ca, port) = upstream().await;
    let fetcher = fetcher(Some(&ca), true);
    let url = |path: &str| format!("https://attestix.test:{port}{path}");
    assert_eq!(
        fetcher
            .get_json(&url("/redirect"), CAP, TIMEOUT)
            .await
            .unwrap_err(),
        FetchError::Redirect(302)
    );
    assert_eq!(
        fetcher
            .get_json(&url("/big"), CAP, TIMEOUT)
            .await
            .unwrap_err(),
        FetchError::TooLarge(CAP)
    );
    assert_eq!(
        fetcher
            .get_json(&url("/big-unsized"), CAP, TIMEOUT)
            .await
            .unwrap_err(),
        FetchError::TooLarge(CAP),
        "the cap holds while streaming, without a Content-Length"
    );
    let started = std::time::Instant::now();
    let error = fetcher
        .get_json(&url("/slow"), CAP, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        fetcher
            .get_json(&url("/not-json"), CAP, TIMEOUT)
            .await
            .unwrap_err(),
        FetchError::NotJson(_)
    ));
    assert_eq!(
        fetcher
            .get_json(&url("/missing"), CAP, TIMEOUT)
            .await
            .unwrap_err(),
        FetchError::Status(404)
    );
}

#[test]
fn a_ca_file_is_read_as_pem_certificates_and_a_bad_one_is_an_error() {
    let ca = tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    assert_eq!(
        attestix_server::fetch::load_ca_file(&path).unwrap(),
        vec![ca.der()]
    );
    std::fs::write(&path, "not a certificate").unwrap();
    assert!(attestix_server::fetch::load_ca_file(&path).is_err());
    assert!(attestix_server::fetch::load_ca_file(&dir.path().join("missing.pem")).is_err());
}
