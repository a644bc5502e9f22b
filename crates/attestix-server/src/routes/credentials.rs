//! `/v1/credentials`: Verifiable Credentials.

use std::sync::Arc;

use attestix_core::{
    verify_credential, Claims, CredentialVerification, ExpiryDays,
    NewCredential as CredentialParams, VerifiableCredential,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use idempotency::IdempotencyContext;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    created, list_response, new_resource_id, next_resource_id, parse_revoke_body, unix_ms, ApiJson,
    ApiPath, ApiQuery, JsonText, Paging,
};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::recovery::{ResourceKind, MAX_KEY_USES};
use crate::state::AppState;
use crate::storage::{CredentialFilter, NewCredential, StorageError};

/// The body of `POST /v1/credentials`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IssueCredentialRequest {
    /// The agent the credential is about.
    #[schema(min_length = 1, example = "attestix:4556112f7bb94b91")]
    pub subject_id: String,
    /// The credential type, e.g. `AgentIdentityCredential`.
    #[schema(min_length = 1, example = "AgentIdentityCredential")]
    pub credential_type: String,
    /// The issuing authority's name.
    #[schema(min_length = 1, example = "Acme")]
    pub issuer_name: String,
    /// Claims about the subject; a claim named `id` is rejected.
    #[schema(value_type = Object)]
    pub claims: Value,
    /// Days until the credential expires, 1 to 36500 (default 365).
    #[schema(minimum = 1, maximum = 36500)]
    #[serde(default, deserialize_with = "super::whole_number")]
    pub expiry_days: Option<i64>,
}

/// Query of `GET /v1/credentials`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCredentialsQuery {
    /// Only credentials about this agent.
    pub agent_id: Option<String>,
    /// Only this credential type.
    pub credential_type: Option<String>,
    /// Only credentials neither revoked nor expired (default false).
    #[serde(default)]
    pub valid_only: bool,
}

/// The body of `POST /v1/credentials/verify-external`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyExternalRequest {
    /// A Verifiable Credential as JSON.
    #[schema(value_type = Object)]
    pub credential: Value,
}

/// The checks of a stored credential's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialChecks {
    /// The credential exists (for this caller).
    pub exists: bool,
    /// It has not been revoked.
    pub not_revoked: bool,
    /// It has not expired.
    pub not_expired: bool,
    /// Its proof verifies.
    pub signature_valid: bool,
}

/// The result of `POST /v1/credentials/{credential_id}/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredCredentialVerification {
    /// All checks passed.
    pub valid: bool,
    /// The credential checked.
    pub credential_id: String,
    /// Its `type` list.
    #[serde(rename = "type")]
    pub types: Option<Vec<String>>,
    /// Its subject's id.
    pub subject: Option<String>,
    /// Each check.
    pub checks: CredentialChecks,
}

/// The checks of an external credential's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalChecks {
    /// It is shaped like a Verifiable Credential.
    pub structure_valid: bool,
    /// Its status does not say revoked.
    pub not_revoked: bool,
    /// It has not expired.
    pub not_expired: bool,
    /// Its proof verifies against the key of its issuer DID.
    pub signature_valid: bool,
}

/// The result of `POST /v1/credentials/verify-external`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalVerification {
    /// All checks passed.
    pub valid: bool,
    /// Each check.
    pub checks: ExternalChecks,
    /// The credential's id, if it has one.
    pub credential_id: Option<String>,
    /// The issuer DID, if readable.
    pub issuer: Option<String>,
    /// The subject's id, if readable.
    pub subject: Option<String>,
}

/// The result of revoking a credential.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialRevoked {
    /// Always true.
    pub revoked: bool,
    /// The credential revoked.
    pub credential_id: String,
    /// The reason given.
    pub reason: String,
}

fn validate(body: IssueCredentialRequest) -> Result<CredentialParams, ApiError> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("subject_id", &body.subject_id),
        ("credential_type", &body.credential_type),
        ("issuer_name", &body.issuer_name),
    ] {
        if value.trim().is_empty() {
            errors.push(FieldError {
                field: field.into(),
                message: format!("{field} must not be empty"),
            });
        }
    }
    let claims = Claims::parse(body.claims)
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
    let (Some(claims), Some(expiry_days), true) = (claims, expiry_days, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    Ok(CredentialParams {
        subject_id: body.subject_id,
        credential_type: body.credential_type,
        issuer_name: body.issuer_name,
        claims,
        expiry_days,
    })
}

