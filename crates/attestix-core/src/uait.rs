//! The Unified Agent Identity Token (UAIT): an agent's identity, signed by the server.
//!
//! The signature covers the canonical bytes of the UAIT without its mutable fields
//! ([`UAIT_MUTABLE_FIELDS`]), so revoking an identity, or attaching a reputation score
//! or compliance profile, leaves the signature valid.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonical_bytes_without;
use crate::error::IssueError;
use crate::identity_token::{describe_identity_token, mask_identity_token};
use crate::keys::{verify_base64url_signature, SigningKey};
use crate::timestamp::Timestamp;
use crate::validation::{DisplayName, ExpiryDays};

/// The UAIT format version this crate writes.
pub const UAIT_VERSION: &str = "0.1.0";

/// Fields left out of what a UAIT's signature covers, because they change after issue.
pub const UAIT_MUTABLE_FIELDS: [&str; 6] = [
    "signature",
    "revoked",
    "revocation_reason",
    "revoked_at",
    "reputation_score",
    "eu_compliance",
];

/// The issuer named in a UAIT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UaitIssuer {
    /// The issuer's name (`self` when the request named none).
    pub name: String,
    /// The signing server's `did:key`.
    pub did: String,
}

/// A Unified Agent Identity Token. Serialises with its fields in the reference's order;
/// `revoked_at` appears (last) only once the identity is revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uait {
    /// Always [`UAIT_VERSION`].
    pub version: String,
    /// `attestix:` and 16 hex digits.
    pub agent_id: String,
    /// The DID the agent is known by: the issuing server's `did:key`, as in the Python
    /// reference (agents have no key pair of their own).
    pub did: String,
    /// The agent's display name.
    pub display_name: String,
    /// A free-text description.
    pub description: String,
    /// Where the identity came from (`api_key`, `oauth2`, `did`, …).
    pub source_protocol: String,
    /// The identity token, masked (see [`mask_identity_token`]).
    pub identity_token: String,
    /// Metadata about the identity token (see [`describe_identity_token`]).
    pub token_info: Map<String, Value>,
    /// What the agent can do.
    pub capabilities: Vec<String>,
    /// Who issued the identity.
    pub issuer: UaitIssuer,
    /// When the identity was issued.
    pub created_at: Timestamp,
    /// When the identity stops being valid.
    pub expires_at: Timestamp,
    /// Whether the identity has been revoked.
    pub revoked: bool,
    /// Why it was revoked (`null` until then).
    pub revocation_reason: Option<String>,
    /// A reputation score, when one has been computed.
    pub reputation_score: Option<f64>,
    /// The id of an EU AI Act compliance profile, when one is linked.
    pub eu_compliance: Option<String>,
    /// base64url (with padding) of the Ed25519 signature of the immutable fields.
    pub signature: String,
    /// When the identity was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// What a new identity is made from: the checked fields of a create request.
#[derive(Clone, PartialEq, Eq)]
pub struct NewIdentity {
    /// The agent's display name.
    pub display_name: DisplayName,
    /// Where the identity came from.
    pub source_protocol: String,
    /// The identity token as given (only its masked form and metadata are kept).
    pub identity_token: String,
    /// What the agent can do.
    pub capabilities: Vec<String>,
    /// A free-text description.
    pub description: String,
    /// The issuer's name; empty means `self`.
    pub issuer_name: String,
    /// How long the identity stays valid.
    pub expiry_days: ExpiryDays,
}

impl NewIdentity {
    /// An identity with this name and source protocol and every other field at its
    /// default (no token, no capabilities, empty description, issuer `self`, 365 days).
    pub fn new(display_name: DisplayName, source_protocol: impl Into<String>) -> Self {
        Self {
            display_name,
            source_protocol: source_protocol.into(),
            identity_token: String::new(),
            capabilities: Vec::new(),
            description: String::new(),
            issuer_name: String::new(),
            expiry_days: ExpiryDays::DEFAULT,
        }
    }
}

impl fmt::Debug for NewIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewIdentity")
            .field("display_name", &self.display_name)
            .field("source_protocol", &self.source_protocol)
            .field("identity_token", &mask_identity_token(&self.identity_token))
            .field("capabilities", &self.capabilities)
            .field("description", &self.description)
            .field("issuer_name", &self.issuer_name)
            .field("expiry_days", &self.expiry_days)
            .finish()
    }
}

/// The outcome of checking a UAIT (the caller adds whether it exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UaitVerification {
    /// The identity is not revoked.
    pub not_revoked: bool,
    /// `now` is before `expires_at`.
    pub not_expired: bool,
    /// The signature is the issuer key's over the immutable fields.
    pub signature_valid: bool,
    /// All of the above.
    pub valid: bool,
}

/// `attestix:` and the first 16 hex digits of `random` (a random UUIDv4).
pub fn agent_id_from_uuid(random: Uuid) -> String {
    let mut buffer = Uuid::encode_buffer();
    let hex = random.simple().encode_lower(&mut buffer);
    format!("attestix:{}", &hex[..16])
}

