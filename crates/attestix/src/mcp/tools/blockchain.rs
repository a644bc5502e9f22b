//! Blockchain anchoring: `/v1/blockchain`.
//!
//! The reference's `blockchain_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The blockchain tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "anchor_identity",
        r#"Anchor an agent identity (UAIT) hash to Base L2 via EAS.

Computes SHA-256 of the full identity record and submits an
on-chain attestation. Returns transaction hash and explorer URL.

Args:
    agent_id: The Attestix agent ID (e.g., attestix:abc123...)."#,
        &[Arg::string("agent_id")],
        Method::Post,
        "/v1/blockchain/anchor/identity",
    ),
    Tool::new(
        "anchor_credential",
        r#"Anchor a Verifiable Credential hash to Base L2 via EAS.

Computes SHA-256 of the full VC and submits an on-chain attestation.
Returns transaction hash and explorer URL.

Args:
    credential_id: The credential URN (e.g., urn:uuid:...)."#,
        &[Arg::string("credential_id")],
        Method::Post,
        "/v1/blockchain/anchor/credential",
    ),
    Tool::new(
        "verify_anchor",
        r#"Verify an on-chain anchor for an artifact.

Provide either artifact_id (to look up and hash the artifact) or
artifact_hash (direct SHA-256 hex) to check against on-chain records.

Args:
    artifact_id: The artifact ID (agent ID or credential URN). Will be looked up and hashed.
    artifact_hash: Direct SHA-256 hex hash to verify. Use if you already have the hash."#,
        &[
            Arg::string_or("artifact_id", "").path(),
            Arg::string_or("artifact_hash", "").omit_empty(),
        ],
        Method::Post,
        "/v1/blockchain/verify/{artifact_id|artifact_hash}",
    )
    .prepared(verify_anchor_needs_one),
    Tool::new(
        "anchor_audit_batch",
        r#"Anchor a batch of audit log entries as a Merkle root to Base L2.

Computes a Merkle tree of all audit log entries for the agent in the
given date range and anchors the root hash on-chain. This provides
tamper-evident proof for Article 12 audit trails.

Args:
    agent_id: The Attestix agent ID.
    start_date: ISO date for start of range (e.g., 2026-01-01T00:00:00). Empty = all.
    end_date: ISO date for end of range. Empty = all."#,
        &[
            Arg::string("agent_id"),
            Arg::string_or("start_date", "").omit_empty(),
            Arg::string_or("end_date", "").omit_empty(),
        ],
        Method::Post,
        "/v1/blockchain/anchor/audit-batch",
    ),
    Tool::new(
        "get_anchor_status",
        r#"Get all on-chain anchors for an agent, grouped by type.

Shows identity anchors, credential anchors, and audit batch anchors
with transaction hashes, explorer URLs, and timestamps.

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/blockchain/anchors/{agent_id}",
    ),
    Tool::new(
        "estimate_anchor_cost",
        r#"Estimate gas cost for an anchoring transaction on Base L2.

Shows current gas price, wallet balance, estimated cost in ETH,
and whether the wallet has sufficient funds.

Args:
    artifact_type: Type of artifact to estimate for (identity, credential, declaration, audit_batch)."#,
        &[Arg::string_or("artifact_type", "identity").query()],
        Method::Get,
        "/v1/blockchain/estimate-cost",
    ),
];

/// `verify_anchor` needs one of its two arguments, as the reference says.
fn verify_anchor_needs_one(
    args: &serde_json::Map<String, serde_json::Value>,
    _body: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let given = |name: &str| {
        args.get(name)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|text| !text.trim().is_empty())
    };
    if given("artifact_id") || given("artifact_hash") {
        Ok(())
    } else {
        Err("Provide either artifact_id or artifact_hash".into())
    }
}
