//! DID documents for `did:key` and `did:web`, and the `did:web` names the server
//! accepts.
//!
//! Both documents use the `did:key` method's standard form (**fix**: the reference
//! names the key `#key-1` and writes `publicKeyMultibase` without the multicodec
//! prefix): the verification method's id is the DID + `#` + the key's multibase
//! (`z6Mk…`, base58btc of `0xed 0x01` ‖ the 32-byte key), and `publicKeyMultibase`
//! is that same multibase.
//!
//! ```
//! use attestix_core::did::{did_document, DidWeb};
//! use attestix_core::SigningKey;
//!
//! let key = SigningKey::generate();
//! let document = did_document(key.did(), &key.verifying_key());
//! assert_eq!(document["verificationMethod"][0]["id"], key.verification_method());
//!
//! let web = DidWeb::parse("example.com", "agents/bot")?;
//! assert_eq!(web.did(), "did:web:example.com:agents:bot");
//! assert_eq!(web.hosting_url(), "https://example.com/agents/bot/did.json");
//! # Ok::<(), attestix_core::did::DidWebError>(())
//! ```

use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};

use crate::keys::DidKey;

/// The `@context` of every DID document.
pub const DID_CONTEXT: [&str; 2] = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2020/v1",
];

/// The multibase of an Ed25519 key as `did:key` writes it: `z` + base58btc of
/// `0xed 0x01` ‖ the key.
pub fn ed25519_multibase(key: &VerifyingKey) -> String {
    let did = DidKey::from_verifying_key(*key);
    did.as_str()
        .strip_prefix("did:key:")
        .expect("a did:key starts with did:key:")
        .to_owned()
}

/// The DID document of `did`, controlled by `key` (fields in the reference's order).
pub fn did_document(did: &str, key: &VerifyingKey) -> Value {
    let multibase = ed25519_multibase(key);
    let method = format!("{did}#{multibase}");
    json!({
        "@context": DID_CONTEXT,
        "id": did,
        "controller": did,
        "verificationMethod": [{
            "id": method,
            "type": "Ed25519VerificationKey2020",
            "controller": did,
            "publicKeyMultibase": multibase,
        }],
        "authentication": [method],
        "assertionMethod": [method],
    })
}

/// Why a `did:web` domain or path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DidWebError {
    /// `domain` or `path`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl DidWebError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The longest `did:web` domain (with its port), in characters.
pub const MAX_DOMAIN_CHARS: usize = 253;
/// The longest `did:web` path, in characters.
pub const MAX_PATH_CHARS: usize = 256;

/// A `did:web` name: a lowercase host name, an optional port, an optional path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidWeb {
    host: String,
    port: Option<u16>,
    path: Vec<String>,
}

