//! The Attestix REST API: signed agent identities (UAITs), Verifiable
//! Credentials and Presentations, on axum, behind API-key authentication and the
//! [`idempotency`] layer, stored in SQLite (default) or PostgreSQL.
//!
//! ```no_run
//! use attestix_server::{Application, ServerConfig};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = ServerConfig {
//!     bind: "127.0.0.1:0".parse()?,
//!     data_dir: "attestix-data".into(),
//!     ..ServerConfig::default()
//! };
//! let app = Application::build(config).await?;
//! println!("listening on port {}", app.port());
//! if let Some(key) = app.first_admin_key() {
//!     println!("admin API key: {key}");
//! }
//! app.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Layers, outermost first: request id and tracing → metrics → body size limit →
//! authentication → idempotency → routes. Nothing unauthenticated reaches the
//! idempotency store; the idempotency scope is the caller's principal and tenant.

pub mod anchoring;
pub mod audit;
pub mod auth;
pub mod chain;
pub mod checked_signatures;
pub mod compliance;
pub mod config;
pub mod data_key;
pub mod error;
pub mod fetch;
pub mod openapi;
pub mod provenance;
pub mod purge;
pub mod recovery;
pub mod reputation;
pub mod routes;
pub mod signing_key;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;

pub use auth::{issue_api_key, Caller, IssuedApiKey};
pub use config::{
    parse_duration, IdempotencySettings, IdempotencyStoreChoice, ServerConfig, TlsFiles,
};
pub use error::{ApiError, Problem};
pub use openapi::ApiDoc;
pub use startup::{
    open_backends, open_storage, router, Application, Backends, DATABASE_FILE, IDEMPOTENCY_FILE,
};
