//! Anchoring an artifact exactly once: the steps between a route and the chain.
//!
//! 1. Under the wallet's nonce lock, the attestation is signed and its transaction
//!    (hash, nonce, raw bytes) stored as an [`kind::ANCHOR_TX`] record, in its own
//!    write job; only then is it broadcast.
//! 2. The receipt is awaited outside any database job.
//! 3. The anchor record and its audit event are written in a second job.
//!
//! With an `Idempotency-Key` the anchor id is derived from (scope, key), so a retry
//! after a crash at any point finds what step 1 stored, rebroadcasts the same
//! transaction and waits for its receipt: the key never pays for a second one.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::chain::{AnchorFields, ChainClient, ChainError, Mined, SendError, SignedTx};
use crate::error::ApiError;
use crate::recovery::ResourceKind;
use crate::state::AppState;
use crate::storage::records::{self, kind, NewRecord};
use crate::storage::StorageError;

/// The artifact types the schema's `artifactType` takes.
pub const ARTIFACT_TYPES: &[&str] = &["identity", "credential", "declaration", "audit_batch"];

/// What is anchored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// One of [`ARTIFACT_TYPES`].
    pub artifact_type: String,
    /// The artifact's id (agent id, credential id, batch id).
    pub artifact_id: String,
    /// SHA-256 hex of the artifact (a Merkle root for a batch).
    pub artifact_hash: String,
    /// The agent the artifact is about: anchors are listed per agent.
    pub agent_id: Option<String>,
    /// A batch's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_metadata: Option<Value>,
    /// A batch's entries in leaf order: (entry id, leaf hash hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_entries: Option<Vec<(String, String)>>,
}

/// The stored transaction of an anchor (kind [`kind::ANCHOR_TX`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorTx {
    /// The anchor it makes.
    pub anchor_id: String,
    /// The artifact.
    pub artifact: Artifact,
    /// The transaction hash.
    pub tx_hash: String,
    /// The wallet nonce.
    pub nonce: u64,
    /// The raw signed transaction, hex.
    pub raw_tx: String,
    /// The request's fingerprint (hex) when it carried a key: a later request with
    /// the key and another fingerprint is a reuse, not a retry.
    pub fingerprint: Option<String>,
}

/// The chain client, or 503 when anchoring is not configured.
pub fn chain(state: &AppState) -> Result<&ChainClient, ApiError> {
    state.chain.as_deref().ok_or_else(|| {
        ApiError::NotConfigured(
            "anchoring not configured: start the server with --evm-rpc-url and a wallet key (--evm-private-key-file or EVM_PRIVATE_KEY); see docs/ANCHORING.md".into(),
        )
    })
}

/// The problem a chain failure is answered with.
pub fn chain_problem(error: ChainError) -> ApiError {
    tracing::warn!(%error, "anchoring: the chain failed");
    match error {
        ChainError::Timeout(hash) => ApiError::GatewayTimeout(format!(
            "transaction {hash} was sent but not mined in time; retry with the same Idempotency-Key to wait for it"
        )),
        ChainError::Reverted(hash) => {
            ApiError::BadGateway(format!("transaction {hash} reverted on chain"))
        }
        ChainError::Settings(message) => ApiError::NotConfigured(message),
        other => ApiError::BadGateway(other.to_string()),
    }
}

/// The anchor id of a request: derived from its key, random without one.
fn anchor_id(
    state: &AppState,
    caller: &Caller,
    context: Option<&idempotency::IdempotencyContext>,
) -> String {
    let id = match context {
        Some(context) => state.recovery_ids.derive(
            ResourceKind::Anchor,
            &caller.scope(),
            &context.record.key,
            0,
        ),
        None => uuid::Uuid::new_v4(),
    };
    format!("anchor:{}", &id.simple().to_string()[..12])
}

