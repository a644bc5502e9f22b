//! `/v1/delegations`: UCAN-style delegation tokens (EdDSA JWTs signed by the
//! server's key), laid out as the reference's (see [`attestix_core::delegation`]).
//!
//! The token is never stored, as in the reference: the database keeps the record
//! (`jti`, issuer, audience, capabilities, times, revocation). A create retried after
//! a crash (see [`crate::recovery`]) signs the token again from its record and the
//! request, and Ed25519 signatures are deterministic, so it is the same token.

use std::collections::HashSet;
use std::sync::Arc;

use attestix_core::delegation::{
    jti_from_bytes, python_list, unix_isoformat, verify_chain, ChainVerdict, DelegationClaims,
};
use attestix_core::{format_isoformat, Timestamp, Uait};
use axum::extract::State;
use axum::Extension;
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
use crate::storage::{DelegationFilter, DelegationRole, Inserted, NewDelegation, StorageError};

/// The longest `issuer_agent_id`, in characters.
pub const MAX_AGENT_ID_CHARS: usize = 256;
/// The longest `audience_agent_id`, in characters.
pub const MAX_AUDIENCE_CHARS: usize = 512;
/// The most capabilities one delegation grants.
pub const MAX_CAPABILITIES: usize = 256;
/// The longest capability, in characters.
pub const MAX_CAPABILITY_CHARS: usize = 256;
/// The longest token (`parent_token`, or the token to verify), in bytes.
pub const MAX_TOKEN_BYTES: usize = 65_536;
/// The longest revocation reason, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// The `expiry_hours` range.
pub const EXPIRY_HOURS: std::ops::RangeInclusive<i64> = 1..=87_600;

/// The body of `POST /v1/delegations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateDelegationRequest {
    /// The agent granting the capabilities: an active identity of the caller's
    /// scope; with a parent, the parent delegation's audience. At most 256 characters.
    #[schema(
        min_length = 1,
        max_length = 256,
        example = "attestix:4556112f7bb94b91"
    )]
    pub issuer_agent_id: String,
    /// The agent receiving them (any identifier, often a DID). 1 to 512 characters.
    #[schema(
        min_length = 1,
        max_length = 512,
        example = "did:key:z6MkvjRfXEbX9mQfbrJ7bqSm1DLPrg6E7H1ztXmHbHBS4Z6V"
    )]
    pub audience_agent_id: String,
    /// The capabilities granted: at most 256, each 1 to 256 characters; with a
    /// parent, a subset of the parent's.
    #[schema(max_items = 256, example = json!(["read", "write"]))]
    pub capabilities: Vec<String>,
    /// Hours until the delegation expires, 1 to 87600 (default 24).
    #[schema(minimum = 1, maximum = 87600)]
    #[serde(default, deserialize_with = "super::whole_number")]
    pub expiry_hours: Option<i64>,
    /// A delegation token this one is chained to (attenuation): it must verify, and
    /// `issuer_agent_id` must be its audience. At most 65536 bytes.
    #[schema(max_length = 65536)]
    #[serde(default)]
    pub parent_token: Option<String>,
}

/// A delegation as stored and listed (fields in the reference's order).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DelegationRecord {
    /// The token's id.
    pub jti: String,
    /// The delegating agent.
    pub issuer: String,
    /// The receiving agent.
    pub audience: String,
    /// The capabilities granted.
    pub capabilities: Vec<String>,
    /// Creation time (`isoformat()`).
    pub created_at: String,
    /// Expiry, the token's `exp` (`isoformat()`, no fraction).
    pub expires_at: String,
    /// Revoked.
    pub revoked: bool,
    /// The reason given at revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The answer of `POST /v1/delegations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegationCreated {
    /// The signed UCAN-style JWT.
    pub token: String,
    /// Its record.
    pub delegation: DelegationRecord,
}

/// The body of `POST /v1/delegations/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyDelegationRequest {
    /// The delegation token; at most 65536 bytes.
    #[schema(max_length = 65536)]
    pub token: String,
}

/// A token that verified, with its whole proof chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidDelegation {
    /// `true`.
    pub valid: bool,
    /// `jti`.
    #[schema(value_type = Option<String>)]
    pub jti: serde_json::Value,
    /// `delegator`: the granting agent.
    #[schema(value_type = Option<String>)]
    pub delegator: serde_json::Value,
    /// `aud`: the receiving agent.
    #[schema(value_type = Option<String>)]
    pub audience: serde_json::Value,
    /// `att`.
    #[schema(value_type = Vec<String>)]
    pub capabilities: serde_json::Value,
    /// `prf`: the parent tokens.
    #[schema(value_type = Vec<String>)]
    pub proof_chain: serde_json::Value,
    /// `iat` (`isoformat()`).
    pub issued_at: String,
    /// `exp` (`isoformat()`).
    pub expires_at: String,
    /// `false` for a token that verified.
    pub expired: bool,
    /// `typ`, `ucan/delegation`.
    #[serde(rename = "type")]
    #[schema(value_type = Option<String>)]
    pub token_type: serde_json::Value,
}

