//! `/v1/identities`: agent identities (UAITs).

use std::sync::Arc;

use attestix_core::{DisplayName, ExpiryDays, NewIdentity as IdentityParams, Uait};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use idempotency::IdempotencyContext;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    audit_draft, check_response_size, created, list_response, may_be_stored, new_resource_id,
    next_resource_id, no_errors, parse_revoke_body, refuse_nul, unix_ms, ApiJson, ApiPath,
    ApiQuery, JsonText, Paging,
};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::recovery::{ResourceKind, MAX_KEY_USES};
use crate::state::AppState;
use crate::storage::{IdentityFilter, NewIdentity, StorageError};

/// The body of `POST /v1/identities`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateIdentityRequest {
    /// The agent's name: trimmed, 1 to 500 characters, no control characters but
    /// tab, at least one visible character, no bidirectional overrides or isolates.
    #[schema(min_length = 1, max_length = 500, example = "Report Bot")]
    pub display_name: String,
    /// Where the identity comes from (`api_key`, `oauth2`, `did`, …).
    #[schema(min_length = 1, example = "api_key")]
    pub source_protocol: String,
    /// An identity token from the source system; stored masked.
    #[serde(default)]
    pub identity_token: String,
    /// What the agent can do.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// A description of the agent.
    #[serde(default)]
    pub description: String,
    /// The issuer's name; defaults to `self`.
    #[serde(default)]
    pub issuer_name: String,
    /// Days until the identity expires, 1 to 36500 (default 365).
    #[schema(minimum = 1, maximum = 36500)]
    #[serde(default, deserialize_with = "super::whole_number")]
    pub expiry_days: Option<i64>,
}

/// Query of `GET /v1/identities`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListIdentitiesQuery {
    /// Only identities from this source protocol.
    pub source_protocol: Option<String>,
    /// Include revoked identities (default false).
    #[serde(default)]
    pub include_revoked: bool,
}

/// The checks of an identity verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityChecks {
    /// The identity exists (for this caller).
    pub exists: bool,
    /// It has not been revoked.
    pub not_revoked: bool,
    /// It has not expired.
    pub not_expired: bool,
    /// Its signature verifies against the server's key.
    pub signature_valid: bool,
}

/// The result of `POST /v1/identities/{agent_id}/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityVerification {
    /// All checks passed.
    pub valid: bool,
    /// The identity checked.
    pub agent_id: String,
    /// Its display name, when it exists.
    pub display_name: Option<String>,
    /// Each check.
    pub checks: IdentityChecks,
}

