//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::storage::StorageError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the problem `type` URIs.
pub const PROBLEM_BASE: &str = "https://attestix.dev/problems/";

/// Base of the idempotency layer's problem `type` URIs, under [`PROBLEM_BASE`].
pub const IDEMPOTENCY_PROBLEM_BASE: &str = "https://attestix.dev/problems/idempotency/";

/// One offending field of a validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as a JSON path such as `display_name` or `claims.id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem document, as the API writes it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// For validation errors: every offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For a declaration refused for its profile: `invalid_compliance_profile`, as the
    /// reference's `detail.error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a declaration refused for its profile: the reference's `detail.message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a declaration refused for its profile: the Annex V fields the profile
    /// lacks (empty when a prerequisite, not a field, is missing), as the reference's
    /// `detail.missing_fields`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_fields: Option<Vec<String>>,
}

/// Any error, kept as the source of the error that wraps it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Displays an error followed by each of its sources, `outer: inner: innermost`,
/// for logs (an error's own `Display` names only itself).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or query is well-formed but its values are not acceptable (422).
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// The request cannot be understood (400).
    #[error("{0}")]
    BadRequest(String),
    /// A declaration of conformity cannot be generated from the agent's compliance
    /// profile (422): Annex V fields or a prerequisite are missing.
    #[error("{message}")]
    InvalidComplianceProfile {
        /// The reference's message.
        message: String,
        /// The profile fields to fill in (empty for a missing prerequisite).
        missing_fields: Vec<String>,
    },
    /// No such resource for this caller (404).
    #[error("{kind} {id} not found")]
    NotFound {
        /// `identity`, `credential`, …
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The request conflicts with the state of a resource (409): for example a
    /// presentation of a revoked credential, or a credential about a revoked identity.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the server accepts (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The route exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Wrong credentials (403).
    #[error("{0}")]
    Forbidden(String),
    /// The Idempotency-Key made another request's resource within the retention
    /// (409, or 422 in IETF mode), found through its recovery point.
    #[error("this Idempotency-Key was already used with a different request (method, path, query or body); use a new key for a new request")]
    KeyReused {
        /// The status the idempotency layer answers a reused key with.
        status: StatusCode,
    },
    /// The database cannot be reached (503); the cause is logged, not shown.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// A feature this request needs is not configured or not available in this
    /// server (503); the message says which.
    #[error("{0}")]
    NotConfigured(String),
    /// An upstream the server fetched from failed or answered something unusable
    /// (502); the message says what.
    #[error("{0}")]
    BadGateway(String),
    /// An upstream the server fetched from did not answer in time (504).
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or an unexpected failure (500); the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    /// An unexpected failure (500), keeping its cause for the log.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidComplianceProfile { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::KeyReused { status } => *status,
            Self::Unavailable(_) | Self::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Validation(_) => ("validation-error", "The request is invalid"),
            Self::BadRequest(_) => ("bad-request", "The request cannot be understood"),
            Self::InvalidComplianceProfile { .. } => (
                "invalid-compliance-profile",
                "The compliance profile cannot support a declaration",
            ),
            Self::NotFound { .. } => ("not-found", "Not found"),
            Self::Conflict(_) => ("conflict", "Conflict with the resource's state"),
            Self::PayloadTooLarge(_) => ("payload-too-large", "Request body too large"),
            Self::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Self::Unauthorized(_) => ("unauthorized", "Authentication required"),
            Self::Forbidden(_) => ("forbidden", "Invalid credentials"),
            // The idempotency layer's own type, so a client handles both alike.
            Self::KeyReused { .. } => (
                "idempotency/key-reused",
                "Idempotency-Key reused with a different request",
            ),
            Self::Unavailable(_) => ("unavailable", "Service temporarily unavailable"),
            Self::NotConfigured(_) => ("not-configured", "Feature not configured"),
            Self::BadGateway(_) => ("bad-gateway", "The upstream failed"),
            Self::GatewayTimeout(_) => ("gateway-timeout", "The upstream timed out"),
            Self::Internal(_) => ("internal-error", "Internal server error"),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            Self::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            // Internal causes go to the log, never to the client.
            Self::Unavailable(_) => {
                "the database is unavailable; retry later (with the same Idempotency-Key)".into()
            }
            Self::Internal(_) => "an unexpected error occurred; it has been logged".into(),
            other => other.to_string(),
        };
        let mut problem = Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail,
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                Self::InvalidComplianceProfile { missing_fields, .. } => missing_fields
                    .iter()
                    .map(|field| FieldError {
                        field: field.clone(),
                        message: format!("{field} is required by Annex V and is empty"),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            error: None,
            message: None,
            missing_fields: None,
        };
        if let Self::InvalidComplianceProfile {
            message,
            missing_fields,
        } = self
        {
            problem.error = Some("invalid_compliance_profile".into());
            problem.message = Some(message.clone());
            problem.missing_fields = Some(missing_fields.clone());
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(_) => tracing::error!(error = %ErrorChain(&self), "request failed"),
            Self::Unavailable(_) => {
                tracing::error!(error = %ErrorChain(&self), "storage unavailable")
            }
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // A retry cures an outage, not a missing feature.
        if status == StatusCode::SERVICE_UNAVAILABLE && !matches!(self, Self::NotConfigured(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::Duplicate => Self::Internal(Box::new(error)),
            StorageError::Database(_) => Self::Unavailable(Box::new(error)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            // serde's message names the field and the expected type, for example
            // "missing field `display_name`" or "invalid type: integer, expected a string".
            JsonRejection::JsonDataError(error) => {
                let message = error.body_text();
                let message = message
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&message);
                let (field, message) = split_serde_path(message);
                Self::invalid(field, message)
            }
            JsonRejection::JsonSyntaxError(error) => {
                Self::BadRequest(format!("the body is not valid JSON: {}", error.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "the body must be JSON, sent with Content-Type: application/json".into(),
            ),
            JsonRejection::BytesRejection(error) => {
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Self::PayloadTooLarge(
                        "the request body is larger than the server accepts".into(),
                    )
                } else {
                    Self::BadRequest(format!("the body could not be read: {}", error.body_text()))
                }
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let text = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_owned();
        Self::invalid("query", text)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Splits serde_path_to_error-style messages (`field.sub: message`) into parts.
fn split_serde_path(message: &str) -> (String, String) {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return (field.to_owned(), "this field is required".to_owned());
    }
    match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => {
            (path.to_owned(), rest.to_owned())
        }
        _ => ("body".to_owned(), message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_of_an_error_names_every_cause() {
        let error = ApiError::from(StorageError::database(std::io::Error::other("disk full")));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "storage unavailable: database error: disk full"
        );
        assert_eq!(
            format!("{IDEMPOTENCY_PROBLEM_BASE}"),
            format!("{PROBLEM_BASE}idempotency/"),
            "the layer's problems sit under the server's base"
        );
    }

    #[test]
    fn serde_messages_name_the_field() {
        assert_eq!(
            split_serde_path("missing field `display_name` at line 1 column 2"),
            ("display_name".into(), "this field is required".into())
        );
        assert_eq!(
            split_serde_path(
                "expiry_days: invalid type: string \"x\", expected i64 at line 1 column 20"
            ),
            (
                "expiry_days".into(),
                "invalid type: string \"x\", expected i64 at line 1 column 20".into()
            )
        );
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        let problem = ApiError::Internal("secret path /var/lib/db".into()).problem();
        assert!(!problem.detail.contains("/var/lib"));
        let problem = ApiError::Unavailable("password=hunter2".into()).problem();
        assert!(!problem.detail.contains("hunter2"));
    }

    #[test]
    fn a_key_reused_through_a_recovery_point_reads_like_the_layers_own_refusal() {
        let problem = ApiError::KeyReused {
            status: StatusCode::CONFLICT,
        }
        .problem();
        assert_eq!(
            problem.kind,
            idempotency::ProblemKind::Mismatch.type_uri(IDEMPOTENCY_PROBLEM_BASE)
        );
        assert_eq!(problem.status, 409);
    }
}
