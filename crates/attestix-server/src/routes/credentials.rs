//! `/v1/credentials`: Verifiable Credentials.

use std::sync::Arc;

use attestix_core::document::to_nfc;
use attestix_core::{
    verify_credential, Claims, ExpiryDays, NewCredential as CredentialParams, SignedDocument, Uait,
    UniqueKeys, VerifiableCredential, PRESENTATION_TYPE,
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
    audit_draft, check_response_size, created, list_response, may_be_stored, new_resource_id,
    next_resource_id, no_errors, parse_revoke_body, refuse_nul, unix_ms, ApiJson, ApiPath,
    ApiQuery, JsonText, Paging,
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
    /// Claims about the subject: an object, at most 123 levels deep (itself included),
    /// no key repeated, no claim named `id`. Strings and keys are stored in Unicode NFC.
    #[schema(value_type = Object)]
    pub claims: UniqueKeys,
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
    /// A Verifiable Credential as JSON. A key repeated in any object, or a string or
    /// key not in Unicode NFC, is refused with 422.
    #[schema(value_type = Object)]
    pub credential: SignedDocument,
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
    /// It is shaped like a Verifiable Credential (and its type is not a presentation's).
    pub structure_valid: bool,
    /// For a credential this server issued: its record says it is not revoked (the
    /// embedded `credentialStatus` is not signed, so it is ignored). For another
    /// issuer's: `null`, revocation could not be checked; `false` if the embedded
    /// status itself says revoked.
    pub not_revoked: Option<bool>,
    /// It has not expired.
    pub not_expired: bool,
    /// Its proof is an `Ed25519Signature2020` for `assertionMethod` that verifies
    /// against the key of its issuer DID.
    pub signature_valid: bool,
}

/// The result of `POST /v1/credentials/verify-external`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalVerification {
    /// No check failed. When `revocation_checked` is false, this says nothing about
    /// revocation.
    pub valid: bool,
    /// Each check.
    pub checks: ExternalChecks,
    /// Whether revocation was checked against the issuer's records: true exactly when
    /// the issuer is this server.
    pub revocation_checked: bool,
    /// What the verdict does not cover, or why a check failed, in words.
    pub warnings: Vec<String>,
    /// The credential's id, if it has one.
    pub credential_id: Option<String>,
    /// The issuer DID, if readable.
    pub issuer: Option<String>,
    /// The subject's id, if readable.
    pub subject: Option<String>,
}

/// The result of revoking a credential: its revocation as recorded (the first
/// one, when the credential was already revoked).
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialRevoked {
    /// Always true.
    pub revoked: bool,
    /// The credential revoked.
    pub credential_id: String,
    /// The reason recorded.
    pub reason: String,
    /// When it was revoked (RFC 3339, as in `credentialStatus.revoked_at`).
    #[schema(value_type = String, example = "2026-11-28T06:42:10.099397+00:00")]
    pub revoked_at: Option<attestix_core::Timestamp>,
}

impl CredentialRevoked {
    fn of(credential: &VerifiableCredential) -> Self {
        let status = &credential.credential_status;
        Self {
            revoked: true,
            credential_id: credential.id.clone(),
            reason: status.revocation_reason.clone().unwrap_or_default(),
            revoked_at: status.revoked_at,
        }
    }
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
        refuse_nul(&mut errors, field, value);
    }
    if to_nfc(body.credential_type.clone()) == PRESENTATION_TYPE {
        errors.push(FieldError {
            field: "credential_type".into(),
            message: format!(
                "must not be {PRESENTATION_TYPE}: a credential must not pass for a presentation"
            ),
        });
    }
    let claims = Claims::parse(body.claims.0)
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
    // NFC now, as the credential will hold them, so the subject looked up is the one
    // signed (the core normalises again, idempotently).
    Ok(CredentialParams {
        subject_id: to_nfc(body.subject_id),
        credential_type: to_nfc(body.credential_type),
        issuer_name: to_nfc(body.issuer_name),
        claims,
        expiry_days,
    })
}

/// What the OpenAPI document says of both issue paths: which subjects may be named.
const ISSUE_DESCRIPTION: &str = "Issues a credential signed with the server's key. \
    `subject_id` may be any string: a subject need not be an identity of this server \
    (external DIDs are allowed, and unknown ids are not refused). If it names an identity \
    of the caller's that is revoked or expired, the request is refused with 409. Strings \
    and keys are stored in Unicode NFC (the form that is signed). `claims` nests at most \
    123 levels, so that the credential verifies even inside a presentation.";

