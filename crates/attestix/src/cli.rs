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
    Serve(Box<ServeArgs>),
    /// Manage API keys in the server's database (run where the server's data is).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create, list, verify, revoke and bulk-import agent identities (UAITs).
    Identity(IdentityArgs),
    /// Issue, list, verify and revoke Verifiable Credentials.
    Credential(CredentialArgs),
    /// Create and verify Verifiable Presentations.
    Presentation(PresentationArgs),
    /// Create, verify, list and revoke UCAN-style delegation tokens.
    Delegation(DelegationArgs),
    /// Generate, parse and discover A2A agent cards.
    #[command(name = "agent-card")]
    AgentCard(AgentCardArgs),
    /// Create did:key and did:web DIDs (private keys stay on the server) and resolve DIDs.
    Did(DidArgs),
    /// Record interactions and read recency-weighted trust scores.
    Reputation(ReputationArgs),
    /// Verify the hash chain of your audit events.
    Audit(AuditArgs),
    /// Log agent actions and read and verify their hash-chained trail (EU AI Act Art. 12).
    Provenance(ProvenanceArgs),
    /// Anchor identities, credentials and audit batches on an EVM chain (EAS), and
    /// verify them there.
    Anchor(AnchorCliArgs),
    /// EU AI Act compliance: profiles, Article 43 assessments, Annex V declarations.
    Compliance(ComplianceArgs),
    /// Ask the server whether it is up.
    Health(HealthArgs),
    /// Serve the Attestix tools to AI agents over the Model Context Protocol
    /// (stdio, or streamable HTTP with --http), as a client of an Attestix server.
    Mcp(McpArgs),
    /// Print a shell completion script (for example `attestix completions bash`).
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    /// The largest response a create may produce, in bytes; larger ones are refused
    /// before anything is written, so every keyed response can be stored for replay.
    #[arg(long, env = "ATTESTIX_MAX_RESPONSE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Close a connection that sends no complete request head this long after it
    /// is accepted or after its previous response (e.g. 10s).
    #[arg(long, env = "ATTESTIX_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_head_timeout: Duration,
    /// The most connections served at once; more wait unaccepted until one closes.
    /// Keep it below the open-file limit (`ulimit -n`).
    #[arg(long, env = "ATTESTIX_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
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
    /// Serve HTTPS with this PEM certificate chain (with --tls-key) instead of
    /// plain HTTP.
    #[arg(
        long,
        env = "ATTESTIX_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "ATTESTIX_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) that outbound fetches (did:web resolution) trust
    /// besides the web PKI roots. For tests and private deployments; announced at start.
    #[arg(long, env = "ATTESTIX_FETCH_CA_FILE", value_name = "FILE")]
    pub fetch_ca_file: Option<PathBuf>,
    /// Let outbound fetches target loopback addresses (tests only; every other
    /// blocked range stays blocked). Announced at start.
    #[arg(long, env = "ATTESTIX_FETCH_ALLOW_LOOPBACK")]
    pub fetch_allow_loopback: bool,
    /// The https base URL of a universal resolver, e.g.
    /// `https://dev.uniresolver.io/1.0/identifiers/`: DIDs of methods other than key
    /// and web resolve by GETting it with the DID appended. Off by default (503).
    #[arg(long, env = "ATTESTIX_UNIVERSAL_RESOLVER_URL", value_name = "URL")]
    pub universal_resolver_url: Option<reqwest::Url>,
    /// Blockchain anchoring (`/v1/blockchain`).
    #[command(flatten)]
    pub anchoring: AnchorArgs,
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// The anchoring settings of `attestix serve`: on when a wallet key is given.
#[derive(Debug, Clone, Args)]
pub struct AnchorArgs {
    /// The file holding the wallet's private key (hex; mode 0600, not readable by
    /// group or others). Without it, or `EVM_PRIVATE_KEY`, anchoring is off (503).
    #[arg(long, env = "ATTESTIX_EVM_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub evm_private_key_file: Option<PathBuf>,
    /// The wallet's private key itself, as the reference reads it (prefer the file).
    #[arg(
        long = "evm-private-key",
        env = "EVM_PRIVATE_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub evm_private_key: Option<attestix_server::chain::WalletKey>,
    /// `base-sepolia` (chain 84532), `base-mainnet` (8453), or `custom` (then
    /// --evm-chain-id, --evm-eas-address, --evm-schema-registry-address and
    /// --evm-rpc-url are required).
    #[arg(long, env = "ATTESTIX_EVM_NETWORK", default_value = "base-sepolia")]
    pub evm_network: String,
    /// The chain's JSON-RPC URL (default: Base's public endpoint for the network).
    #[arg(long, env = "ATTESTIX_EVM_RPC_URL", value_name = "URL")]
    pub evm_rpc_url: Option<url::Url>,
    /// A custom network's chain id.
    #[arg(long, env = "ATTESTIX_EVM_CHAIN_ID")]
    pub evm_chain_id: Option<u64>,
    /// A custom network's EAS contract address.
    #[arg(long, env = "ATTESTIX_EVM_EAS_ADDRESS", value_name = "ADDRESS")]
    pub evm_eas_address: Option<String>,
    /// A custom network's SchemaRegistry contract address.
    #[arg(
        long,
        env = "ATTESTIX_EVM_SCHEMA_REGISTRY_ADDRESS",
        value_name = "ADDRESS"
    )]
    pub evm_schema_registry_address: Option<String>,
    /// How long an anchor waits for its transaction to be mined before answering
    /// 504 (a retry with the same key keeps waiting for the same transaction).
    #[arg(long, env = "ATTESTIX_EVM_RECEIPT_TIMEOUT", default_value = "120s", value_parser = attestix_server::config::parse_duration)]
    pub evm_receipt_timeout: std::time::Duration,
}

