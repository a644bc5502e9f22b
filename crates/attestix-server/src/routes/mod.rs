//! The HTTP routes, one module per resource.

pub mod agent_cards;
pub mod audit;
pub mod blockchain;
pub mod compliance;
pub mod credentials;
pub mod delegations;
pub mod dids;
pub mod health;
pub mod identities;
pub mod presentations;
pub mod provenance;
pub mod reputation;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::{ApiError, FieldError};

/// Notes in `errors` that `value`, a client's string for `field`, holds a NUL
/// character. PostgreSQL text cannot hold NUL (the statement fails, which looked
/// like an outage: 503) while SQLite stores it, so the backends agree only when
/// NUL is refused before either sees it.
pub(crate) fn refuse_nul(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.contains('\0') {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("{field} must not contain the NUL character (U+0000)"),
        });
    }
}

/// Notes in `errors` that `value`, a client's string for `field`, is not `min` to
/// `max` characters long or holds a NUL ([`refuse_nul`]).
pub(crate) fn check_chars(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) {
    let chars = value.chars().count();
    if chars < min || chars > max {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("{field} must be {min} to {max} characters (got {chars})"),
        });
    }
    refuse_nul(errors, field, value);
}

/// The errors [`refuse_nul`] noted, as a 422.
pub(crate) fn no_errors(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Whether a path id can name a stored resource. The server makes every id and
/// none holds NUL, so an id with one is unknown: answered so without asking the
/// database, where PostgreSQL would fail on it (see [`refuse_nul`]).
pub(crate) fn may_be_stored(id: &str) -> bool {
    !id.contains('\0')
}

/// The audit event of a mutation the server's key made (`actor` = its DID), in the
/// caller's chain.
pub(crate) fn audit_draft(
    state: &crate::state::AppState,
    caller: &crate::auth::Caller,
    action: &str,
    target: (&str, &str),
    after: serde_json::Value,
    now: time::OffsetDateTime,
) -> Result<crate::audit::AuditDraft, ApiError> {
    audit_draft_by(caller, state.signer.did(), action, target, after, now)
}

/// The audit event of a mutation by `actor`, on `target` (id, collection), in the
/// caller's chain.
pub(crate) fn audit_draft_by(
    caller: &crate::auth::Caller,
    actor: &str,
    action: &str,
    (target_id, collection): (&str, &str),
    after: serde_json::Value,
    now: time::OffsetDateTime,
) -> Result<crate::audit::AuditDraft, ApiError> {
    crate::audit::AuditDraft::new(
        caller.scope(),
        &caller.tenant,
        actor,
        action,
        target_id,
        collection,
        after,
        now,
    )
    .map_err(ApiError::internal)
}

/// A JSON object body extractor whose rejections are problem+json: 415 without a
/// JSON content type, 413 over the size limit, 400 for malformed JSON, 422 for a
/// body that is not an object or whose fields break their types.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|essence| {
                let essence = essence.trim();
                essence.eq_ignore_ascii_case("application/json")
                    || essence.to_ascii_lowercase().ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON, sent with Content-Type: application/json".into(),
            ));
        }
        let body = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "the request body is larger than the server accepts".into(),
                    )
                } else {
                    ApiError::BadRequest(format!(
                        "the body could not be read: {}",
                        rejection.body_text()
                    ))
                }
            })?;
        // serde would also accept a struct written as an array; the API does not.
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() => {
                return Err(ApiError::BadRequest("the body is not valid JSON".into()));
            }
            _ => return Err(ApiError::invalid("body", "the body must be a JSON object")),
        }
        axum::Json::<T>::from_bytes(&body)
            .map(|axum::Json(value)| Self(value))
            .map_err(ApiError::from)
    }
}

/// A query extractor whose rejections are problem+json (422).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A path extractor whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A JSON document already serialised: sent as is, so that the bytes a client
/// receives are the bytes that were stored and signed.
pub struct JsonText {
    status: StatusCode,
    body: String,
    next_cursor: Option<String>,
    /// Marked with `Idempotency-Replayed: true` (a create answered from its recovery
    /// point).
    replayed: bool,
}

impl JsonText {
    /// `status` with `body`.
    pub fn new(status: StatusCode, body: String) -> Self {
        Self {
            status,
            body,
            next_cursor: None,
            replayed: false,
        }
    }

    /// 200 with a value serialised now.
    pub fn ok(value: &impl serde::Serialize) -> Result<Self, ApiError> {
        let body = serde_json::to_string(value).map_err(ApiError::internal)?;
        Ok(Self::new(StatusCode::OK, body))
    }

    fn with_cursor(mut self, cursor: Option<String>) -> Self {
        self.next_cursor = cursor;
        self
    }
}

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(cursor) = self
            .next_cursor
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(NEXT_CURSOR_HEADER, cursor);
        }
        if self.replayed {
            headers.insert(
                idempotency::IDEMPOTENCY_REPLAYED,
                HeaderValue::from_static("true"),
            );
        }
        response
    }
}

/// The response header carrying the cursor of the next page of a list.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// Paging query parameters shared by the list endpoints.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `X-Next-Cursor` of the previous page.
    #[param(pattern = "^c[0-9]+$")]
    pub cursor: Option<String>,
}

impl Paging {
    fn page(&self) -> Result<crate::storage::PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and 1000 (got {limit})"),
            ));
        }
        let after = match &self.cursor {
            None => None,
            Some(text) => Some(
                text.strip_prefix('c')
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        ApiError::invalid("cursor", "not a cursor this server issued")
                    })?,
            ),
        };
        Ok(crate::storage::PageRequest {
            after,
            limit: limit as u32,
        })
    }
}