/// Issue a Verifiable Credential signed with the server's key.
#[utoipa::path(
    post,
    path = "/v1/credentials",
    tag = "credentials",
    request_body = IssueCredentialRequest,
    description = ISSUE_DESCRIPTION,
    responses(
        (status = 201, description = "The signed credential", body = Object, content_type = "application/json"),
        (status = 409, description = "The subject is an identity of the caller's that is revoked or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (for example a claim named `id`, claims nested too deep, or the type `VerifiablePresentation`)", body = crate::error::Problem, content_type = "application/problem+json"),
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
    description = ISSUE_DESCRIPTION,
    responses(
        (status = 201, description = "The signed credential", body = Object, content_type = "application/json"),
        (status = 409, description = "The subject is an identity of the caller's that is revoked or expired", body = crate::error::Problem, content_type = "application/problem+json"),
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
    refuse_inactive_subject(&state, &caller.scope(), &params.subject_id, now).await?;
    let (id, recovery) = new_resource_id(&state, ResourceKind::Credential, context.as_deref(), now);
    let mut credential = VerifiableCredential::issue(params, &state.signer, now, id)
        .map_err(|error| ApiError::invalid("claims", error.to_string()))?;
    let record_subject = credential.credential_subject.id.clone();
    let mut record = NewCredential {
        credential_id: credential.id.clone(),
        owner: caller.scope(),
        subject_id: credential.credential_subject.id.clone(),
        credential_type: credential.types.last().cloned().unwrap_or_default(),
        issued_at_ms: unix_ms(now),
        expires_at_ms: unix_ms(credential.expiration_date.datetime()),
        document: serialize(&credential)?,
        recovery,
        audit: None,
    };
    let types = credential.types.clone();
    let audit = |id: &str| {
        let after = serde_json::json!({"id": id, "type": types, "subject": record_subject});
        audit_draft(
            &state,
            &caller,
            "credential.issue",
            (id, "credentials"),
            after,
            now,
        )
    };
    record.audit = Some(audit(&record.credential_id)?);
    check_response_size(&state, &record.document, "claims", "credential")?;
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
            .map_err(ApiError::internal)?;
        record.credential_id = credential.id.clone();
        record.document = serialize(&credential)?;
        record.audit = Some(audit(&record.credential_id)?);
        inserted = state.storage.insert_credential(&record).await;
    }
    let inserted = inserted?;
    created(&state, inserted, record.document, "credential.after_commit")
}

/// A credential may name any subject (an external DID, an agent of another system), but
/// not an identity of the caller's that is revoked or expired: this server would be
/// vouching for an agent it has itself withdrawn. Only the caller's own identities are
/// looked at, so a caller learns nothing about other scopes.
pub(crate) async fn refuse_inactive_subject(
    state: &AppState,
    owner: &str,
    subject_id: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    // Every agent id has this prefix: other subjects cost no lookup.
    if !subject_id.starts_with("attestix:") {
        return Ok(());
    }
    let Some(document) = state.storage.get_identity(owner, subject_id).await? else {
        return Ok(());
    };
    let identity: Uait = serde_json::from_str(&document).map_err(|e| {
        ApiError::internal(format!("stored identity {subject_id} is unreadable: {e}"))
    })?;
    if identity.revoked {
        return Err(ApiError::Conflict(format!(
            "identity {subject_id} is revoked; credentials about it are not issued"
        )));
    }
    if now >= identity.expires_at.datetime() {
        return Err(ApiError::Conflict(format!(
            "identity {subject_id} has expired; credentials about it are not issued"
        )));
    }
    Ok(())
}