fn validate(body: CreateIdentityRequest) -> Result<IdentityParams, ApiError> {
    let mut errors = Vec::new();
    let display_name = DisplayName::parse(&body.display_name)
        .map_err(|e| {
            errors.push(FieldError {
                field: e.field().into(),
                message: e.to_string(),
            })
        })
        .ok();
    let expiry_days = ExpiryDays::parse_optional(body.expiry_days)
        .map_err(|e| {
            errors.push(FieldError {
                field: e.field().into(),
                message: e.to_string(),
            })
        })
        .ok();
    if body.source_protocol.trim().is_empty() {
        errors.push(FieldError {
            field: "source_protocol".into(),
            message: "source_protocol must not be empty".into(),
        });
    }
    for (field, value) in [
        ("source_protocol", &body.source_protocol),
        ("identity_token", &body.identity_token),
        ("description", &body.description),
        ("issuer_name", &body.issuer_name),
    ] {
        refuse_nul(&mut errors, field, value);
    }
    for (index, capability) in body.capabilities.iter().flatten().enumerate() {
        refuse_nul(&mut errors, &format!("capabilities[{index}]"), capability);
    }
    let (Some(display_name), Some(expiry_days), true) =
        (display_name, expiry_days, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    let mut params = IdentityParams::new(display_name, body.source_protocol);
    params.identity_token = body.identity_token;
    params.capabilities = body.capabilities.unwrap_or_default();
    params.description = body.description;
    params.issuer_name = body.issuer_name;
    params.expiry_days = expiry_days;
    Ok(params)
}

/// Create a signed agent identity (UAIT).
#[utoipa::path(
    post,
    path = "/v1/identities",
    tag = "identities",
    request_body = CreateIdentityRequest,
    responses(
        (status = 201, description = "The signed UAIT", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateIdentityRequest>,
) -> Result<JsonText, ApiError> {
    let params = validate(body)?;
    let now = OffsetDateTime::now_utc();
    let (id, recovery) = new_resource_id(&state, ResourceKind::Identity, context.as_deref(), now);
    let mut uait = Uait::issue(params, &state.signer, now, id)
        .map_err(|error| ApiError::invalid("expiry_days", error.to_string()))?;
    let uait_protocol = uait.source_protocol.clone();
    let mut record = NewIdentity {
        agent_id: uait.agent_id.clone(),
        owner: caller.scope(),
        source_protocol: uait.source_protocol.clone(),
        created_at_ms: unix_ms(now),
        expires_at_ms: unix_ms(uait.expires_at.datetime()),
        document: serialize(&uait)?,
        recovery,
        audit: None,
    };
    let audit = |agent_id: &str| {
        let after = serde_json::json!({"agent_id": agent_id, "source_protocol": uait_protocol});
        audit_draft(
            &state,
            &caller,
            "identity.create",
            (agent_id, "identities"),
            after,
            now,
        )
    };
    record.audit = Some(audit(&record.agent_id)?);
    // Tests park a request here to kill the process while it holds a reservation.
    check_response_size(&state, &record.document, "body", "identity")?;
    fail::fail_point!("identity.before_commit");
    let mut inserted = state.storage.insert_identity(&record).await;
    for n in 1..=MAX_KEY_USES {
        let (Err(StorageError::Duplicate), Some(recovery)) = (&inserted, &record.recovery) else {
            break;
        };
        // The derived id holds another identity: the key's earlier use, made before
        // the retention (or a collision). Try the key's next id.
        let id = next_resource_id(&state, ResourceKind::Identity, recovery, n);
        uait = uait
            .with_new_id(&state.signer, id)
            .map_err(ApiError::internal)?;
        record.agent_id = uait.agent_id.clone();
        record.document = serialize(&uait)?;
        record.audit = Some(audit(&record.agent_id)?);
        inserted = state.storage.insert_identity(&record).await;
    }
    let inserted = inserted?;
    created(&state, inserted, record.document, "identity.after_commit")
}

fn serialize(uait: &Uait) -> Result<String, ApiError> {
    serde_json::to_string(uait).map_err(ApiError::internal)
}

/// List the caller's identities, oldest first, with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/identities",
    tag = "identities",
    params(ListIdentitiesQuery, Paging),
    responses(
        (status = 200, description = "A page of UAITs; the next page's cursor is in X-Next-Cursor", body = Vec<Object>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_identities(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListIdentitiesQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    if let Some(protocol) = &query.source_protocol {
        refuse_nul(&mut errors, "source_protocol", protocol);
    }
    no_errors(errors)?;
    let filter = IdentityFilter {
        source_protocol: query.source_protocol,
        include_revoked: query.include_revoked,
    };
    let page = state
        .storage
        .list_identities(&caller.scope(), &filter, paging.page()?)
        .await?;
    Ok(list_response(page))
}

/// The identity's stored document and its parsed form, if it exists for `caller`.
async fn load_stored(
    state: &AppState,
    caller: &Caller,
    agent_id: &str,
) -> Result<Option<(String, Uait)>, ApiError> {
    if !may_be_stored(agent_id) {
        return Ok(None);
    }
    let Some(document) = state
        .storage
        .get_identity(&caller.scope(), agent_id)
        .await?
    else {
        return Ok(None);
    };
    let uait = serde_json::from_str(&document).map_err(|e| {
        ApiError::internal(format!("stored identity {agent_id} is unreadable: {e}"))
    })?;
    Ok(Some((document, uait)))
}

async fn load(state: &AppState, caller: &Caller, agent_id: &str) -> Result<Option<Uait>, ApiError> {
    Ok(load_stored(state, caller, agent_id)
        .await?
        .map(|(_, uait)| uait))
}

/// Get one identity.
#[utoipa::path(
    get,
    path = "/v1/identities/{agent_id}",
    tag = "identities",
    params(("agent_id" = String, Path, description = "The agent id, `attestix:` + 16 hex digits")),
    responses(
        (status = 200, description = "The UAIT", body = Object, content_type = "application/json"),
        (status = 404, description = "No such identity", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    let found = if may_be_stored(&agent_id) {
        state
            .storage
            .get_identity(&caller.scope(), &agent_id)
            .await?
    } else {
        None
    };
    match found {
        Some(document) => Ok(JsonText::new(StatusCode::OK, document)),
        None => Err(ApiError::NotFound {
            kind: "identity",
            id: agent_id,
        }),
    }
}

/// Verify an identity: existence, revocation, expiry and signature.
#[utoipa::path(
    post,
    path = "/v1/identities/{agent_id}/verify",
    tag = "identities",
    params(("agent_id" = String, Path, description = "The agent id")),
    responses((status = 200, description = "The verification result", body = IdentityVerification)),
)]
pub async fn verify_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<Json<IdentityVerification>, ApiError> {
    let Some(uait) = load(&state, &caller, &agent_id).await? else {
        return Ok(Json(IdentityVerification {
            valid: false,
            agent_id,
            display_name: None,
            checks: IdentityChecks {
                exists: false,
                not_revoked: false,
                not_expired: false,
                signature_valid: false,
            },
        }));
    };
    let check = uait.verify(&state.signer.verifying_key(), OffsetDateTime::now_utc());
    Ok(Json(IdentityVerification {
        valid: check.valid,
        agent_id: uait.agent_id,
        display_name: Some(uait.display_name),
        checks: IdentityChecks {
            exists: true,
            not_revoked: check.not_revoked,
            not_expired: check.not_expired,
            signature_valid: check.signature_valid,
        },
    }))
}

/// Revoke an identity. The body `{"reason": "…"}` is optional.
///
/// Revoking an identity already revoked changes nothing: the answer is the
/// identity as revoked the first time, with that revocation's reason and time
/// (a retried DELETE must not rewrite them).
#[utoipa::path(
    delete,
    path = "/v1/identities/{agent_id}",
    tag = "identities",
    params(("agent_id" = String, Path, description = "The agent id")),
    request_body(content = Option<super::RevokeRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "The revoked UAIT; for an identity already revoked, unchanged, with the first revocation's reason and time", body = Object, content_type = "application/json"),
        (status = 400, description = "The body is not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such identity", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body is not a `{reason}` object with a string reason", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
    body: Bytes,
) -> Result<JsonText, ApiError> {
    let request = parse_revoke_body(&body)?;
    let not_found = || ApiError::NotFound {
        kind: "identity",
        id: agent_id.clone(),
    };
    let Some((stored, mut uait)) = load_stored(&state, &caller, &agent_id).await? else {
        return Err(not_found());
    };
    if uait.revoked {
        return Ok(JsonText::new(StatusCode::OK, stored));
    }
    let now = OffsetDateTime::now_utc();
    uait.revoke(request.reason, now);
    let document = serde_json::to_string(&uait).map_err(ApiError::internal)?;
    let after = serde_json::json!({"agent_id": agent_id, "revoked": true});
    let event = audit_draft(
        &state,
        &caller,
        "identity.revoke",
        (&agent_id, "identities"),
        after,
        now,
    )?;
    if state
        .storage
        .revoke_identity(&caller.scope(), &agent_id, &document, Some(&event))
        .await?
    {
        return Ok(JsonText::new(StatusCode::OK, document));
    }
    // Revoked by a concurrent request since it was read: that revocation stands.
    match load_stored(&state, &caller, &agent_id).await? {
        Some((stored, uait)) if uait.revoked => Ok(JsonText::new(StatusCode::OK, stored)),
        _ => Err(not_found()),
    }
}

/// The body of `POST /v1/identities/{agent_id}/translate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TranslateIdentityRequest {
    /// `a2a_agent_card`, `did_document`, `oauth_claims` or `summary`.
    #[schema(
        example = "did_document",
        pattern = "^(a2a_agent_card|did_document|oauth_claims|summary)$"
    )]
    pub target_format: String,
}