/// Issue a Verifiable Credential signed with the server's key.
#[utoipa::path(
    post,
    path = "/v1/credentials",
    tag = "credentials",
    request_body = IssueCredentialRequest,
    responses(
        (status = 201, description = "The signed credential", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule (for example a claim named `id`)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_credential(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    body: ApiJson<IssueCredentialRequest>,
) -> Result<JsonText, ApiError> {
    issue(state, caller, context, body).await
}

/// Issue a Verifiable Credential (the Python API's path; same handler).
#[utoipa::path(
    post,
    path = "/v1/credentials/issue",
    tag = "credentials",
    request_body = IssueCredentialRequest,
    responses(
        (status = 201, description = "The signed credential", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_credential_alias(
    state: State<Arc<AppState>>,
    caller: Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    body: ApiJson<IssueCredentialRequest>,
) -> Result<JsonText, ApiError> {
    issue(state, caller, context, body).await
}

async fn issue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<IssueCredentialRequest>,
) -> Result<JsonText, ApiError> {
    let params = validate(body)?;
    let now = OffsetDateTime::now_utc();
    let (id, recovery) = new_resource_id(&state, ResourceKind::Credential, context.as_deref(), now);
    let mut credential = VerifiableCredential::issue(params, &state.signer, now, id)
        .map_err(|error| ApiError::invalid("claims", error.to_string()))?;
    let mut record = NewCredential {
        credential_id: credential.id.clone(),
        owner: caller.scope(),
        subject_id: credential.credential_subject.id.clone(),
        credential_type: credential.types.last().cloned().unwrap_or_default(),
        issued_at_ms: unix_ms(now),
        expires_at_ms: unix_ms(credential.expiration_date.datetime()),
        document: serialize(&credential)?,
        recovery,
    };
    fail::fail_point!("credential.before_commit");
    let mut inserted = state.storage.insert_credential(&record).await;
    for n in 1..=MAX_KEY_USES {
        let (Err(StorageError::Duplicate), Some(recovery)) = (&inserted, &record.recovery) else {
            break;
        };
        // As for identities: the key's next id (see `next_resource_id`).
        let id = next_resource_id(&state, ResourceKind::Credential, recovery, n);
        credential = credential
            .with_new_id(&state.signer, id)
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        record.credential_id = credential.id.clone();
        record.document = serialize(&credential)?;
        inserted = state.storage.insert_credential(&record).await;
    }
    let inserted = inserted?;
    created(inserted, record.document, "credential.after_commit")
}

fn serialize(credential: &VerifiableCredential) -> Result<String, ApiError> {
    serde_json::to_string(credential).map_err(|e| ApiError::Internal(e.to_string()))
}

/// List the caller's credentials, oldest first, with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/credentials",
    tag = "credentials",
    params(ListCredentialsQuery, Paging),
    responses(
        (status = 200, description = "A page of credentials; the next page's cursor is in X-Next-Cursor", body = Vec<Object>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_credentials(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListCredentialsQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let filter = CredentialFilter {
        subject_id: query.agent_id,
        credential_type: query.credential_type,
        valid_only: query.valid_only,
        now_ms: unix_ms(OffsetDateTime::now_utc()),
    };
    let page = state
        .storage
        .list_credentials(&caller.scope(), &filter, paging.page()?)
        .await?;
    Ok(list_response(page))
}

/// Get one credential.
#[utoipa::path(
    get,
    path = "/v1/credentials/{credential_id}",
    tag = "credentials",
    params(("credential_id" = String, Path, description = "The credential id, `urn:uuid:…`")),
    responses(
        (status = 200, description = "The credential", body = Object, content_type = "application/json"),
        (status = 404, description = "No such credential", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_credential(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(credential_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    match state
        .storage
        .get_credential(&caller.scope(), &credential_id)
        .await?
    {
        Some(document) => Ok(JsonText::new(StatusCode::OK, document)),
        None => Err(ApiError::NotFound {
            kind: "credential",
            id: credential_id,
        }),
    }
}

pub(crate) async fn load(
    state: &AppState,
    owner: &str,
    credential_id: &str,
) -> Result<Option<VerifiableCredential>, ApiError> {
    let Some(document) = state.storage.get_credential(owner, credential_id).await? else {
        return Ok(None);
    };
    serde_json::from_str(&document).map(Some).map_err(|e| {
        ApiError::Internal(format!(
            "stored credential {credential_id} is unreadable: {e}"
        ))
    })
}

/// Verify a stored credential: existence, revocation, expiry and proof.
#[utoipa::path(
    post,
    path = "/v1/credentials/{credential_id}/verify",
    tag = "credentials",
    params(("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, description = "The verification result", body = StoredCredentialVerification)),
)]
pub async fn verify_stored_credential(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(credential_id): ApiPath<String>,
) -> Result<Json<StoredCredentialVerification>, ApiError> {
    let Some(credential) = load(&state, &caller.scope(), &credential_id).await? else {
        return Ok(Json(StoredCredentialVerification {
            valid: false,
            credential_id,
            types: None,
            subject: None,
            checks: CredentialChecks {
                exists: false,
                not_revoked: false,
                not_expired: false,
                signature_valid: false,
            },
        }));
    };
    let check = credential.verify(OffsetDateTime::now_utc());
    // A stored credential must also be this server's: a valid signature by some
    // other key does not make it ours.
    let issued_here = attestix_core::credential_is_issued_by(
        &credential.to_value(),
        &state.signer.verifying_key(),
    );
    let signature_valid = check.signature_valid && issued_here;
    Ok(Json(StoredCredentialVerification {
        valid: check.valid && issued_here,
        credential_id,
        types: Some(credential.types),
        subject: Some(credential.credential_subject.id),
        checks: CredentialChecks {
            exists: true,
            not_revoked: check.not_revoked,
            not_expired: check.not_expired,
            signature_valid,
        },
    }))
}

/// Verify any credential given as JSON (it need not be stored here).
#[utoipa::path(
    post,
    path = "/v1/credentials/verify-external",
    tag = "credentials",
    request_body = VerifyExternalRequest,
    responses(
        (status = 200, description = "The verification result", body = ExternalVerification),
        (status = 422, description = "The body has no `credential`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_external(
    ApiJson(body): ApiJson<VerifyExternalRequest>,
) -> Json<ExternalVerification> {
    let CredentialVerification {
        structure_valid,
        signature_valid,
        not_expired,
        not_revoked,
        valid,
        // Not yet consulted: this handler reads only the embedded status.
        revocation_checked: _,
    } = verify_credential(&body.credential, OffsetDateTime::now_utc());
    Json(ExternalVerification {
        valid,
        checks: ExternalChecks {
            structure_valid,
            not_revoked,
            not_expired,
            signature_valid,
        },
        credential_id: body
            .credential
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        issuer: attestix_core::credential_issuer_did(&body.credential).map(str::to_owned),
        subject: attestix_core::credential_subject_id(&body.credential).map(str::to_owned),
    })
}

/// Revoke a credential. The body `{"reason": "…"}` is optional.
#[utoipa::path(
    delete,
    path = "/v1/credentials/{credential_id}",
    tag = "credentials",
    params(("credential_id" = String, Path, description = "The credential id")),
    request_body(content = Option<super::RevokeRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "Revoked", body = CredentialRevoked),
        (status = 400, description = "The body is not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body is not a `{reason}` object with a string reason", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_credential(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(credential_id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<CredentialRevoked>, ApiError> {
    let request = parse_revoke_body(&body)?;
    let owner = caller.scope();
    let Some(mut credential) = load(&state, &owner, &credential_id).await? else {
        return Err(ApiError::NotFound {
            kind: "credential",
            id: credential_id,
        });
    };
    credential.revoke(request.reason.clone(), OffsetDateTime::now_utc());
    let document =
        serde_json::to_string(&credential).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !state
        .storage
        .update_credential(&owner, &credential_id, &document, true)
        .await?
    {
        return Err(ApiError::NotFound {
            kind: "credential",
            id: credential_id,
        });
    }
    Ok(Json(CredentialRevoked {
        revoked: true,
        credential_id,
        reason: request.reason,
    }))
}
