//! The [`Idempotency`] service: reserve, then replay or execute.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;
use tracing::Instrument;

use crate::config::IdempotencyConfig;
use crate::fingerprint::Fingerprint;
use crate::future::{DetachOnDrop, ResponseFuture};
use crate::key::{IdempotencyKey, IDEMPOTENCY_KEY};
use crate::metrics::{LayerMetrics, NotStored, Outcome, StoreCall};
use crate::problem::{self, problem_response, ProblemKind};
use crate::store::Store;
use crate::store::{
    ExistingRecord, FencingToken, RecordId, RecordState, ReserveOutcome, ReserveRequest,
    StoreError, StoredResponse,
};
use crate::InFlightBehavior;

/// The response header that marks a replayed response.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";

/// How soon a client is told to retry a request whose key is in flight.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The (scope, key) of the current request, inserted as a request extension for
/// handlers that execute under a key. A handler that stores it beside the resource
/// it creates, under a unique constraint, can answer a retry after a crash with the
/// resource already made (a *recovery point*).
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyContext {
    /// The record this execution owns.
    pub record: RecordId,
    /// `true` when this execution took over the key from a worker whose lease
    /// expired: that worker may have done part of the work already.
    pub took_over: bool,
    /// The fingerprint of this request. A host keeps it beside its recovery point so
    /// that a later request with the same key is recovered only when it is the same
    /// request; another request under that key is a reuse, not a retry.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for IdempotencyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyContext")
            .field("record", &self.record)
            .field("took_over", &self.took_over)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// What every clone of one [`Idempotency`] service shares.
pub(crate) struct Shared {
    pub(crate) config: IdempotencyConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: LayerMetrics,
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn Store>, config: IdempotencyConfig) -> Self {
        Self {
            config,
            store,
            metrics: LayerMetrics::default(),
        }
    }
}

