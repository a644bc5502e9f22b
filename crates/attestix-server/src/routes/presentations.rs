//! `/v1/presentations`: Verifiable Presentations.

use std::sync::Arc;

use attestix_core::{
    verify_credential, verify_presentation, ExpectedBinding, NewPresentation,
    PresentationVerification, SignedDocument, Uait, VerifiablePresentation,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{no_errors, refuse_nul, unix_ms, ApiJson, JsonText};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The body of `POST /v1/presentations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePresentationRequest {
    /// The holder: the agent every credential is about.
    pub agent_id: String,
    /// The credentials to present (`urn:uuid:…`), 1 to 100.
    #[schema(min_items = 1, max_items = 100)]
    pub credential_ids: Vec<String>,
    /// The intended verifier's DID (becomes `domain`).
    #[serde(default)]
    pub audience_did: String,
    /// The verifier's challenge nonce.
    #[serde(default)]
    pub challenge: String,
}

/// The body of `POST /v1/presentations/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyPresentationRequest {
    /// The presentation as JSON. A key repeated in any object, or a string or key not
    /// in Unicode NFC, is refused with 422.
    #[schema(value_type = Object)]
    pub presentation: SignedDocument,
    /// The challenge the verifier expects, if any.
    pub challenge: Option<String>,
    /// The domain the verifier expects, if any.
    pub domain: Option<String>,
}

/// Bundle the caller's credentials about one agent into a signed presentation.
#[utoipa::path(
    post,
    path = "/v1/presentations",
    tag = "presentations",
    request_body = CreatePresentationRequest,
    description = "Signs a presentation of stored credentials for their holder. The holder \
        must be an identity of the caller's that is neither revoked nor expired, and every \
        credential must be the caller's, about the holder, and still valid (not revoked, not \
        expired); otherwise nothing is signed. `challenge` and `audience_did` are signed in \
        Unicode NFC.",
    responses(
        (status = 201, description = "The signed presentation", body = Object, content_type = "application/json"),
        (status = 400, description = "A credential is about another subject", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent or credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The holder or a credential is revoked or expired, or a stored credential no longer verifies", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`credential_ids` is empty or names more than 100", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_presentation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreatePresentationRequest>,
) -> Result<JsonText, ApiError> {
    if body.credential_ids.is_empty() {
        return Err(ApiError::invalid(
            "credential_ids",
            "must name at least one credential",
        ));
    }
    if body.credential_ids.len() > 100 {
        return Err(ApiError::invalid(
            "credential_ids",
            "may name at most 100 credentials",
        ));
    }
    let mut errors = Vec::new();
    refuse_nul(&mut errors, "agent_id", &body.agent_id);
    for (index, credential_id) in body.credential_ids.iter().enumerate() {
        refuse_nul(
            &mut errors,
            &format!("credential_ids[{index}]"),
            credential_id,
        );
    }
    refuse_nul(&mut errors, "audience_did", &body.audience_did);
    refuse_nul(&mut errors, "challenge", &body.challenge);
    no_errors(errors)?;
    let owner = caller.scope();
    let now = OffsetDateTime::now_utc();
    let Some(holder) = state.storage.get_identity(&owner, &body.agent_id).await? else {
        return Err(ApiError::NotFound {
            kind: "identity",
            id: body.agent_id,
        });
    };
    let holder: Uait = serde_json::from_str(&holder).map_err(|e| {
        ApiError::internal(format!(
            "stored identity {} is unreadable: {e}",
            body.agent_id
        ))
    })?;
    // A presentation is this server vouching for the holder now: a withdrawn holder
    // gets none (verification would refuse it anyway).
    if holder.revoked || now >= holder.expires_at.datetime() {
        let state = if holder.revoked { "revoked" } else { "expired" };
        return Err(ApiError::Conflict(format!(
            "identity {} is {state}; it cannot present credentials",
            body.agent_id
        )));
    }
    let mut credentials = Vec::with_capacity(body.credential_ids.len());
    for credential_id in &body.credential_ids {
        let Some(document) = state.storage.get_credential(&owner, credential_id).await? else {
            return Err(ApiError::NotFound {
                kind: "credential",
                id: credential_id.clone(),
            });
        };
        let credential: Value = serde_json::from_str(&document)
            .map_err(|e| ApiError::internal(format!("stored credential unreadable: {e}")))?;
        if attestix_core::credential_subject_id(&credential) != Some(body.agent_id.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "credential {credential_id} is not about {}; a presentation holds only the holder's credentials",
                body.agent_id
            )));
        }
        // The stored document is the record (revocation rewrites it), so its own
        // status is authoritative here.
        let check = verify_credential(&credential, now);
        let problem = if !check.not_revoked {
            Some("is revoked")
        } else if !check.not_expired {
            Some("has expired")
        } else if !check.valid {
            Some("no longer verifies (it may predate the rule that documents are NFC); issue it again")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ApiError::Conflict(format!(
                "credential {credential_id} {problem}; it cannot be presented"
            )));
        }
        credentials.push(credential);
    }
    let presentation = VerifiablePresentation::create(
        NewPresentation {
            holder: body.agent_id,
            credentials,
            domain: Some(body.audience_did),
            challenge: Some(body.challenge),
        },
        &state.signer,
        now,
        Uuid::new_v4(),
    )
    .map_err(ApiError::internal)?;
    let document = serde_json::to_string(&presentation).map_err(ApiError::internal)?;
    super::check_response_size(&state, &document, "credential_ids", "presentation")?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

