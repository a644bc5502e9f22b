//! `/v1/provenance`: the per-agent hash-chained action log (EU AI Act Art. 12).

use std::sync::Arc;

use attestix_core::Timestamp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
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
    let stored = records::write_with(&*state.storage, move |tx| {
        Box::pin(async move { append_action(tx, &scope, entry, sign, &event, unix_ms(now)).await })
    })
    .await?;
    let document = stored
        .await
        .map_err(|_| ApiError::internal("a committed log entry was never linked"))?;
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
pub(crate) fn parse_instant(field: &str, text: &str, end: bool) -> Result<i64, ApiError> {
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

/// The agent's provenance: its training data, model lineage, the size of its action
/// log and of the audit events about it, and the newest five of those.
#[utoipa::path(
    get,
    path = "/v1/provenance/{agent_id}",
    tag = "provenance",
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The agent's provenance (empty lists and zero counts for an agent with none)", body = crate::provenance::Aggregate, content_type = "application/json"),
    )
)]
pub async fn provenance_of(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<Json<crate::provenance::Aggregate>, ApiError> {
    if !may_be_stored(&agent_id) {
        return Ok(Json(crate::provenance::Aggregate::empty(agent_id)));
    }
    let scope = caller.scope();
    let aggregate = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { crate::provenance::aggregate(tx, &scope, &agent_id).await })
    })
    .await?;
    Ok(Json(aggregate))
}

/// The largest serialised `evaluation_metrics` or `training_config` accepted.
const MAX_OBJECT_BYTES: usize = 16 * 1024;
/// The most `data_categories` accepted.
const MAX_CATEGORIES: usize = 64;

/// The body of `POST /v1/provenance/training-data`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TrainingDataRequest {
    /// The agent the data trained (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// The dataset's name (1 to 4096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    pub dataset_name: String,
    /// Where the dataset can be had (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub source_url: String,
    /// An alias of `source_url`, used when that is empty (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub source: String,
    /// The dataset's version (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub dataset_version: String,
    /// Its license (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub license: String,
    /// Categories of data (at most 64, each at most 256 characters).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub data_categories: Option<Vec<String>>,
    /// Whether it holds personal data.
    #[serde(default)]
    pub contains_personal_data: bool,
    /// Governance measures applied (Art. 10; at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub data_governance_measures: String,
}

/// The body of `POST /v1/provenance/model-lineage`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ModelLineageRequest {
    /// The agent the model serves (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// The base model (1 to 4096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    pub base_model: String,
    /// Its provider (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub base_model_provider: String,
    /// How it was fine-tuned (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub fine_tuning_method: String,
    /// Evaluation metrics, stored verbatim (an object of at most 16 KiB).
    #[serde(default)]
    pub evaluation_metrics: Option<serde_json::Map<String, Value>>,
    /// Training configuration, stored verbatim (an object of at most 16 KiB).
    #[serde(default)]
    pub training_config: Option<serde_json::Map<String, Value>>,
}

/// Signs `entry` (over its canonical bytes), stores it as a provenance entry of
/// `caller`'s scope with its audit event, and answers 201 with it.
async fn store_entry(
    state: &AppState,
    caller: &Caller,
    mut entry: serde_json::Map<String, Value>,
    action: &str,
    now: OffsetDateTime,
) -> Result<JsonText, ApiError> {
    let field = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
    let (entry_id, agent_id, entry_type) =
        (field("entry_id"), field("agent_id"), field("entry_type"));
    let bytes = attestix_core::canonical_bytes(&Value::Object(entry.clone()))
        .map_err(|error| ApiError::invalid("body", error.to_string()))?;
    entry.insert(
        "signature".into(),
        state.signer.sign_base64url(&bytes).into(),
    );
    let document = serde_json::to_string(&entry).map_err(ApiError::internal)?;
    let after = json!({"entry_id": entry_id, "agent_id": agent_id, "entry_type": entry_type});
    let event = audit_draft(state, caller, action, (&entry_id, "provenance"), after, now)?
        .mentioning([agent_id.clone()]);
    let facts = crate::compliance::facts_of_entry(&entry);
    let record = records::NewRecord {
        scope: caller.scope(),
        kind: kind::PROVENANCE_ENTRY,
        id: entry_id,
        subject: Some(agent_id.clone()),
        label: Some(entry_type),
        created_at_ms: unix_ms(now),
        document: document.clone(),
        refs: vec![agent_id.clone()],
    };
    records::write_with(&*state.storage, move |tx| {
        Box::pin(async move {
            records::insert(tx, &record).await?;
            let established = (record.id.as_str(), record.created_at_ms);
            crate::compliance::record_evidence(tx, &record.scope, &agent_id, &facts, established)
                .await?;
            tx.audit(&event).await?;
            Ok(())
        })
    })
    .await?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

fn check_object(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&serde_json::Map<String, Value>>,
) {
    let size = value.map_or(2, |map| Value::Object(map.clone()).to_string().len());
    if size > MAX_OBJECT_BYTES {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("{field} must serialise to at most {MAX_OBJECT_BYTES} bytes"),
        });
    }
    if value.is_some_and(|map| Value::Object(map.clone()).to_string().contains("\\u0000")) {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("{field} must not contain the NUL character (U+0000)"),
        });
    }
}