/// Wraps a service with the `Idempotency-Key` contract. Made by
/// [`IdempotencyLayer`](crate::IdempotencyLayer), or by [`Idempotency::layer`].
pub struct Idempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Idempotency<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S> Idempotency<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A layer over `store` that wraps services in this one; the same as
    /// [`IdempotencyLayer::new`](crate::IdempotencyLayer::new).
    pub fn layer(store: impl Store) -> crate::IdempotencyLayer {
        crate::IdempotencyLayer::new(store)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError> + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.shared.config;
        // The no-key path: one method comparison and one header lookup, nothing more.
        if !config.intercepts(request.method()) {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        if !request.headers().contains_key(IDEMPOTENCY_KEY) {
            if config.key_required {
                self.shared.metrics.count(Outcome::InvalidKey);
                let detail = match &config.key_policy_uri {
                    Some(uri) => {
                        format!("this endpoint requires an Idempotency-Key header; see {uri}")
                    }
                    None => "this endpoint requires an Idempotency-Key header".to_owned(),
                };
                return ResponseFuture::ready(problem_response(
                    config,
                    ProblemKind::KeyRequired,
                    StatusCode::BAD_REQUEST,
                    &detail,
                    None,
                ));
            }
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        let key = match IdempotencyKey::from_headers(request.headers().get_all(IDEMPOTENCY_KEY)) {
            Ok(Some(key)) => key,
            Ok(None) => unreachable!("the header was present a moment ago"),
            Err(error) => {
                self.shared.metrics.count(Outcome::InvalidKey);
                return ResponseFuture::ready(problem::invalid_key(config, &error));
            }
        };
        // The instance that was polled ready handles this request; a fresh clone
        // takes its place for the next one (tower's usual pattern).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::keyed(Box::pin(handle_keyed(shared, inner, request, key)))
    }
}

async fn handle_keyed<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    inner: S,
    request: Request<ReqBody>,
    key: IdempotencyKey,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError> + Send,
{
    let (parts, body) = request.into_parts();
    let Some(scope) = (shared.config.scope)(&parts) else {
        shared.metrics.count(Outcome::StoreError);
        tracing::error!("no idempotency scope for a keyed request; refusing it");
        return Ok(problem_response(
            &shared.config,
            ProblemKind::ScopeUnavailable,
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not determine who made this request",
            None,
        ));
    };
    let record = RecordId::new(scope, key.into_string());
    // DEBUG, like tower-http's per-request spans: an enabled span has a measurable
    // cost per keyed request (docs/BENCHMARKS.md), for context that only warnings and
    // errors use, and those carry `key_hash` themselves.
    let span = tracing::debug_span!(
        "idempotency",
        key_hash = %record.log_tag(),
        outcome = tracing::field::Empty,
    );
    let answer = async move {
        let config = &shared.config;
        let body =
            match read_request_body(&shared, &parts.headers, body, config.max_request_body).await {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        // A replay known in process memory is answered here: no task, no store
        // round trip. Only completed records are peeked, and they never change.
        let known = shared.store.peek_completed(&record, config.clock.now());
        let fingerprint = Fingerprint::of_request(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            content_type,
            &body,
        );
        if let Some(existing) = known {
            if existing.fingerprint != fingerprint {
                return Ok(mismatch(&shared, config.mismatch_status.status()));
            }
            if let RecordState::Completed(stored) = &existing.state {
                shared.metrics.count(Outcome::Replayed);
                tracing::Span::current().record("outcome", "replayed");
                return Ok(replay(stored));
            }
        }
        // From the reservation on, the work must finish even if the client goes away
        // (hyper then drops this future): otherwise a reservation half-made or a
        // handler half-run would leave the key reserved until its lease ends. It runs
        // here, on the request's own task, and moves to a task of its own only if this
        // future is dropped first (a spawn per request cost two cross-thread wake-ups).
        let work = AssertUnwindSafe(
            reserve_and_run(shared.clone(), inner, parts, body, record, fingerprint)
                .instrument(tracing::Span::current()),
        )
        .catch_unwind();
        match DetachOnDrop::new(work).await {
            // The inner service's own error is passed on; the work released the key.
            Ok(result) => result,
            Err(_panic) => {
                // The handler's own panics are caught in `execute`; this is the layer's
                // or the store's. The lease frees the key.
                tracing::error!("keyed request failed with a panic outside the handler");
                Ok(problem_response(
                    &shared.config,
                    ProblemKind::HandlerPanicked,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request failed; it may be retried with the same key",
                    None,
                ))
            }
        }
    }
    .instrument(span.clone())
    .await;
    // One line per keyed request at DEBUG, with the span's key hash and outcome (the
    // span alone prints nothing unless an event happens inside it).
    span.in_scope(|| tracing::debug!("keyed request answered"));
    answer
}

/// Reserves the key, then replays, refuses, waits or executes.
async fn reserve_and_run<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    inner: S,
    mut parts: http::request::Parts,
    body: Bytes,
    record: RecordId,
    fingerprint: Fingerprint,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: From<Bytes> + Send + 'static,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError> + Send,
{
    let config = &shared.config;
    let deadline = match config.in_flight {
        InFlightBehavior::Wait(bound) => Some(Instant::now() + bound),
        InFlightBehavior::Reject => None,
    };
    loop {
        let token = FencingToken::generate();
        let reserve = ReserveRequest {
            id: &record,
            fingerprint: &fingerprint,
            token,
            now: config.clock.now(),
            lease: config.lease,
            retention: config.retention,
        };
        let outcome = shared
            .metrics
            .timed(StoreCall::Reserve, shared.store.reserve(reserve))
            .await;
        match outcome {
            Err(error) => return Ok(store_unavailable(&shared, &error, &record)),
            Ok(ReserveOutcome::Reserved { took_over }) => {
                parts.extensions.insert(IdempotencyContext {
                    record: record.clone(),
                    took_over,
                    fingerprint,
                });
                let request = Request::from_parts(parts, ReqBody::from(body));
                return execute(&shared, inner, request, &record, token).await;
            }
            Ok(ReserveOutcome::Existing(existing)) if existing.fingerprint != fingerprint => {
                return Ok(mismatch(&shared, config.mismatch_status.status()));
            }
            Ok(ReserveOutcome::Existing(ExistingRecord {
                state: RecordState::Completed(stored),
                ..
            })) => {
                shared.metrics.count(Outcome::Replayed);
                tracing::Span::current().record("outcome", "replayed");
                return Ok(replay(&stored));
            }
            Ok(ReserveOutcome::Existing(ExistingRecord {
                state: RecordState::InFlight { .. },
                ..
            })) => {
                let remaining = deadline.and_then(|d| d.checked_duration_since(Instant::now()));
                match remaining {
                    Some(remaining) if !remaining.is_zero() => {
                        if let Err(error) = shared.store.wait(&record, remaining).await {
                            return Ok(store_unavailable(&shared, &error, &record));
                        }
                    }
                    _ => return Ok(in_flight(&shared)),
                }
            }
        }
    }
}

/// Buffers the request body for fingerprinting, answering 413 past the limit.
async fn read_request_body<ReqBody, ResBody>(
    shared: &Shared,
    headers: &HeaderMap,
    body: ReqBody,
    limit: usize,
) -> Result<Bytes, Response<ResBody>>
where
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    let too_large = || {
        shared.metrics.count(Outcome::InvalidKey);
        problem_response(
            &shared.config,
            ProblemKind::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a request with an Idempotency-Key may carry at most {limit} bytes of body"),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => {
            tracing::debug!(%error, "request body could not be read");
            Err(problem_response(
                &shared.config,
                ProblemKind::UnreadableBody,
                StatusCode::BAD_REQUEST,
                "the request body could not be read completely",
                None,
            ))
        }
    }
}

/// Runs the handler, then stores or releases. A panic in
/// the handler releases the key and answers 500.
async fn execute<S, ReqBody, ResBody>(
    shared: &Arc<Shared>,
    mut inner: S,
    request: Request<ReqBody>,
    record: &RecordId,
    token: FencingToken,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + From<Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let outcome = AssertUnwindSafe(inner.call(request)).catch_unwind().await;
    match outcome {
        Ok(Ok(response)) => Ok(finish(shared, response, record, token).await),
        Ok(Err(error)) => {
            release(shared, record, token, NotStored::HandlerError).await;
            Err(error)
        }
        Err(_panic) => {
            release(shared, record, token, NotStored::HandlerPanicked).await;
            tracing::error!(
                key_hash = %record.log_tag(),
                "handler panicked while executing a keyed request"
            );
            Ok(problem_response(
                &shared.config,
                ProblemKind::HandlerPanicked,
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request failed; it was not recorded and may be retried with the same key",
                None,
            ))
        }
    }
}

/// Decides whether the handler's response is stored, and stores or releases.
async fn finish<ResBody>(
    shared: &Arc<Shared>,
    response: Response<ResBody>,
    record: &RecordId,
    token: FencingToken,
) -> Response<ResBody>
where
    ResBody: Body + From<Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let config = &shared.config;
    let not_stored_because = if !(config.store_policy)(response.status()) {
        Some(NotStored::Status)
    } else if response.headers().contains_key(header::SET_COOKIE) {
        Some(NotStored::SetCookie)
    } else {
        match response.body().size_hint().exact() {
            None => Some(NotStored::Streaming),
            Some(length) if length > config.max_response_body as u64 => Some(NotStored::TooLarge),
            Some(_) => None,
        }
    };
    if let Some(reason) = not_stored_because {
        release(shared, record, token, reason).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error: BoxError = error.into();
            tracing::error!(key_hash = %record.log_tag(), %error, "response body failed while being stored");
            release(shared, record, token, NotStored::BodyError).await;
            return problem_response(
                &shared.config,
                ProblemKind::HandlerPanicked,
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response could not be produced; the request may be retried with the same key",
                None,
            );
        }
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| is_replayable_header(name))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect(),
        // A copy of exactly the body's length: the handler's buffer usually has spare
        // capacity (a JSON writer doubles its buffer as it goes; a 665-byte UAIT sits
        // in 1,024 bytes), and a stored response is kept for a day.
        body: Bytes::copy_from_slice(&body),
    };
    match shared
        .metrics
        .timed(
            StoreCall::Complete,
            shared.store.complete(record, token, &stored),
        )
        .await
    {
        Ok(()) => {
            shared.metrics.count(Outcome::Executed);
            tracing::Span::current().record("outcome", "executed");
        }
        Err(StoreError::NotOwner) => {
            // Our lease ran out and another worker owns the key now; its answer wins.
            shared.metrics.count(Outcome::NotStored);
            tracing::warn!(
                key_hash = %record.log_tag(),
                "lease lost before completion; response not stored"
            );
        }
        Err(error) => {
            shared.metrics.count(Outcome::StoreError);
            tracing::error!(key_hash = %record.log_tag(), error = &error as &dyn std::error::Error, "response could not be stored; key stays reserved until its lease ends");
        }
    }
    Response::from_parts(parts, ResBody::from(body))
}

