//! `/v1/reputation`: interactions and recency-weighted trust scores.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    audit_draft, audit_draft_by, check_chars, may_be_stored, no_errors, ApiJson, ApiPath, ApiQuery,
    JsonText, Paging,
};
use crate::audit::actor;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::reputation::{self as score, Interaction, Query, Recorded, OUTCOMES};
use crate::state::AppState;
use crate::storage::records;

/// The longest agent or counterparty id accepted.
const MAX_ID_CHARS: usize = 256;
/// The longest category accepted.
const MAX_CATEGORY_CHARS: usize = 64;
/// The longest `details` accepted.
const MAX_DETAILS_CHARS: usize = 4096;

/// The body of `POST /v1/reputation/interactions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecordInteractionRequest {
    /// The agent being evaluated (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// The other party (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub counterparty_id: String,
    /// `success`, `failure`, `partial` or `timeout`.
    #[schema(example = "success")]
    pub outcome: String,
    /// The category (1 to 64 characters, default `general`).
    #[serde(default = "general")]
    #[schema(min_length = 1, max_length = 64, default = "general")]
    pub category: String,
    /// Free text (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub details: String,
}

fn general() -> String {
    "general".into()
}

/// Query of `GET /v1/reputation`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryReputation {
    /// Lowest score, inclusive (default 0).
    #[param(minimum = 0, maximum = 1)]
    pub min_score: Option<f64>,
    /// Highest score, inclusive (default 1).
    #[param(minimum = 0, maximum = 1)]
    pub max_score: Option<f64>,
    /// Fewest interactions (default 0).
    #[param(minimum = 0)]
    pub min_interactions: Option<i64>,
    /// Only this category's interactions count (at most 64 characters).
    #[param(max_length = 64)]
    pub category: Option<String>,
}

fn validate(body: RecordInteractionRequest, now: OffsetDateTime) -> Result<Interaction, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_chars(
        &mut errors,
        "counterparty_id",
        &body.counterparty_id,
        1,
        MAX_ID_CHARS,
    );
    check_chars(
        &mut errors,
        "category",
        &body.category,
        1,
        MAX_CATEGORY_CHARS,
    );
    check_chars(&mut errors, "details", &body.details, 0, MAX_DETAILS_CHARS);
    if !OUTCOMES.iter().any(|(name, _)| *name == body.outcome) {
        errors.push(FieldError {
            field: "outcome".into(),
            message: "outcome must be one of success, partial, failure, timeout".into(),
        });
    }
    no_errors(errors)?;
    Ok(Interaction {
        agent_id: body.agent_id,
        counterparty_id: body.counterparty_id,
        outcome: body.outcome,
        category: body.category,
        details: body.details,
        timestamp: attestix_core::format_isoformat(now),
        epoch: now.unix_timestamp(),
    })
}

/// Unix seconds with their fraction, as Python's `time.time()`.
fn seconds(at: OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// Record an interaction and update the agent's trust score.
#[utoipa::path(
    post,
    path = "/v1/reputation/interactions",
    tag = "reputation",
    request_body = RecordInteractionRequest,
    responses(
        (status = 201, description = "The interaction and the agent's new score", body = Recorded, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_interaction(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<RecordInteractionRequest>,
) -> Result<JsonText, ApiError> {
    let now = OffsetDateTime::now_utc();
    let interaction = validate(body, now)?;
    let agent = interaction.agent_id.clone();
    let after = json!({
        "agent_id": agent,
        "outcome": interaction.outcome,
        "category": interaction.category,
    });
    let event = audit_draft_by(
        &caller,
        actor::REPUTATION,
        "reputation.record",
        (&agent, "reputation"),
        after,
        now,
    )?
    .mentioning([interaction.counterparty_id.clone()]);
    // The identity's own event, made once the new score is known.
    let update = audit_draft(
        &state,
        &caller,
        "identity.update",
        (&agent, "identities"),
        json!(null),
        now,
    )?;
    let identity_event = move |trust_score: f64| {
        let after = json!({"agent_id": update.target_id, "reputation_score": trust_score});
        Ok(crate::audit::AuditDraft {
            change_digest: crate::audit::change_digest(&after)?,
            ..update
        })
    };
    let scope = caller.scope();
    let stored = interaction.clone();
    let at = seconds(now);
    let updated_score = records::write_with(&*state.storage, move |tx| {
        Box::pin(
            async move { score::record(tx, &scope, &stored, &event, identity_event, at).await },
        )
    })
    .await?;
    let answer = Recorded {
        recorded: true,
        interaction,
        updated_score,
    };
    let body = serde_json::to_string(&answer).map_err(ApiError::internal)?;
    Ok(JsonText::new(StatusCode::CREATED, body))
}

/// An agent's trust score with a breakdown per category.
#[utoipa::path(
    get,
    path = "/v1/reputation/{agent_id}",
    tag = "reputation",
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The score and breakdown (`trust_score` null and a message when the agent has no interactions)", body = Object, content_type = "application/json"),
    )
)]
pub async fn get_reputation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    let history = if may_be_stored(&agent_id) {
        let scope = caller.scope();
        let agent = agent_id.clone();
        records::read_with(&*state.storage, move |tx| {
            Box::pin(async move { score::interactions_of(tx, &scope, &agent).await })
        })
        .await?
    } else {
        Vec::new()
    };
    let now = seconds(OffsetDateTime::now_utc());
    JsonText::ok(&score::breakdown(&agent_id, &history, now))
}

/// Agents by trust score (highest first, then agent id), with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/reputation",
    tag = "reputation",
    params(QueryReputation, Paging),
    responses(
        (status = 200, description = "A page of agents; the next page's cursor is in X-Next-Cursor", body = Vec<score::Ranked>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn query_reputation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<QueryReputation>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    let min_score = query.min_score.unwrap_or(0.0);
    let max_score = query.max_score.unwrap_or(1.0);
    for (field, value) in [("min_score", min_score), ("max_score", max_score)] {
        if !(0.0..=1.0).contains(&value) {
            errors.push(FieldError {
                field: field.into(),
                message: format!("{field} must be between 0 and 1"),
            });
        }
    }
    let min_interactions = query.min_interactions.unwrap_or(0);
    if min_interactions < 0 {
        errors.push(FieldError {
            field: "min_interactions".into(),
            message: "min_interactions must not be negative".into(),
        });
    }
    if let Some(category) = &query.category {
        check_chars(&mut errors, "category", category, 1, MAX_CATEGORY_CHARS);
    }
    no_errors(errors)?;
    let page = paging.page()?;
    let scope = caller.scope();
    let all = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { score::all_interactions(tx, &scope).await })
    })
    .await?;
    let filter = Query {
        min_score,
        max_score,
        min_interactions: min_interactions as u64,
        category: query.category,
    };
    let ranked = score::rank(&all, &filter, seconds(OffsetDateTime::now_utc()));
    // The cursor is the position after the previous page in this total order.
    let start = usize::try_from(page.after.unwrap_or(0)).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(ranked.len());
    let items = ranked.get(start..end).unwrap_or(&[]);
    let next = (end < ranked.len()).then(|| format!("c{end}"));
    let body = serde_json::to_string(items).map_err(ApiError::internal)?;
    Ok(JsonText::new(StatusCode::OK, body).with_cursor(next))
}
