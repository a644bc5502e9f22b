//! UCAN-style delegation tokens: EdDSA JWTs signed by the server's key, laid out
//! byte for byte as the Python reference (`attestix` 0.4.3, PyJWT) writes them, so
//! that a token minted by either verifies in the other.
//!
//! ```
//! use attestix_core::delegation::{verify_chain, ChainVerdict, DelegationClaims};
//! use attestix_core::SigningKey;
//!
//! let server = SigningKey::generate();
//! let now = 1_800_000_000;
//! let root = DelegationClaims {
//!     issuer_did: server.did().to_owned(),
//!     audience: "did:key:zAlice".into(),
//!     issued_at: now,
//!     expires_at: now + 3600,
//!     jti: "root-jti".into(),
//!     capabilities: vec!["read".into(), "write".into()],
//!     delegator: "attestix:0011223344556677".into(),
//!     proofs: vec![],
//! };
//! let token = root.mint(&server);
//! match verify_chain(&token, &server.verifying_key(), now, &|_| false) {
//!     ChainVerdict::Valid(valid) => assert_eq!(valid.capabilities, serde_json::json!(["read", "write"])),
//!     ChainVerdict::Invalid { reason } => panic!("{reason}"),
//! }
//! ```
//!
//! # Layout
//! - header: exactly `{"alg":"EdDSA","typ":"JWT","ucv":"0.9.0"}` (PyJWT sorts header
//!   keys);
//! - payload: `iss, aud, sub, iat, exp, nbf, jti, att, delegator, prf,
//!   attestix_version, typ` in that order, written as Python's `json.dumps` with
//!   `separators=(",", ":")` writes it (non-ASCII escaped as `\uXXXX`);
//! - both base64url without padding; the signature is Ed25519 over
//!   `header.payload`, base64url without padding.
//!
//! # Verification
//! As the reference's `DelegationService.verify_delegation`: the signature, then
//! `iat` and `nbf` not in the future and `exp` not passed (no leeway), then
//! revocation by `jti`, a cycle check, and every parent in `prf` recursively. Beyond
//! the reference (**fix**, and what the public conformance vectors require): a
//! token's capabilities must be a subset of each parent's. The walk is bounded by
//! [`MAX_CHAIN_TOKENS`].

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Verifier as _, VerifyingKey};

/// The signature type of [`SignatureCheck`].
pub use ed25519_dalek::Signature;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::keys::SigningKey;
use crate::timestamp::format_isoformat;

/// Checks the Ed25519 signature over a token's `header.payload`. A [`VerifyingKey`]
/// checks every signature itself; a server may put a cache of the tokens it has
/// already checked in front of it, since a token's signature never changes.
pub trait SignatureCheck {
    /// Whether `signature` is the key's signature of `signing_input`.
    fn verifies(&self, signing_input: &[u8], signature: &Signature) -> bool;
}

impl SignatureCheck for VerifyingKey {
    fn verifies(&self, signing_input: &[u8], signature: &Signature) -> bool {
        self.verify(signing_input, signature).is_ok()
    }
}

/// The header every delegation token carries, as its exact bytes.
pub const DELEGATION_HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT","ucv":"0.9.0"}"#;

/// The payload's `attestix_version`.
pub const DELEGATION_VERSION: &str = "0.1.0";

/// The payload's `typ`.
pub const DELEGATION_TYPE: &str = "ucan/delegation";

/// The most tokens one verification decodes (the token and all its ancestors); a
/// longer chain is invalid. The reference has no bound; this one keeps a hostile
/// token from costing unbounded work.
pub const MAX_CHAIN_TOKENS: usize = 64;

/// The claims of a new delegation token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationClaims {
    /// `iss`: the server's DID.
    pub issuer_did: String,
    /// `aud` and `sub`: the agent receiving the capabilities.
    pub audience: String,
    /// `iat` and `nbf`, unix seconds.
    pub issued_at: i64,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `jti`: the token's unique id.
    pub jti: String,
    /// `att`: the capabilities granted.
    pub capabilities: Vec<String>,
    /// `delegator`: the agent granting them.
    pub delegator: String,
    /// `prf`: the parent tokens (none for a root delegation, one for a chained one).
    pub proofs: Vec<String>,
}

