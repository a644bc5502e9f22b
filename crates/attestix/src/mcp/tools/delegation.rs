//! UCAN-style delegations: `/v1/delegations`.
//!
//! The reference's `delegation_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The delegation tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "create_delegation",
        r#"Create a UCAN-style delegation token granting capabilities from one agent to another.

Args:
    issuer_agent_id: The agent granting capabilities (Attestix agent ID).
    audience_agent_id: The agent receiving capabilities (Attestix agent ID).
    capabilities: Comma-separated list of capabilities to delegate.
    expiry_hours: Hours until the delegation expires (default 24)."#,
        &[
            Arg::string("issuer_agent_id"),
            Arg::string("audience_agent_id"),
            Arg::string("capabilities").comma_list(),
            Arg::int_or("expiry_hours", 24),
        ],
        Method::Post,
        "/v1/delegations",
    ),
    Tool::new(
        "verify_delegation",
        r#"Verify a UCAN delegation token's signature, expiry, and structure.

Args:
    token: The JWT delegation token to verify."#,
        &[Arg::string("token")],
        Method::Post,
        "/v1/delegations/verify",
    ),
    Tool::new(
        "revoke_delegation",
        r#"Revoke a UCAN delegation token by its JTI (JWT ID).

Once revoked, the token will fail verification even if not expired.

Args:
    jti: The unique identifier of the delegation (from create_delegation response).
    reason: Why this delegation is being revoked."#,
        &[Arg::string("jti").path(), Arg::string_or("reason", "")],
        Method::Delete,
        "/v1/delegations/{jti}",
    ),
    Tool::new(
        "list_delegations",
        r#"List delegation tokens, optionally filtered by agent and role.

Args:
    agent_id: Filter by agent ID (empty = all).
    role: Filter role: 'issuer', 'audience', or 'any'.
    include_expired: Whether to include expired delegations."#,
        &[
            Arg::string_or("agent_id", "").query().omit_empty(),
            Arg::string_or("role", "any").query(),
            Arg::bool_or("include_expired", false).query(),
        ],
        Method::Get,
        "/v1/delegations",
    ),
];
