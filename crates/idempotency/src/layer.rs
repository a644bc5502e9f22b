//! The [`IdempotencyLayer`], which wraps a service in [`Idempotency`].

use std::fmt;
use std::sync::Arc;

use crate::metrics::LayerMetrics;

use tower::Layer;

use crate::config::IdempotencyConfig;
use crate::service::Idempotency;
use crate::store::{MemoryStore, Store};

/// What every clone of the layer and its services shares.
pub(crate) struct Shared {
    pub(crate) config: IdempotencyConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: LayerMetrics,
}

/// Applies the `Idempotency-Key` contract to the wrapped service.
///
/// Put it *inside* authentication, so that [`IdempotencyConfig::with_scope`] can
/// name the authenticated principal of each request.
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl IdempotencyLayer {
    /// A layer over `store` with the given settings.
    pub fn new(store: impl Store, config: IdempotencyConfig) -> Self {
        Self::with_shared_store(Arc::new(store), config)
    }

    /// A layer over a store that the host also uses elsewhere (for example to purge it).
    pub fn with_shared_store(store: Arc<dyn Store>, config: IdempotencyConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                store,
                metrics: LayerMetrics::default(),
            }),
        }
    }

    /// A layer over a default [`MemoryStore`] with default settings: one scope for
    /// every caller, so use it only where there is no authentication.
    pub fn in_memory() -> Self {
        Self::new(MemoryStore::default(), IdempotencyConfig::default())
    }

    /// The store behind the layer.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The layer's settings.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.shared.config
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.shared.clone())
    }
}
