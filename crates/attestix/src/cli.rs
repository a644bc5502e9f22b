//! The command line, all of it: clap types only, no behaviour.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Attestix: signed identities and Verifiable Credentials for AI agents, with
/// POST endpoints that are safe to retry.
#[derive(Debug, Parser)]
#[command(name = "attestix", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (embedded SQLite in the data directory by default).
    Serve(ServeArgs),
    /// Manage API keys in the server's database (run where the server's data is).
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Where the server's data lives; shared by `serve` and `keys`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Directory of the signing key and, without --database-url, the SQLite database.
    #[arg(long, env = "ATTESTIX_DATA_DIR", default_value = "./attestix-data")]
    pub data_dir: PathBuf,
    /// A postgres:// URL: store everything in PostgreSQL instead of SQLite.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "ATTESTIX_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
}

/// Where idempotency records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    /// The server's database (SQLite or PostgreSQL): survives restarts.
    Database,
    /// Process memory: fastest, lost on restart.
    Memory,
}

/// Flags of `attestix serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "ATTESTIX_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Where the data lives.
    #[command(flatten)]
    pub data: DataArgs,
    /// An API key accepted as the principal `default` (the Python server's variable).
    #[arg(long = "api-key", env = "ATTESTIX_API_KEY", hide_env_values = true)]
    pub legacy_api_key: Option<String>,
    /// Serve without authentication. Every caller is then the principal `anonymous`.
    #[arg(long, env = "ATTESTIX_ALLOW_NO_AUTH")]
    pub allow_no_auth: bool,
    /// Serve /metrics without authentication.
    #[arg(long, env = "ATTESTIX_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "ATTESTIX_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a stored response is replayed (e.g. 2s, 15m, 24h).
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_TTL", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_ttl: Duration,
    /// How long a running request holds its key before a retry may take it over.
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub idempotency_lease: Duration,
    /// Where idempotency records are kept.
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_STORE", value_enum, default_value_t = StoreArg::Database)]
    pub idempotency_store: StoreArg,
    /// Let a duplicate of a running request wait up to this long and replay,
    /// instead of answering 409 at once.
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_WAIT", value_parser = parse_duration)]
    pub idempotency_wait: Option<Duration>,
    /// Answer a key reused with a different request with 422 (IETF draft) instead of 409.
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_IETF_CODES")]
    pub idempotency_ietf_codes: bool,
    /// Byte cap of the memory idempotency store.
    #[arg(long, env = "ATTESTIX_IDEMPOTENCY_MEMORY_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub idempotency_memory_max_bytes: usize,
    /// Do not install the idempotency layer (only to measure its cost).
    #[arg(long, hide = true)]
    pub no_idempotency: bool,
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// `attestix keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a principal and print it (shown once).
    Create {
        /// The principal the key authenticates as (a-z, 0-9, '-', '_', '.').
        #[arg(long)]
        principal: String,
        /// Where the data lives.
        #[command(flatten)]
        data: DataArgs,
    },
    /// List API keys (ids and principals; never the keys).
    List {
        /// Where the data lives.
        #[command(flatten)]
        data: DataArgs,
    },
    /// Revoke an API key by its id; it stops working at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
        /// Where the data lives.
        #[command(flatten)]
        data: DataArgs,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    attestix_server::parse_duration(text)
}