fn new_entry_id() -> String {
    format!("prov:{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Record a training data source of an agent (Art. 10).
#[utoipa::path(
    post,
    path = "/v1/provenance/training-data",
    tag = "provenance",
    request_body = TrainingDataRequest,
    responses(
        (status = 201, description = "The signed provenance entry", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_training_data(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<TrainingDataRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_chars(
        &mut errors,
        "dataset_name",
        &body.dataset_name,
        1,
        MAX_TEXT_CHARS,
    );
    for (field, value) in [
        ("source_url", &body.source_url),
        ("source", &body.source),
        ("dataset_version", &body.dataset_version),
        ("license", &body.license),
        ("data_governance_measures", &body.data_governance_measures),
    ] {
        check_chars(&mut errors, field, value, 0, MAX_TEXT_CHARS);
    }
    let categories = body.data_categories.unwrap_or_default();
    if categories.len() > MAX_CATEGORIES {
        errors.push(FieldError {
            field: "data_categories".into(),
            message: format!("data_categories must have at most {MAX_CATEGORIES} items"),
        });
    }
    for (index, category) in categories.iter().enumerate() {
        check_chars(
            &mut errors,
            &format!("data_categories[{index}]"),
            category,
            0,
            MAX_ID_CHARS,
        );
    }
    no_errors(errors)?;
    let now = OffsetDateTime::now_utc();
    // `source` stands in for an empty `source_url`, as in the reference.
    let source_url = if body.source_url.is_empty() {
        body.source
    } else {
        body.source_url
    };
    let entry = json!({
        "entry_id": new_entry_id(),
        "entry_type": "training_data",
        "agent_id": body.agent_id,
        "dataset_name": body.dataset_name,
        "dataset_version": body.dataset_version,
        "source_url": source_url,
        "license": body.license,
        "data_categories": categories,
        "contains_personal_data": body.contains_personal_data,
        "data_governance_measures": body.data_governance_measures,
        "recorded_at": attestix_core::format_isoformat(now),
        "recorded_by": state.signer.did(),
    });
    let Value::Object(entry) = entry else {
        return Err(ApiError::internal("an entry is an object"));
    };
    store_entry(
        &state,
        &caller,
        entry,
        "provenance.record_training_data",
        now,
    )
    .await
}

/// Record the model lineage of an agent (Art. 11).
#[utoipa::path(
    post,
    path = "/v1/provenance/model-lineage",
    tag = "provenance",
    request_body = ModelLineageRequest,
    responses(
        (status = 201, description = "The signed provenance entry", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_model_lineage(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<ModelLineageRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_chars(
        &mut errors,
        "base_model",
        &body.base_model,
        1,
        MAX_TEXT_CHARS,
    );
    for (field, value) in [
        ("base_model_provider", &body.base_model_provider),
        ("fine_tuning_method", &body.fine_tuning_method),
    ] {
        check_chars(&mut errors, field, value, 0, MAX_TEXT_CHARS);
    }
    check_object(
        &mut errors,
        "evaluation_metrics",
        body.evaluation_metrics.as_ref(),
    );
    check_object(
        &mut errors,
        "training_config",
        body.training_config.as_ref(),
    );
    no_errors(errors)?;
    let now = OffsetDateTime::now_utc();
    let entry = json!({
        "entry_id": new_entry_id(),
        "entry_type": "model_lineage",
        "agent_id": body.agent_id,
        "base_model": body.base_model,
        "base_model_provider": body.base_model_provider,
        "fine_tuning_method": body.fine_tuning_method,
        "evaluation_metrics": body.evaluation_metrics.unwrap_or_default(),
        "training_config": body.training_config.unwrap_or_default(),
        "recorded_at": attestix_core::format_isoformat(now),
        "recorded_by": state.signer.did(),
    });
    let Value::Object(entry) = entry else {
        return Err(ApiError::internal("an entry is an object"));
    };
    store_entry(
        &state,
        &caller,
        entry,
        "provenance.record_model_lineage",
        now,
    )
    .await
}
