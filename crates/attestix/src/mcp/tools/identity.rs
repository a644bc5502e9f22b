//! Agent identities (UAITs): `/v1/identities`.
//!
//! The reference's `identity_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The identity tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "create_agent_identity",
        r#"Create a Unified Agent Identity Token (UAIT) from any identity source.

Args:
    display_name: Human-readable name for the agent.
    source_protocol: Origin protocol (mcp_oauth, a2a, did, api_key, manual).
    identity_token: The original token/DID/URL (optional).
    capabilities: Comma-separated list of capabilities.
    description: What this agent does.
    issuer_name: Who issued this identity.
    expiry_days: Days until expiry (default 365)."#,
        &[
            Arg::string("display_name"),
            Arg::string_or("source_protocol", "manual"),
            Arg::string_or("identity_token", "").omit_empty(),
            Arg::string_or("capabilities", "").comma_list(),
            Arg::string_or("description", "").omit_empty(),
            Arg::string_or("issuer_name", "").omit_empty(),
            Arg::int_or("expiry_days", 365),
        ],
        Method::Post,
        "/v1/identities",
    ),
    Tool::new(
        "resolve_identity",
        r#"Auto-detect token type (JWT/DID/URL/API key) and create a UAIT.

Args:
    identity_token: Any identity string to analyze and register."#,
        &[Arg::string("identity_token")],
        Method::Post,
        "/v1/identities",
    )
    .prepared(resolved_identity),
    Tool::new(
        "verify_identity",
        r#"Verify a UAIT: check existence, revocation, expiry, and signature.

Args:
    agent_id: The Attestix agent ID (e.g., attestix:abc123...)."#,
        &[Arg::string("agent_id").path()],
        Method::Post,
        "/v1/identities/{agent_id}/verify",
    ),
    Tool::new(
        "translate_identity",
        r#"Convert a UAIT to another identity format.

Args:
    agent_id: The Attestix agent ID to translate.
    target_format: One of: a2a_agent_card, did_document, oauth_claims, summary."#,
        &[
            Arg::string("agent_id").path(),
            Arg::string_or("target_format", "summary"),
        ],
        Method::Post,
        "/v1/identities/{agent_id}/translate",
    ),
    Tool::new(
        "list_identities",
        r#"List all registered agent identities (UAITs).

Args:
    source_protocol: Filter by protocol (mcp_oauth, a2a, did, api_key, manual). Empty = all.
    include_revoked: Whether to include revoked identities.
    limit: Maximum number of results."#,
        &[
            Arg::string_or("source_protocol", "").query().omit_empty(),
            Arg::bool_or("include_revoked", false).query(),
            Arg::int_or("limit", 50).query(),
        ],
        Method::Get,
        "/v1/identities",
    ),
    Tool::new(
        "get_identity",
        r#"Get full UAIT details for a specific agent.

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/identities/{agent_id}",
    ),
    Tool::new(
        "revoke_identity",
        r#"Revoke a UAIT, marking it as no longer valid.

Args:
    agent_id: The Attestix agent ID to revoke.
    reason: Why this identity is being revoked."#,
        &[Arg::string("agent_id").path(), Arg::string_or("reason", "")],
        Method::Delete,
        "/v1/identities/{agent_id}",
    ),
    Tool::new(
        "purge_agent_data",
        r#"GDPR Article 17 right to erasure. Permanently deletes ALL data for an agent.

Removes identity, credentials, compliance profiles, delegations,
provenance records, reputation data, and audit logs. This action is
irreversible. Blockchain anchors are immutable and cannot be purged.

Args:
    agent_id: The Attestix agent ID to purge."#,
        &[Arg::string("agent_id").path()],
        Method::Delete,
        "/v1/identities/{agent_id}/purge",
    ),
];

/// `resolve_identity` names and classifies the identity from its token, as the
/// reference does: `Resolved-<kind>`, from the `<kind>` protocol.
fn resolved_identity(
    args: &serde_json::Map<String, serde_json::Value>,
    body: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let token = args
        .get("identity_token")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let kind = attestix_core::TokenKind::detect(token).as_str();
    body.insert("display_name".into(), format!("Resolved-{kind}").into());
    body.insert("source_protocol".into(), kind.into());
    Ok(())
}