fn serialize(credential: &VerifiableCredential) -> Result<String, ApiError> {
    serde_json::to_string(credential).map_err(ApiError::internal)
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
    let mut errors = Vec::new();
    for (field, value) in [
        ("agent_id", &query.agent_id),
        ("credential_type", &query.credential_type),
    ] {
        if let Some(value) = value {
            refuse_nul(&mut errors, field, value);
        }
    }
    no_errors(errors)?;
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
    let found = if may_be_stored(&credential_id) {
        state
            .storage
            .get_credential(&caller.scope(), &credential_id)
            .await?
    } else {
        None
    };
    match found {
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
    if !may_be_stored(credential_id) {
        return Ok(None);
    }
    let Some(document) = state.storage.get_credential(owner, credential_id).await? else {
        return Ok(None);
    };
    serde_json::from_str(&document).map(Some).map_err(|e| {
        ApiError::internal(format!(
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
    description = "Checks structure, proof (type `Ed25519Signature2020`, purpose \
        `assertionMethod`, signed by the key of `issuer`) and expiry. `credentialStatus` is \
        outside the proof, so it is not trusted: for a credential this server issued, \
        revocation is read from this server's records (whoever owns the credential; a \
        credential signed with this server's key of which it has no record counts as \
        revoked); for another issuer's, `checks.not_revoked` is `null`, \
        `revocation_checked` is false and `warnings` says so. A document with a key \
        repeated in any object, or a string or key not in Unicode NFC, is refused with 422.",
    responses(
        (status = 200, description = "The verification result", body = ExternalVerification),
        (status = 422, description = "The body has no `credential`, or the credential repeats a key or has a string not in NFC", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_external(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<VerifyExternalRequest>,
) -> Result<Json<ExternalVerification>, ApiError> {
    let credential = body.credential.0;
    let now = OffsetDateTime::now_utc();
    let mut check = verify_credential(&credential, now);
    let issued_here =
        attestix_core::credential_is_issued_by(&credential, &state.signer.verifying_key());
    let mut warnings = Vec::new();
    let not_revoked = if issued_here {
        let record = match credential.get("id").and_then(Value::as_str) {
            Some(id) => state.storage.credential_state(id).await?,
            None => None,
        };
        if record.is_none() {
            warnings.push(
                "signed with this server's key, but this server has no record of it: \
                 counted as revoked"
                    .to_owned(),
            );
        }
        check.apply_issuer_record(record.map(|record| record.at(unix_ms(now))));
        Some(check.not_revoked)
    } else {
        warnings.push(
            "revocation not checked: the issuer is not this server, and the embedded \
             credentialStatus is outside the proof, so anyone may have rewritten it"
                .to_owned(),
        );
        // The unsigned status can still admit revocation; it cannot prove its absence.
        (!check.not_revoked).then_some(false)
    };
    Ok(Json(ExternalVerification {
        valid: check.valid,
        checks: ExternalChecks {
            structure_valid: check.structure_valid,
            not_revoked,
            not_expired: check.not_expired,
            signature_valid: check.signature_valid,
        },
        revocation_checked: check.revocation_checked,
        warnings,
        credential_id: credential
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        issuer: attestix_core::credential_issuer_did(&credential).map(str::to_owned),
        subject: attestix_core::credential_subject_id(&credential).map(str::to_owned),
    }))
}

/// Revoke a credential. The body `{"reason": "…"}` is optional.
///
/// Revoking a credential already revoked changes nothing: the answer carries the
/// first revocation's reason and time (a retried DELETE must not rewrite them).
#[utoipa::path(
    delete,
    path = "/v1/credentials/{credential_id}",
    tag = "credentials",
    params(("credential_id" = String, Path, description = "The credential id")),
    request_body(content = Option<super::RevokeRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "Revoked; for a credential already revoked, the first revocation's reason and time", body = CredentialRevoked),
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
    let not_found = || ApiError::NotFound {
        kind: "credential",
        id: credential_id.clone(),
    };
    let Some(mut credential) = load(&state, &owner, &credential_id).await? else {
        return Err(not_found());
    };
    if credential.credential_status.revoked {
        return Ok(Json(CredentialRevoked::of(&credential)));
    }
    let now = OffsetDateTime::now_utc();
    credential.revoke(request.reason, now);
    let document = serde_json::to_string(&credential).map_err(ApiError::internal)?;
    let after = serde_json::json!({"id": credential_id, "revoked": true});
    let target = (credential_id.as_str(), "credentials");
    let event = audit_draft(&state, &caller, "credential.revoke", target, after, now)?;
    if state
        .storage
        .revoke_credential(&owner, &credential_id, &document, Some(&event))
        .await?
    {
        return Ok(Json(CredentialRevoked::of(&credential)));
    }
    // Revoked by a concurrent request since it was read: that revocation stands.
    match load(&state, &owner, &credential_id).await? {
        Some(stored) if stored.credential_status.revoked => {
            Ok(Json(CredentialRevoked::of(&stored)))
        }
        _ => Err(not_found()),
    }
}
