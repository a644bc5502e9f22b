//! `/v1/audit`: the caller's hash-chained audit events and their verification.

use std::sync::Arc;

use attestix_core::Timestamp;
use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{list_response, no_errors, refuse_nul, unix_ms, ApiQuery, JsonText, Paging};
use crate::audit::{verify, ChainReport};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::records::{self, kind, RecordFilter};

/// The longest `target_id` or `action` filter accepted.
const MAX_FILTER_CHARS: usize = 512;

/// Query of `GET /v1/audit/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Only events about this resource id (at most 512 characters).
    #[param(max_length = 512)]
    pub target_id: Option<String>,
    /// Only events of this action (`identity.create`, …; at most 512 characters).
    #[param(max_length = 512)]
    pub action: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
}

/// List the caller's audit events in chain order, with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    params(ListEventsQuery, Paging),
    responses(
        (status = 200, description = "A page of audit events, oldest first; the next page's cursor is in X-Next-Cursor", body = Vec<crate::audit::AuditEvent>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListEventsQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    for (field, value) in [("target_id", &query.target_id), ("action", &query.action)] {
        if let Some(value) = value {
            refuse_nul(&mut errors, field, value);
            if value.chars().count() > MAX_FILTER_CHARS {
                errors.push(crate::error::FieldError {
                    field: field.to_owned(),
                    message: format!("{field} must be at most {MAX_FILTER_CHARS} characters"),
                });
            }
        }
    }
    no_errors(errors)?;
    let since_ms = match &query.since {
        None => None,
        Some(text) => Some(unix_ms(
            Timestamp::parse(text)
                .map_err(|_| ApiError::invalid("since", "must be an RFC 3339 date-time"))?
                .datetime(),
        )),
    };
    let filter = RecordFilter {
        subject: query.target_id,
        label: query.action,
        since_ms,
        until_ms: None,
    };
    let page = paging.page()?;
    let scope = caller.scope();
    let page = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { records::list(tx, &scope, kind::AUDIT_EVENT, &filter, page).await })
    })
    .await?;
    Ok(list_response(page))
}

/// Walk the caller's audit chain and report whether every link verifies.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The verification of the caller's chain", body = ChainReport, content_type = "application/json"),
    )
)]
pub async fn verify_chain(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonText, ApiError> {
    let scope = caller.scope();
    let documents = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { records::all(tx, &scope, kind::AUDIT_EVENT, None).await })
    })
    .await?;
    JsonText::ok(&verify(&documents))
}
