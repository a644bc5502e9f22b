//! `/v1/blockchain`: anchoring identities, credentials and audit batches as EAS
//! attestations on an EVM chain, and verifying them there.

use std::sync::Arc;

use alloy::primitives::utils::format_units;
use alloy::primitives::B256;
use attestix_core::anchor::{inclusion_proof, leaf_hash, merkle_root, verify_inclusion};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use idempotency::IdempotencyContext;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::{check_chars, may_be_stored, no_errors, ApiJson, ApiPath, ApiQuery, JsonText, Paging};
use crate::anchoring::{self, Artifact, ARTIFACT_TYPES};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::storage::records::{self, kind, RecordFilter};

/// The longest agent or credential id accepted.
const MAX_ID_CHARS: usize = 256;
/// The most action-log entries one batch anchors.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// The body of `POST /v1/blockchain/anchor/identity`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AnchorIdentityRequest {
    /// The agent whose identity (UAIT) is anchored (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
}

/// The body of `POST /v1/blockchain/anchor/credential`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AnchorCredentialRequest {
    /// The credential (`urn:uuid:…`, 1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub credential_id: String,
}

/// The body of `POST /v1/blockchain/anchor/audit-batch`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AnchorAuditBatchRequest {
    /// The agent whose action log is anchored (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// First instant, inclusive: an RFC 3339 date or date-time.
    pub start_date: Option<String>,
    /// Last instant, inclusive: an RFC 3339 date or date-time.
    pub end_date: Option<String>,
}

/// The body of `POST /v1/blockchain/verify/{anchor_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyAnchorRequest {
    /// The SHA-256 (64 hex digits) the artifact should have.
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-fA-F]{64}$")]
    pub artifact_hash: String,
}

/// Query of `GET /v1/blockchain/estimate-cost`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EstimateQuery {
    /// `identity` (default), `credential`, `declaration` or `audit_batch`.
    pub artifact_type: Option<String>,
}