/// `attestix keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a principal and print it (shown once).
    Create {
        /// The principal the key authenticates as (a-z, 0-9, '-', '_', '.'; not
        /// `default` or `anonymous`, which the server gives callers itself).
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

/// How the client commands reach the server. These options belong to the client
/// command groups (`identity`, `credential`, `presentation`, `health`) and may be
/// given anywhere after the group's name; they are not options of `serve`, whose
/// `--api-key` is the server's own legacy key.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "ATTESTIX_URL",
        default_value = "http://127.0.0.1:8000",
        global = true,
        help_heading = "Client options"
    )]
    pub server: String,
    /// A PEM file of CA certificates to trust for an https --server, besides the
    /// web PKI roots (for a server whose certificate comes from a private CA).
    #[arg(
        long,
        env = "ATTESTIX_CA_FILE",
        value_name = "FILE",
        global = true,
        help_heading = "Client options"
    )]
    pub ca_file: Option<PathBuf>,
    /// The API key to authenticate with (sent as X-API-Key).
    #[arg(
        long = "api-key",
        env = "ATTESTIX_API_KEY",
        hide_env_values = true,
        global = true,
        help_heading = "Client options"
    )]
    pub api_key: Option<String>,
    /// The tenant inside the key's account (sent as X-Attestix-Tenant).
    #[arg(
        long,
        env = "ATTESTIX_TENANT",
        global = true,
        help_heading = "Client options"
    )]
    pub tenant: Option<String>,
    /// Print the server's JSON document unchanged on stdout (messages still go to
    /// stderr); a verification that says invalid exits with 1.
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
    /// How long one request may take (e.g. 500ms, 10s, 2m).
    #[arg(
        long,
        env = "ATTESTIX_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
        global = true,
        help_heading = "Client options"
    )]
    pub timeout: Duration,
    /// How many times to resend a request after a connection error, a timeout, a
    /// 5xx, a 429 or a 409 "in flight"; a POST is resent with the same
    /// Idempotency-Key, so it is never carried out twice.
    #[arg(
        long,
        default_value_t = 3,
        global = true,
        help_heading = "Client options"
    )]
    pub retries: u32,
}

/// The Idempotency-Key option of every command that sends a POST.
#[derive(Debug, Clone, Args)]
pub struct IdempotencyArgs {
    /// The Idempotency-Key to send (1 to 255 visible ASCII characters). Without
    /// it a random UUIDv4 is sent and printed on stderr; run the command again
    /// with that key to retry the same operation without doing it twice.
    #[arg(long, value_parser = parse_idempotency_key)]
    pub idempotency_key: Option<String>,
}

/// Paging options of the list commands.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Documents per page, 1 to 1000 (the server's default is 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Start after this cursor (the `X-Next-Cursor` of the previous page, which
    /// the command prints on stderr).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow the cursors and print every page.
    #[arg(long)]
    pub all: bool,
}

/// `attestix identity …`
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: IdentityCommand,
}

