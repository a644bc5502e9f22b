//! Reputation: `/v1/reputation`.
//!
//! The reference's `reputation_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The reputation tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "record_interaction",
        r#"Record an interaction outcome and update the agent's trust score.

Args:
    agent_id: The agent being evaluated.
    counterparty_id: The other party in the interaction.
    outcome: One of: success, failure, partial, timeout.
    category: Interaction category (e.g., task, delegation, general).
    details: Optional description of what happened."#,
        &[
            Arg::string("agent_id"),
            Arg::string("counterparty_id"),
            Arg::string("outcome"),
            Arg::string_or("category", "general"),
            Arg::string_or("details", ""),
        ],
        Method::Post,
        "/v1/reputation/interactions",
    ),
    Tool::new(
        "get_reputation",
        r#"Get the trust score and interaction history for an agent.

Returns a recency-weighted score from 0.0 to 1.0 with category breakdown.

Args:
    agent_id: The Attestix agent ID to check."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/reputation/{agent_id}",
    ),
    Tool::new(
        "query_reputation",
        r#"Search for agents by reputation criteria.

Args:
    min_score: Minimum trust score (0.0 - 1.0).
    max_score: Maximum trust score (0.0 - 1.0).
    min_interactions: Minimum number of recorded interactions.
    category: Filter by interaction category (empty = all).
    limit: Maximum results to return."#,
        &[
            Arg::float_or("min_score", 0.0).query(),
            Arg::float_or("max_score", 1.0).query(),
            Arg::int_or("min_interactions", 0).query(),
            Arg::string_or("category", "").query().omit_empty(),
            Arg::int_or("limit", 50).query(),
        ],
        Method::Get,
        "/v1/reputation",
    ),
];