impl DelegationClaims {
    /// The payload's JSON text, as PyJWT writes it.
    pub fn payload_json(&self) -> String {
        let strings =
            |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
        let mut payload = Map::new();
        payload.insert("iss".into(), Value::String(self.issuer_did.clone()));
        payload.insert("aud".into(), Value::String(self.audience.clone()));
        payload.insert("sub".into(), Value::String(self.audience.clone()));
        payload.insert("iat".into(), Value::from(self.issued_at));
        payload.insert("exp".into(), Value::from(self.expires_at));
        payload.insert("nbf".into(), Value::from(self.issued_at));
        payload.insert("jti".into(), Value::String(self.jti.clone()));
        payload.insert("att".into(), strings(&self.capabilities));
        payload.insert("delegator".into(), Value::String(self.delegator.clone()));
        payload.insert("prf".into(), strings(&self.proofs));
        payload.insert("attestix_version".into(), DELEGATION_VERSION.into());
        payload.insert("typ".into(), DELEGATION_TYPE.into());
        let mut out = String::with_capacity(256);
        write_python_ascii_json(&Value::Object(payload), &mut out);
        out
    }

    /// The signed compact token.
    pub fn mint(&self, key: &SigningKey) -> String {
        let mut token = URL_SAFE_NO_PAD.encode(DELEGATION_HEADER);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(self.payload_json(), &mut token);
        let signature = key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }
}

/// A `jti` as the reference makes one (`secrets.token_urlsafe(16)`): 16 bytes as
/// 22 base64url characters.
pub fn jti_from_bytes(bytes: [u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes `value` as Python's `json.dumps(value, separators=(",", ":"))` does: keys in
/// the map's order, every non-ASCII character (and DEL) as `\uXXXX` with lowercase
/// hex, astral characters as surrogate pairs.
pub fn write_python_ascii_json(value: &Value, out: &mut String) {
    crate::python_json::write_dumps(value, out);
}

/// Why a single token does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFailure {
    /// Signed and well-formed, but `exp` has passed (the reference's
    /// `ExpiredSignatureError`).
    Expired,
    /// Anything else: not three segments, not base64url JSON, another algorithm, a
    /// bad signature, a claim of the wrong type, `iat`/`nbf` in the future.
    Invalid,
}

/// A token whose signature and times check out.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedToken {
    /// The payload, in its order.
    pub claims: Map<String, Value>,
    /// `iat`.
    pub issued_at: i64,
    /// `exp`.
    pub expires_at: i64,
}

impl DecodedToken {
    /// The `jti`, when present and a non-empty string (the reference tests `if jti:`).
    pub fn jti(&self) -> Option<&str> {
        self.claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|jti| !jti.is_empty())
    }

    /// The `att` strings (empty when absent or not a list of strings).
    pub fn capabilities(&self) -> HashSet<&str> {
        match self.claims.get("att") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => HashSet::new(),
        }
    }

    /// The `aud`, when a string.
    pub fn audience(&self) -> Option<&str> {
        self.claims.get("aud").and_then(Value::as_str)
    }
}