/// The identity subcommands.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create a signed agent identity (POST /v1/identities).
    Create(IdentityCreateArgs),
    /// List identities, oldest first (GET /v1/identities).
    List(IdentityListArgs),
    /// Show one identity (GET /v1/identities/{agent_id}).
    Get {
        /// The agent id (`attestix:` and 16 hex digits).
        agent_id: String,
    },
    /// Check an identity's existence, revocation, expiry and signature; exits
    /// with 1 when it is not valid.
    Verify {
        /// The agent id.
        agent_id: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Revoke an identity (DELETE /v1/identities/{agent_id}).
    Revoke {
        /// The agent id.
        agent_id: String,
        /// Why it is revoked.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Erase an agent from your scope (DELETE /v1/identities/{agent_id}/purge, GDPR
    /// Art. 17): its identity, credentials, delegations, compliance, provenance and
    /// reputation records and stored responses; audit events about it are redacted.
    /// Prints what was erased, by kind.
    Purge {
        /// The agent id.
        agent_id: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Show an identity in another format (POST /v1/identities/{agent_id}/translate):
    /// an A2A agent card, a DID document, OAuth 2.0 claims or a summary.
    Translate {
        /// The agent id.
        agent_id: String,
        /// The format to translate to.
        #[arg(long = "format", value_enum)]
        target_format: TranslateFormatArg,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Create many identities from a JSON Lines file, resumably.
    Import(ImportArgs),
}

/// The formats of `attestix identity translate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TranslateFormatArg {
    /// An A2A agent card (`a2a_agent_card`).
    A2aAgentCard,
    /// A W3C DID document (`did_document`).
    DidDocument,
    /// OAuth 2.0 token claims (`oauth_claims`).
    OauthClaims,
    /// A summary (`summary`).
    Summary,
}

impl TranslateFormatArg {
    /// The name the server knows the format by.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::A2aAgentCard => "a2a_agent_card",
            Self::DidDocument => "did_document",
            Self::OauthClaims => "oauth_claims",
            Self::Summary => "summary",
        }
    }
}

/// Flags of `attestix identity create`; they mirror the body's fields.
#[derive(Debug, Args)]
pub struct IdentityCreateArgs {
    /// The agent's name (`display_name`).
    #[arg(long)]
    pub name: String,
    /// Where the identity comes from (`source_protocol`).
    #[arg(long, default_value = "api_key")]
    pub protocol: String,
    /// Something the agent can do; repeat for several.
    #[arg(long = "capability", value_name = "CAPABILITY")]
    pub capabilities: Vec<String>,
    /// A description of the agent.
    #[arg(long)]
    pub description: Option<String>,
    /// The issuer's name (`issuer_name`; the server's default is `self`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Days until the identity expires, 1 to 36500 (the server's default is 365).
    #[arg(long)]
    pub expiry_days: Option<i64>,
    /// An identity token from the source system (stored masked).
    #[arg(long)]
    pub identity_token: Option<String>,
    /// The Idempotency-Key.
    #[command(flatten)]
    pub idempotency: IdempotencyArgs,
}

/// Flags of `attestix identity list`.
#[derive(Debug, Args)]
pub struct IdentityListArgs {
    /// Only identities from this source protocol.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Include revoked identities.
    #[arg(long)]
    pub include_revoked: bool,
    /// Paging.
    #[command(flatten)]
    pub page: PageArgs,
}

