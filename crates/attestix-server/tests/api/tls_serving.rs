//! The server terminating TLS itself (`ServerConfig::tls`).

use std::time::Duration;

use attestix_server::{ServerConfig, TlsFiles};
use tokio::io::AsyncReadExt;

use crate::helpers::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_and_a_silent_handshake_is_cut_off() {
    let ca = crate::tls::TestCa::new();
    let (chain, key) = ca.server_pem(&["localhost"]);
    let files = tempfile::tempdir().unwrap();
    let certificate = files.path().join("server.pem");
    let key_path = files.path().join("server.key");
    std::fs::write(&certificate, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let server = TestServer::start_with(Backend::Sqlite, |config| ServerConfig {
        tls: Some(TlsFiles {
            certificate: certificate.clone(),
            key: key_path.clone(),
        }),
        request_head_timeout: Duration::from_millis(500),
        ..config
    })
    .await
    .unwrap();
    let port = server.base.rsplit(':').next().unwrap().to_owned();

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(&ca.der()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .expect("HTTPS works");
    assert_eq!(health.status(), 200);

    // A client that connects and never starts the handshake is closed.
    let mut silent = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("the server closes the connection before 5 s");
    assert_eq!(read.unwrap_or(0), 0, "closed without an answer");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    server.finish().await;
}

#[tokio::test]
async fn an_unreadable_certificate_is_an_error_at_start() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("bad.pem"), "not a certificate").unwrap();
    let built = attestix_server::Application::build(ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_path_buf(),
        tls: Some(TlsFiles {
            certificate: files.path().join("bad.pem"),
            key: files.path().join("bad.pem"),
        }),
        ..ServerConfig::default()
    })
    .await;
    let error = built.err().expect("a bad certificate stops the start");
    assert!(format!("{error:#}").contains("bad.pem"), "{error:#}");
}