async fn release(shared: &Arc<Shared>, record: &RecordId, token: FencingToken, reason: NotStored) {
    shared.metrics.count_not_stored(reason);
    let reason = reason.as_str();
    tracing::Span::current().record("outcome", "not_stored");
    match shared
        .metrics
        .timed(StoreCall::Release, shared.store.release(record, token))
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotOwner) => {
            tracing::warn!(key_hash = %record.log_tag(), reason, "lease lost before release; nothing to release");
        }
        Err(error) => {
            tracing::error!(key_hash = %record.log_tag(), error = &error as &dyn std::error::Error, reason, "reservation could not be released; retrying until the store answers or the lease ends");
            retry_release_in_background(shared.clone(), record.clone(), token);
        }
    }
}

/// The first pause between attempts to release a reservation the store refused.
const RELEASE_RETRY_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between those attempts.
const RELEASE_RETRY_MAX_PAUSE: Duration = Duration::from_secs(1);

/// Keeps trying to release a reservation whose release failed (the store was down),
/// so that the key is free as soon as the store is back rather than when the lease
/// ends: the failed request told its client to retry, and a key left held would
/// answer every retry with 409. It gives up when the lease is over, after which the
/// key can be taken over anyway.
fn retry_release_in_background(shared: Arc<Shared>, record: RecordId, token: FencingToken) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let give_up_at = Instant::now() + shared.config.lease;
    runtime.spawn(async move {
        let mut pause = RELEASE_RETRY_FIRST_PAUSE;
        loop {
            tokio::time::sleep(pause).await;
            if Instant::now() >= give_up_at {
                tracing::warn!(key_hash = %record.log_tag(), "store still refused the release when the lease ended; the key is free for a takeover now");
                return;
            }
            match shared.store.release(&record, token).await {
                Ok(()) => {
                    tracing::info!(key_hash = %record.log_tag(), "reservation released after the store came back");
                    return;
                }
                // Taken over or completed by another owner meanwhile: nothing of ours left.
                Err(StoreError::NotOwner) => return,
                Err(_) => pause = (pause * 2).min(RELEASE_RETRY_MAX_PAUSE),
            }
        }
    });
}

