//! Verifiable Credentials and Presentations: `/v1/credentials`, `/v1/presentations`.
//!
//! The reference's `credential_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The credential tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "issue_credential",
        r#"Issue a W3C Verifiable Credential with Ed25519Signature2020 proof.

Args:
    agent_id: The Attestix agent ID this credential is about.
    credential_type: Credential type (e.g., EUAIActComplianceCredential, AgentIdentityCredential).
    issuer_name: Name of the issuing authority.
    claims_json: JSON string of credential claims (e.g., {"compliant": true, "risk_level": "high"}).
    expiry_days: Days until credential expires (default 365)."#,
        &[
            Arg::string("agent_id").field("subject_id"),
            Arg::string("credential_type"),
            Arg::string("issuer_name"),
            Arg::string("claims_json").field("claims").json(),
            Arg::int_or("expiry_days", 365),
        ],
        Method::Post,
        "/v1/credentials",
    ),
    Tool::new(
        "verify_credential",
        r#"Verify a Verifiable Credential: check signature, expiry, and revocation.

Args:
    credential_id: The credential URN (e.g., urn:uuid:...)."#,
        &[Arg::string("credential_id").path()],
        Method::Post,
        "/v1/credentials/{credential_id}/verify",
    ),
    Tool::new(
        "revoke_credential",
        r#"Revoke a Verifiable Credential.

Args:
    credential_id: The credential URN to revoke.
    reason: Why the credential is being revoked."#,
        &[
            Arg::string("credential_id").path(),
            Arg::string_or("reason", ""),
        ],
        Method::Delete,
        "/v1/credentials/{credential_id}",
    ),
    Tool::new(
        "get_credential",
        r#"Get full details of a Verifiable Credential.

Args:
    credential_id: The credential URN."#,
        &[Arg::string("credential_id").path()],
        Method::Get,
        "/v1/credentials/{credential_id}",
    ),
    Tool::new(
        "list_credentials",
        r#"List Verifiable Credentials with optional filters.

Args:
    agent_id: Filter by subject agent ID. Empty = all agents.
    credential_type: Filter by type (e.g., EUAIActComplianceCredential). Empty = all types.
    valid_only: Only return non-revoked, non-expired credentials.
    limit: Maximum number of results."#,
        &[
            Arg::string_or("agent_id", "").query().omit_empty(),
            Arg::string_or("credential_type", "").query().omit_empty(),
            Arg::bool_or("valid_only", false).query(),
            Arg::int_or("limit", 50).query(),
        ],
        Method::Get,
        "/v1/credentials",
    ),
    Tool::new(
        "verify_credential_external",
        r#"Verify a Verifiable Credential provided as raw JSON.

Use this when you receive a VC from another party and need to validate it
without it being in local storage. Checks signature, expiry, and structure.

Args:
    credential_json: The full W3C Verifiable Credential as a JSON string."#,
        &[Arg::string("credential_json").field("credential").json()],
        Method::Post,
        "/v1/credentials/verify-external",
    ),
    Tool::new(
        "verify_presentation",
        r#"Verify a Verifiable Presentation provided as raw JSON.

Validates the VP signature and each contained credential. When the
verifier supplies expected context, checks the signed challenge/domain.
The verifier must separately consume challenges to prevent reuse.

Args:
    presentation_json: The full W3C Verifiable Presentation as a JSON string.
    expected_challenge: Challenge issued by the verifier, when required.
    expected_domain: Intended verifier domain, when required."#,
        &[
            Arg::string("presentation_json")
                .field("presentation")
                .json(),
            Arg::string_or("expected_challenge", "")
                .field("challenge")
                .omit_empty(),
            Arg::string_or("expected_domain", "")
                .field("domain")
                .omit_empty(),
        ],
        Method::Post,
        "/v1/presentations/verify",
    ),
    Tool::new(
        "create_verifiable_presentation",
        r#"Bundle multiple Verifiable Credentials into a Verifiable Presentation.

Creates a signed VP that an agent can present to a verifier to prove compliance.

Args:
    agent_id: The Attestix agent ID (holder/presenter).
    credential_ids: Comma-separated credential URNs to include.
    audience_did: DID of the intended verifier (optional).
    challenge: Nonce provided by the verifier for replay protection (optional)."#,
        &[
            Arg::string("agent_id"),
            Arg::string("credential_ids").comma_list(),
            Arg::string_or("audience_did", ""),
            Arg::string_or("challenge", ""),
        ],
        Method::Post,
        "/v1/presentations",
    ),
];