/// Anchors `artifact` for `caller`, exactly once per Idempotency-Key. The answer is
/// the anchor document and whether it was made by an earlier request (a replay).
pub async fn anchor(
    state: &AppState,
    caller: &Caller,
    context: Option<&idempotency::IdempotencyContext>,
    artifact: Artifact,
) -> Result<(String, bool), ApiError> {
    let chain = chain(state)?;
    let scope = caller.scope();
    let anchor_id = anchor_id(state, caller, context);
    let fingerprint = context.map(|c| hex::encode(c.fingerprint.as_bytes()));

    if context.is_some() {
        if let Some(found) = find(state, &scope, &anchor_id).await? {
            return resume(state, caller, chain, found, fingerprint.as_deref()).await;
        }
    }

    let fields = fields_of(state, &artifact)?;
    let storage = state.storage.clone();
    let record_scope = scope.clone();
    let record_id = anchor_id.clone();
    let record_artifact = artifact.clone();
    let record_fingerprint = fingerprint.clone();
    let now_ms = crate::routes::unix_ms(OffsetDateTime::now_utc());
    let sent = chain
        .attest(&fields, move |signed: SignedTx| async move {
            let stored = AnchorTx {
                anchor_id: record_id.clone(),
                artifact: record_artifact,
                tx_hash: signed.hash.to_string(),
                nonce: signed.nonce,
                raw_tx: hex::encode(&signed.raw),
                fingerprint: record_fingerprint,
            };
            let record = NewRecord {
                scope: record_scope,
                kind: kind::ANCHOR_TX,
                id: record_id,
                subject: stored.artifact.agent_id.clone(),
                label: Some(stored.tx_hash.clone()),
                created_at_ms: now_ms,
                document: serde_json::to_string(&stored)
                    .map_err(|e| StorageError::database(e.to_string()))?,
                refs: stored.artifact.agent_id.iter().cloned().collect(),
            };
            records::write_with(&*storage, move |tx| {
                Box::pin(async move { records::insert(tx, &record).await.map(|_| ()) })
            })
            .await
        })
        .await;
    let signed = match sent {
        Ok(signed) => signed,
        // Another execution of the same key stored its transaction first (a
        // takeover racing the original): wait for that one.
        Err(SendError::Record(StorageError::Duplicate)) => {
            let found = find(state, &scope, &anchor_id)
                .await?
                .ok_or_else(|| ApiError::internal("an anchor transaction vanished"))?;
            return resume(state, caller, chain, found, fingerprint.as_deref()).await;
        }
        Err(SendError::Record(error)) => return Err(error.into()),
        Err(SendError::Chain(error)) => return Err(chain_problem(error)),
    };
    fail::fail_point!("blockchain.after_send", |action| {
        if action.as_deref() == Some("abort") {
            std::process::abort();
        }
        Err(ApiError::internal("failpoint blockchain.after_send"))
    });
    let mined = chain.wait_for(signed.hash).await.map_err(chain_problem)?;
    let stored = AnchorTx {
        anchor_id,
        artifact,
        tx_hash: signed.hash.to_string(),
        nonce: signed.nonce,
        raw_tx: String::new(),
        fingerprint,
    };
    finish(state, caller, chain, &stored, mined).await
}

/// What an earlier execution of the key left.
enum Found {
    /// The anchor is complete.
    Anchor(String, Option<String>),
    /// Its transaction was stored, maybe sent, maybe mined.
    Sent(Box<AnchorTx>),
}

async fn find(state: &AppState, scope: &str, anchor_id: &str) -> Result<Option<Found>, ApiError> {
    let scope = scope.to_owned();
    let id = anchor_id.to_owned();
    let (anchor, sent) = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            let anchor = records::get(tx, &scope, kind::ANCHOR, &id).await?;
            let sent = records::get(tx, &scope, kind::ANCHOR_TX, &id).await?;
            Ok((anchor, sent))
        })
    })
    .await?;
    let sent: Option<AnchorTx> = sent
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(match (anchor, sent) {
        (Some(anchor), sent) => Some(Found::Anchor(anchor, sent.and_then(|s| s.fingerprint))),
        (None, Some(sent)) => Some(Found::Sent(Box::new(sent))),
        (None, None) => None,
    })
}

async fn resume(
    state: &AppState,
    caller: &Caller,
    chain: &ChainClient,
    found: Found,
    fingerprint: Option<&str>,
) -> Result<(String, bool), ApiError> {
    let reused = |stored: &Option<String>| stored.as_deref() != fingerprint;
    match found {
        Found::Anchor(document, stored) => {
            if reused(&stored) {
                return Err(ApiError::KeyReused {
                    status: state.key_reuse_status,
                });
            }
            Ok((document, true))
        }
        Found::Sent(sent) => {
            if reused(&sent.fingerprint) {
                return Err(ApiError::KeyReused {
                    status: state.key_reuse_status,
                });
            }
            tracing::info!(
                anchor_id = %sent.anchor_id,
                tx_hash = %sent.tx_hash,
                "resuming an anchor whose transaction was stored earlier: waiting for it, sending nothing new"
            );
            let raw = hex::decode(&sent.raw_tx).map_err(ApiError::internal)?;
            chain.rebroadcast(&raw).await;
            let hash = sent.tx_hash.parse().map_err(ApiError::internal)?;
            let mined = chain.wait_for(hash).await.map_err(chain_problem)?;
            let (document, _) = finish(state, caller, chain, &sent, mined).await?;
            Ok((document, true))
        }
    }
}