/// Headers that describe one connection or one moment rather than the resource.
fn is_replayable_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "date"
    )
}

fn replay<B: From<Bytes>>(stored: &StoredResponse) -> Response<B> {
    let mut response = Response::new(B::from(stored.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.reserve(stored.headers.len() + 1);
    for (name, value) in &stored.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) else {
            tracing::warn!("a stored header could not be rebuilt; skipped");
            continue;
        };
        headers.append(name, value);
    }
    headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn mismatch<B: From<Bytes>>(shared: &Shared, status: StatusCode) -> Response<B> {
    shared.metrics.count(Outcome::Mismatch);
    tracing::Span::current().record("outcome", "mismatch");
    problem_response(
        &shared.config,
        ProblemKind::Mismatch,
        status,
        "this Idempotency-Key was already used with a different request (method, path, query or body); use a new key for a new request",
        None,
    )
}

fn in_flight<B: From<Bytes>>(shared: &Shared) -> Response<B> {
    shared.metrics.count(Outcome::InFlight);
    tracing::Span::current().record("outcome", "in_flight");
    problem_response(
        &shared.config,
        ProblemKind::InFlight,
        StatusCode::CONFLICT,
        "a request with this Idempotency-Key is still being processed; retry after the indicated delay",
        Some(IN_FLIGHT_RETRY_AFTER),
    )
}

fn store_unavailable<B: From<Bytes>>(
    shared: &Shared,
    error: &StoreError,
    record: &RecordId,
) -> Response<B> {
    shared.metrics.count(Outcome::StoreError);
    tracing::Span::current().record("outcome", "store_error");
    tracing::error!(key_hash = %record.log_tag(), error = error as &(dyn std::error::Error + 'static), "idempotency store failed; request refused, not executed");
    problem_response(
        &shared.config,
        ProblemKind::StoreUnavailable,
        StatusCode::SERVICE_UNAVAILABLE,
        "the request was not executed because its Idempotency-Key could not be checked; retry later with the same key",
        Some(Duration::from_secs(1)),
    )
}