impl DidWeb {
    /// Checks `domain` (`example.com`, with a port as `example.com%3A8443` or
    /// `example.com:8443`) and `path` (`agents/bot`, may be empty) as `did:web`
    /// allows them: host labels of `a-z`, `0-9` and `-` (not at either end), at
    /// least two labels, the last not all digits (no IP addresses); path segments of
    /// `a-z`, `0-9`, `.`, `_` and `-`, none empty, none starting with `.` (so no
    /// `..`).
    pub fn parse(domain: &str, path: &str) -> Result<Self, DidWebError> {
        if domain.chars().count() > MAX_DOMAIN_CHARS {
            return Err(DidWebError::new(
                "domain",
                format!("must be at most {MAX_DOMAIN_CHARS} characters"),
            ));
        }
        let (host, port) = match domain
            .split_once("%3A")
            .or_else(|| domain.split_once("%3a"))
            .or_else(|| domain.split_once(':'))
        {
            Some((host, port)) => {
                let digits = !port.is_empty()
                    && !port.starts_with('0')
                    && port.bytes().all(|b| b.is_ascii_digit());
                let port = port.parse::<u16>().ok().filter(|_| digits).ok_or_else(|| {
                    DidWebError::new("domain", format!("the port {port:?} is not 1 to 65535"))
                })?;
                (host, Some(port))
            }
            None => (domain, None),
        };
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 2 {
            return Err(DidWebError::new(
                "domain",
                "must be a host name with at least two labels, such as example.com",
            ));
        }
        for label in &labels {
            let valid = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(DidWebError::new(
                    "domain",
                    format!(
                        "the label {label:?} is not 1 to 63 of lowercase a-z, 0-9 and '-' (not at either end)"
                    ),
                ));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(DidWebError::new(
                "domain",
                "must be a host name, not an IP address",
            ));
        }
        if path.chars().count() > MAX_PATH_CHARS {
            return Err(DidWebError::new(
                "path",
                format!("must be at most {MAX_PATH_CHARS} characters"),
            ));
        }
        let segments: Vec<String> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').map(str::to_owned).collect()
        };
        for segment in &segments {
            let valid = !segment.is_empty()
                && !segment.starts_with('.')
                && segment.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                });
            if !valid {
                return Err(DidWebError::new(
                    "path",
                    format!(
                        "the segment {segment:?} is not lowercase a-z, 0-9, '.', '_' and '-' (not empty, not starting with '.')"
                    ),
                ));
            }
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: segments,
        })
    }

    /// `did:web:<host>[%3A<port>][:<segment>…]`.
    pub fn did(&self) -> String {
        let mut did = format!("did:web:{}", self.host);
        if let Some(port) = self.port {
            did.push_str(&format!("%3A{port}"));
        }
        for segment in &self.path {
            did.push(':');
            did.push_str(segment);
        }
        did
    }

    /// Where the document must be served: `https://<host>[:<port>]/.well-known/did.json`
    /// without a path, `https://<host>[:<port>]/<path>/did.json` with one.
    pub fn hosting_url(&self) -> String {
        let authority = match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        };
        if self.path.is_empty() {
            format!("https://{authority}/.well-known/did.json")
        } else {
            format!("https://{authority}/{}/did.json", self.path.join("/"))
        }
    }

    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn documents_use_the_did_key_standard_form() {
        let key = SigningKey::from_seed([5; 32]);
        let document = did_document(key.did(), &key.verifying_key());
        let multibase = key.did().strip_prefix("did:key:").unwrap();
        assert!(multibase.starts_with("z6Mk"));
        assert_eq!(
            document["verificationMethod"][0]["publicKeyMultibase"],
            multibase
        );
        assert_eq!(
            document["verificationMethod"][0]["id"],
            format!("{}#{multibase}", key.did())
        );
        assert_eq!(document["assertionMethod"][0], key.verification_method());
        let keys: Vec<&String> = document.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "@context",
                "id",
                "controller",
                "verificationMethod",
                "authentication",
                "assertionMethod"
            ]
        );
    }

    #[test]
    fn did_web_names_follow_the_method() {
        let plain = DidWeb::parse("example.com", "").unwrap();
        assert_eq!(plain.did(), "did:web:example.com");
        assert_eq!(
            plain.hosting_url(),
            "https://example.com/.well-known/did.json"
        );
        for domain in ["example.com%3A8443", "example.com:8443"] {
            let ported = DidWeb::parse(domain, "a/b").unwrap();
            assert_eq!(ported.did(), "did:web:example.com%3A8443:a:b");
            assert_eq!(
                ported.hosting_url(),
                "https://example.com:8443/a/b/did.json"
            );
        }
        for (domain, path, field) in [
            ("Example.com", "", "domain"),
            ("localhost", "", "domain"),
            ("10.0.0.1", "", "domain"),
            ("-a.com", "", "domain"),
            ("a..com", "", "domain"),
            ("a.com:0", "", "domain"),
            ("a.com%3A99999", "", "domain"),
            ("a.com", "../etc", "path"),
            ("a.com", "a//b", "path"),
            ("a.com", ".hidden", "path"),
            ("a.com", "Agents", "path"),
            ("a.com", "a b", "path"),
        ] {
            let error = DidWeb::parse(domain, path).unwrap_err();
            assert_eq!(error.field, field, "{domain} {path}");
        }
    }
}