fn fields_of(state: &AppState, artifact: &Artifact) -> Result<AnchorFields, ApiError> {
    Ok(AnchorFields {
        artifact_hash: artifact
            .artifact_hash
            .parse()
            .map_err(|_| ApiError::internal("an artifact hash is not 32 bytes of hex"))?,
        artifact_type: artifact.artifact_type.clone(),
        artifact_id: artifact.artifact_id.clone(),
        issuer_did: state.signer.did().to_owned(),
    })
}

/// Writes the anchor record and its audit event; an anchor already recorded (a
/// concurrent resume) is answered as it is.
async fn finish(
    state: &AppState,
    caller: &Caller,
    chain: &ChainClient,
    sent: &AnchorTx,
    mined: Mined,
) -> Result<(String, bool), ApiError> {
    let now = OffsetDateTime::now_utc();
    let network = chain.network();
    let schema_uid = chain.ensure_schema().await.map_err(chain_problem)?;
    let artifact = &sent.artifact;
    let mut document = Map::new();
    document.insert("anchor_id".into(), json!(sent.anchor_id));
    document.insert("artifact_type".into(), json!(artifact.artifact_type));
    document.insert("artifact_id".into(), json!(artifact.artifact_id));
    document.insert("artifact_hash".into(), json!(artifact.artifact_hash));
    document.insert("network".into(), json!(network.name()));
    document.insert("chain_id".into(), json!(network.chain_id()));
    document.insert("tx_hash".into(), json!(sent.tx_hash));
    document.insert(
        "attestation_uid".into(),
        json!(mined.attestation_uid.to_string()),
    );
    document.insert("schema_uid".into(), json!(schema_uid.to_string()));
    document.insert("attester".into(), json!(chain.attester().to_checksum(None)));
    document.insert("block_number".into(), json!(mined.block_number));
    document.insert("gas_used".into(), json!(mined.gas_used));
    document.insert(
        "explorer_url".into(),
        match network.explorer() {
            Some(explorer) => json!(format!("{explorer}/tx/{}", sent.tx_hash)),
            None => Value::Null,
        },
    );
    document.insert(
        "anchored_at".into(),
        json!(attestix_core::format_isoformat(now)),
    );
    document.insert("issuer_did".into(), json!(state.signer.did()));
    if let Some(metadata) = &artifact.batch_metadata {
        document.insert("batch_metadata".into(), metadata.clone());
    }
    let text = serde_json::to_string(&Value::Object(document)).map_err(ApiError::internal)?;
    let event = crate::routes::audit_draft(
        state,
        caller,
        "blockchain.anchor",
        (&sent.anchor_id, "anchors"),
        json!({
            "anchor_id": sent.anchor_id,
            "artifact_type": artifact.artifact_type,
            "artifact_id": artifact.artifact_id,
            "attestation_uid": mined.attestation_uid.to_string(),
        }),
        now,
    )?
    .mentioning(artifact.agent_id.iter().cloned());
    let record = NewRecord {
        scope: caller.scope(),
        kind: kind::ANCHOR,
        id: sent.anchor_id.clone(),
        subject: artifact.agent_id.clone(),
        label: Some(artifact.artifact_hash.clone()),
        created_at_ms: crate::routes::unix_ms(now),
        document: text.clone(),
        refs: artifact.agent_id.iter().cloned().collect(),
    };
    let written = records::write_with(&*state.storage, move |tx| {
        Box::pin(async move {
            match records::insert(tx, &record).await {
                Ok(_) => {
                    tx.audit(&event).await?;
                    Ok(None)
                }
                Err(StorageError::Duplicate) => {
                    records::get(tx, &record.scope, kind::ANCHOR, &record.id).await
                }
                Err(error) => Err(error),
            }
        })
    })
    .await?;
    Ok(match written {
        None => (text, false),
        Some(existing) => (existing, true),
    })
}

/// A batch's stored entries and the anchor they belong to, for inclusion proofs.
pub async fn batch_entries(
    state: &AppState,
    scope: &str,
    anchor_id: &str,
) -> Result<Option<(Value, Vec<(String, String)>)>, ApiError> {
    let scope = scope.to_owned();
    let id = anchor_id.to_owned();
    let (anchor, sent) = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            Ok((
                records::get(tx, &scope, kind::ANCHOR, &id).await?,
                records::get(tx, &scope, kind::ANCHOR_TX, &id).await?,
            ))
        })
    })
    .await?;
    let (Some(anchor), Some(sent)) = (anchor, sent) else {
        return Ok(None);
    };
    let anchor: Value = serde_json::from_str(&anchor).map_err(ApiError::internal)?;
    let sent: AnchorTx = serde_json::from_str(&sent).map_err(ApiError::internal)?;
    Ok(sent.artifact.batch_entries.map(|entries| (anchor, entries)))
}