/// Flags of `attestix identity import`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Each line's Idempotency-Key is `import-<first 16 hex digits of the file's SHA-256>-<line \
number>`, so running the same file again (after an interruption, a crash or a failed \
line) replays the lines already done and creates only the missing ones. Do not edit the \
file between runs: a changed file is a new import.")]
pub struct ImportArgs {
    /// A JSON Lines file, one `POST /v1/identities` body per line (`-` reads
    /// stdin). Blank lines are skipped.
    pub file: PathBuf,
    /// How many requests to have in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

/// `attestix credential …`
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: CredentialCommand,
}

/// The credential subcommands.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Issue a signed Verifiable Credential (POST /v1/credentials).
    Issue(CredentialIssueArgs),
    /// List credentials, oldest first (GET /v1/credentials).
    List(CredentialListArgs),
    /// Show one credential (GET /v1/credentials/{credential_id}).
    Get {
        /// The credential id (`urn:uuid:…`).
        credential_id: String,
    },
    /// Check a stored credential; exits with 1 when it is not valid.
    Verify {
        /// The credential id.
        credential_id: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Check a credential document from a file (`-` for stdin), wherever it
    /// was issued; exits with 1 when it is not valid.
    VerifyExternal {
        /// The credential as JSON.
        file: PathBuf,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Revoke a credential (DELETE /v1/credentials/{credential_id}).
    Revoke {
        /// The credential id.
        credential_id: String,
        /// Why it is revoked.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Flags of `attestix credential issue`; they mirror the body's fields.
#[derive(Debug, Args)]
pub struct CredentialIssueArgs {
    /// The subject, usually an agent id (`subject_id`).
    #[arg(long)]
    pub subject: String,
    /// The credential type (`credential_type`), e.g. AgentIdentityCredential.
    #[arg(long = "type", value_name = "TYPE")]
    pub credential_type: String,
    /// The issuer's name (`issuer_name`).
    #[arg(long)]
    pub issuer: String,
    /// A claim as key=value; repeat for several. The value is read as JSON when
    /// it parses (`level=2`, `ok=true`, `tags=["a"]`), otherwise as a string
    /// (`role=reporter`); quote it to force a string (`code="007"`).
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim, conflicts_with = "claims_file")]
    pub claims: Vec<Claim>,
    /// A file holding the claims as one JSON object (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub claims_file: Option<PathBuf>,
    /// Days until the credential expires, 1 to 36500 (the server's default is 365).
    #[arg(long)]
    pub expiry_days: Option<i64>,
    /// The Idempotency-Key.
    #[command(flatten)]
    pub idempotency: IdempotencyArgs,
}

/// One `--claim key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The claim's name.
    pub key: String,
    /// Its value: the JSON the text parses as, or the text as a string.
    pub value: serde_json::Value,
}

/// Flags of `attestix credential list`.
#[derive(Debug, Args)]
pub struct CredentialListArgs {
    /// Only credentials about this agent (`agent_id`).
    #[arg(long = "agent", value_name = "AGENT_ID")]
    pub agent_id: Option<String>,
    /// Only credentials of this type (`credential_type`).
    #[arg(long = "type", value_name = "TYPE")]
    pub credential_type: Option<String>,
    /// Only credentials that are neither revoked nor expired.
    #[arg(long)]
    pub valid_only: bool,
    /// Paging.
    #[command(flatten)]
    pub page: PageArgs,
}

/// `attestix presentation …`
#[derive(Debug, Args)]
pub struct PresentationArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: PresentationCommand,
}

