//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use attestix_core::SigningKey;

use crate::auth::AuthSettings;
use crate::recovery::RecoveryIds;
use crate::storage::Storage;

/// The application state behind every route.
pub struct AppState {
    /// Identities, credentials, API keys.
    pub storage: Arc<dyn Storage>,
    /// The server's Ed25519 key: it signs every document the server issues.
    pub signer: SigningKey,
    /// The server's key for delegation tokens, remembering verified signatures.
    pub delegation_signatures: crate::checked_signatures::CheckedSignatures,
    /// Seals the private keys of the DIDs the server creates.
    pub data_key: crate::data_key::DataKey,
    /// The outbound HTTPS fetcher (did:web resolution).
    pub fetcher: crate::fetch::Fetcher,
    /// The universal resolver's base URL, for DID methods other than key and web.
    pub universal_resolver: Option<url::Url>,
    /// Authentication settings.
    pub auth: AuthSettings,
    /// How long idempotency records live: a recovery point older than this
    /// belongs to an expired record and is not recovered.
    pub idempotency_retention: Duration,
    /// The status of a reused Idempotency-Key (409, or 422 in IETF mode), for the
    /// reuses a recovery point finds.
    pub key_reuse_status: axum::http::StatusCode,
    /// The largest response body the idempotency layer stores: a create whose
    /// document would be larger is refused before anything is written.
    pub max_response_bytes: usize,
    /// Derives the ids of resources created under an Idempotency-Key.
    pub recovery_ids: RecoveryIds,
    /// The idempotency layer's store, when keys are honoured (a purge erases the
    /// stored responses that mention the agent).
    pub idempotency: Option<Arc<dyn idempotency::Store>>,
    /// The chain client of blockchain anchoring, when it is configured.
    pub chain: Option<Arc<crate::chain::ChainClient>>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}
