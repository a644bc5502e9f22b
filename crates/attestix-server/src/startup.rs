//! Building the application from its configuration, and running it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use idempotency::{
    IdempotencyConfig, IdempotencyLayer, InFlightBehavior, MemoryStore, MemoryStoreConfig,
    MismatchStatus, Store, SystemClock,
};
use tokio::sync::Semaphore;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{Trace, TraceLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{self, AuthSettings};
use crate::config::{IdempotencyStoreChoice, ServerConfig};
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::recovery::RecoveryIds;
use crate::routes::{
    agent_cards, audit, blockchain, compliance, credentials, delegations, dids, health, identities,
    presentations, provenance, reputation,
};
use crate::signing_key::{self, KeyOrigin};
use crate::state::AppState;
use crate::storage::{PostgresStorage, SqliteStorage, Storage};
use crate::telemetry;
use idempotency_sql::{OpenError, SqliteLog};

/// The SQLite database file inside the data directory.
pub const DATABASE_FILE: &str = "attestix.db";

/// How long a request body may pause between two chunks before it is abandoned.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying the request id, set when the client sends none.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The idempotency records' database file inside the data directory (SQLite only).
pub const IDEMPOTENCY_FILE: &str = "idempotency.db";

/// The opened storage and the idempotency store that lives beside it.
pub struct Backends {
    /// Identities, credentials, API keys.
    pub storage: Arc<dyn Storage>,
    /// The idempotency store: PostgreSQL's shared table, the embedded store (on
    /// SQLite), or memory alone, as configured; `None` when the layer is off.
    pub idempotency: Option<Arc<dyn Store>>,
    /// The embedded store's log, closed at shutdown after the store is flushed.
    pub log: Option<SqliteLog>,
}

/// Opens (and migrates) the storage the configuration names: PostgreSQL for a
/// `database_url`, otherwise SQLite in the data directory. Only the storage: for
/// tools such as `attestix keys`, which run beside a server and must not take its
/// idempotency file.
pub async fn open_storage(config: &ServerConfig) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(open_postgres(url, config).await?),
        None => Arc::new(open_sqlite(config).await?),
    })
}

async fn open_postgres(url: &str, config: &ServerConfig) -> anyhow::Result<PostgresStorage> {
    let storage = PostgresStorage::connect(url, config.database_pool_size)
        .await
        .context("cannot connect to PostgreSQL")?;
    storage
        .migrate()
        .await
        .context("cannot migrate the PostgreSQL database")?;
    Ok(storage)
}

async fn open_sqlite(config: &ServerConfig) -> anyhow::Result<SqliteStorage> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join(DATABASE_FILE);
    let storage = SqliteStorage::open(&path)
        .await
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
    storage
        .migrate()
        .await
        .context("cannot migrate the SQLite database")?;
    Ok(storage)
}

/// Opens the storage and, when the configuration keeps idempotency records in the
/// database, their store: on PostgreSQL the shared table (every instance reserves
/// through it); on SQLite the embedded store, a [`MemoryStore`] whose completions are
/// written behind to an [`SqliteLog`] in [`IDEMPOTENCY_FILE`] (a second server on the
/// same data directory is refused).
pub async fn open_backends(config: &ServerConfig) -> anyhow::Result<Backends> {
    let wants_store =
        config.idempotency.enabled && config.idempotency.store == IdempotencyStoreChoice::Database;
    let memory = MemoryStoreConfig {
        max_bytes: config.idempotency.memory_max_bytes,
        ..MemoryStoreConfig::default()
    };
    let in_memory = || -> Option<Arc<dyn Store>> {
        config
            .idempotency
            .enabled
            .then(|| Arc::new(MemoryStore::new(memory.clone())) as Arc<dyn Store>)
    };
    match &config.database_url {
        Some(url) => {
            let storage = open_postgres(url, config).await?;
            let idempotency: Option<Arc<dyn Store>> = if wants_store {
                // Every keyed request's effects commit synchronously through this
                // same pool after its reservation, which flushes the reservation.
                let store = idempotency_sql::PostgresStore::from_pool(storage.pool().clone())
                    .with_reservations_flushed_by_later_commits();
                store
                    .migrate()
                    .await
                    .context("cannot migrate the PostgreSQL idempotency table")?;
                Some(Arc::new(store))
            } else {
                in_memory()
            };
            Ok(Backends {
                storage: Arc::new(storage),
                idempotency,
                log: None,
            })
        }
        None => {
            let storage = open_sqlite(config).await?;
            let log = if wants_store {
                let path = config.data_dir.join(IDEMPOTENCY_FILE);
                let log = SqliteLog::open(&path).await.map_err(|error| match error {
                    OpenError::InUse(_) => anyhow::anyhow!(
                        "{error}; is another `attestix serve` running on {}?",
                        config.data_dir.display()
                    ),
                    other => anyhow::Error::new(other),
                })?;
                // Releases before this one kept idempotency records in attestix.db.
                let mut writer = storage
                    .writer()
                    .acquire()
                    .await
                    .context("cannot write attestix.db")?;
                let moved = log
                    .import_legacy_table(&mut writer)
                    .await
                    .context("cannot move idempotency records out of attestix.db")?;
                if moved > 0 {
                    tracing::info!(
                        moved,
                        "moved completed idempotency records from attestix.db to {IDEMPOTENCY_FILE}"
                    );
                }
                Some(log)
            } else {
                None
            };
            let idempotency = match &log {
                Some(log) => Some(
                    Arc::new(MemoryStore::with_log(memory, Arc::new(log.clone())))
                        as Arc<dyn Store>,
                ),
                None => in_memory(),
            };
            Ok(Backends {
                storage: Arc::new(storage),
                idempotency,
                log,
            })
        }
    }
}