/// The signature, structure and times of one token at `now` (unix seconds), as
/// PyJWT's `jwt.decode(token, key, algorithms=["EdDSA"], options={"verify_aud":
/// False})` checks them.
pub fn decode(
    token: &str,
    key: &dyn SignatureCheck,
    now: i64,
) -> Result<DecodedToken, DecodeFailure> {
    let claims = decode_signed(token, key).ok_or(DecodeFailure::Invalid)?;
    let int_claim = |name: &str| -> Result<Option<i64>, DecodeFailure> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or(DecodeFailure::Invalid),
        }
    };
    let issued_at = int_claim("iat")?;
    let not_before = int_claim("nbf")?;
    let expires_at = int_claim("exp")?;
    // PyJWT's order: iat, nbf, exp.
    if issued_at.is_some_and(|iat| iat > now) || not_before.is_some_and(|nbf| nbf > now) {
        return Err(DecodeFailure::Invalid);
    }
    if expires_at.is_some_and(|exp| exp <= now) {
        return Err(DecodeFailure::Expired);
    }
    for name in ["sub", "jti"] {
        if claims.get(name).is_some_and(|value| !value.is_string()) {
            return Err(DecodeFailure::Invalid);
        }
    }
    // The reference reads `claims["iat"]` and `claims["exp"]` to answer; a token
    // without them fails there.
    let (Some(issued_at), Some(expires_at)) = (issued_at, expires_at) else {
        return Err(DecodeFailure::Invalid);
    };
    Ok(DecodedToken {
        claims,
        issued_at,
        expires_at,
    })
}

/// The payload of a token whose EdDSA signature verifies, whatever its times.
fn decode_signed(token: &str, key: &dyn SignatureCheck) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") || header.contains_key("crit") {
        return None;
    }
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let signing_input = &token[..header_and_payload_len(token)?];
    if !key.verifies(signing_input.as_bytes(), &signature) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn header_and_payload_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

/// What a valid token grants, in the reference's answer order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedDelegation {
    /// Always `true`.
    pub valid: bool,
    /// `jti`.
    pub jti: Value,
    /// `delegator`.
    pub delegator: Value,
    /// `aud`.
    pub audience: Value,
    /// `att` (`[]` when absent).
    pub capabilities: Value,
    /// `prf` (`[]` when absent).
    pub proof_chain: Value,
    /// `iat` as `isoformat()`.
    pub issued_at: String,
    /// `exp` as `isoformat()`.
    pub expires_at: String,
    /// Whether `exp` has passed (never, for a token that verified).
    pub expired: bool,
    /// `typ`.
    #[serde(rename = "type")]
    pub token_type: Value,
}

/// The outcome of verifying a token and its whole proof chain.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainVerdict {
    /// The token and every ancestor verify.
    Valid(Box<VerifiedDelegation>),
    /// Something failed; `reason` is the reference's string for it.
    Invalid {
        /// For example `Token has been revoked` or `Invalid parent in proof chain:
        /// Token has expired`.
        reason: String,
    },
}

/// Verifies `token` and its proof chain at `now` (unix seconds); `is_revoked` says
/// whether a `jti` has been revoked.
pub fn verify_chain(
    token: &str,
    key: &dyn SignatureCheck,
    now: i64,
    is_revoked: &dyn Fn(&str) -> bool,
) -> ChainVerdict {
    let mut walk = Walk {
        key,
        now,
        is_revoked,
        seen: HashSet::new(),
        decoded: 0,
    };
    match walk.verify(token) {
        Ok(decoded) => ChainVerdict::Valid(Box::new(answer(&decoded, now))),
        Err(reason) => ChainVerdict::Invalid { reason },
    }
}

fn answer(decoded: &DecodedToken, now: i64) -> VerifiedDelegation {
    let claim = |name: &str| decoded.claims.get(name).cloned().unwrap_or(Value::Null);
    let or_empty = |name: &str| {
        decoded
            .claims
            .get(name)
            .cloned()
            .unwrap_or(Value::Array(Vec::new()))
    };
    VerifiedDelegation {
        valid: true,
        jti: claim("jti"),
        delegator: claim("delegator"),
        audience: claim("aud"),
        capabilities: or_empty("att"),
        proof_chain: or_empty("prf"),
        issued_at: unix_isoformat(decoded.issued_at),
        expires_at: unix_isoformat(decoded.expires_at),
        expired: decoded.expires_at < now,
        token_type: claim("typ"),
    }
}

/// `datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()`; times outside
/// the representable range are written as their number.
pub fn unix_isoformat(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map(format_isoformat)
        .unwrap_or_else(|_| seconds.to_string())
}

