//! Server settings. The binary fills them from flags and environment variables;
//! nothing else in the server reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where idempotency records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdempotencyStoreChoice {
    /// The server's own database (SQLite or PostgreSQL): survives restarts and is
    /// shared by every instance on the same PostgreSQL.
    #[default]
    Database,
    /// In process memory: fastest, lost on restart, not shared between instances.
    Memory,
}

/// Settings of the idempotency layer.
#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// Whether the layer is installed at all (off only for benchmarking the baseline).
    pub enabled: bool,
    /// Where records are kept.
    pub store: IdempotencyStoreChoice,
    /// How long a stored response is replayed.
    pub retention: Duration,
    /// How long an in-flight reservation is exclusive.
    pub lease: Duration,
    /// When set, a duplicate of an in-flight request waits up to this long and
    /// replays instead of getting 409 at once.
    pub wait: Option<Duration>,
    /// Answer a key reused with a different request with 422 (the IETF draft)
    /// instead of 409.
    pub ietf_status_codes: bool,
    /// Byte cap of the memory store.
    pub memory_max_bytes: usize,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            store: IdempotencyStoreChoice::Database,
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            wait: None,
            ietf_status_codes: false,
            memory_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// Holds the signing key and, without `database_url`, the SQLite database.
    pub data_dir: PathBuf,
    /// A `postgres://` URL selects PostgreSQL storage instead of SQLite.
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool.
    pub database_pool_size: u32,
    /// A key accepted as the principal `default` (the Python server's
    /// `ATTESTIX_API_KEY`).
    pub legacy_api_key: Option<String>,
    /// Serve without authentication (every caller is the principal `anonymous`).
    pub allow_no_auth: bool,
    /// Serve `/metrics` without authentication.
    pub public_metrics: bool,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The largest response a create may produce. Every keyed response up to this
    /// size is stored for replay; a create whose document would be larger is refused
    /// before anything is written (a JSON number such as `1e15` comes back longer
    /// than it was sent, so a response can outgrow its request).
    pub max_response_bytes: usize,
    /// Idempotency settings.
    pub idempotency: IdempotencySettings,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// A connection that has not sent a complete request head this long after it
    /// was accepted, or after its previous response, is closed.
    pub request_head_timeout: Duration,
    /// The most connections served at once. Further connections wait in the
    /// listen backlog, unaccepted, until one closes; keep it below the process's
    /// file-descriptor limit so that accepting never runs out of descriptors.
    pub max_connections: usize,
    /// The outbound fetcher's operator settings (extra CA roots, loopback allowed),
    /// both off by default.
    pub fetch: crate::fetch::FetchSettings,
    /// The resolver of the outbound fetcher; `None` for the system's. Tests set a
    /// fixed table of names.
    pub fetch_resolver: Option<std::sync::Arc<dyn crate::fetch::Resolve>>,
    /// The https base URL of a universal resolver (`…/1.0/identifiers/`): DIDs of
    /// methods other than key and web are resolved by GETting this URL with the DID
    /// appended. Off by default, so that no DID is sent to a third party unasked.
    pub universal_resolver: Option<url::Url>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Blockchain anchoring (`/v1/blockchain`); `None` answers every anchoring call
    /// with 503 while reads of stored anchors still work.
    pub anchoring: Option<crate::chain::AnchorSettings>,
}

/// The PEM files of `attestix serve --tls-cert FILE --tls-key FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("attestix-data"),
            database_url: None,
            database_pool_size: 16,
            legacy_api_key: None,
            allow_no_auth: false,
            public_metrics: false,
            max_body_bytes: 1024 * 1024,
            max_response_bytes: 8 * 1024 * 1024,
            idempotency: IdempotencySettings::default(),
            shutdown_grace: Duration::from_secs(30),
            request_head_timeout: Duration::from_secs(10),
            // Half the usual soft descriptor limit (1024): room for the database
            // pool, the data files and the listener besides the connections.
            max_connections: 512,
            fetch: crate::fetch::FetchSettings::default(),
            fetch_resolver: None,
            universal_resolver: None,
            tls: None,
            anchoring: None,
        }
    }
}

/// Parses durations written like `2s`, `15m`, `24h` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration like 2s, 15m or 24h: {error}"))?;
    if duration.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_documentation_says() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("2s, 15m or 24h"));
    }
}