/// The presentation subcommands.
#[derive(Debug, Subcommand)]
pub enum PresentationCommand {
    /// Bundle an agent's credentials into a signed presentation (POST /v1/presentations).
    Create {
        /// The holder: the agent every credential is about (`agent_id`).
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// A credential to present; repeat for several (`credential_ids`).
        #[arg(long = "credential", value_name = "CREDENTIAL_ID", required = true)]
        credential_ids: Vec<String>,
        /// The intended verifier's DID (`audience_did`; becomes `domain`).
        #[arg(long = "audience", value_name = "DID")]
        audience_did: Option<String>,
        /// The verifier's challenge nonce.
        #[arg(long)]
        challenge: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Check a presentation from a file (`-` for stdin); exits with 1 when it is
    /// not valid.
    Verify {
        /// The presentation as JSON.
        file: PathBuf,
        /// The challenge the verifier expects.
        #[arg(long)]
        challenge: Option<String>,
        /// The domain the verifier expects.
        #[arg(long)]
        domain: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
}

/// `attestix delegation …`
#[derive(Debug, Args)]
pub struct DelegationArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: DelegationCommand,
}

/// The delegation subcommands.
#[derive(Debug, Subcommand)]
pub enum DelegationCommand {
    /// Grant capabilities from one agent to another as a signed token
    /// (POST /v1/delegations); prints the token on stdout.
    Create(DelegationCreateArgs),
    /// Check a token and its whole proof chain (POST /v1/delegations/verify);
    /// exits with 1 when it is not valid.
    Verify {
        /// The token (`-` reads it from stdin).
        token: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// List delegations, oldest first (GET /v1/delegations).
    List(DelegationListArgs),
    /// Revoke a delegation (DELETE /v1/delegations/{jti}); every token chained
    /// to it stops verifying too.
    Revoke {
        /// The delegation's jti.
        jti: String,
        /// Why it is revoked.
        #[arg(long)]
        reason: Option<String>,
        /// The Idempotency-Key: a retried revocation replays its first answer.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
}

/// Flags of `attestix delegation create`; they mirror the body's fields.
#[derive(Debug, Args)]
pub struct DelegationCreateArgs {
    /// The agent granting the capabilities (`issuer_agent_id`): an identity of
    /// yours; with --parent-token, the parent's audience.
    #[arg(long)]
    pub issuer: String,
    /// The agent receiving them (`audience_agent_id`).
    #[arg(long)]
    pub audience: String,
    /// A capability granted; repeat for several.
    #[arg(long = "capability", value_name = "CAPABILITY")]
    pub capabilities: Vec<String>,
    /// Hours until the delegation expires, 1 to 87600 (the server's default is 24).
    #[arg(long)]
    pub expiry_hours: Option<i64>,
    /// The token this one is chained to (`-` reads it from stdin); the new
    /// capabilities must be a subset of its own.
    #[arg(long, value_name = "TOKEN")]
    pub parent_token: Option<String>,
    /// The Idempotency-Key.
    #[command(flatten)]
    pub idempotency: IdempotencyArgs,
}

/// Which side of a delegation `--agent` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DelegationRoleArg {
    /// The agent granted it.
    Issuer,
    /// The agent received it.
    Audience,
    /// Either side.
    Any,
}

/// Flags of `attestix delegation list`.
#[derive(Debug, Args)]
pub struct DelegationListArgs {
    /// Only delegations involving this agent (`agent_id`).
    #[arg(long = "agent", value_name = "AGENT_ID")]
    pub agent_id: Option<String>,
    /// Which side of the delegation the agent is on.
    #[arg(long, value_enum, requires = "agent_id")]
    pub role: Option<DelegationRoleArg>,
    /// Include expired delegations.
    #[arg(long)]
    pub include_expired: bool,
    /// Include revoked delegations.
    #[arg(long)]
    pub include_revoked: bool,
    /// Paging.
    #[command(flatten)]
    pub page: PageArgs,
}

/// `attestix reputation …`
#[derive(Debug, Args)]
pub struct ReputationArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ReputationCommand,
}

/// `attestix anchor …`
#[derive(Debug, Args)]
pub struct AnchorCliArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: AnchorCommand,
}