impl Uait {
    /// Issue and sign a new identity.
    ///
    /// `agent_id_random` is a random UUIDv4 (`Uuid::new_v4()`), whose first 16 hex
    /// digits make the agent id. The identity token is stored masked, and `token_info`
    /// holds only metadata about it.
    pub fn issue(
        params: NewIdentity,
        signer: &SigningKey,
        now: OffsetDateTime,
        agent_id_random: Uuid,
    ) -> Result<Self, IssueError> {
        let created_at = Timestamp::from_datetime(now);
        let expires_at = created_at
            .checked_add_days(params.expiry_days.get())
            .ok_or(IssueError::ExpiryOutOfRange)?;
        let issuer_name = if params.issuer_name.is_empty() {
            "self".to_owned()
        } else {
            params.issuer_name
        };
        let mut uait = Self {
            version: UAIT_VERSION.to_owned(),
            agent_id: agent_id_from_uuid(agent_id_random),
            did: signer.did().to_owned(),
            display_name: params.display_name.into_string(),
            description: params.description,
            source_protocol: params.source_protocol,
            identity_token: mask_identity_token(&params.identity_token),
            token_info: describe_identity_token(&params.identity_token),
            capabilities: params.capabilities,
            issuer: UaitIssuer {
                name: issuer_name,
                did: signer.did().to_owned(),
            },
            created_at,
            expires_at,
            revoked: false,
            revocation_reason: None,
            reputation_score: None,
            eu_compliance: None,
            signature: String::new(),
            revoked_at: None,
        };
        uait.signature = signer.sign_base64url(&uait.signed_bytes()?);
        Ok(uait)
    }

    /// The same identity under another id, signed again: for a server whose chosen
    /// id turned out to be taken before the identity was stored.
    pub fn with_new_id(
        mut self,
        signer: &SigningKey,
        agent_id_random: Uuid,
    ) -> Result<Self, IssueError> {
        self.agent_id = agent_id_from_uuid(agent_id_random);
        self.signature = signer.sign_base64url(&self.signed_bytes()?);
        Ok(self)
    }

    /// The canonical bytes the signature covers: the UAIT without its mutable fields.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, IssueError> {
        let value = serde_json::to_value(self).expect("a UAIT always serialises to JSON");
        Ok(canonical_bytes_without(&value, &UAIT_MUTABLE_FIELDS)?)
    }

    /// Whether the signature is `issuer`'s over the immutable fields.
    pub fn signature_is_valid(&self, issuer: &VerifyingKey) -> bool {
        self.signed_bytes()
            .is_ok_and(|bytes| verify_base64url_signature(issuer, &bytes, &self.signature))
    }

    /// Whether `now` is at or after `expires_at`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at.datetime()
    }

    /// Check revocation, expiry and signature against the issuing server's key.
    pub fn verify(&self, issuer: &VerifyingKey, now: OffsetDateTime) -> UaitVerification {
        let not_revoked = !self.revoked;
        let not_expired = !self.is_expired(now);
        let signature_valid = self.signature_is_valid(issuer);
        UaitVerification {
            not_revoked,
            not_expired,
            signature_valid,
            valid: not_revoked && not_expired && signature_valid,
        }
    }

    /// Mark the identity revoked at `now` for `reason` (the reference stores `""` when
    /// no reason is given). The signature stays valid: these fields are not signed.
    pub fn revoke(&mut self, reason: impl Into<String>, now: OffsetDateTime) {
        self.revoked = true;
        self.revocation_reason = Some(reason.into());
        self.revoked_at = Some(Timestamp::from_datetime(now));
    }
}