/// The `jti`s of `token` and of every ancestor whose signature verifies (times not
/// checked), at most [`MAX_CHAIN_TOKENS`]: what a caller looks up to answer
/// `is_revoked` for [`verify_chain`] in one query.
pub fn chain_jtis(token: &str, key: &dyn SignatureCheck) -> Vec<String> {
    let mut jtis = Vec::new();
    let mut pending = vec![token.to_owned()];
    let mut decoded = 0;
    while let Some(next) = pending.pop() {
        if decoded == MAX_CHAIN_TOKENS {
            break;
        }
        decoded += 1;
        let Some(claims) = decode_signed(&next, key) else {
            continue;
        };
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            if jtis.iter().any(|seen| seen == jti) {
                continue;
            }
            jtis.push(jti.to_owned());
        }
        if let Some(Value::Array(parents)) = claims.get("prf") {
            pending.extend(parents.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    jtis
}

struct Walk<'a> {
    key: &'a dyn SignatureCheck,
    now: i64,
    is_revoked: &'a dyn Fn(&str) -> bool,
    seen: HashSet<String>,
    decoded: usize,
}

impl Walk<'_> {
    fn verify(&mut self, token: &str) -> Result<DecodedToken, String> {
        if self.decoded == MAX_CHAIN_TOKENS {
            return Err(format!(
                "Proof chain is longer than {MAX_CHAIN_TOKENS} tokens"
            ));
        }
        self.decoded += 1;
        let decoded = decode(token, self.key, self.now).map_err(|failure| match failure {
            DecodeFailure::Expired => "Token has expired".to_owned(),
            DecodeFailure::Invalid => "Invalid token".to_owned(),
        })?;
        if let Some(jti) = decoded.jti() {
            if (self.is_revoked)(jti) {
                return Err("Token has been revoked".into());
            }
            if !self.seen.insert(jti.to_owned()) {
                return Err("Cycle detected in delegation proof chain".into());
            }
        }
        let parents: &[Value] = match decoded.claims.get("prf") {
            Some(Value::Array(parents)) => parents,
            // Python's `claims.get("prf", []) or []`: a falsy value is no parents.
            None | Some(Value::Null) | Some(Value::Bool(false)) => &[],
            Some(Value::String(text)) if text.is_empty() => &[],
            Some(Value::Object(map)) if map.is_empty() => &[],
            Some(_) => return Err("Malformed parent token in proof chain".into()),
        };
        for parent in parents {
            let Some(parent) = parent.as_str().filter(|text| !text.is_empty()) else {
                return Err("Malformed parent token in proof chain".into());
            };
            let parent = self
                .verify(parent)
                .map_err(|reason| format!("Invalid parent in proof chain: {reason}"))?;
            if parent.expires_at < self.now {
                return Err("Parent delegation in proof chain has expired".into());
            }
            let held = parent.capabilities();
            let mut escalated: Vec<&str> = decoded
                .capabilities()
                .into_iter()
                .filter(|capability| !held.contains(capability))
                .collect();
            if !escalated.is_empty() {
                escalated.sort_unstable();
                return Err(format!(
                    "Capability escalation in proof chain: capabilities {} are not held by parent delegation",
                    python_list(&escalated)
                ));
            }
        }
        Ok(decoded)
    }
}

