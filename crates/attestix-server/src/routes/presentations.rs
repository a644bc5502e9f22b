//! `/v1/presentations`: Verifiable Presentations.

use std::sync::Arc;

use attestix_core::{
    verify_presentation, ExpectedBinding, NewPresentation, PresentationVerification,
    VerifiablePresentation,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{no_errors, refuse_nul, ApiJson, JsonText};
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
    /// The presentation as JSON.
    #[schema(value_type = Object)]
    pub presentation: Value,
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
    responses(
        (status = 201, description = "The signed presentation", body = Object, content_type = "application/json"),
        (status = 400, description = "A credential is about another subject", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent or credential", body = crate::error::Problem, content_type = "application/problem+json"),
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
    if state
        .storage
        .get_identity(&owner, &body.agent_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound {
            kind: "identity",
            id: body.agent_id,
        });
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
            .map_err(|e| ApiError::Internal(format!("stored credential unreadable: {e}")))?;
        if attestix_core::credential_subject_id(&credential) != Some(body.agent_id.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "credential {credential_id} is not about {}; a presentation holds only the holder's credentials",
                body.agent_id
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
        OffsetDateTime::now_utc(),
        Uuid::new_v4(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let document =
        serde_json::to_string(&presentation).map_err(|e| ApiError::Internal(e.to_string()))?;
    super::check_response_size(&state, &document, "credential_ids", "presentation")?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

/// Verify a presentation made by this server: proof, challenge and domain, and
/// every embedded credential.
#[utoipa::path(
    post,
    path = "/v1/presentations/verify",
    tag = "presentations",
    request_body = VerifyPresentationRequest,
    responses(
        (status = 200, description = "The verification result", body = Object, content_type = "application/json"),
        (status = 422, description = "The body has no `presentation`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<VerifyPresentationRequest>,
) -> Json<PresentationVerification> {
    Json(verify_presentation(
        &body.presentation,
        state.signer.did_key(),
        ExpectedBinding {
            challenge: body.challenge.as_deref(),
            domain: body.domain.as_deref(),
        },
        OffsetDateTime::now_utc(),
    ))
}