/// Whether `uait` (any JSON, as stored or received) carries a valid `signature` by
/// `issuer` over its immutable fields. Malformed input is simply not valid.
pub fn verify_uait_signature(uait: &Value, issuer: &VerifyingKey) -> bool {
    let Some(signature) = uait.get("signature").and_then(Value::as_str) else {
        return false;
    };
    if !uait.is_object() {
        return false;
    }
    canonical_bytes_without(uait, &UAIT_MUTABLE_FIELDS)
        .is_ok_and(|bytes| verify_base64url_signature(issuer, &bytes, signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn signer() -> SigningKey {
        SigningKey::from_seed([42; 32])
    }

    fn issue(params: NewIdentity) -> Uait {
        Uait::issue(
            params,
            &signer(),
            datetime!(2026-11-28 06:42:10.097345 UTC),
            Uuid::from_u128(0x4556112f_7bb9_4b91_8c2d_0123456789ab),
        )
        .expect("issues")
    }

    fn report_bot() -> NewIdentity {
        let mut params = NewIdentity::new(
            DisplayName::parse("Report Bot").expect("valid name"),
            "api_key",
        );
        params.capabilities = vec!["summarize".to_owned()];
        params
    }

    #[test]
    fn serialises_in_the_reference_field_order() {
        let uait = issue(report_bot());
        let text = serde_json::to_string(&uait).expect("serialises");
        let did = signer().did().to_owned();
        let expected_prefix = format!(
            r#"{{"version":"0.1.0","agent_id":"attestix:4556112f7bb94b91","did":"{did}","display_name":"Report Bot","description":"","source_protocol":"api_key","identity_token":"","token_info":{{}},"capabilities":["summarize"],"issuer":{{"name":"self","did":"{did}"}},"created_at":"2026-11-28T06:42:10.097345+00:00","expires_at":"2027-11-28T06:42:10.097345+00:00","revoked":false,"revocation_reason":null,"reputation_score":null,"eu_compliance":null,"signature":""#
        );
        assert!(text.starts_with(&expected_prefix), "{text}");
        assert!(text.ends_with("==\"}"), "{text}");
        assert!(!text.contains("revoked_at"));
    }

    #[test]
    fn signature_verifies_and_detects_tampering() {
        let uait = issue(report_bot());
        let key = signer().verifying_key();
        assert!(uait.signature_is_valid(&key));
        assert!(verify_uait_signature(
            &serde_json::to_value(&uait).expect("json"),
            &key
        ));

        let mut renamed = uait.clone();
        renamed.display_name = "Evil Bot".to_owned();
        assert!(!renamed.signature_is_valid(&key));

        let other = SigningKey::from_seed([1; 32]).verifying_key();
        assert!(!uait.signature_is_valid(&other));
    }

    #[test]
    fn mutable_fields_are_not_signed() {
        let mut uait = issue(report_bot());
        uait.reputation_score = Some(0.8765);
        uait.eu_compliance = Some("profile-1".to_owned());
        uait.revoke("compromised", datetime!(2026-12-01 00:00:00 UTC));
        assert!(uait.signature_is_valid(&signer().verifying_key()));
    }

    #[test]
    fn revocation_sets_the_three_fields_and_revoked_at_comes_last() {
        let mut uait = issue(report_bot());
        uait.revoke("compromised", datetime!(2026-12-01 00:00:00 UTC));
        let text = serde_json::to_string(&uait).expect("serialises");
        assert!(text.contains(r#""revoked":true,"revocation_reason":"compromised""#));
        assert!(
            text.ends_with(r#","revoked_at":"2026-12-01T00:00:00+00:00"}"#),
            "{text}"
        );
        let verification = uait.verify(
            &signer().verifying_key(),
            datetime!(2026-12-02 00:00:00 UTC),
        );
        assert_eq!(
            verification,
            UaitVerification {
                not_revoked: false,
                not_expired: true,
                signature_valid: true,
                valid: false
            }
        );
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let uait = issue(report_bot());
        let key = signer().verifying_key();
        assert!(
            uait.verify(&key, datetime!(2027-11-28 06:42:10.097344 UTC))
                .valid
        );
        let expired = uait.verify(&key, datetime!(2027-11-28 06:42:10.097345 UTC));
        assert!(!expired.not_expired && !expired.valid);
    }

    #[test]
    fn identity_token_never_appears_unmasked() {
        let token = "sk-live-SECRETSECRETSECRET-0123456789";
        let mut params = report_bot();
        params.identity_token = token.to_owned();
        params.issuer_name = "Acme".to_owned();
        assert!(!format!("{params:?}").contains("SECRET"));
        let uait = issue(params);
        let text = serde_json::to_string(&uait).expect("serialises");
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(uait.identity_token, "sk-l...6789");
        assert_eq!(
            Value::Object(uait.token_info.clone()),
            json!({"token_type": "api_key", "token_length": token.len()})
        );
        assert_eq!(uait.issuer.name, "Acme");
    }

    #[test]
    fn round_trips_through_json_with_a_valid_signature() {
        let mut uait = issue(report_bot());
        uait.revoke("", datetime!(2026-12-01 00:00:00.5 UTC));
        let text = serde_json::to_string(&uait).expect("serialises");
        let back: Uait = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, uait);
        assert_eq!(serde_json::to_string(&back).expect("serialises"), text);
        assert!(back.signature_is_valid(&signer().verifying_key()));
    }

    #[test]
    fn arbitrary_json_is_simply_not_valid() {
        let key = signer().verifying_key();
        for value in [
            json!(null),
            json!([]),
            json!({"signature": 1}),
            json!({"signature": "AAAA"}),
        ] {
            assert!(!verify_uait_signature(&value, &key));
        }
    }

    #[test]
    fn expiry_beyond_year_9999_is_an_error() {
        let mut params = report_bot();
        params.expiry_days = ExpiryDays::parse(36_500).expect("max");
        let result = Uait::issue(
            params,
            &signer(),
            datetime!(9950-01-01 00:00:00 UTC),
            Uuid::nil(),
        );
        assert_eq!(result.unwrap_err(), IssueError::ExpiryOutOfRange);
    }
}
