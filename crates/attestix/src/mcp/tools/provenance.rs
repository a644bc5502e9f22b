//! Provenance and the Article 12 audit trail: `/v1/provenance`.
//!
//! The reference's `provenance_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The provenance tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "record_training_data",
        r#"Record a training data source for EU AI Act Article 10 compliance.

Args:
    agent_id: The Attestix agent ID (e.g., attestix:abc123...).
    dataset_name: Name of the training dataset.
    source_url: URL or location of the dataset.
    license: Data license (e.g., CC-BY-4.0, proprietary).
    data_categories: Comma-separated categories (e.g., text,images,structured).
    contains_personal_data: Whether dataset contains personal data (GDPR).
    data_governance_measures: Description of data quality/governance measures."#,
        &[
            Arg::string("agent_id"),
            Arg::string("dataset_name"),
            Arg::string_or("source_url", ""),
            Arg::string_or("license", ""),
            Arg::string_or("data_categories", "").comma_list(),
            Arg::bool_or("contains_personal_data", false),
            Arg::string_or("data_governance_measures", ""),
        ],
        Method::Post,
        "/v1/provenance/training-data",
    ),
    Tool::new(
        "record_model_lineage",
        r#"Record model lineage chain for EU AI Act Article 11 compliance.

Args:
    agent_id: The Attestix agent ID.
    base_model: Base model name (e.g., claude-opus-4-6, gpt-4).
    base_model_provider: Model provider (e.g., Anthropic, OpenAI).
    fine_tuning_method: Fine-tuning approach if any (LoRA, full, RLHF, none).
    evaluation_metrics_json: JSON string of evaluation metrics (e.g., {"accuracy": 0.95})."#,
        &[
            Arg::string("agent_id"),
            Arg::string("base_model"),
            Arg::string_or("base_model_provider", ""),
            Arg::string_or("fine_tuning_method", ""),
            Arg::string_or("evaluation_metrics_json", "")
                .field("evaluation_metrics")
                .json(),
        ],
        Method::Post,
        "/v1/provenance/model-lineage",
    ),
    Tool::new(
        "log_action",
        r#"Log an agent action for EU AI Act Article 12 automatic logging.

Args:
    agent_id: The Attestix agent ID.
    action_type: One of: inference, delegation, data_access, external_call.
    input_summary: Brief description of the input/request.
    output_summary: Brief description of the output/response.
    decision_rationale: Why the agent made this decision.
    human_override: Whether a human overrode the agent's decision."#,
        &[
            Arg::string("agent_id"),
            Arg::string("action_type"),
            Arg::string_or("input_summary", ""),
            Arg::string_or("output_summary", ""),
            Arg::string_or("decision_rationale", ""),
            Arg::bool_or("human_override", false),
        ],
        Method::Post,
        "/v1/provenance/actions",
    ),
    Tool::new(
        "get_provenance",
        r#"Get full provenance record for an agent (training data, model lineage, audit summary).

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/provenance/{agent_id}",
    ),
    Tool::new(
        "get_audit_trail",
        r#"Query the Article 12 audit trail with optional filters.

Args:
    agent_id: The Attestix agent ID.
    action_type: Filter by type (inference, delegation, data_access, external_call). Empty = all.
    start_date: ISO date string for start of range (e.g., 2026-01-01T00:00:00).
    end_date: ISO date string for end of range.
    limit: Maximum number of results."#,
        &[
            Arg::string("agent_id").path(),
            Arg::string_or("action_type", "").query().omit_empty(),
            Arg::string_or("start_date", "").query().omit_empty(),
            Arg::string_or("end_date", "").query().omit_empty(),
            Arg::int_or("limit", 50).query(),
        ],
        Method::Get,
        "/v1/provenance/audit-trail/{agent_id}",
    ),
];