/// An identity in another format: an A2A agent card, a DID document, OAuth 2.0
/// claims, or a summary (the reference's shapes).
#[utoipa::path(
    post,
    path = "/v1/identities/{agent_id}/translate",
    tag = "identities",
    params(("agent_id" = String, Path, description = "The agent id")),
    request_body = TranslateIdentityRequest,
    responses(
        (status = 200, description = "The identity in the asked format", body = Object, content_type = "application/json"),
        (status = 404, description = "No such identity", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown target_format (the problem names the four allowed)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn translate_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
    ApiJson(body): ApiJson<TranslateIdentityRequest>,
) -> Result<JsonText, ApiError> {
    use attestix_core::translate::{translate, TargetFormat};
    let Some(format) = TargetFormat::parse(&body.target_format) else {
        return Err(ApiError::invalid(
            "target_format",
            format!(
                "must be one of {} (got {:?})",
                TargetFormat::NAMES.join(", "),
                body.target_format.chars().take(64).collect::<String>()
            ),
        ));
    };
    let Some((document, _)) = load_stored(&state, &caller, &agent_id).await? else {
        return Err(ApiError::NotFound {
            kind: "identity",
            id: agent_id,
        });
    };
    let uait: serde_json::Value = serde_json::from_str(&document).map_err(|e| {
        ApiError::internal(format!("stored identity {agent_id} is unreadable: {e}"))
    })?;
    JsonText::ok(&translate(&uait, format))
}

/// Erase an agent (GDPR Art. 17): its identity, the credentials issued to it, its
/// delegations, its compliance, provenance and reputation records and the stored
/// idempotency responses that mention it, all of the caller's scope. Audit events
/// about it are redacted, not deleted, so the audit chain still verifies; the purge is
/// itself an event, whose target is a salted digest rather than the id. An agent with
/// nothing stored is purged with every count zero.
#[utoipa::path(
    delete,
    path = "/v1/identities/{agent_id}/purge",
    tag = "identities",
    params(("agent_id" = String, Path, description = "The agent id")),
    responses(
        (status = 200, description = "What was erased, by kind", body = crate::purge::PurgeReport),
        (status = 422, description = "The agent id is empty or too long", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn purge_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<Json<crate::purge::PurgeReport>, ApiError> {
    if agent_id.trim().is_empty() {
        return Err(ApiError::invalid("agent_id", "must not be empty"));
    }
    let now = OffsetDateTime::now_utc();
    let digest = crate::purge::salted_digest(&agent_id);
    let after = serde_json::json!({ "target": digest });
    let event = audit_draft(
        &state,
        &caller,
        "identity.purge",
        (&digest, "identities"),
        after,
        now,
    )?;
    let scope = caller.scope();
    let (job_scope, job_agent) = (scope.clone(), agent_id.clone());
    let mut counts = crate::storage::records::write_after_events_with(&*state.storage, move |tx| {
        Box::pin(async move { crate::purge::purge(tx, &job_scope, &job_agent, &event).await })
    })
    .await?;
    state.storage.erase_residue().await?;
    if let Some(store) = &state.idempotency {
        counts.idempotency_responses = store
            .erase_mentioning(&scope, agent_id.as_bytes())
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(Json(crate::purge::PurgeReport {
        agent_id,
        purged_at: attestix_core::format_isoformat(now),
        counts,
        external_copies: crate::purge::EXTERNAL_COPIES.to_owned(),
    }))
}
