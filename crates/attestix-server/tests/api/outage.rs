//! PostgreSQL going away while the server runs: keyed requests fail closed with
//! 503, reads report the outage cleanly, and the server recovers by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_sql::pg_test::TestDatabase;
use reqwest::Method;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{identity_body, Reply, TestServer};

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Switch {
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    port: u16,
}

impl Switch {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the database is "down"
                    continue;
                }
                let mut cuts = accept_cut.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {} // every open connection dies at once
                    }
                });
            }
        });
        Self { up, cut, port }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_closed_and_the_server_recovers_by_itself() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = reqwest::Url::parse(database.url()).unwrap();
    let switch = Switch::start(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    let mut proxied = url.clone();
    proxied.set_port(Some(switch.port)).unwrap();
    proxied.set_host(Some("127.0.0.1")).unwrap();

    // The legacy key is checked without the database, so keyed requests reach the
    // idempotency layer during the outage: that is what this test is about.
    let server = TestServer::start_with(crate::helpers::Backend::Sqlite, |mut config| {
        config.database_url = Some(proxied.to_string());
        config.legacy_api_key = Some("legacy".into());
        config
    })
    .await
    .unwrap();
    let post = |key: &str| {
        server
            .client
            .post(server.url("/v1/identities"))
            .header("x-api-key", "legacy")
            .header("idempotency-key", key)
            .json(&identity_body("Outage"))
            .send()
    };
    assert_eq!(Reply::of(post("before")).await.status, 201);

    switch.cut();
    let keyed = Reply::of(post("during")).await;
    assert_eq!(keyed.status, 503);
    let problem = keyed.problem();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/store-unavailable"),
        "{problem}"
    );
    assert!(keyed.headers.contains_key("retry-after"));
    let read = Reply::of(
        server
            .client
            .get(server.url("/v1/identities"))
            .header("x-api-key", "legacy")
            .send(),
    )
    .await;
    assert_eq!(read.status, 503);
    assert!(
        !read.problem()["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "no internals leak"
    );
    let health = Reply::of(server.client.get(server.url("/health")).send()).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "degraded");

    switch.restore();
    // The pool reconnects on its own; the key refused during the outage is usable.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let reply = Reply::of(post("during")).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(recovered.status, 201);
    assert!(!recovered.replayed());
    let health = Reply::of(
        server
            .client
            .request(Method::GET, server.url("/health"))
            .send(),
    )
    .await;
    assert_eq!(health.status, 200);
    server.finish().await;
    let _ = database.drop_database().await;
}