/// A server ready to accept connections.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    local_addr: SocketAddr,
    admin_key: Option<String>,
    key_origin: KeyOrigin,
    did: String,
    purger: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
    /// The layer's store, flushed at shutdown (it may write completions behind).
    store: Option<Arc<dyn Store>>,
    /// The embedded store's log, closed after the flush.
    log: Option<SqliteLog>,
    request_head_timeout: Duration,
    max_connections: usize,
    /// Set when the server speaks HTTPS itself (`--tls-cert`, `--tls-key`).
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Application {
    /// Opens storage, loads or creates the signing key, binds the listener.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Self> {
        let (signer, key_origin) = signing_key::load_or_create(&config.data_dir)?;
        let data_key = crate::data_key::load_or_create(&config.data_dir)?;
        if !config.fetch.extra_roots.is_empty() {
            tracing::warn!(
                roots = config.fetch.extra_roots.len(),
                "OUTBOUND FETCHES TRUST EXTRA CA ROOTS (--fetch-ca-file) besides the web PKI: \
                 meant for tests and private deployments"
            );
        }
        if config.fetch.allow_loopback {
            tracing::warn!(
                "OUTBOUND FETCHES MAY TARGET LOOPBACK ADDRESSES (--fetch-allow-loopback): \
                 meant for tests only; every other blocked range stays blocked"
            );
        }
        if let Some(resolver) = &config.universal_resolver {
            anyhow::ensure!(
                resolver.scheme() == "https",
                "the universal resolver URL must be https (outbound fetches are https only): {resolver}"
            );
            tracing::info!(%resolver, "DIDs of other methods than key and web resolve through this universal resolver");
        }
        let fetcher = match &config.fetch_resolver {
            Some(resolver) => {
                crate::fetch::Fetcher::with_resolver(config.fetch.clone(), resolver.clone())
            }
            None => crate::fetch::Fetcher::new(config.fetch.clone()),
        };
        let chain = match &config.anchoring {
            Some(settings) => {
                let client = crate::chain::ChainClient::new(settings)?;
                tracing::info!(
                    network = settings.network.name(),
                    chain_id = settings.network.chain_id(),
                    attester = %client.attester(),
                    "blockchain anchoring configured"
                );
                Some(Arc::new(client))
            }
            None => None,
        };
        let backends = open_backends(&config).await?;
        let storage = backends.storage.clone();

        // On an empty database, make the first admin key (printed once by the caller).
        let admin_key = if !config.allow_no_auth && storage.list_api_keys().await?.is_empty() {
            let now_ms = crate::routes::unix_ms(time::OffsetDateTime::now_utc());
            let issued = auth::issue_api_key(storage.as_ref(), "admin", now_ms).await?;
            Some(issued.secret)
        } else {
            None
        };

        let settings = &config.idempotency;
        let store = backends.idempotency.clone();
        let purger = store.clone().map(|store| {
            idempotency::spawn_purger(store, Arc::new(SystemClock), Duration::from_secs(60))
        });
        let flushed_at_shutdown = store.clone();
        let purged_by_erasure = store.clone();
        let layer = store.map(|store| {
            let mut layer = IdempotencyLayer::with_config(store, IdempotencyConfig::default())
                // Every mutating request honours a key: a retried DELETE replays its
                // first answer instead of meeting "already revoked".
                .methods([Method::POST, Method::PATCH, Method::DELETE])
                .scope(auth::idempotency_scope)
                .retention(settings.retention)
                .lease(settings.lease)
                .max_request_body(config.max_body_bytes)
                .max_response_body(config.max_response_bytes)
                .problem_type_base(crate::error::IDEMPOTENCY_PROBLEM_BASE);
            if let Some(wait) = settings.wait {
                layer = layer.in_flight(InFlightBehavior::Wait(wait));
            }
            if settings.ietf_status_codes {
                layer = layer.mismatch_status(MismatchStatus::UnprocessableContent);
            }
            layer
        });

        let did = signer.did().to_owned();
        let state = Arc::new(AppState {
            storage,
            recovery_ids: RecoveryIds::from_signing_key(&signer),
            delegation_signatures: crate::checked_signatures::CheckedSignatures::new(
                signer.verifying_key(),
                crate::checked_signatures::REMEMBERED_SIGNATURES,
            ),
            signer,
            data_key,
            fetcher,
            universal_resolver: config.universal_resolver.clone(),
            chain,
            auth: AuthSettings {
                legacy_key_digest: config.legacy_api_key.as_deref().map(auth::digest),
                allow_no_auth: config.allow_no_auth,
                public_metrics: config.public_metrics,
            },
            idempotency_retention: settings.retention,
            key_reuse_status: if settings.ietf_status_codes {
                axum::http::StatusCode::UNPROCESSABLE_ENTITY
            } else {
                axum::http::StatusCode::CONFLICT
            },
            max_response_bytes: config.max_response_bytes,
            idempotency: purged_by_erasure,
            metrics: telemetry::prometheus(),
        });
        let router = router(state, layer, config.max_body_bytes);
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            local_addr,
            admin_key,
            key_origin,
            did,
            purger,
            grace: config.shutdown_grace,
            store: flushed_at_shutdown,
            log: backends.log,
            request_head_timeout: config.request_head_timeout,
            max_connections: config.max_connections.max(1),
            tls,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The port the server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The admin API key created on this start, if the database had no key.
    pub fn first_admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    /// Whether the signing key was created on this start.
    pub fn signing_key_origin(&self) -> KeyOrigin {
        self.key_origin
    }

    /// The server's DID (its public signing key).
    pub fn did(&self) -> &str {
        &self.did
    }

    /// Serves until `shutdown` completes, then stops accepting connections and
    /// waits (up to the grace period) for in-flight requests to finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // hyper's own connection loop rather than `axum::serve`, for the timer that
        // closes connections whose request head never arrives (slow-loris senders).
        let mut connections = ConnectionBuilder::new(TokioExecutor::new());
        connections
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.request_head_timeout);
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut accept_errors = AcceptErrorLog::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // A slot before each accept: beyond the cap, connections wait in the
            // kernel's backlog instead of taking descriptors the process may not have.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.context("the connection slots were closed")?,
                () = &mut shutdown => break,
            };
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        if let Some(suppressed) = accept_errors.record(Instant::now()) {
                            tracing::warn!(%error, suppressed, "accepting a connection failed");
                        }
                        // Out of descriptors and the like: pause instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            tracing::trace!("connection accepted");
            let head_seen = Arc::new(AtomicBool::new(false));
            let service = MarkRequests {
                inner: TowerToHyperService::new(with_request_id(self.router.clone())),
                seen: head_seen.clone(),
            };
            let head_timeout = self.request_head_timeout;
            let (connections, watcher, tls) =
                (connections.clone(), graceful.watcher(), self.tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let io = match tls {
                    None => ServedStream::Plain(stream),
                    // The handshake counts against the request-head timeout.
                    Some(acceptor) => {
                        match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => ServedStream::Tls(Box::new(tls)),
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("closed a connection whose TLS handshake did not finish in time");
                                return;
                            }
                        }
                    }
                };
                let connection = connections
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let connection = watcher.watch(connection);
                let mut connection = std::pin::pin!(connection);
                // hyper's header timer starts only once the first byte has arrived
                // (the protocol sniffing before it waits for ever), so a connection
                // that never sends anything is closed here.
                let ended = tokio::select! {
                    biased;
                    ended = connection.as_mut() => Some(ended),
                    () = tokio::time::sleep(head_timeout) => None,
                };
                let ended = match ended {
                    Some(ended) => ended,
                    None if !head_seen.load(Ordering::Acquire) => {
                        tracing::debug!(timeout = ?head_timeout, "closed a connection that sent no request head in time");
                        return;
                    }
                    None => connection.await,
                };
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tracing::info!("shutting down: draining in-flight requests");
        let drained = tokio::time::timeout(self.grace, graceful.shutdown()).await;
        if drained.is_err() {
            tracing::warn!(grace = ?self.grace, "in-flight requests did not finish within the grace period");
        }
        if let Some(purger) = self.purger {
            purger.abort();
        }
        // Completed records still being written behind are written before exit, so a
        // clean stop loses nothing (a crash may lose the last moments' worth).
        if let Some(store) = &self.store {
            match tokio::time::timeout(self.grace, store.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "completed idempotency records could not be written at shutdown"
                    );
                }
                Err(_) => tracing::error!(
                    grace = ?self.grace,
                    "completed idempotency records were still being written when the grace period ended"
                ),
            }
        }
        if let Some(log) = &self.log {
            // Bounded: closing writes what is queued, which a failing disk never does.
            let _ = tokio::time::timeout(self.grace, log.close()).await;
        }
        Ok(())
    }
}

