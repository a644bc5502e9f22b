//! Prometheus-style metrics through the `metrics` facade: whatever recorder the
//! host installs (for example `metrics-exporter-prometheus`) receives them.
//!
//! - `idempotency_requests_total{outcome}`: one per keyed request (and per rejected
//!   key), by outcome.
//! - `idempotency_not_stored_total{reason}`: executions whose response was not kept.
//! - `idempotency_store_duration_seconds{operation}`: store latency.
//! - `idempotency_memory_records` / `idempotency_memory_bytes`: held by a
//!   [`MemoryStore`](crate::MemoryStore).

use std::future::Future;
use std::time::Instant;

/// The outcome of one keyed request, the label of `idempotency_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its response was stored.
    Executed,
    /// A stored response was replayed.
    Replayed,
    /// The key was reused with a different request.
    Mismatch,
    /// The key was in flight; 409.
    InFlight,
    /// The key (or the request carrying it) was rejected before the store.
    InvalidKey,
    /// The handler ran but its response was not stored (status, cookie, streaming,
    /// size, lost lease).
    NotStored,
    /// The store failed; 503.
    StoreError,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executed => "executed",
            Self::Replayed => "replayed",
            Self::Mismatch => "mismatch",
            Self::InFlight => "in_flight",
            Self::InvalidKey => "invalid_key",
            Self::NotStored => "not_stored",
            Self::StoreError => "store_error",
        }
    }
}

pub(crate) fn count(outcome: Outcome) {
    metrics::counter!("idempotency_requests_total", "outcome" => outcome.as_str()).increment(1);
}

pub(crate) fn count_not_stored(reason: &'static str) {
    count(Outcome::NotStored);
    metrics::counter!("idempotency_not_stored_total", "reason" => reason).increment(1);
}

pub(crate) async fn timed<T>(operation: &'static str, future: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let output = future.await;
    metrics::histogram!("idempotency_store_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    output
}

pub(crate) fn memory_store_size(records: usize, bytes: usize) {
    metrics::gauge!("idempotency_memory_records").set(records as f64);
    metrics::gauge!("idempotency_memory_bytes").set(bytes as f64);
}
