//! DIDs: `/v1/dids`.
//!
//! The reference's `did_tools.py` tools, each with the REST call of the reference's
//! router for the feature.

use crate::mcp::table::{Arg, Method, Tool};

/// The did tools.
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "resolve_did",
        r#"Resolve any DID to its DID Document.

Supports did:key (local), did:web (HTTP), and others via Universal Resolver.

Args:
    did: The DID to resolve (e.g., did:key:z6Mk..., did:web:example.com)."#,
        &[Arg::string("did").path()],
        Method::Get,
        "/v1/dids/resolve/{did}",
    ),
    Tool::new(
        "create_did_key",
        r#"Generate an ephemeral did:key identity with an Ed25519 keypair.

Returns the DID, DID Document, and keypair (store private key securely)."#,
        &[],
        Method::Post,
        "/v1/dids/key",
    ),
    Tool::new(
        "create_did_web",
        r#"Generate a did:web DID Document for self-hosting.

You must host the returned document at the specified URL for the DID to be resolvable.

Args:
    domain: The domain name (e.g., vibetensor.com).
    path: Optional path segment (e.g., agents/mybot)."#,
        &[Arg::string("domain"), Arg::string_or("path", "")],
        Method::Post,
        "/v1/dids/web",
    ),
];
