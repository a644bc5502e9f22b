//! A server per test, and a client that speaks to it.

use std::future::Future;
use std::time::Duration;

use attestix_server::{Application, ServerConfig};
use idempotency_sql::pg_test::TestDatabase;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

/// Which database the server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `#[tokio::test]`s running one async test fn on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub base: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    config: ServerConfig,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Kept alive for the server's lifetime; dropped (deleted) with it.
    _dir: Option<TempDir>,
    database: Option<TestDatabase>,
}

impl TestServer {
    /// A server on `backend` with default settings, or `None` when the backend is
    /// PostgreSQL and it is unreachable outside CI (the test then prints SKIPPED).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |config| config).await
    }

    /// As [`TestServer::start`], with settings changed by `configure`.
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create().await?),
        };
        let config = configure(ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url: database.as_ref().map(|db| db.url().to_owned()),
            database_pool_size: 4,
            ..ServerConfig::default()
        });
        let mut server = Self::launch(config, String::new()).await;
        server._dir = Some(dir);
        server.database = database;
        Some(server)
    }

    async fn launch(config: ServerConfig, known_admin_key: String) -> Self {
        let app = Application::build(config.clone())
            .await
            .expect("the server starts");
        let admin_key = app
            .first_admin_key()
            .map(str::to_owned)
            .unwrap_or(known_admin_key);
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            base,
            admin_key,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            config,
            shutdown: Some(tx),
            task: Some(task),
            _dir: None,
            database: None,
        }
    }

    /// Stops the server gracefully and starts it again on the same data (and a new port).
    pub async fn restart(self) -> Self {
        self.restart_with(|_| async {}).await
    }

    /// As [`TestServer::restart`], running `between` on the data while the server is
    /// stopped.
    pub async fn restart_with<F, Fut>(mut self, between: F) -> Self
    where
        F: FnOnce(ServerConfig) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.stop().await;
        between(self.config.clone()).await;
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".parse().unwrap();
        let mut next = Self::launch(config, self.admin_key.clone()).await;
        next._dir = self._dir.take();
        next.database = self.database.take();
        next
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Stops the server and hands over its data directory (SQLite), which lives until
    /// the returned guard is dropped.
    pub async fn stop_keeping_data(mut self) -> Option<TempDir> {
        self.stop().await;
        if let Some(database) = self.database.take() {
            let _ = database.drop_database().await;
        }
        self._dir.take()
    }

    /// Stops the server and drops its database.
    pub async fn finish(mut self) {
        self.stop().await;
        if let Some(database) = self.database.take() {
            let _ = database.drop_database().await;
        }
    }

    /// The configuration the server runs with (its data dir or database URL).
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request authenticated as the admin principal.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", &self.admin_key)
    }

    /// A keyed POST of a JSON body, as the admin.
    pub fn post_keyed(&self, path: &str, key: &str, body: &Value) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("idempotency-key", key)
            .json(body)
    }

    /// Creates an API key for `principal` through the same storage the server uses.
    pub async fn key_for(&self, principal: &str) -> String {
        let storage = attestix_server::open_storage(&self.config).await.unwrap();
        attestix_server::issue_api_key(storage.as_ref(), principal, 0)
            .await
            .unwrap()
            .secret
    }

    /// Every identity the admin can list, following cursors.
    pub async fn all_identities(&self) -> Vec<Value> {
        self.all_pages(
            "/v1/identities?include_revoked=true&limit=1000",
            &self.admin_key,
        )
        .await
    }

    pub async fn all_pages(&self, first: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(path) = next.take() {
            let response = self
                .client
                .get(self.url(&path))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "listing {path}");
            let cursor = response
                .headers()
                .get("x-next-cursor")
                .map(|c| c.to_str().unwrap().to_owned());
            let page: Vec<Value> = response.json().await.unwrap();
            items.extend(page);
            next = cursor.map(|c| {
                let separator = if first.contains('?') { '&' } else { '?' };
                format!("{first}{separator}cursor={c}")
            });
        }
        items
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub async fn of(response: impl Future<Output = reqwest::Result<Response>>) -> Self {
        let response = response.await.expect("the request reaches the server");
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("the body arrives"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text, for assertion messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotency-replayed")
            .is_some_and(|v| v == "true")
    }

    /// The problem document, checking the media type.
    pub fn problem(&self) -> Value {
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "status {} body {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

pub fn identity_body(name: &str) -> Value {
    serde_json::json!({
        "display_name": name,
        "source_protocol": "api_key",
        "capabilities": ["summarize"],
    })
}
