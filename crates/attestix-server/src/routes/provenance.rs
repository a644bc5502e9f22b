//! `/v1/provenance`: the per-agent hash-chained action log (EU AI Act Art. 12).

use std::sync::Arc;

use attestix_core::Timestamp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    audit_draft, check_chars, list_response, may_be_stored, no_errors, unix_ms, ApiJson, ApiPath,
    ApiQuery, JsonText, Paging,
};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::provenance::{append_action, verify_trail, TrailReport, ACTION_TYPES};
use crate::state::AppState;
use crate::storage::records::{self, kind, RecordFilter};
use crate::storage::StorageError;

/// The longest agent id accepted.
const MAX_ID_CHARS: usize = 256;
/// The longest summary or rationale accepted.
const MAX_TEXT_CHARS: usize = 4096;

/// The body of `POST /v1/provenance/actions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogActionRequest {
    /// The agent that acted (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// `inference`, `delegation`, `data_access` or `external_call`.
    #[schema(example = "inference")]
    pub action_type: String,
    /// What went in (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub input_summary: String,
    /// What came out (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub output_summary: String,
    /// Why (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub decision_rationale: String,
    /// Whether a human overrode the agent.
    #[serde(default)]
    pub human_override: bool,
}

fn check_action_type(errors: &mut Vec<FieldError>, value: &str) {
    if !ACTION_TYPES.contains(&value) {
        errors.push(FieldError {
            field: "action_type".into(),
            message: format!("action_type must be one of: {}", ACTION_TYPES.join(", ")),
        });
    }
}

/// Log an agent action, chained to the agent's previous one and signed.
#[utoipa::path(
    post,
    path = "/v1/provenance/actions",
    tag = "provenance",
    request_body = LogActionRequest,
    responses(
        (status = 201, description = "The signed, chained log entry", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn log_action(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<LogActionRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_action_type(&mut errors, &body.action_type);
    for (field, value) in [
        ("input_summary", &body.input_summary),
        ("output_summary", &body.output_summary),
        ("decision_rationale", &body.decision_rationale),
    ] {
        check_chars(&mut errors, field, value, 0, MAX_TEXT_CHARS);
    }
    no_errors(errors)?;
    let now = OffsetDateTime::now_utc();
    let log_id = format!("audit:{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // The reference's key order.
    let entry = json!({
        "log_id": log_id,
        "agent_id": body.agent_id,
        "action_type": body.action_type,
        "input_summary": body.input_summary,
        "output_summary": body.output_summary,
        "decision_rationale": body.decision_rationale,
        "human_override": body.human_override,
        "timestamp": attestix_core::format_isoformat(now),
        "logged_by": state.signer.did(),
    });
    let Value::Object(entry) = entry else {
        return Err(ApiError::internal("a log entry is an object"));
    };
    let after =
        json!({"log_id": log_id, "agent_id": body.agent_id, "action_type": body.action_type});
    let event = audit_draft(
        &state,
        &caller,
        "provenance.log_action",
        (&log_id, "provenance"),
        after,
        now,
    )?
    .mentioning([body.agent_id.clone()]);
    let signer = state.signer.clone();
    let sign = move |unsigned: &Value| {
        let bytes = attestix_core::canonical_bytes(unsigned).map_err(StorageError::database)?;
        Ok(signer.sign_base64url(&bytes))
    };
    let scope = caller.scope();
    let document = records::write_with(&*state.storage, move |tx| {
        Box::pin(async move { append_action(tx, &scope, entry, sign, &event, unix_ms(now)).await })
    })
    .await?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

/// Query of `GET /v1/provenance/audit-trail/{agent_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    /// Only entries of this action type.
    pub action_type: Option<String>,
    /// Only entries at or after this date or instant (RFC 3339; a date starts at
    /// midnight UTC).
    pub start_date: Option<String>,
    /// Only entries at or before this date or instant (RFC 3339; a date includes its
    /// whole day, UTC).
    pub end_date: Option<String>,
}

/// `text` as unix milliseconds: an RFC 3339 instant, or a date (its first or, for
/// `end`, last millisecond in UTC).
fn parse_instant(field: &str, text: &str, end: bool) -> Result<i64, ApiError> {
    if let Ok(at) = Timestamp::parse(text) {
        return Ok(unix_ms(at.datetime()));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).map_err(|_| {
        ApiError::invalid(field, "must be an RFC 3339 date (2026-12-03) or date-time")
    })?;
    let start = unix_ms(date.midnight().assume_utc());
    Ok(if end { start + 86_400_000 - 1 } else { start })
}

/// The agent's log entries in chain order, filtered, with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/provenance/audit-trail/{agent_id}",
    tag = "provenance",
    params(("agent_id" = String, Path, description = "The agent"), TrailQuery, Paging),
    responses(
        (status = 200, description = "A page of log entries, oldest first; the next page's cursor is in X-Next-Cursor", body = Vec<Object>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn audit_trail(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TrailQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    if let Some(action_type) = &query.action_type {
        check_action_type(&mut errors, action_type);
    }
    no_errors(errors)?;
    let since_ms = query
        .start_date
        .as_deref()
        .map(|text| parse_instant("start_date", text, false))
        .transpose()?;
    let until_ms = query
        .end_date
        .as_deref()
        .map(|text| parse_instant("end_date", text, true))
        .transpose()?;
    let page = paging.page()?;
    if !may_be_stored(&agent_id) {
        return Ok(JsonText::new(StatusCode::OK, "[]".into()));
    }
    let filter = RecordFilter {
        subject: Some(agent_id),
        label: query.action_type,
        since_ms,
        until_ms,
    };
    let scope = caller.scope();
    let page = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { records::list(tx, &scope, kind::ACTION, &filter, page).await })
    })
    .await?;
    Ok(list_response(page))
}

/// Walk the agent's action log and report whether every link verifies.
#[utoipa::path(
    get,
    path = "/v1/provenance/audit-trail/{agent_id}/verify",
    tag = "provenance",
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The verification of the agent's chain", body = TrailReport, content_type = "application/json"),
    )
)]
pub async fn verify_audit_trail(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    if !may_be_stored(&agent_id) {
        return JsonText::ok(&verify_trail(&[]));
    }
    let scope = caller.scope();
    let documents = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { records::all(tx, &scope, kind::ACTION, Some(&agent_id)).await })
    })
    .await?;
    JsonText::ok(&verify_trail(&documents))
}