/// A token that did not verify.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidDelegation {
    /// `false`.
    pub valid: bool,
    /// The reference's reason: `Token has been revoked`, `Token has expired`,
    /// `Invalid token`, `Cycle detected in delegation proof chain`, `Malformed parent
    /// token in proof chain`, `Invalid parent in proof chain: …`, or `Capability
    /// escalation in proof chain: …`.
    pub reason: String,
}

/// The answer of `POST /v1/delegations/verify`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DelegationVerification {
    /// It verified.
    Valid(Box<ValidDelegation>),
    /// It did not.
    Invalid(InvalidDelegation),
}

/// Query of `GET /v1/delegations`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDelegationsQuery {
    /// Only delegations with this agent on the side `role` names.
    pub agent_id: Option<String>,
    /// `issuer`, `audience` or `any` (default); anything else is 422.
    #[param(pattern = "^(issuer|audience|any)$")]
    pub role: Option<String>,
    /// Include expired delegations (default false).
    #[serde(default)]
    pub include_expired: bool,
    /// Include revoked delegations (default false).
    #[serde(default)]
    pub include_revoked: bool,
}

/// The answer of `DELETE /v1/delegations/{jti}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegationRevoked {
    /// `true`.
    pub revoked: bool,
    /// The delegation revoked.
    pub jti: String,
    /// The reason given (empty when none).
    pub reason: String,
}

/// A create request whose fields passed their rules.
struct ValidCreate {
    issuer: String,
    audience: String,
    capabilities: Vec<String>,
    expiry_hours: i64,
    parent_token: Option<String>,
}

fn validate(body: CreateDelegationRequest) -> Result<ValidCreate, ApiError> {
    let mut errors = Vec::new();
    let mut check_text = |field: &str, value: &str, max: usize| {
        let chars = value.chars().count();
        if value.trim().is_empty() {
            errors.push(FieldError {
                field: field.into(),
                message: format!("{field} must not be empty"),
            });
        } else if chars > max {
            errors.push(FieldError {
                field: field.into(),
                message: format!("{field} must be at most {max} characters (got {chars})"),
            });
        }
        refuse_nul(&mut errors, field, value);
    };
    check_text("issuer_agent_id", &body.issuer_agent_id, MAX_AGENT_ID_CHARS);
    check_text(
        "audience_agent_id",
        &body.audience_agent_id,
        MAX_AUDIENCE_CHARS,
    );
    if body.capabilities.len() > MAX_CAPABILITIES {
        errors.push(FieldError {
            field: "capabilities".into(),
            message: format!(
                "at most {MAX_CAPABILITIES} capabilities (got {})",
                body.capabilities.len()
            ),
        });
    } else {
        for (index, capability) in body.capabilities.iter().enumerate() {
            check_text(
                &format!("capabilities[{index}]"),
                capability,
                MAX_CAPABILITY_CHARS,
            );
        }
    }
    let expiry_hours = body.expiry_hours.unwrap_or(24);
    if !EXPIRY_HOURS.contains(&expiry_hours) {
        errors.push(FieldError {
            field: "expiry_hours".into(),
            message: format!(
                "must be between {} and {} (got {expiry_hours})",
                EXPIRY_HOURS.start(),
                EXPIRY_HOURS.end()
            ),
        });
    }
    if let Some(parent) = &body.parent_token {
        if parent.len() > MAX_TOKEN_BYTES || parent.is_empty() {
            errors.push(FieldError {
                field: "parent_token".into(),
                message: format!(
                    "must be 1 to {MAX_TOKEN_BYTES} bytes (got {})",
                    parent.len()
                ),
            });
        }
    }
    no_errors(errors)?;
    Ok(ValidCreate {
        issuer: body.issuer_agent_id,
        audience: body.audience_agent_id,
        capabilities: body.capabilities,
        expiry_hours,
        parent_token: body.parent_token,
    })
}

