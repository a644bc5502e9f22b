//! `Idempotency-Key` for any tower or axum HTTP service: POST endpoints that are
//! safe to retry.
//!
//! A client sends `Idempotency-Key: <unique value>` with a POST. The first request
//! with that key runs the handler and its response is stored under
//! (scope, key); a retry with the same key and the same request gets the stored
//! response back, byte for byte, with `Idempotency-Replayed: true`, and the handler
//! does not run again. The scope is the authenticated caller, supplied by the host.
//!
//! ```
//! use axum::{routing::post, Router};
//! use idempotency::{IdempotencyLayer, MemoryStore};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = IdempotencyLayer::new(MemoryStore::default())
//!     // The scope hook names the authenticated principal; here, a header that an
//!     // authentication layer in front of this one has already checked.
//!     .scope(|request| request.headers.get("x-principal")?.to_str().ok().map(str::to_owned))
//!     .lease(Duration::from_secs(30))
//!     .problem_type_base("https://example.com/problems/idempotency/");
//! let app = Router::new()
//!     .route("/orders", post(|| async { "order #1 created" }))
//!     .layer(layer);
//!
//! let request = || {
//!     http::Request::post("/orders")
//!         .header("x-principal", "alice")
//!         .header("idempotency-key", "order-2026-001")
//!         .body(axum::body::Body::empty())
//!         .unwrap()
//! };
//! let first = app.clone().oneshot(request()).await.unwrap();
//! let retry = app.clone().oneshot(request()).await.unwrap();
//! assert!(first.headers().get("idempotency-replayed").is_none());
//! assert_eq!(retry.headers()["idempotency-replayed"], "true");
//! # }
//! ```
//!
//! # The contract
//!
//! | situation | answer | handler runs |
//! |---|---|---|
//! | no `Idempotency-Key` (or a GET, HEAD, OPTIONS, TRACE) | passed through untouched | yes |
//! | no key on a *key required* service | `400` problem | no |
//! | malformed or repeated key | `400` problem naming the rule | no |
//! | body over the limit (1 MiB) | `413` problem | no |
//! | new key | executes; a 2xx response is stored, anything else releases the key | once |
//! | same key, same request, completed | stored response replayed + `Idempotency-Replayed: true` | no |
//! | same key, different request | `409` problem (`422` with [`MismatchStatus::UnprocessableContent`]) | no |
//! | same key, still running | `409` problem with `Retry-After`, or wait and replay ([`InFlightBehavior::Wait`]) | no |
//! | same key, running worker's lease ended (it died) | taken over with a new fencing token | yes |
//! | store unavailable | `503` problem: fail closed | no |
//!
//! Choices where the specification leaves room, written down:
//! - "The same request" is the [`Fingerprint`]: method, path, query and body. JSON
//!   bodies are compared in canonical form; headers are not part of it.
//! - Keys are 1–255 characters of visible ASCII, bare (`abc`) or as a quoted
//!   Structured Field string (`"abc"`).
//! - A response is stored only if the policy accepts its status (2xx by default),
//!   it sets no cookie, its body size is known (not streaming) and at most
//!   1 MiB. Otherwise it goes to the client and the key is released.
//! - Replays keep every header in order, repeated ones included, minus hop-by-hop
//!   headers and `Date`.
//! - The handler runs on a spawned task: a client that disconnects does not cancel
//!   it, and its response is stored for the retry. A handler that panics or fails
//!   releases the key.
//! - Retention (24 h) counts from reservation; the lease (60 s) bounds how long a
//!   dead worker blocks its key. A handler that runs longer than the lease can be
//!   duplicated by a retry that takes over: set the lease above the slowest handler.
//! - If storing the response fails after the handler ran, the response still goes
//!   to the client and the key stays in flight until its lease ends. Hosts that
//!   create resources should keep a recovery point (see [`IdempotencyContext`]).
//! - Without a scope ([`IdempotencyLayer::scope`]) keyed requests are refused (500):
//!   callers are never silently put in one shared scope.
//! - Problem `type` URIs are the host's base ([`IdempotencyLayer::problem_type_base`])
//!   followed by a [`ProblemKind::slug`]; `about:blank` when no base is set.
//!
//! # Stores
//!
//! [`MemoryStore`] is the engine: reservations, leases, takeovers and fencing, in
//! process memory. With a [`CompletionLog`] ([`MemoryStore::with_log`]) the same
//! engine is the embedded, durable store: its completions are written behind to the
//! log and read back when memory no longer holds them (`idempotency-sql` has a SQLite
//! log, and PostgreSQL for many instances). Any backend implementing [`Store`] can be
//! checked against the shared conformance suite with the `testkit` feature and
//! `store_conformance_tests!`.
//!
//! # Observability
//!
//! With the `metrics` feature (on by default), through the `metrics` facade, so that
//! whatever recorder the host installs (for example `metrics-exporter-prometheus`)
//! receives them:
//!
//! - `idempotency_requests_total{outcome}`: one per keyed request (and per rejected
//!   key), by outcome (`executed`, `replayed`, `mismatch`, `in_flight`,
//!   `invalid_key`, `not_stored`, `store_error`);
//! - `idempotency_not_stored_total{reason}`: executions whose response was not kept;
//! - `idempotency_store_duration_seconds{operation}`: store latency;
//! - `idempotency_memory_records` / `idempotency_memory_bytes`: held by a
//!   [`MemoryStore`].
//!
//! Every keyed request gets a
//! tracing span `idempotency` at DEBUG level (like tower-http's request spans) with
//! `key_hash` (a short hash, never the key) and `outcome`. Warnings and errors about a
//! keyed request carry `key_hash` themselves, so they keep it at INFO.

mod config;
#[cfg(feature = "fuzzing")]
pub mod fingerprint;
#[cfg(not(feature = "fuzzing"))]
mod fingerprint;
mod future;
mod key;
mod layer;
mod metrics;
mod problem;
mod service;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;
use std::time::Duration;

pub use config::{
    Clock, IdempotencyConfig, InFlightBehavior, ManualClock, MismatchStatus, ScopeResolver,
    StorePolicy, SystemClock,
};
pub use fingerprint::Fingerprint;
pub use future::ResponseFuture;
pub use key::{IdempotencyKey, KeyError, IDEMPOTENCY_KEY, MAX_KEY_LEN};
pub use layer::IdempotencyLayer;
pub use problem::{ProblemKind, PROBLEM_JSON};
pub use service::{Idempotency, IdempotencyContext, IDEMPOTENCY_REPLAYED};
pub use store::{
    CompletedRecord, CompletionLog, ExistingRecord, FencingToken, LogPosition, MemoryStore,
    MemoryStoreConfig, RecordId, RecordState, ReserveOutcome, ReserveRequest, Store, StoreError,
    StoredResponse,
};

/// Spawns a task that purges expired records every `every`, for any store.
///
/// Each pass costs time proportional to what expired. Abort the returned handle
/// (or drop the runtime) to stop it.
pub fn spawn_purger(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.purge_expired(clock.now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired idempotency records purged"),
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "purging expired idempotency records failed"
                ),
            }
        }
    })
}