/// SHA-256 hex of the canonical bytes of a stored document.
fn artifact_hash(document: &str) -> Result<String, ApiError> {
    let value: Value = serde_json::from_str(document).map_err(ApiError::internal)?;
    let bytes = attestix_core::canonical_bytes(&value).map_err(ApiError::internal)?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

fn created((document, replayed): (String, bool)) -> JsonText {
    let mut answer = JsonText::new(StatusCode::CREATED, document);
    answer.replayed = replayed;
    answer
}

/// Anchor an agent identity's hash on chain.
#[utoipa::path(
    post,
    path = "/v1/blockchain/anchor/identity",
    tag = "blockchain",
    request_body = AnchorIdentityRequest,
    responses(
        (status = 201, description = "The anchor record", body = Object, content_type = "application/json"),
        (status = 404, description = "No such identity in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The chain failed or the transaction reverted", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Anchoring is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The transaction was sent but not mined in time; retry with the same key", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn anchor_identity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<AnchorIdentityRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    no_errors(errors)?;
    anchoring::chain(&state)?;
    let Some(document) = state
        .storage
        .get_identity(&caller.scope(), &body.agent_id)
        .await?
    else {
        return Err(ApiError::NotFound {
            kind: "identity",
            id: body.agent_id,
        });
    };
    let artifact = Artifact {
        artifact_type: "identity".into(),
        artifact_hash: artifact_hash(&document)?,
        agent_id: Some(body.agent_id.clone()),
        artifact_id: body.agent_id,
        batch_metadata: None,
        batch_entries: None,
    };
    let context = context.map(|Extension(c)| c);
    anchoring::anchor(&state, &caller, context.as_ref(), artifact)
        .await
        .map(created)
}

/// Anchor a verifiable credential's hash on chain.
#[utoipa::path(
    post,
    path = "/v1/blockchain/anchor/credential",
    tag = "blockchain",
    request_body = AnchorCredentialRequest,
    responses(
        (status = 201, description = "The anchor record", body = Object, content_type = "application/json"),
        (status = 404, description = "No such credential in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The chain failed or the transaction reverted", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Anchoring is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The transaction was sent but not mined in time; retry with the same key", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn anchor_credential(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<AnchorCredentialRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(
        &mut errors,
        "credential_id",
        &body.credential_id,
        1,
        MAX_ID_CHARS,
    );
    no_errors(errors)?;
    anchoring::chain(&state)?;
    let Some(document) = state
        .storage
        .get_credential(&caller.scope(), &body.credential_id)
        .await?
    else {
        return Err(ApiError::NotFound {
            kind: "credential",
            id: body.credential_id,
        });
    };
    let subject = serde_json::from_str::<Value>(&document)
        .ok()
        .and_then(|vc| {
            vc.pointer("/credentialSubject/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let artifact = Artifact {
        artifact_type: "credential".into(),
        artifact_hash: artifact_hash(&document)?,
        agent_id: subject,
        artifact_id: body.credential_id,
        batch_metadata: None,
        batch_entries: None,
    };
    let context = context.map(|Extension(c)| c);
    anchoring::anchor(&state, &caller, context.as_ref(), artifact)
        .await
        .map(created)
}

/// Anchor the Merkle root of an agent's action-log entries on chain.
#[utoipa::path(
    post,
    path = "/v1/blockchain/anchor/audit-batch",
    tag = "blockchain",
    request_body = AnchorAuditBatchRequest,
    responses(
        (status = 201, description = "The anchor record with `batch_metadata`", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no action-log entries in the range", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule, or the range holds more than 10,000 entries", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The chain failed or the transaction reverted", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Anchoring is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The transaction was sent but not mined in time; retry with the same key", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn anchor_audit_batch(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<AnchorAuditBatchRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    no_errors(errors)?;
    let since_ms = body
        .start_date
        .as_deref()
        .map(|text| super::provenance::parse_instant("start_date", text, false))
        .transpose()?;
    let until_ms = body
        .end_date
        .as_deref()
        .map(|text| super::provenance::parse_instant("end_date", text, true))
        .transpose()?;
    anchoring::chain(&state)?;
    let filter = RecordFilter {
        subject: Some(body.agent_id.clone()),
        label: None,
        since_ms,
        until_ms,
    };
    let scope = caller.scope();
    let page = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            records::list(
                tx,
                &scope,
                kind::ACTION,
                &filter,
                crate::storage::PageRequest {
                    after: None,
                    limit: MAX_BATCH_ENTRIES as u32,
                },
            )
            .await
        })
    })
    .await?;
    if page.next.is_some() {
        return Err(ApiError::invalid(
            "end_date",
            format!(
                "the range holds more than {MAX_BATCH_ENTRIES} entries; anchor a narrower range"
            ),
        ));
    }
    if page.documents.is_empty() {
        return Err(ApiError::NotFound {
            kind: "audit log entries for agent",
            id: body.agent_id,
        });
    }
    let mut entries = Vec::with_capacity(page.documents.len());
    let mut leaves = Vec::with_capacity(page.documents.len());
    let mut timestamps = Vec::with_capacity(page.documents.len());
    for document in &page.documents {
        let entry: Value = serde_json::from_str(document).map_err(ApiError::internal)?;
        let leaf = leaf_hash(attestix_core::python_json::dumps_sorted_unicode(&entry).as_bytes());
        let id = entry["log_id"].as_str().unwrap_or_default().to_owned();
        timestamps.push(entry["timestamp"].clone());
        entries.push((id, hex::encode(leaf)));
        leaves.push(leaf);
    }
    let root = hex::encode(merkle_root(&leaves).expect("a batch has entries"));
    let batch_id = format!("batch:{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let metadata = json!({
        "agent_id": body.agent_id,
        "entry_count": leaves.len(),
        "merkle_root": root,
        "start_date": body.start_date.map(Value::String).unwrap_or_else(|| timestamps[0].clone()),
        "end_date": body.end_date.map(Value::String).unwrap_or_else(|| timestamps[timestamps.len() - 1].clone()),
    });
    let artifact = Artifact {
        artifact_type: "audit_batch".into(),
        artifact_id: batch_id,
        artifact_hash: root,
        agent_id: Some(body.agent_id),
        batch_metadata: Some(metadata),
        batch_entries: Some(entries),
    };
    let context = context.map(|Extension(c)| c);
    anchoring::anchor(&state, &caller, context.as_ref(), artifact)
        .await
        .map(created)
}

/// The inclusion proof of one action-log entry in an anchored audit batch.
#[utoipa::path(
    get,
    path = "/v1/blockchain/batches/{anchor_id}/proofs/{entry_id}",
    tag = "blockchain",
    params(
        ("anchor_id" = String, Path, description = "The audit-batch anchor"),
        ("entry_id" = String, Path, description = "The action-log entry (`audit:` id)"),
    ),
    responses(
        (status = 200, description = "The leaf, its audit path (sibling hashes from the leaf up; RFC 6962) and the anchored root", body = Object, content_type = "application/json"),
        (status = 404, description = "No such batch anchor, or the entry is not in it", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn inclusion_proof_of(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((anchor_id, entry_id)): ApiPath<(String, String)>,
) -> Result<JsonText, ApiError> {
    let not_found = || ApiError::NotFound {
        kind: "audit-batch anchor",
        id: anchor_id.clone(),
    };
    if !may_be_stored(&anchor_id) || !may_be_stored(&entry_id) {
        return Err(not_found());
    }
    let Some((anchor, entries)) =
        anchoring::batch_entries(&state, &caller.scope(), &anchor_id).await?
    else {
        return Err(not_found());
    };
    let Some(index) = entries.iter().position(|(id, _)| *id == entry_id) else {
        return Err(ApiError::NotFound {
            kind: "entry in batch",
            id: entry_id,
        });
    };
    let leaves = entries
        .iter()
        .map(|(_, leaf)| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(leaf, &mut bytes).map(|()| bytes)
        })
        .collect::<Result<Vec<[u8; 32]>, _>>()
        .map_err(ApiError::internal)?;
    let proof = inclusion_proof(&leaves, index).expect("the index is in range");
    let root = merkle_root(&leaves).expect("a batch has entries");
    JsonText::ok(&json!({
        "anchor_id": anchor_id,
        "entry_id": entry_id,
        "leaf_index": index,
        "entry_count": leaves.len(),
        "leaf_hash": hex::encode(leaves[index]),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "merkle_root": hex::encode(root),
        "anchored_root": anchor["artifact_hash"],
        "attestation_uid": anchor["attestation_uid"],
        "valid": verify_inclusion(&leaves[index], index, leaves.len(), &proof, &root)
            && anchor["artifact_hash"].as_str() == Some(hex::encode(root).as_str()),
    }))
}

/// Verify anchors on chain: reads each attestation, decodes its data and compares
/// the artifact hash.
#[utoipa::path(
    post,
    path = "/v1/blockchain/verify/{anchor_id}",
    tag = "blockchain",
    request_body = VerifyAnchorRequest,
    params(("anchor_id" = String, Path, description = "An `anchor:` id to check that anchor only; anything else checks every anchor of the hash")),
    responses(
        (status = 200, description = "`verified` true when every anchor is on chain, unrevoked, and holds the hash", body = Object, content_type = "application/json"),
        (status = 404, description = "No such anchor in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "artifact_hash is not 64 hex digits", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The chain failed", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Anchoring is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_anchor(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(anchor_id): ApiPath<String>,
    ApiJson(body): ApiJson<VerifyAnchorRequest>,
) -> Result<JsonText, ApiError> {
    let hash = body.artifact_hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "artifact_hash",
            "must be a SHA-256 of 64 hex digits",
        ));
    }
    let chain = anchoring::chain(&state)?;
    let scope = caller.scope();
    let by_id = anchor_id.starts_with("anchor:") && may_be_stored(&anchor_id);
    let key = anchor_id.clone();
    let label = hash.clone();
    let documents = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            if by_id {
                Ok(records::get(tx, &scope, kind::ANCHOR, &key)
                    .await?
                    .into_iter()
                    .collect::<Vec<_>>())
            } else {
                let filter = RecordFilter {
                    label: Some(label),
                    ..RecordFilter::default()
                };
                let page = crate::storage::PageRequest {
                    after: None,
                    limit: 1000,
                };
                Ok(records::list(tx, &scope, kind::ANCHOR, &filter, page)
                    .await?
                    .documents)
            }
        })
    })
    .await?;
    if by_id && documents.is_empty() {
        return Err(ApiError::NotFound {
            kind: "anchor",
            id: anchor_id,
        });
    }
    if documents.is_empty() {
        return JsonText::ok(&json!({
            "verified": false,
            "artifact_hash": hash,
            "reason": "No local anchor record found for this hash",
        }));
    }
    let mut results = Vec::with_capacity(documents.len());
    let mut all_valid = true;
    for document in documents {
        let mut anchor: Value = serde_json::from_str(&document).map_err(ApiError::internal)?;
        let uid: Option<B256> = anchor["attestation_uid"]
            .as_str()
            .and_then(|text| text.parse().ok());
        let held = match uid {
            Some(uid) => chain
                .attestation(uid)
                .await
                .map_err(anchoring::chain_problem)?,
            None => None,
        };
        let object = anchor
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("an anchor is not an object"))?;
        match held {
            None => {
                all_valid = false;
                object.insert("on_chain_valid".into(), json!(false));
                object.insert("on_chain_missing".into(), json!(true));
            }
            Some(held) => {
                let on_chain_hash = held
                    .fields
                    .as_ref()
                    .map(|fields| hex::encode(fields.artifact_hash));
                let matches = on_chain_hash.as_deref() == Some(hash.as_str());
                let revoked = held.revocation_time != 0;
                let expired = held.expiration_time != 0
                    && held.expiration_time
                        <= time::OffsetDateTime::now_utc().unix_timestamp() as u64;
                let valid = matches && !revoked && !expired;
                all_valid &= valid;
                object.insert("on_chain_valid".into(), json!(valid));
                object.insert("on_chain_missing".into(), json!(false));
                object.insert("on_chain_time".into(), json!(held.time));
                object.insert(
                    "on_chain_revocation_time".into(),
                    json!(held.revocation_time),
                );
                object.insert("on_chain_revoked".into(), json!(revoked));
                object.insert(
                    "on_chain_attester".into(),
                    json!(held.attester.to_checksum(None)),
                );
                object.insert("on_chain_artifact_hash".into(), json!(on_chain_hash));
                object.insert("hash_matches".into(), json!(matches));
            }
        }
        results.push(anchor);
    }
    JsonText::ok(&json!({
        "verified": all_valid,
        "artifact_hash": hash,
        "anchor_count": results.len(),
        "anchors": results,
    }))
}