/// A connection's service that notes when its first request head has arrived
/// (hyper calls the service as soon as a head is parsed).
#[derive(Clone)]
struct MarkRequests<S> {
    inner: S,
    seen: Arc<AtomicBool>,
}

impl<S, R> hyper::service::Service<R> for MarkRequests<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: R) -> Self::Future {
        self.seen.store(true, Ordering::Release);
        self.inner.call(request)
    }
}

/// A TLS acceptor presenting the certificate chain and key of `files` (PEM).
fn tls_acceptor(files: &crate::config::TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&files.certificate)
        .with_context(|| {
            format!(
                "cannot read the TLS certificate {}",
                files.certificate.display()
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "the TLS certificate {} is not PEM certificates",
                files.certificate.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the TLS certificate file {} holds no certificate",
        files.certificate.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("the TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the TLS certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A served connection: plain TCP, or TLS over it.
enum ServedStream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for ServedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ServedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => std::pin::Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => std::pin::Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Rate limit of the accept-failure warning. Failures come in floods (out of
/// descriptors: every accept fails until a connection closes), and one line per
/// failure buried everything else in the log.
#[derive(Debug, Default)]
struct AcceptErrorLog {
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrorLog {
    /// At most one warning per this interval.
    const INTERVAL: Duration = Duration::from_secs(1);

    /// Records a failure at `now`: `Some(n)` when it should be logged, `n` being the
    /// failures left unlogged since the previous warning; `None` to stay quiet.
    fn record(&mut self, now: Instant) -> Option<u64> {
        match self.last_warning {
            Some(last) if now.saturating_duration_since(last) < Self::INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_warning = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The router: every route, the documentation, and the layers in the order the
/// specification gives (outermost first): metrics, body size limit,
/// authentication, idempotency, routes. Request id and tracing go around it all,
/// in [`with_request_id`].
pub fn router(
    state: Arc<AppState>,
    idempotency: Option<IdempotencyLayer>,
    max_body: usize,
) -> Router {
    let api = Router::new()
        .route(
            "/v1/identities",
            post(identities::create_identity).get(identities::list_identities),
        )
        .route(
            "/v1/identities/{agent_id}",
            get(identities::get_identity).delete(identities::revoke_identity),
        )
        .route(
            "/v1/identities/{agent_id}/verify",
            post(identities::verify_identity),
        )
        .route(
            "/v1/identities/{agent_id}/translate",
            post(identities::translate_identity),
        )
        .route(
            "/v1/identities/{agent_id}/purge",
            delete(identities::purge_identity),
        )
        .route(
            "/v1/credentials",
            post(credentials::issue_credential).get(credentials::list_credentials),
        )
        .route(
            "/v1/credentials/issue",
            post(credentials::issue_credential_alias),
        )
        .route(
            "/v1/credentials/verify-external",
            post(credentials::verify_external),
        )
        .route(
            "/v1/credentials/{credential_id}",
            get(credentials::get_credential).delete(credentials::revoke_credential),
        )
        .route(
            "/v1/credentials/{credential_id}/verify",
            post(credentials::verify_stored_credential),
        )
        .route(
            "/v1/presentations",
            post(presentations::create_presentation),
        )
        .route("/v1/presentations/verify", post(presentations::verify))
        .route(
            "/v1/delegations",
            post(delegations::create_delegation).get(delegations::list_delegations),
        )
        .route(
            "/v1/delegations/verify",
            post(delegations::verify_delegation),
        )
        .route(
            "/v1/agent-cards/generate",
            post(agent_cards::generate_agent_card),
        )
        .route("/v1/agent-cards/parse", post(agent_cards::parse_agent_card))
        .route(
            "/v1/agent-cards/discover",
            post(agent_cards::discover_agent),
        )
        .route("/v1/dids/key", post(dids::create_did_key))
        .route("/v1/dids/web", post(dids::create_did_web))
        .route("/v1/dids/resolve/{*did}", get(dids::resolve_did))
        .route(
            "/v1/delegations/{jti}",
            delete(delegations::revoke_delegation),
        )
        .route("/v1/audit/events", get(audit::list_events))
        .route("/v1/audit/verify", get(audit::verify_chain))
        .route("/v1/reputation", get(reputation::query_reputation))
        .route(
            "/v1/reputation/interactions",
            post(reputation::record_interaction),
        )
        .route("/v1/reputation/{agent_id}", get(reputation::get_reputation))
        .route("/v1/provenance/actions", post(provenance::log_action))
        .route(
            "/v1/provenance/training-data",
            post(provenance::record_training_data),
        )
        .route(
            "/v1/provenance/model-lineage",
            post(provenance::record_model_lineage),
        )
        .route(
            "/v1/provenance/audit-trail/{agent_id}",
            get(provenance::audit_trail),
        )
        .route(
            "/v1/provenance/audit-trail/{agent_id}/verify",
            get(provenance::verify_audit_trail),
        )
        .route("/v1/provenance/{agent_id}", get(provenance::provenance_of))
        .route(
            "/v1/blockchain/anchor/identity",
            post(blockchain::anchor_identity),
        )
        .route(
            "/v1/blockchain/anchor/credential",
            post(blockchain::anchor_credential),
        )
        .route(
            "/v1/blockchain/anchor/audit-batch",
            post(blockchain::anchor_audit_batch),
        )
        .route(
            "/v1/blockchain/verify/{anchor_id}",
            post(blockchain::verify_anchor),
        )
        .route(
            "/v1/blockchain/anchors/{agent_id}",
            get(blockchain::list_anchors),
        )
        .route(
            "/v1/blockchain/batches/{anchor_id}/proofs/{entry_id}",
            get(blockchain::inclusion_proof_of),
        )
        .route(
            "/v1/blockchain/estimate-cost",
            get(blockchain::estimate_cost),
        )
        .route(
            "/v1/compliance/profiles",
            post(compliance::create_profile).get(compliance::list_profiles),
        )
        .route(
            "/v1/compliance/profiles/{agent_id}",
            get(compliance::get_profile).patch(compliance::update_profile),
        )
        .route(
            "/v1/compliance/profiles/{agent_id}/status",
            get(compliance::profile_status),
        )
        .route(
            "/v1/compliance/assessments",
            post(compliance::record_assessment),
        )
        .route(
            "/v1/compliance/declarations",
            post(compliance::generate_declaration),
        )
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // A route layer: it wraps matched routes only, so an unknown path (404) or a
    // method the route lacks (405) is answered as such, not by the layer.
    let api = match idempotency {
        Some(layer) => api.route_layer(layer),
        None => api,
    };
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .layer(middleware::from_fn_with_state(state, auth::authenticate))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            reject_declared_oversize(request, next, max_body)
        }))
        .layer(middleware::from_fn(telemetry::record_http_metrics))
}

/// The outermost layers, around the whole router rather than inside it: request id,
/// tracing, and the request id copied to the response.
///
/// `Router::layer` wraps every route on its own, and axum clones a route's whole
/// layered stack for each request it serves; layers that need no routing
/// information are cheaper outside, where they are cloned once per connection.
pub fn with_request_id(
    router: Router,
) -> SetRequestId<
    Trace<PropagateRequestId<Router>, SharedClassifier<ServerErrorsAsFailures>>,
    MakeRequestUuid,
> {
    tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .service(router)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; the Allow header lists what is",
        request.method(),
        request.uri().path()
    ))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound {
        kind: "route",
        id: request.uri().path().to_owned(),
    }
}

/// Answers 413 before reading a body whose declared length is over the limit;
/// bodies without a length are cut off by the extractors' limit instead.
async fn reject_declared_oversize(request: Request, next: Next, limit: usize) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::PayloadTooLarge(format!("the request body is larger than {limit} bytes"))
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_accept_failures_is_one_warning_a_second_with_a_count() {
        let mut log = AcceptErrorLog::default();
        let start = Instant::now();
        assert_eq!(log.record(start), Some(0));
        // 20 a second, as in issue 16: the rest of that second is counted, not logged.
        for n in 1..20 {
            assert_eq!(log.record(start + Duration::from_millis(50 * n)), None);
        }
        assert_eq!(log.record(start + Duration::from_millis(1000)), Some(19));
        assert_eq!(log.record(start + Duration::from_millis(1100)), None);
        assert_eq!(log.record(start + Duration::from_millis(5000)), Some(1));
    }
}
