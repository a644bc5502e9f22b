//! A2A agent cards: `/v1/agent-cards`.
//!
//! The reference's `agent_card_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The agent card tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "parse_agent_card",
        r#"Parse an A2A Agent Card JSON string into normalized fields.

Args:
    agent_card_json: Raw JSON string of an A2A Agent Card."#,
        &[Arg::string("agent_card_json").field("card").json()],
        Method::Post,
        "/v1/agent-cards/parse",
    ),
    Tool::new(
        "generate_agent_card",
        r#"Generate a valid A2A Agent Card (agent.json) for hosting.

Args:
    name: Agent display name.
    url: Base URL where the agent will be hosted.
    description: What the agent does.
    skills_json: JSON array of skill objects with id, name, description.
    version: Agent version string."#,
        &[
            Arg::string("name"),
            Arg::string("url"),
            Arg::string_or("description", ""),
            Arg::string_or("skills_json", "[]").field("skills").json(),
            Arg::string_or("version", "1.0.0"),
        ],
        Method::Post,
        "/v1/agent-cards/generate",
    ),
    Tool::new(
        "discover_agent",
        r#"Fetch and parse /.well-known/agent.json from a URL.

Args:
    base_url: The base URL of the agent to discover (e.g., https://agent.example.com)."#,
        &[Arg::string("base_url")],
        Method::Post,
        "/v1/agent-cards/discover",
    ),
];