/// The anchors about an agent (exact matches), with cursor paging. Works without
/// anchoring configured.
#[utoipa::path(
    get,
    path = "/v1/blockchain/anchors/{agent_id}",
    tag = "blockchain",
    params(("agent_id" = String, Path, description = "The agent"), Paging),
    responses(
        (status = 200, description = "`{agent_id, total_anchors, by_type, anchors, network, wallet}` for this page; the next page's cursor is in X-Next-Cursor", body = Object, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_anchors(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    let page = paging.page()?;
    let documents = if may_be_stored(&agent_id) {
        let scope = caller.scope();
        let filter = RecordFilter {
            subject: Some(agent_id.clone()),
            ..RecordFilter::default()
        };
        records::read_with(&*state.storage, move |tx| {
            Box::pin(async move { records::list(tx, &scope, kind::ANCHOR, &filter, page).await })
        })
        .await?
    } else {
        crate::storage::Page {
            documents: Vec::new(),
            next: None,
        }
    };
    let anchors = documents
        .documents
        .iter()
        .map(|text| serde_json::from_str::<Value>(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let mut by_type = serde_json::Map::new();
    for anchor in &anchors {
        let name = anchor["artifact_type"].as_str().unwrap_or("unknown");
        let count = by_type.entry(name).or_insert(json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
    }
    let answer = json!({
        "agent_id": agent_id,
        "total_anchors": anchors.len(),
        "by_type": by_type,
        "anchors": anchors,
        "network": state.chain.as_ref().map(|c| c.network().name()),
        "wallet": state.chain.as_ref().map(|c| c.attester().to_checksum(None)),
    });
    Ok(JsonText::ok(&answer)?.with_cursor(documents.next.map(|seq| format!("c{seq}"))))
}

/// What one anchor costs now, and whether the wallet can pay for it.
#[utoipa::path(
    get,
    path = "/v1/blockchain/estimate-cost",
    tag = "blockchain",
    params(EstimateQuery),
    responses(
        (status = 200, description = "Gas, prices, the worst-case cost and the wallet's balance", body = Object, content_type = "application/json"),
        (status = 422, description = "An unknown artifact_type", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The chain failed", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Anchoring is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn estimate_cost(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<EstimateQuery>,
) -> Result<JsonText, ApiError> {
    let artifact_type = query.artifact_type.unwrap_or_else(|| "identity".into());
    if !ARTIFACT_TYPES.contains(&artifact_type.as_str()) {
        return Err(ApiError::Validation(vec![FieldError {
            field: "artifact_type".into(),
            message: format!(
                "artifact_type must be one of: {}",
                ARTIFACT_TYPES.join(", ")
            ),
        }]));
    }
    let chain = anchoring::chain(&state)?;
    let estimate = chain
        .estimate_cost(&artifact_type)
        .await
        .map_err(anchoring::chain_problem)?;
    let units = |value: alloy::primitives::U256, unit: &str| {
        format_units(value, unit)
            .map(|text| {
                let text = text.trim_end_matches('0');
                text.strip_suffix('.').unwrap_or(text).to_owned()
            })
            .map_err(ApiError::internal)
    };
    let network = chain.network();
    JsonText::ok(&json!({
        "network": network.name(),
        "chain_id": network.chain_id(),
        "wallet": chain.attester().to_checksum(None),
        "balance_eth": units(estimate.balance_wei, "ether")?,
        "estimated_gas": estimate.gas,
        "gas_price_gwei": units(alloy::primitives::U256::from(estimate.gas_price), "gwei")?,
        "max_priority_fee_gwei": units(alloy::primitives::U256::from(estimate.max_priority_fee), "gwei")?,
        "estimated_cost_eth": units(estimate.max_cost_wei, "ether")?,
        "can_afford": estimate.balance_wei >= estimate.max_cost_wei,
        "artifact_type": artifact_type,
        "explorer": network.explorer(),
    }))
}
