//! EU AI Act compliance: `/v1/compliance`.
//!
//! The reference's `compliance_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The compliance tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "create_compliance_profile",
        r#"Create an EU AI Act compliance profile for an agent.

Categorizes the AI system by risk level and tracks all compliance obligations.

Args:
    agent_id: The Attestix agent ID (e.g., attestix:abc123...).
    risk_category: EU AI Act risk level: minimal, limited, or high.
    provider_name: Name of the AI system provider/company.
    intended_purpose: What the AI system is designed to do.
    transparency_obligations: How transparency requirements are met.
    human_oversight_measures: Human oversight mechanisms in place (required for high-risk).
    provider_address: Registered address of the provider.
    authorised_representative: Name of the EU authorised representative (if provider is outside EU).
    annex_iii_category: For high-risk systems, the Annex III point 1-8.
        Point 1 (biometrics) requires third-party assessment; Points 2-8
        permit self-assessment via Annex VI internal control. Use 0 or
        omit to leave unspecified (defaults to requiring third-party).
    annex_iii_exception: For Points 2-8, one of the documented carve-outs
        that still require third-party assessment per Article 43:
        'biometric_identification_law_enforcement',
        'financial_fraud_detection', 'political_campaign_organization'.
        Leave empty if no exception applies."#,
        &[
            Arg::string("agent_id"),
            Arg::string("risk_category"),
            Arg::string("provider_name"),
            Arg::string_or("intended_purpose", ""),
            Arg::string_or("transparency_obligations", ""),
            Arg::string_or("human_oversight_measures", ""),
            Arg::string_or("provider_address", ""),
            Arg::string_or("authorised_representative", ""),
            Arg::int_or("annex_iii_category", 0).omit_empty(),
            Arg::string_or("annex_iii_exception", "").omit_empty(),
        ],
        Method::Post,
        "/v1/compliance/profiles",
    ),
    Tool::new(
        "update_compliance_profile",
        r#"Update an existing EU AI Act compliance profile.

Use this to iteratively fill in compliance information over time.
Only non-empty fields will be updated.

Args:
    agent_id: The Attestix agent ID.
    intended_purpose: Updated purpose description.
    transparency_obligations: Updated transparency info.
    human_oversight_measures: Updated human oversight info.
    provider_name: Updated provider name."#,
        &[
            Arg::string("agent_id").path(),
            Arg::string_or("intended_purpose", "").omit_empty(),
            Arg::string_or("transparency_obligations", "").omit_empty(),
            Arg::string_or("human_oversight_measures", "").omit_empty(),
            Arg::string_or("provider_name", "").omit_empty(),
        ],
        Method::Patch,
        "/v1/compliance/profiles/{agent_id}",
    ),
    Tool::new(
        "get_compliance_profile",
        r#"Get the EU AI Act compliance profile for an agent.

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/compliance/profiles/{agent_id}",
    ),
    Tool::new(
        "get_compliance_status",
        r#"Check completeness of the recorded evidence workflow.

Shows completed and missing evidence checks. Legal applicability,
evidence quality, and conformity are not assessed by this tool.

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id").path()],
        Method::Get,
        "/v1/compliance/profiles/{agent_id}/status",
    ),
    Tool::new(
        "record_conformity_assessment",
        r#"Record a conformity assessment for EU AI Act Article 43.

Stores the provider's assessment record; assessor authority and legal
conformity are not verified by Attestix. Assessment procedure rules
depend on the profile's recorded classification.

Args:
    agent_id: The Attestix agent ID.
    assessment_type: self or third_party.
    assessor_name: Name of the assessor or notified body.
    result: Assessment result: pass, conditional, or fail.
    findings: Detailed findings or conditions.
    ce_marking_eligible: Provider-recorded eligibility claim, not a legal determination."#,
        &[
            Arg::string("agent_id"),
            Arg::string("assessment_type"),
            Arg::string("assessor_name"),
            Arg::string("result"),
            Arg::string_or("findings", ""),
            Arg::bool_or("ce_marking_eligible", false),
        ],
        Method::Post,
        "/v1/compliance/assessments",
    ),
    Tool::new(
        "generate_declaration_of_conformity",
        r#"Generate a draft Annex V document for provider review.

Requires the configured assessment prerequisites. Also issues a W3C
credential binding the recorded workflow evidence. Neither document
generation nor a valid signature establishes legal conformity.

Args:
    agent_id: The Attestix agent ID."#,
        &[Arg::string("agent_id")],
        Method::Post,
        "/v1/compliance/declarations",
    ),
    Tool::new(
        "list_compliance_profiles",
        r#"List EU AI Act compliance profiles with optional filters.

Args:
    risk_category: Filter by risk level (minimal, limited, high, unacceptable). Empty = all.
    compliant_only: Deprecated filter for recorded declaration presence, not legal conformity.
    limit: Maximum number of results."#,
        &[
            Arg::string_or("risk_category", "").query().omit_empty(),
            Arg::bool_or("compliant_only", false).query(),
            Arg::int_or("limit", 50).query(),
        ],
        Method::Get,
        "/v1/compliance/profiles",
    ),
];