/// A list of strings as Python's `str(list)` writes plain ones: `['a', 'b']`.
pub fn python_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            if item.contains('\'') && !item.contains('"') {
                format!("\"{item}\"")
            } else {
                format!("'{}'", item.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_seed([3; 32])
    }

    fn claims(jti: &str, att: &[&str], proofs: Vec<String>) -> DelegationClaims {
        DelegationClaims {
            issuer_did: key().did().to_owned(),
            audience: "did:key:zAudience".into(),
            issued_at: 1_000,
            expires_at: 10_000,
            jti: jti.into(),
            capabilities: att.iter().map(|s| (*s).to_owned()).collect(),
            delegator: "attestix:00".into(),
            proofs,
        }
    }

    fn verdict(token: &str, now: i64, revoked: &[&str]) -> ChainVerdict {
        verify_chain(token, &key().verifying_key(), now, &|jti| {
            revoked.contains(&jti)
        })
    }

    fn reason(verdict: ChainVerdict) -> String {
        match verdict {
            ChainVerdict::Invalid { reason } => reason,
            ChainVerdict::Valid(valid) => panic!("unexpectedly valid: {valid:?}"),
        }
    }

    #[test]
    fn non_ascii_is_escaped_as_python_does() {
        let mut out = String::new();
        write_python_ascii_json(&Value::String("é\u{7f}😀\"\\\n\u{1}".into()), &mut out);
        assert_eq!(out, r#""\u00e9\u007f\ud83d\ude00\"\\\n\u0001""#);
    }

    #[test]
    fn a_chain_verifies_and_reports_the_leaf() {
        let root = claims("root", &["read", "write"], vec![]).mint(&key());
        let child = claims("child", &["read"], vec![root.clone()]).mint(&key());
        let ChainVerdict::Valid(valid) = verdict(&child, 2_000, &[]) else {
            panic!("chain should verify");
        };
        assert_eq!(valid.jti, "child");
        assert_eq!(valid.proof_chain, serde_json::json!([root]));
        assert_eq!(valid.issued_at, "1970-01-01T00:16:40+00:00");
        assert!(!valid.expired);
    }

    #[test]
    fn each_failure_has_the_references_reason() {
        let root = claims("root", &["read"], vec![]).mint(&key());
        let child = claims("child", &["read"], vec![root.clone()]).mint(&key());
        assert_eq!(reason(verdict(&child, 10_000, &[])), "Token has expired");
        assert_eq!(reason(verdict(&child, 999, &[])), "Invalid token");
        assert_eq!(
            reason(verdict(&child, 2_000, &["child"])),
            "Token has been revoked"
        );
        assert_eq!(
            reason(verdict(&child, 2_000, &["root"])),
            "Invalid parent in proof chain: Token has been revoked"
        );
        let escalated = claims("bad", &["read", "admin"], vec![root.clone()]).mint(&key());
        assert_eq!(
            reason(verdict(&escalated, 2_000, &[])),
            "Capability escalation in proof chain: capabilities ['admin'] are not held by parent delegation"
        );
        let cyclic = claims("root", &["read"], vec![root.clone()]).mint(&key());
        assert_eq!(
            reason(verdict(&cyclic, 2_000, &[])),
            "Invalid parent in proof chain: Cycle detected in delegation proof chain"
        );
        let other_key = SigningKey::from_seed([4; 32]);
        let forged = claims("forged", &["read"], vec![]).mint(&other_key);
        assert_eq!(reason(verdict(&forged, 2_000, &[])), "Invalid token");
        let mut tampered = child.clone();
        tampered.insert(10, 'x');
        assert_eq!(reason(verdict(&tampered, 2_000, &[])), "Invalid token");
        assert_eq!(reason(verdict("a.b", 2_000, &[])), "Invalid token");
    }

    #[test]
    fn chain_jtis_lists_every_ancestor_once() {
        let root = claims("root", &["read"], vec![]).mint(&key());
        let child = claims("child", &["read"], vec![root.clone()]).mint(&key());
        let leaf = claims("leaf", &["read"], vec![child]).mint(&key());
        assert_eq!(
            chain_jtis(&leaf, &key().verifying_key()),
            ["leaf", "child", "root"]
        );
    }

    #[test]
    fn an_overlong_chain_is_refused() {
        let parents: Vec<String> = (0..MAX_CHAIN_TOKENS)
            .map(|n| claims(&format!("root{n}"), &["read"], vec![]).mint(&key()))
            .collect();
        let wide = claims("wide", &["read"], parents).mint(&key());
        assert!(
            reason(verdict(&wide, 2_000, &[])).ends_with("Proof chain is longer than 64 tokens")
        );
    }
}