/// The id of a new resource of `kind`, and its recovery point when the request carries
/// an Idempotency-Key. With a key the id is derived from (scope, key, use 0), so that
/// a retry after a crash derives it again (see [`crate::recovery`]); without one it is
/// random.
pub(crate) fn new_resource_id(
    state: &crate::state::AppState,
    kind: crate::recovery::ResourceKind,
    context: Option<&idempotency::IdempotencyContext>,
    now: time::OffsetDateTime,
) -> (uuid::Uuid, Option<crate::storage::RecoveryPoint>) {
    let Some(context) = context else {
        return (uuid::Uuid::new_v4(), None);
    };
    let created_at_ms = unix_ms(now);
    let retention = state.idempotency_retention;
    let id = state
        .recovery_ids
        .derive(kind, &context.record.scope, &context.record.key, 0);
    let recovery = crate::storage::RecoveryPoint {
        scope: context.record.scope.clone(),
        key: context.record.key.clone(),
        valid_after_ms: created_at_ms - retention.as_millis() as i64,
        fingerprint: *context.fingerprint.as_bytes(),
    };
    (id, Some(recovery))
}

/// The id for use `n` (from 1) of a key whose earlier ids are taken by other
/// resources: earlier uses of the key, older than the retention (or, with odds of
/// 1 in 2^60, unrelated ones). A retry of the same request walks the same chain to
/// the same id. Past [`crate::recovery::MAX_KEY_USES`] the id is random.
pub(crate) fn next_resource_id(
    state: &crate::state::AppState,
    kind: crate::recovery::ResourceKind,
    recovery: &crate::storage::RecoveryPoint,
    n: u32,
) -> uuid::Uuid {
    if n < crate::recovery::MAX_KEY_USES {
        state
            .recovery_ids
            .derive(kind, &recovery.scope, &recovery.key, n)
    } else {
        tracing::warn!(
            uses = n,
            "a key used this many times gets a random id, which no recovery point finds"
        );
        uuid::Uuid::new_v4()
    }
}

/// The 201 answer of a create: the document just stored, or the one its recovery
/// point found (a retry after a crash between the commit and the stored response),
/// which is marked as a replay like the idempotency layer's own. A key that made
/// another request's resource is refused as the layer refuses a reused key.
///
/// `after_commit` names the failpoint between the commit and the idempotency layer
/// storing the response, where crash tests abort the process: a crash there is what
/// recovery points exist for.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn created(
    state: &crate::state::AppState,
    inserted: crate::storage::Inserted,
    document: String,
    after_commit: &str,
) -> Result<JsonText, ApiError> {
    let (document, replayed) = match inserted {
        crate::storage::Inserted::Created => (document, false),
        crate::storage::Inserted::Recovered(existing) => {
            tracing::info!("resource recovered from its recovery point, not created again");
            (existing, true)
        }
        crate::storage::Inserted::KeyReused => {
            return Err(ApiError::KeyReused {
                status: state.key_reuse_status,
            })
        }
    };
    fail::fail_point!(after_commit, |action| {
        if action.as_deref() == Some("abort") {
            std::process::abort();
        }
        Err(ApiError::internal(format!("failpoint {after_commit}")))
    });
    let mut answer = JsonText::new(StatusCode::CREATED, document);
    answer.replayed = replayed;
    Ok(answer)
}

/// Refuses a document too large for the idempotency layer to store as a response:
/// checked before anything is written, so that every keyed create the server
/// accepts can be replayed (a response the layer cannot store would leave its key
/// unprotected).
pub(crate) fn check_response_size(
    state: &crate::state::AppState,
    document: &str,
    field: &str,
    what: &str,
) -> Result<(), ApiError> {
    if document.len() > state.max_response_bytes {
        return Err(ApiError::invalid(
            field,
            format!(
                "the {what} would be {} bytes, over the server's {}-byte response limit (--max-response-bytes); nothing was created",
                document.len(),
                state.max_response_bytes
            ),
        ));
    }
    Ok(())
}

/// A page of stored documents as a JSON array (the Python API's list shape), with
/// the next cursor in `X-Next-Cursor`.
fn list_response(page: crate::storage::Page) -> JsonText {
    let mut body =
        String::with_capacity(page.documents.iter().map(|d| d.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (index, document) in page.documents.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(document);
    }
    body.push(']');
    JsonText::new(StatusCode::OK, body).with_cursor(page.next.map(|seq| format!("c{seq}")))
}

/// Unix milliseconds of an instant.
pub(crate) fn unix_ms(at: time::OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// An optional `{reason}` body of a DELETE: absent or empty means no reason.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RevokeRequest {
    /// Why the document is revoked.
    #[serde(default)]
    pub reason: String,
}

pub(crate) fn parse_revoke_body(body: &[u8]) -> Result<RevokeRequest, ApiError> {
    let text = body.trim_ascii();
    // No body, or JSON null (what `Option<RevokeRequest>` documents), means no reason.
    if text.is_empty() || text == b"null" {
        return Ok(RevokeRequest::default());
    }
    let request: RevokeRequest = serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ApiError::invalid("reason", error.to_string())
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
        }
    })?;
    let mut errors = Vec::new();
    refuse_nul(&mut errors, "reason", &request.reason);
    no_errors(errors)?;
    Ok(request)
}

/// Reads an optional whole number that a client may have written as `365` or
/// `365.0` (as Python's JSON does for floats); `365.5` is an error.
pub(crate) fn whole_number<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(value) = number.as_i64() {
        return Ok(Some(value));
    }
    match number.as_f64() {
        Some(value) if value.fract() == 0.0 && value.abs() < 9.0e15 => Ok(Some(value as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number, got {number}"
        ))),
    }
}
