//! The [`IdempotencyLayer`], which wraps a service in [`Idempotency`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, StatusCode};
use tower_layer::Layer;

use crate::config::{Clock, IdempotencyConfig, InFlightBehavior, MismatchStatus};
use crate::service::{Idempotency, Shared};
use crate::store::Store;

/// Applies the `Idempotency-Key` contract to the wrapped service.
///
/// Built like tower-http's layers: `IdempotencyLayer::new(store)` and one method per
/// setting, each documented on [`IdempotencyConfig`] (the settings as one value, for
/// hosts that build them elsewhere: [`IdempotencyLayer::with_config`]). Put it
/// *inside* authentication, so that [`IdempotencyLayer::scope`] can name the
/// authenticated principal of each request; without a scope, keyed requests are
/// refused.
#[derive(Clone)]
pub struct IdempotencyLayer {
    store: Arc<dyn Store>,
    config: IdempotencyConfig,
}

impl IdempotencyLayer {
    /// A layer over `store` with the default settings (and no scope yet).
    pub fn new(store: impl Store) -> Self {
        Self::with_config(Arc::new(store), IdempotencyConfig::default())
    }

    /// A layer over a store the host also uses elsewhere (to purge or flush it), with
    /// settings built as one value.
    pub fn with_config(store: Arc<dyn Store>, config: IdempotencyConfig) -> Self {
        Self { store, config }
    }

    /// Names the scope (authenticated principal) of a request; see
    /// [`IdempotencyConfig::with_scope`].
    pub fn scope(
        self,
        resolver: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.map(|config| config.with_scope(resolver))
    }

    /// How long a reservation is exclusive; see [`IdempotencyConfig::with_lease`].
    pub fn lease(self, lease: Duration) -> Self {
        self.map(|config| config.with_lease(lease))
    }

    /// How long records are kept; see [`IdempotencyConfig::with_retention`].
    pub fn retention(self, retention: Duration) -> Self {
        self.map(|config| config.with_retention(retention))
    }

    /// The methods intercepted; see [`IdempotencyConfig::with_methods`].
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.map(|config| config.with_methods(methods))
    }

    /// Requires a key; see [`IdempotencyConfig::with_key_required`].
    pub fn key_required(self, policy_uri: Option<String>) -> Self {
        self.map(|config| config.with_key_required(policy_uri))
    }

    /// The status for a reused key; see [`IdempotencyConfig::with_mismatch_status`].
    pub fn mismatch_status(self, status: MismatchStatus) -> Self {
        self.map(|config| config.with_mismatch_status(status))
    }

    /// What duplicates do meanwhile; see [`IdempotencyConfig::with_in_flight`].
    pub fn in_flight(self, behavior: InFlightBehavior) -> Self {
        self.map(|config| config.with_in_flight(behavior))
    }

    /// The request body bound; see [`IdempotencyConfig::with_max_request_body`].
    pub fn max_request_body(self, bytes: usize) -> Self {
        self.map(|config| config.with_max_request_body(bytes))
    }

    /// The stored response bound; see [`IdempotencyConfig::with_max_response_body`].
    pub fn max_response_body(self, bytes: usize) -> Self {
        self.map(|config| config.with_max_response_body(bytes))
    }

    /// Which statuses are stored; see [`IdempotencyConfig::with_store_policy`].
    pub fn store_policy(self, policy: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.map(|config| config.with_store_policy(policy))
    }

    /// The base of problem `type` URIs; see
    /// [`IdempotencyConfig::with_problem_type_base`].
    pub fn problem_type_base(self, base: impl Into<String>) -> Self {
        self.map(|config| config.with_problem_type_base(base))
    }

    /// The clock; see [`IdempotencyConfig::with_clock`].
    pub fn clock(self, clock: impl Clock) -> Self {
        self.map(|config| config.with_clock(clock))
    }

    /// The store behind the layer.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The layer's settings.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    fn map(mut self, change: impl FnOnce(IdempotencyConfig) -> IdempotencyConfig) -> Self {
        self.config = change(self.config);
        self
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(
            inner,
            Arc::new(Shared::new(self.store.clone(), self.config.clone())),
        )
    }
}