/// Verify a presentation made by this server: proof, challenge and domain, every
/// embedded credential, and (from this server's records) that neither the holder nor
/// any credential has since been revoked or expired.
#[utoipa::path(
    post,
    path = "/v1/presentations/verify",
    tag = "presentations",
    request_body = VerifyPresentationRequest,
    description = "Checks the proof (type `Ed25519Signature2020`, purpose \
        `authentication`, this server's key), the challenge and domain, and each embedded \
        credential. When the proof is valid, the holder's identity and each credential are \
        looked up in this server's records (whoever owns them): a revoked or expired one, or \
        one it has no record of, makes the presentation invalid (`holder_active`, \
        `credentials[].not_revoked`), whatever the embedded statuses say. A document with a \
        key repeated in any object, or a string or key not in Unicode NFC, is refused \
        with 422.",
    responses(
        (status = 200, description = "The verification result", body = Object, content_type = "application/json"),
        (status = 422, description = "The body has no `presentation`, or it repeats a key or has a string not in NFC", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<VerifyPresentationRequest>,
) -> Result<Json<PresentationVerification>, ApiError> {
    let presentation = body.presentation.0;
    let now = OffsetDateTime::now_utc();
    let mut verification = verify_presentation(
        &presentation,
        state.signer.did_key(),
        ExpectedBinding {
            challenge: body.challenge.as_deref(),
            domain: body.domain.as_deref(),
        },
        now,
    );
    // Only a presentation this server signed is worth the lookups; it holds at most the
    // 100 credentials `create_presentation` allows.
    if verification.signature_valid {
        let now_ms = unix_ms(now);
        let holder = match presentation.get("holder").and_then(Value::as_str) {
            Some(agent_id) => state.storage.identity_state(agent_id).await?,
            None => None,
        };
        verification.apply_holder_record(holder.map(|record| record.at(now_ms)));
        let embedded = presentation
            .get("verifiableCredential")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ours = state.signer.verifying_key();
        for (check, credential) in verification.credentials.iter_mut().zip(embedded) {
            // Another issuer's credential has no record here, which counts as revoked.
            let record = match credential.get("id").and_then(Value::as_str) {
                Some(id) if attestix_core::credential_is_issued_by(credential, &ours) => {
                    state.storage.credential_state(id).await?
                }
                _ => None,
            };
            check.apply_issuer_record(record.map(|record| record.at(now_ms)));
        }
        verification.update_validity();
    }
    Ok(Json(verification))
}
