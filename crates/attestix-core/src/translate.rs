//! An identity (UAIT) in other formats, as the reference's
//! `IdentityService.translate_identity` writes them: an A2A agent card, a DID
//! document, OAuth 2.0 claims, or a summary.
//!
//! ```
//! use attestix_core::translate::{translate, TargetFormat};
//! use serde_json::json;
//!
//! let uait = json!({"agent_id": "attestix:0011223344556677", "display_name": "Bot",
//!                   "issuer": {"name": "Acme", "did": "did:key:z6Mk"}, "capabilities": ["read"]});
//! let claims = translate(&uait, TargetFormat::OauthClaims);
//! assert_eq!(claims["scope"], "read");
//! ```

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::keys::DidKey;
use crate::uait::UAIT_VERSION;

/// The formats an identity translates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFormat {
    /// `a2a_agent_card`.
    A2aAgentCard,
    /// `did_document`.
    DidDocument,
    /// `oauth_claims`.
    OauthClaims,
    /// `summary`.
    Summary,
}

impl TargetFormat {
    /// Every format's name, as requests write it.
    pub const NAMES: [&'static str; 4] =
        ["a2a_agent_card", "did_document", "oauth_claims", "summary"];

    /// The format named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "a2a_agent_card" => Some(Self::A2aAgentCard),
            "did_document" => Some(Self::DidDocument),
            "oauth_claims" => Some(Self::OauthClaims),
            "summary" => Some(Self::Summary),
            _ => None,
        }
    }
}

/// `uait` (the stored identity document) in `format`.
pub fn translate(uait: &Value, format: TargetFormat) -> Value {
    match format {
        TargetFormat::A2aAgentCard => agent_card(uait),
        TargetFormat::DidDocument => did_document(uait),
        TargetFormat::OauthClaims => oauth_claims(uait),
        TargetFormat::Summary => summary(uait),
    }
}

fn field<'a>(uait: &'a Value, name: &str) -> &'a Value {
    uait.get(name).unwrap_or(&Value::Null)
}

fn text<'a>(uait: &'a Value, name: &str) -> &'a str {
    uait.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn or(uait: &Value, name: &str, default: Value) -> Value {
    uait.get(name).cloned().unwrap_or(default)
}

fn capabilities(uait: &Value) -> Vec<&str> {
    uait.get("capabilities")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn issuer<'a>(uait: &'a Value, name: &str) -> Option<&'a Value> {
    uait.get("issuer").and_then(|issuer| issuer.get(name))
}

fn sha256_hex_prefix(text: &str, digits: usize) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..digits]
        .to_owned()
}

fn agent_card(uait: &Value) -> Value {
    let agent_id = text(uait, "agent_id");
    let skills: Vec<Value> = capabilities(uait)
        .into_iter()
        .map(|capability| {
            json!({
                "id": sha256_hex_prefix(capability, 8),
                "name": capability,
                "description": format!("Capability: {capability}"),
            })
        })
        .collect();
    let url = format!("attestix://{agent_id}");
    json!({
        "id": sha256_hex_prefix(agent_id, 16),
        "name": field(uait, "display_name"),
        "description": or(uait, "description", json!("")),
        "url": url,
        "version": or(uait, "version", json!(UAIT_VERSION)),
        "capabilities": {"streaming": false, "pushNotifications": false},
        "skills": skills,
        "endpoints": [{"url": format!("{url}/tasks"), "protocol": "attestix", "method": "POST"}],
        "provider": {"organization": issuer(uait, "name").cloned().unwrap_or(json!(""))},
        "authentication": {"schemes": ["attestix-uait"], "credentials": agent_id},
        "_attestix_metadata": {
            "agent_id": agent_id,
            "source_protocol": field(uait, "source_protocol"),
            "reputation_score": field(uait, "reputation_score"),
        },
    })
}

fn did_document(uait: &Value) -> Value {
    let agent_id = text(uait, "agent_id");
    let did = issuer(uait, "did")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("did:attestix:{agent_id}"));
    let (fragment, multibase) = if did.starts_with("did:key:z") {
        let multibase = DidKey::parse(&did)
            .ok()
            .map(|key| key.as_str()["did:key:".len()..].to_owned());
        (format!("#{}", &did["did:key:".len()..]), multibase)
    } else {
        ("#key-1".to_owned(), None)
    };
    let method = format!("{did}{fragment}");
    let mut verification = json!({
        "id": method,
        "type": "Ed25519VerificationKey2020",
        "controller": did,
    });
    if let Some(multibase) = multibase {
        verification["publicKeyMultibase"] = json!(multibase);
    }
    json!({
        "@context": crate::did::DID_CONTEXT,
        "id": did,
        "controller": did,
        "verificationMethod": [verification],
        "authentication": [method],
        "service": [{
            "id": format!("{did}#attestix"),
            "type": "AttestixIdentity",
            "serviceEndpoint": {
                "agent_id": agent_id,
                "display_name": field(uait, "display_name"),
                "capabilities": or(uait, "capabilities", json!([])),
            },
        }],
    })
}

fn oauth_claims(uait: &Value) -> Value {
    json!({
        "sub": field(uait, "agent_id"),
        "iss": issuer(uait, "did").cloned().unwrap_or(json!("attestix")),
        "name": field(uait, "display_name"),
        "scope": capabilities(uait).join(" "),
        "iat": field(uait, "created_at"),
        "exp": field(uait, "expires_at"),
        "attestix_version": field(uait, "version"),
        "source_protocol": field(uait, "source_protocol"),
    })
}

fn summary(uait: &Value) -> Value {
    let signature_present = match uait.get("signature") {
        Some(Value::String(signature)) => !signature.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    json!({
        "agent_id": field(uait, "agent_id"),
        "display_name": field(uait, "display_name"),
        "description": or(uait, "description", json!("")),
        "source_protocol": field(uait, "source_protocol"),
        "capabilities": or(uait, "capabilities", json!([])),
        "issuer": issuer(uait, "name").cloned().unwrap_or(json!("")),
        "created_at": field(uait, "created_at"),
        "expires_at": field(uait, "expires_at"),
        "revoked": or(uait, "revoked", json!(false)),
        "reputation_score": field(uait, "reputation_score"),
        "eu_compliance": field(uait, "eu_compliance"),
        "signature_present": signature_present,
    })
}