/// The anchor subcommands.
#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Anchor an identity's hash on chain (POST /v1/blockchain/anchor/identity).
    Identity {
        /// The agent.
        agent_id: String,
        /// The Idempotency-Key: a retry with it never sends a second transaction.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Anchor a credential's hash on chain (POST /v1/blockchain/anchor/credential).
    Credential {
        /// The credential (`urn:uuid:…`).
        credential_id: String,
        /// The Idempotency-Key: a retry with it never sends a second transaction.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Anchor the Merkle root of an agent's action log (POST
    /// /v1/blockchain/anchor/audit-batch).
    #[command(name = "audit-batch")]
    AuditBatch {
        /// The agent.
        agent_id: String,
        /// First instant, inclusive (RFC 3339 date or date-time).
        #[arg(long)]
        start_date: Option<String>,
        /// Last instant, inclusive (RFC 3339 date or date-time).
        #[arg(long)]
        end_date: Option<String>,
        /// The Idempotency-Key: a retry with it never sends a second transaction.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Check an anchor on chain against a hash (POST /v1/blockchain/verify/{anchor_id});
    /// exits 1 when it does not verify.
    Verify {
        /// The anchor (`anchor:…`).
        anchor_id: String,
        /// The SHA-256 hex the artifact should have.
        #[arg(long)]
        artifact_hash: String,
    },
    /// The anchors about an agent (GET /v1/blockchain/anchors/{agent_id}).
    List {
        /// The agent.
        agent_id: String,
    },
    /// What one anchor costs now (GET /v1/blockchain/estimate-cost).
    #[command(name = "estimate-cost")]
    EstimateCost {
        /// identity, credential, declaration or audit_batch.
        #[arg(long, default_value = "identity")]
        artifact_type: String,
    },
}

/// An interaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// Weighs 1.
    Success,
    /// Weighs 0.5.
    Partial,
    /// Weighs 0.2.
    Timeout,
    /// Weighs 0.
    Failure,
}

/// The reputation subcommands.
#[derive(Debug, Subcommand)]
pub enum ReputationCommand {
    /// Record an interaction (POST /v1/reputation/interactions); prints the new score.
    Record {
        /// The agent being evaluated.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// The other party.
        #[arg(long = "counterparty", value_name = "ID")]
        counterparty_id: String,
        /// How it went.
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        /// The category (the server's default is `general`).
        #[arg(long)]
        category: Option<String>,
        /// Free text.
        #[arg(long)]
        details: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// An agent's score and breakdown per category (GET /v1/reputation/{agent_id}).
    Show {
        /// The agent.
        agent_id: String,
    },
    /// Agents by score, highest first (GET /v1/reputation).
    Query {
        /// Lowest score, 0 to 1.
        #[arg(long)]
        min_score: Option<f64>,
        /// Highest score, 0 to 1.
        #[arg(long)]
        max_score: Option<f64>,
        /// Fewest interactions.
        #[arg(long)]
        min_interactions: Option<u64>,
        /// Only this category's interactions count.
        #[arg(long)]
        category: Option<String>,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `attestix provenance …`
#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ProvenanceCommand,
}

/// The provenance subcommands.
#[derive(Debug, Subcommand)]
pub enum ProvenanceCommand {
    /// Log an action (POST /v1/provenance/actions); prints its log id.
    Log {
        /// The agent that acted.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// `inference`, `delegation`, `data_access` or `external_call`.
        #[arg(long)]
        action_type: String,
        /// What went in.
        #[arg(long)]
        input_summary: Option<String>,
        /// What came out.
        #[arg(long)]
        output_summary: Option<String>,
        /// Why.
        #[arg(long)]
        decision_rationale: Option<String>,
        /// A human overrode the agent.
        #[arg(long)]
        human_override: bool,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Record a dataset an agent's model was trained on
    /// (POST /v1/provenance/training-data, Article 10); prints its entry id.
    Training {
        /// The agent the data trained.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// The dataset's name.
        #[arg(long = "dataset", value_name = "NAME")]
        dataset_name: String,
        /// Where the dataset can be had.
        #[arg(long)]
        source_url: Option<String>,
        /// The dataset's version.
        #[arg(long)]
        dataset_version: Option<String>,
        /// Its license.
        #[arg(long)]
        license: Option<String>,
        /// A category of data it holds; repeat for several.
        #[arg(long = "category", value_name = "CATEGORY")]
        data_categories: Vec<String>,
        /// It holds personal data.
        #[arg(long)]
        contains_personal_data: bool,
        /// The data governance measures applied (Article 10).
        #[arg(long = "governance", value_name = "TEXT")]
        data_governance_measures: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Record the model an agent runs (POST /v1/provenance/model-lineage,
    /// Article 11); prints its entry id.
    Lineage {
        /// The agent the model serves.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// The base model.
        #[arg(long)]
        base_model: String,
        /// The base model's provider.
        #[arg(long = "provider", value_name = "PROVIDER")]
        base_model_provider: Option<String>,
        /// How it was fine-tuned.
        #[arg(long)]
        fine_tuning_method: Option<String>,
        /// An evaluation metric as key=value (the value read as JSON when it
        /// parses, as `--claim` does); repeat for several.
        #[arg(long = "metric", value_name = "KEY=VALUE", value_parser = parse_claim)]
        evaluation_metrics: Vec<Claim>,
        /// A training setting as key=value, read as `--metric` is; repeat for several.
        #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_claim)]
        training_config: Vec<Claim>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// An agent's action log, oldest first (GET /v1/provenance/audit-trail/{agent_id}).
    Trail {
        /// The agent.
        agent_id: String,
        /// Only this action type.
        #[arg(long)]
        action_type: Option<String>,
        /// Only entries at or after this date or instant (RFC 3339).
        #[arg(long)]
        start_date: Option<String>,
        /// Only entries at or before this date or instant (RFC 3339).
        #[arg(long)]
        end_date: Option<String>,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Walk an agent's action chain; exits with 1 when it is broken.
    Verify {
        /// The agent.
        agent_id: String,
    },
    /// An agent's provenance (GET /v1/provenance/{agent_id}): training data, model
    /// lineage, log and event counts, the newest entries.
    Show {
        /// The agent.
        agent_id: String,
    },
}

/// `attestix compliance …`
#[derive(Debug, Args)]
pub struct ComplianceArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ComplianceCommand,
}

/// The compliance subcommands.
#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Create, change, show and list compliance profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The recorded-evidence checklist of an agent's profile
    /// (GET /v1/compliance/profiles/{agent_id}/status); exits with 1 while incomplete.
    Status {
        /// The agent.
        agent_id: String,
    },
    /// Record a conformity assessment (POST /v1/compliance/assessments, Article 43).
    Assess {
        /// The agent assessed.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// Who assessed.
        #[arg(long = "type", value_enum)]
        assessment_type: AssessmentTypeArg,
        /// The assessor or notified body.
        #[arg(long)]
        assessor: String,
        /// The result.
        #[arg(long, value_enum)]
        result: AssessmentResultArg,
        /// Findings and notes.
        #[arg(long)]
        findings: Option<String>,
        /// CE marking is eligible (kept only with a pass).
        #[arg(long)]
        ce_marking_eligible: bool,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Generate the Annex V declaration of conformity and its credential
    /// (POST /v1/compliance/declarations).
    Declare {
        /// The agent.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
}

/// An assessment's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AssessmentTypeArg {
    /// Internal control (Annex VI).
    #[value(name = "self")]
    SelfAssessment,
    /// A notified body (Annex VII).
    ThirdParty,
}

/// An assessment's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AssessmentResultArg {
    /// Passed.
    Pass,
    /// Passed with conditions.
    Conditional,
    /// Failed.
    Fail,
}

/// The text fields of a profile, as options.
#[derive(Debug, Clone, Args)]
pub struct ProfileTextArgs {
    /// What the system is for.
    #[arg(long)]
    pub intended_purpose: Option<String>,
    /// How transparency obligations are met.
    #[arg(long)]
    pub transparency_obligations: Option<String>,
    /// Human oversight measures (needed for high risk).
    #[arg(long)]
    pub human_oversight_measures: Option<String>,
    /// The provider's address.
    #[arg(long)]
    pub provider_address: Option<String>,
    /// The EU authorised representative.
    #[arg(long)]
    pub authorised_representative: Option<String>,
}

/// The profile subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Create an agent's profile (POST /v1/compliance/profiles).
    Create {
        /// The agent, an identity of yours.
        #[arg(long = "agent", value_name = "AGENT_ID")]
        agent_id: String,
        /// `minimal`, `limited` or `high`.
        #[arg(long = "risk")]
        risk_category: String,
        /// The provider's name.
        #[arg(long = "provider")]
        provider_name: String,
        /// The text fields.
        #[command(flatten)]
        text: ProfileTextArgs,
        /// The Annex III point, 1 to 8 (high risk).
        #[arg(long)]
        annex_iii_category: Option<i64>,
        /// An Annex III carve-out that still needs a notified body.
        #[arg(long)]
        annex_iii_exception: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Change an agent's profile (PATCH /v1/compliance/profiles/{agent_id}).
    Update {
        /// The agent.
        agent_id: String,
        /// A new provider name.
        #[arg(long = "provider")]
        provider_name: Option<String>,
        /// The text fields.
        #[command(flatten)]
        text: ProfileTextArgs,
        /// Whether the risk management system is documented (Article 9).
        #[arg(long, value_name = "BOOL")]
        risk_management_documented: Option<bool>,
        /// Whether the post-market monitoring plan is documented (Article 72).
        #[arg(long, value_name = "BOOL")]
        post_market_monitoring_documented: Option<bool>,
        /// Whether the serious incident reporting process is documented (Article 73).
        #[arg(long, value_name = "BOOL")]
        incident_reporting_documented: Option<bool>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// An agent's profile (GET /v1/compliance/profiles/{agent_id}).
    Show {
        /// The agent.
        agent_id: String,
    },
    /// Your profiles, oldest first (GET /v1/compliance/profiles).
    List {
        /// Only this risk category.
        #[arg(long)]
        risk_category: Option<String>,
        /// Only profiles with a declaration of conformity.
        #[arg(long)]
        compliant_only: bool,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `attestix audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk your audit chain (GET /v1/audit/verify); exits with 1 when it is broken.
    Verify,
}

/// `attestix agent-card …`
#[derive(Debug, Args)]
pub struct AgentCardArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: AgentCardCommand,
}

/// The agent-card subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCardCommand {
    /// Generate a card to host at /.well-known/agent.json (POST /v1/agent-cards/generate).
    Generate {
        /// The agent's name.
        #[arg(long)]
        name: String,
        /// Its base URL.
        #[arg(long)]
        url: String,
        /// What it does.
        #[arg(long)]
        description: Option<String>,
        /// A skill as `id=name`; repeat for several.
        #[arg(long = "skill", value_name = "ID=NAME")]
        skills: Vec<String>,
        /// Its version (the server's default is 1.0.0).
        #[arg(long = "card-version", value_name = "VERSION")]
        card_version: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Parse a card from a file (`-` for stdin) (POST /v1/agent-cards/parse).
    Parse {
        /// The card as JSON.
        file: PathBuf,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Fetch and parse an agent's card from its https base URL
    /// (POST /v1/agent-cards/discover).
    Discover {
        /// The agent's https base URL.
        base_url: String,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
}

/// `attestix did …`
#[derive(Debug, Args)]
pub struct DidArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: DidCommand,
}

/// The DID subcommands.
#[derive(Debug, Subcommand)]
pub enum DidCommand {
    /// Create a did:key with a new key pair (POST /v1/dids/key); prints the DID.
    CreateKey {
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Create a did:web document to host (POST /v1/dids/web); prints the DID and
    /// where to host its document.
    CreateWeb {
        /// The host that will serve it (`example.com`, `example.com%3A8443`).
        #[arg(long)]
        domain: String,
        /// An optional path (`agents/bot`).
        #[arg(long)]
        path: Option<String>,
        /// The Idempotency-Key.
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Resolve a DID to its document (GET /v1/dids/resolve/{did}).
    Resolve {
        /// The DID.
        did: String,
    },
}

/// `attestix health`
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `attestix mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// How to reach the Attestix server the tools call.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Serve MCP's streamable HTTP transport on this address (at `/mcp`)
    /// instead of stdio; port 0 picks a free port. The address is printed on
    /// stdout as `listening on http://ADDR/mcp`.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

/// A duration such as `2s`, `15m` or `24h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    attestix_server::parse_duration(text)
}

/// An Idempotency-Key as the server accepts it: 1 to 255 visible ASCII characters.
/// An Idempotency-Key as the server accepts it: 1 to 255 visible ASCII characters.
pub fn parse_idempotency_key(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 255 {
        return Err(format!(
            "an Idempotency-Key has 1 to 255 characters (this one has {})",
            text.chars().count()
        ));
    }
    if let Some(bad) = text.chars().find(|c| !('\x21'..='\x7e').contains(c)) {
        return Err(format!(
            "an Idempotency-Key is visible ASCII only, without spaces (found {bad:?})"
        ));
    }
    Ok(text.to_owned())
}

/// `key=value`, the value read as JSON when it parses and as a string otherwise.
pub fn parse_claim(text: &str) -> Result<Claim, String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("a claim is written key=value (got `{text}`)"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the claim `{text}` has no name before `=`"));
    }
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok(Claim {
        key: key.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use serde_json::json;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn claim_values_are_json_when_they_parse_and_strings_otherwise() {
        let claim = |text| parse_claim(text).map(|c| (c.key, c.value));
        assert_eq!(claim("level=2"), Ok(("level".into(), json!(2))));
        assert_eq!(claim("ok=true"), Ok(("ok".into(), json!(true))));
        assert_eq!(
            claim("role=reporter"),
            Ok(("role".into(), json!("reporter")))
        );
        assert_eq!(claim("code=\"007\""), Ok(("code".into(), json!("007"))));
        assert_eq!(claim("expr=a=b"), Ok(("expr".into(), json!("a=b"))));
        assert_eq!(claim("empty="), Ok(("empty".into(), json!(""))));
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=x").is_err());
    }

    #[test]
    fn idempotency_keys_follow_the_servers_rule() {
        assert!(parse_idempotency_key("order-42").is_ok());
        assert!(parse_idempotency_key("").is_err());
        assert!(parse_idempotency_key("has space").is_err());
        assert!(parse_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn client_options_do_not_reach_serve() {
        let cli = Cli::try_parse_from(["attestix", "serve", "--api-key", "legacy"])
            .expect("serve parses");
        match cli.command {
            Command::Serve(args) => assert_eq!(args.legacy_api_key.as_deref(), Some("legacy")),
            other => panic!("expected serve, got {other:?}"),
        }
        assert!(Cli::try_parse_from(["attestix", "serve", "--server", "http://x"]).is_err());
        let cli = Cli::try_parse_from([
            "attestix",
            "identity",
            "create",
            "--name",
            "Bot",
            "--server",
            "http://h:1",
            "--json",
        ])
        .expect("client options parse after the subcommand");
        let Command::Identity(args) = cli.command else {
            panic!("expected identity")
        };
        assert_eq!(args.client.server, "http://h:1");
        assert!(args.client.json);
    }
}
