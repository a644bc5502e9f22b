//! The OpenAPI 3.1 document, generated from the handlers by utoipa, plus what the
//! idempotency layer adds to every POST.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as OpenApiDocument, Ref, RefOr, Required, Type,
};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    agent_cards, audit, blockchain, compliance, credentials, delegations, dids, health, identities,
    presentations, provenance, reputation,
};

/// The name of the request header, as documented.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// The name of the replay marker, as documented.
pub const IDEMPOTENCY_REPLAYED_HEADER: &str = "Idempotency-Replayed";

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Attestix API",
        description = "Attestation infrastructure for AI agents: signed agent identities (UAITs), \
                       Verifiable Credentials and Presentations. Every POST and DELETE accepts an \
                       `Idempotency-Key` header: a retry with the same key and body gets the \
                       original response back (marked `Idempotency-Replayed: true`) instead of a \
                       second side effect. Keys are kept 24 hours per authenticated principal."
    ),
    paths(
        health::health,
        health::metrics,
        identities::create_identity,
        identities::list_identities,
        identities::get_identity,
        identities::verify_identity,
        identities::revoke_identity,
        identities::translate_identity,
        identities::purge_identity,
        credentials::issue_credential,
        credentials::issue_credential_alias,
        credentials::list_credentials,
        credentials::get_credential,
        credentials::verify_stored_credential,
        credentials::verify_external,
        credentials::revoke_credential,
        presentations::create_presentation,
        presentations::verify,
        delegations::create_delegation,
        delegations::verify_delegation,
        delegations::list_delegations,
        delegations::revoke_delegation,
        agent_cards::generate_agent_card,
        agent_cards::parse_agent_card,
        agent_cards::discover_agent,
        dids::create_did_key,
        dids::create_did_web,
        dids::resolve_did,
        audit::list_events,
        audit::verify_chain,
        reputation::record_interaction,
        reputation::get_reputation,
        reputation::query_reputation,
        provenance::log_action,
        provenance::record_training_data,
        provenance::record_model_lineage,
        provenance::audit_trail,
        provenance::verify_audit_trail,
        provenance::provenance_of,
        blockchain::anchor_identity,
        blockchain::anchor_credential,
        blockchain::anchor_audit_batch,
        blockchain::inclusion_proof_of,
        blockchain::verify_anchor,
        blockchain::list_anchors,
        blockchain::estimate_cost,
        compliance::create_profile,
        compliance::list_profiles,
        compliance::get_profile,
        compliance::update_profile,
        compliance::profile_status,
        compliance::record_assessment,
        compliance::generate_declaration,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    modifiers(&Security, &IdempotencyDocs),
    tags(
        (name = "identities", description = "Agent identities (UAITs)"),
        (name = "credentials", description = "Verifiable Credentials"),
        (name = "presentations", description = "Verifiable Presentations"),
        (name = "agent-cards", description = "A2A agent cards: generate, parse, discover"),
        (name = "dids", description = "did:key and did:web creation and resolution"),
        (name = "delegations", description = "UCAN-style delegation tokens with capability attenuation"),
        (name = "provenance", description = "EU AI Act Art. 12: the per-agent hash-chained action log"),
        (name = "compliance", description = "EU AI Act: profiles, Article 43 assessments, Annex V declarations"),
        (name = "reputation", description = "Interactions and recency-weighted trust scores"),
        (name = "blockchain", description = "Anchoring on an EVM chain through the Ethereum Attestation Service, exactly once per Idempotency-Key"),
        (name = "audit", description = "The hash-chained audit events of every mutation"),
        (name = "health", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
    }
}

/// Adds, to every POST, PATCH and DELETE operation, the `Idempotency-Key` header, the
/// `Idempotency-Replayed` header on its 2xx responses, and the layer's problem
/// responses (400, 409, 413, 422, 503).
pub struct IdempotencyDocs;

impl Modify for IdempotencyDocs {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            // Every mutating method goes through the idempotency layer.
            for operation in [
                item.post.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                document_idempotency(operation);
            }
            // Reads and revocations under /v1 answer the same access and
            // availability problems as the POSTs.
            if path.starts_with("/v1/") {
                for operation in [item.get.as_mut(), item.delete.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    add_problems(operation, &ACCESS_PROBLEMS);
                    add_problems(
                        operation,
                        &[("503", "The database is unavailable; retry later")],
                    );
                }
            }
        }
    }
}

/// The problems of authentication, answered on every /v1 operation.
const ACCESS_PROBLEMS: [(&str, &str); 2] =
    [("401", "No API key"), ("403", "Unknown or revoked API key")];

/// Documents each `(status, description)` as a problem response unless the operation
/// documents that status already.
fn add_problems(operation: &mut Operation, problems: &[(&str, &str)]) {
    for (status, description) in problems {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| problem(description));
    }
}

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn document_idempotency(operation: &mut Operation) {
    let key = ParameterBuilder::new()
        .name(IDEMPOTENCY_KEY_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A unique value (a UUIDv4 is ideal) that makes this request safe to retry: a retry \
             with the same key and the same request replays the original response; the same \
             key with a different request is rejected. 1 to 255 visible ASCII characters, bare \
             or as a quoted string. Kept for 24 hours per principal.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                // Bare: visible ASCII not opening a quote. Quoted: a Structured Field
                // string whose only escapes are \" and \\, 1 to 255 characters inside.
                .pattern(Some(
                    r#"^("([\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255}"|[\x21\x23-\x7e][\x21-\x7e]{0,254})$"#,
                )),
        ))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(key);

    let replayed = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["true"])),
        )
        .description(Some(
            "Present, with the value `true`, when this response is a replay of the response \
             stored for the request's Idempotency-Key.",
        ))
        .build();
    for (status, response) in operation.responses.responses.iter_mut() {
        if status.starts_with('2') {
            if let RefOr::T(response) = response {
                response
                    .headers
                    .insert(IDEMPOTENCY_REPLAYED_HEADER.to_owned(), replayed.clone());
            }
        }
    }

    let layer_problems = [
        ("400", "Malformed or repeated Idempotency-Key header, or an unreadable request"),
        ("409", "The Idempotency-Key was used with a different request, or a request with it is still in progress (then with Retry-After)"),
        ("413", "The request body is larger than the server accepts"),
        ("422", "The request is invalid, or (in IETF mode) the Idempotency-Key was used with a different request"),
        ("503", "The idempotency store or the database is unavailable; nothing was executed. Retry with the same key"),
    ];
    add_problems(operation, &layer_problems);
    add_problems(operation, &ACCESS_PROBLEMS);
}
