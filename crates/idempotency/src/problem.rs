//! The layer's own error responses, as RFC 9457 `application/problem+json`.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::config::IdempotencyConfig;
use crate::key::KeyError;

/// The media type of every error body the layer produces.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem the layer answers with. Each has a stable slug; its `type`
/// URI is the host's base followed by the slug (see
/// [`IdempotencyLayer::problem_type_base`](crate::IdempotencyLayer::problem_type_base)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The `Idempotency-Key` header is malformed or repeated (400).
    InvalidKey,
    /// The route requires a key and none was sent (400).
    KeyRequired,
    /// The key was used with a different request (409, or 422 in IETF mode).
    Mismatch,
    /// A request with the same key is still executing (409 with `Retry-After`).
    InFlight,
    /// The request body is larger than the layer buffers (413).
    TooLarge,
    /// The request body could not be read to the end (400).
    UnreadableBody,
    /// The store could not be reached; the request was not executed (503).
    StoreUnavailable,
    /// The host did not supply a scope for the request (500); fail closed.
    ScopeUnavailable,
    /// The handler panicked; the reservation was released (500).
    HandlerPanicked,
}

impl ProblemKind {
    /// The last segment of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid-key",
            Self::KeyRequired => "key-required",
            Self::Mismatch => "key-reused",
            Self::InFlight => "in-flight",
            Self::TooLarge => "request-too-large",
            Self::UnreadableBody => "unreadable-body",
            Self::StoreUnavailable => "store-unavailable",
            Self::ScopeUnavailable => "scope-unavailable",
            Self::HandlerPanicked => "handler-panicked",
        }
    }

    /// The `type` URI under `base`: `base` followed by the slug.
    pub fn type_uri(self, base: &str) -> String {
        format!("{base}{}", self.slug())
    }

    fn title(self) -> &'static str {
        match self {
            Self::InvalidKey => "Invalid Idempotency-Key header",
            Self::KeyRequired => "Idempotency-Key header required",
            Self::Mismatch => "Idempotency-Key reused with a different request",
            Self::InFlight => "A request with this Idempotency-Key is in progress",
            Self::TooLarge => "Request body too large",
            Self::UnreadableBody => "Request body unreadable",
            Self::StoreUnavailable => "Idempotency store unavailable",
            Self::ScopeUnavailable => "Idempotency scope unavailable",
            Self::HandlerPanicked => "Internal server error",
        }
    }
}

/// Builds a problem response of `kind` with `status` and `detail`, typed under the
/// configured base (`about:blank` when the host set none).
pub(crate) fn problem_response<B: From<Bytes>>(
    config: &IdempotencyConfig,
    kind: ProblemKind,
    status: StatusCode,
    detail: &str,
    retry_after: Option<Duration>,
) -> Response<B> {
    let body = json!({
        "type": match config.problem_type_base.as_deref() {
            Some(base) => kind.type_uri(base),
            None => "about:blank".to_owned(),
        },
        "title": kind.title(),
        "status": status.as_u16(),
        "detail": detail,
    });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(after) = retry_after {
        // Retry-After is whole seconds; round up so a client never retries too early.
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

pub(crate) fn invalid_key<B: From<Bytes>>(
    config: &IdempotencyConfig,
    error: &KeyError,
) -> Response<B> {
    problem_response(
        config,
        ProblemKind::InvalidKey,
        StatusCode::BAD_REQUEST,
        &error.to_string(),
        None,
    )
}