/// Verifies `token` and its chain at `now`, with revocations read from the database.
///
/// One walk assuming nothing is revoked records the jtis it consults; one query
/// reads which of them are revoked. The walk consults revocation only for the jtis
/// it visits, so when none is revoked its verdict is the true one; otherwise a second
/// walk with the revoked set gives it (it stops no later, so consults no jti the
/// query did not cover).
async fn verify_with_records(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<ChainVerdict, ApiError> {
    let key = &state.delegation_signatures;
    let consulted = std::cell::RefCell::new(Vec::new());
    let optimistic = verify_chain(token, key, now, &|jti| {
        consulted.borrow_mut().push(jti.to_owned());
        false
    });
    // NUL cannot be stored (PostgreSQL), so a jti holding one is not revoked.
    let jtis: Vec<String> = consulted
        .into_inner()
        .into_iter()
        .filter(|jti| may_be_stored(jti))
        .collect();
    let revoked: HashSet<String> = state
        .storage
        .revoked_delegations(&jtis)
        .await?
        .into_iter()
        .collect();
    if revoked.is_empty() {
        return Ok(optimistic);
    }
    Ok(verify_chain(token, key, now, &|jti| revoked.contains(jti)))
}

/// The active identity `agent_id` of the caller's scope, or why it cannot delegate.
async fn require_active_issuer(
    state: &AppState,
    caller: &Caller,
    agent_id: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let stored = if may_be_stored(agent_id) {
        state
            .storage
            .get_identity(&caller.scope(), agent_id)
            .await?
    } else {
        None
    };
    let Some(stored) = stored else {
        return Err(ApiError::NotFound {
            kind: "identity",
            id: agent_id.to_owned(),
        });
    };
    let uait: Uait = serde_json::from_str(&stored).map_err(|e| {
        ApiError::internal(format!("stored identity {agent_id} is unreadable: {e}"))
    })?;
    if uait.revoked {
        return Err(ApiError::Conflict(format!(
            "identity {agent_id} is revoked and cannot delegate"
        )));
    }
    if uait.expires_at.datetime() <= now {
        return Err(ApiError::Conflict(format!(
            "identity {agent_id} has expired and cannot delegate"
        )));
    }
    Ok(())
}

/// Checks the parent of a chained create: it verifies, it holds every capability
/// asked for, and its audience is the new delegator.
async fn check_parent(
    state: &AppState,
    request: &ValidCreate,
    parent: &str,
    now: i64,
) -> Result<(), ApiError> {
    let verified = match verify_with_records(state, parent, now).await? {
        ChainVerdict::Valid(verified) => verified,
        ChainVerdict::Invalid { reason } => {
            return Err(ApiError::invalid(
                "parent_token",
                format!("Invalid parent delegation: {reason}"),
            ))
        }
    };
    let held: HashSet<&str> = verified
        .capabilities
        .as_array()
        .map(|items| items.iter().filter_map(|item| item.as_str()).collect())
        .unwrap_or_default();
    let mut escalated: Vec<&str> = request
        .capabilities
        .iter()
        .map(String::as_str)
        .filter(|capability| !held.contains(capability))
        .collect();
    if !escalated.is_empty() {
        escalated.sort_unstable();
        escalated.dedup();
        return Err(ApiError::invalid(
            "capabilities",
            format!(
                "Capability escalation denied: requested capabilities {} are not held by parent delegation",
                python_list(&escalated)
            ),
        ));
    }
    if verified.audience.as_str() != Some(request.issuer.as_str()) {
        return Err(ApiError::invalid(
            "issuer_agent_id",
            format!(
                "must be the parent delegation's audience ({}): only the holder of a delegation can delegate it further",
                verified.audience
            ),
        ));
    }
    Ok(())
}

/// The claims of the token for `record`, made by `request`.
fn claims_for(
    state: &AppState,
    request: &ValidCreate,
    record: &DelegationRecord,
) -> Result<DelegationClaims, ApiError> {
    let seconds = |text: &str| {
        Timestamp::parse(text)
            .map(|at| at.datetime().unix_timestamp())
            .map_err(|e| {
                ApiError::internal(format!("delegation {}: bad time {text}: {e}", record.jti))
            })
    };
    Ok(DelegationClaims {
        issuer_did: state.signer.did().to_owned(),
        audience: request.audience.clone(),
        issued_at: seconds(&record.created_at)?,
        expires_at: seconds(&record.expires_at)?,
        jti: record.jti.clone(),
        capabilities: request.capabilities.clone(),
        delegator: request.issuer.clone(),
        proofs: request.parent_token.iter().cloned().collect(),
    })
}

/// `{"token": …, "delegation": <record as stored>}`.
fn created_body(token: &str, record_document: &str) -> Result<String, ApiError> {
    let token = serde_json::to_string(token).map_err(ApiError::internal)?;
    Ok(format!(
        "{{\"token\":{token},\"delegation\":{record_document}}}"
    ))
}

/// Create a delegation token, optionally chained to (attenuating) a parent.
#[utoipa::path(
    post,
    path = "/v1/delegations",
    tag = "delegations",
    request_body = CreateDelegationRequest,
    responses(
        (status = 201, description = "The signed token and its record", body = DelegationCreated, content_type = "application/json"),
        (status = 404, description = "The issuer is not an identity of the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The issuer is revoked or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule, the parent does not verify, a capability is not the parent's, or the issuer is not the parent's audience", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_delegation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateDelegationRequest>,
) -> Result<JsonText, ApiError> {
    let request = validate(body)?;
    let now = OffsetDateTime::now_utc();
    let now_s = now.unix_timestamp();
    require_active_issuer(&state, &caller, &request.issuer, now).await?;
    if let Some(parent) = &request.parent_token {
        check_parent(&state, &request, parent, now_s).await?;
    }
    let (id, recovery) = new_resource_id(&state, ResourceKind::Delegation, context.as_deref(), now);
    let expires_at_s = now_s + request.expiry_hours * 3600;
    let mut record = DelegationRecord {
        jti: jti_from_bytes(id.into_bytes()),
        issuer: request.issuer.clone(),
        audience: request.audience.clone(),
        capabilities: request.capabilities.clone(),
        created_at: format_isoformat(now),
        expires_at: unix_isoformat(expires_at_s),
        revoked: false,
        revocation_reason: None,
        revoked_at: None,
    };
    let mut row = NewDelegation {
        jti: record.jti.clone(),
        owner: caller.scope(),
        issuer: request.issuer.clone(),
        audience: request.audience.clone(),
        created_at_ms: unix_ms(now),
        expires_at_ms: expires_at_s * 1000,
        document: serialize(&record)?,
        recovery,
        audit: None,
    };
    let audit = |jti: &str| {
        let after =
            serde_json::json!({"jti": jti, "issuer": request.issuer, "audience": request.audience});
        audit_draft(
            &state,
            &caller,
            "delegation.create",
            (jti, "delegations"),
            after,
            now,
        )
        .map(|draft| draft.mentioning([request.issuer.clone(), request.audience.clone()]))
    };
    row.audit = Some(audit(&row.jti)?);
    // Every jti has 22 characters, so this size holds whichever jti the insert ends with.
    let mut token = claims_for(&state, &request, &record)?.mint(&state.signer);
    check_response_size(
        &state,
        &created_body(&token, &row.document)?,
        "body",
        "delegation",
    )?;
    let mut inserted = state.storage.insert_delegation(&row).await;
    for n in 1..=MAX_KEY_USES {
        let (Err(StorageError::Duplicate), Some(recovery)) = (&inserted, &row.recovery) else {
            break;
        };
        let id = next_resource_id(&state, ResourceKind::Delegation, recovery, n);
        record.jti = jti_from_bytes(id.into_bytes());
        row.jti = record.jti.clone();
        row.document = serialize(&record)?;
        row.audit = Some(audit(&row.jti)?);
        token = claims_for(&state, &request, &record)?.mint(&state.signer);
        inserted = state.storage.insert_delegation(&row).await;
    }
    let (inserted, body) = match inserted? {
        Inserted::Created => (Inserted::Created, created_body(&token, &row.document)?),
        Inserted::Recovered(existing) => {
            // Signed again from the stored record: the same bytes as the first time.
            let stored: DelegationRecord = serde_json::from_str(&existing)
                .map_err(|e| ApiError::internal(format!("stored delegation is unreadable: {e}")))?;
            let token = claims_for(&state, &request, &stored)?.mint(&state.signer);
            let body = created_body(&token, &existing)?;
            (Inserted::Recovered(body.clone()), body)
        }
        Inserted::KeyReused => (Inserted::KeyReused, String::new()),
    };
    created(&state, inserted, body, "delegation.after_commit")
}

fn serialize(record: &DelegationRecord) -> Result<String, ApiError> {
    serde_json::to_string(record).map_err(ApiError::internal)
}

/// Verify a delegation token and its whole proof chain: signatures, times,
/// revocation (from the database, so it holds on every instance sharing it) and
/// capability attenuation.
#[utoipa::path(
    post,
    path = "/v1/delegations/verify",
    tag = "delegations",
    request_body = VerifyDelegationRequest,
    responses(
        (status = 200, description = "The verdict: the token's claims, or `valid: false` with the reason", body = DelegationVerification, content_type = "application/json"),
        (status = 422, description = "The token is missing or longer than 65536 bytes", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_delegation(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<VerifyDelegationRequest>,
) -> Result<JsonText, ApiError> {
    if body.token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::invalid(
            "token",
            format!(
                "must be at most {MAX_TOKEN_BYTES} bytes (got {})",
                body.token.len()
            ),
        ));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let answer = match verify_with_records(&state, &body.token, now).await? {
        ChainVerdict::Valid(valid) => {
            let valid = *valid;
            DelegationVerification::Valid(Box::new(ValidDelegation {
                valid: true,
                jti: valid.jti,
                delegator: valid.delegator,
                audience: valid.audience,
                capabilities: valid.capabilities,
                proof_chain: valid.proof_chain,
                issued_at: valid.issued_at,
                expires_at: valid.expires_at,
                expired: valid.expired,
                token_type: valid.token_type,
            }))
        }
        ChainVerdict::Invalid { reason } => DelegationVerification::Invalid(InvalidDelegation {
            valid: false,
            reason,
        }),
    };
    JsonText::ok(&answer)
}

/// List the caller's delegations, oldest first, with cursor paging. Expired and
/// revoked ones are left out unless asked for.
#[utoipa::path(
    get,
    path = "/v1/delegations",
    tag = "delegations",
    params(ListDelegationsQuery, Paging),
    responses(
        (status = 200, description = "A page of delegation records; the next page's cursor is in X-Next-Cursor", body = Vec<DelegationRecord>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule (an unknown role, a bad limit or cursor)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_delegations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListDelegationsQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    if let Some(agent) = &query.agent_id {
        refuse_nul(&mut errors, "agent_id", agent);
    }
    let role = match query.role.as_deref() {
        None | Some("any") => DelegationRole::Any,
        Some("issuer") => DelegationRole::Issuer,
        Some("audience") => DelegationRole::Audience,
        Some(other) => {
            errors.push(FieldError {
                field: "role".into(),
                message: format!("must be one of issuer, audience, any (got {other:?})"),
            });
            DelegationRole::Any
        }
    };
    no_errors(errors)?;
    let filter = DelegationFilter {
        agent_id: query.agent_id,
        role,
        include_expired: query.include_expired,
        include_revoked: query.include_revoked,
        now_ms: unix_ms(OffsetDateTime::now_utc()),
    };
    let page = state
        .storage
        .list_delegations(&caller.scope(), &filter, paging.page()?)
        .await?;
    Ok(list_response(page))
}

/// Revoke a delegation. Tokens naming it, and every token chained to it, stop
/// verifying on every instance sharing the database. The body `{"reason": "…"}` is
/// optional.
#[utoipa::path(
    delete,
    path = "/v1/delegations/{jti}",
    tag = "delegations",
    params(("jti" = String, Path, description = "The delegation's jti")),
    request_body(content = Option<super::RevokeRequest>, description = "Optional reason, at most 1000 characters"),
    responses(
        (status = 200, description = "Revoked", body = DelegationRevoked, content_type = "application/json"),
        (status = 400, description = "The body is not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delegation in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body is not a `{reason}` object with a string reason of at most 1000 characters", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_delegation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(jti): ApiPath<String>,
    body: Bytes,
) -> Result<JsonText, ApiError> {
    let request = parse_revoke_body(&body)?;
    let chars = request.reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters (got {chars})"),
        ));
    }
    let stored = if may_be_stored(&jti) {
        state.storage.get_delegation(&caller.scope(), &jti).await?
    } else {
        None
    };
    let Some(stored) = stored else {
        return Err(ApiError::NotFound {
            kind: "delegation",
            id: jti,
        });
    };
    let mut record: DelegationRecord = serde_json::from_str(&stored)
        .map_err(|e| ApiError::internal(format!("stored delegation {jti} is unreadable: {e}")))?;
    let already = || ApiError::Conflict(format!("delegation {jti} is already revoked"));
    if record.revoked {
        return Err(already());
    }
    record.revoked = true;
    record.revocation_reason = Some(request.reason.clone());
    let now = OffsetDateTime::now_utc();
    record.revoked_at = Some(format_isoformat(now));
    let after = serde_json::json!({"jti": jti, "revoked": true});
    let event = audit_draft(
        &state,
        &caller,
        "delegation.revoke",
        (&jti, "delegations"),
        after,
        now,
    )?
    .mentioning([record.issuer.clone(), record.audience.clone()]);
    if !state
        .storage
        .revoke_delegation(&caller.scope(), &jti, &serialize(&record)?, Some(&event))
        .await?
    {
        // Revoked by a concurrent request since it was read.
        return Err(already());
    }
    let answer = DelegationRevoked {
        revoked: true,
        jti,
        reason: request.reason,
    };
    JsonText::ok(&answer)
}
