//! Prometheus-style metrics through the `metrics` facade: whatever recorder the
//! host installs (for example `metrics-exporter-prometheus`) receives them.
//!
//! - `idempotency_requests_total{outcome}`: one per keyed request (and per rejected
//!   key), by outcome.
//! - `idempotency_not_stored_total{reason}`: executions whose response was not kept.
//! - `idempotency_store_duration_seconds{operation}`: store latency.
//! - `idempotency_memory_records` / `idempotency_memory_bytes`: held by a
//!   [`MemoryStore`](crate::MemoryStore).

//!
//! Without the `metrics` feature (on by default) nothing is recorded and the calls
//! below cost nothing.

use std::future::Future;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use metrics::{Counter, Gauge, Histogram};

/// The outcome of one keyed request, the label of `idempotency_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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
    pub(crate) fn as_str(self) -> &'static str {
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

impl Outcome {
    const ALL: [Self; 7] = [
        Self::Executed,
        Self::Replayed,
        Self::Mismatch,
        Self::InFlight,
        Self::InvalidKey,
        Self::NotStored,
        Self::StoreError,
    ];
}

/// Why an execution's response was not kept, the label of
/// `idempotency_not_stored_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    /// The store policy refused the status (non-2xx by default).
    Status,
    /// The response sets a cookie.
    SetCookie,
    /// The body has no known length.
    Streaming,
    /// The body is over the size limit.
    TooLarge,
    /// The body failed while being read.
    BodyError,
    /// The inner service returned an error.
    HandlerError,
    /// The handler panicked.
    HandlerPanicked,
}

impl NotStored {
    const ALL: [Self; 7] = [
        Self::Status,
        Self::SetCookie,
        Self::Streaming,
        Self::TooLarge,
        Self::BodyError,
        Self::HandlerError,
        Self::HandlerPanicked,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::SetCookie => "set_cookie",
            Self::Streaming => "streaming",
            Self::TooLarge => "too_large",
            Self::BodyError => "body_error",
            Self::HandlerError => "handler_error",
            Self::HandlerPanicked => "handler_panicked",
        }
    }
}

/// A store call, the label of `idempotency_store_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreCall {
    Reserve,
    Complete,
    Release,
}

impl StoreCall {
    const ALL: [Self; 3] = [Self::Reserve, Self::Complete, Self::Release];

    fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Complete => "complete",
            Self::Release => "release",
        }
    }
}

/// The layer's metric handles.
///
/// Looking a handle up by name and labels costs a hash and a map probe in the
/// recorder on every call (several per keyed request); the `metrics` crate's advice is
/// to hold on to handles. They are registered on first use rather than when the layer
/// is built, so that a recorder installed after the layer (as servers often do) still
/// receives them.
#[derive(Default)]
pub(crate) struct LayerMetrics {
    #[cfg(feature = "metrics")]
    handles: OnceLock<Handles>,
}

#[cfg(feature = "metrics")]
struct Handles {
    outcomes: [Counter; Outcome::ALL.len()],
    not_stored: [Counter; NotStored::ALL.len()],
    store_duration: [Histogram; StoreCall::ALL.len()],
}

#[cfg(not(feature = "metrics"))]
impl LayerMetrics {
    pub(crate) fn count(&self, _outcome: Outcome) {}

    pub(crate) fn count_not_stored(&self, _reason: NotStored) {}

    pub(crate) async fn timed<T>(&self, _call: StoreCall, future: impl Future<Output = T>) -> T {
        future.await
    }
}

#[cfg(feature = "metrics")]
impl LayerMetrics {
    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| Handles {
            outcomes: Outcome::ALL.map(|outcome| {
                metrics::counter!("idempotency_requests_total", "outcome" => outcome.as_str())
            }),
            not_stored: NotStored::ALL.map(|reason| {
                metrics::counter!("idempotency_not_stored_total", "reason" => reason.as_str())
            }),
            store_duration: StoreCall::ALL.map(|call| {
                metrics::histogram!("idempotency_store_duration_seconds", "operation" => call.as_str())
            }),
        })
    }

    /// Counts one request with `outcome`.
    pub(crate) fn count(&self, outcome: Outcome) {
        self.handles().outcomes[outcome as usize].increment(1);
    }

    /// Counts an execution whose response was not kept, and why.
    pub(crate) fn count_not_stored(&self, reason: NotStored) {
        let handles = self.handles();
        handles.outcomes[Outcome::NotStored as usize].increment(1);
        handles.not_stored[reason as usize].increment(1);
    }

    /// Awaits `future`, recording how long the store `call` took.
    pub(crate) async fn timed<T>(&self, call: StoreCall, future: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = future.await;
        self.handles().store_duration[call as usize].record(started.elapsed().as_secs_f64());
        output
    }
}

/// The memory store's gauges, registered on first use as [`LayerMetrics`] are.
#[derive(Default)]
pub(crate) struct MemoryStoreGauges {
    #[cfg(feature = "metrics")]
    handles: OnceLock<(Gauge, Gauge)>,
}

impl MemoryStoreGauges {
    #[cfg(not(feature = "metrics"))]
    pub(crate) fn set(&self, _records: usize, _bytes: usize) {}

    #[cfg(feature = "metrics")]
    pub(crate) fn set(&self, records: usize, bytes: usize) {
        let (held, size) = self.handles.get_or_init(|| {
            (
                metrics::gauge!("idempotency_memory_records"),
                metrics::gauge!("idempotency_memory_bytes"),
            )
        });
        held.set(records as f64);
        size.set(bytes as f64);
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_handle_at_its_own_index() {
        // The handle arrays are indexed by discriminant; this is what makes that right.
        for (index, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index, "{outcome:?}");
        }
        for (index, reason) in NotStored::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{reason:?}");
        }
        for (index, call) in StoreCall::ALL.into_iter().enumerate() {
            assert_eq!(call as usize, index, "{call:?}");
        }
    }

    #[test]
    fn counts_reach_the_recorder_under_their_labels() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let layer = LayerMetrics::default();
        metrics::with_local_recorder(&recorder, || {
            layer.count(Outcome::Executed);
            layer.count(Outcome::Executed);
            layer.count(Outcome::Mismatch);
            layer.count_not_stored(NotStored::SetCookie);
        });
        let text = handle.render();
        for expected in [
            r#"idempotency_requests_total{outcome="executed"} 2"#,
            r#"idempotency_requests_total{outcome="mismatch"} 1"#,
            r#"idempotency_requests_total{outcome="not_stored"} 1"#,
            r#"idempotency_not_stored_total{reason="set_cookie"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
    }
}
