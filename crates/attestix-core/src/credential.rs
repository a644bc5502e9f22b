//! W3C Verifiable Credentials (data model 1.1) with `Ed25519Signature2020` proofs.
//!
//! The proof's `proofValue` is the base64url (with padding) Ed25519 signature of the
//! canonical bytes of the credential without `proof` and `credentialStatus`, so
//! revocation does not touch what is signed.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonical_bytes_without;
use crate::document::{is_nfc_value, to_nfc};
use crate::error::IssueError;
use crate::keys::{verify_base64url_signature, DidKey, SigningKey};
use crate::timestamp::Timestamp;
use crate::validation::{Claims, ExpiryDays};

/// The `@context` of every credential and presentation.
pub const VC_CONTEXT: [&str; 2] = [
    "https://www.w3.org/2018/credentials/v1",
    "https://w3id.org/security/suites/ed25519-2020/v1",
];

/// Top-level credential fields the proof does not cover.
pub const CREDENTIAL_UNSIGNED_FIELDS: [&str; 2] = ["proof", "credentialStatus"];

/// The proof type this crate writes and expects.
pub const PROOF_TYPE: &str = "Ed25519Signature2020";

/// The `proofPurpose` of a credential's proof.
pub const CREDENTIAL_PROOF_PURPOSE: &str = "assertionMethod";

/// The `type` entry every credential has.
pub const CREDENTIAL_TYPE: &str = "VerifiableCredential";

/// The `type` entry every presentation has, and no credential may have (a credential's
/// proof covers everything but `proof` and `credentialStatus`, so without its status a
/// credential typed as a presentation would be signed like one).
pub const PRESENTATION_TYPE: &str = "VerifiablePresentation";

/// The status type of a credential's `credentialStatus`.
pub const STATUS_TYPE: &str = "RevocationList2021Status";

/// A credential's issuer: the server's DID and a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialIssuer {
    /// The issuing server's `did:key`, whose key verifies the proof.
    pub id: String,
    /// The issuing authority's name, as the request gave it.
    pub name: String,
}

/// Whom a credential is about, and what it says about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialSubject {
    /// The subject, usually an agent id.
    pub id: String,
    /// The claims, after `id`, in the order given.
    #[serde(flatten)]
    pub claims: Map<String, Value>,
}

/// Whether a credential has been revoked (not covered by the proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialStatus {
    /// The credential id with `#status` appended.
    pub id: String,
    /// Always [`STATUS_TYPE`].
    #[serde(rename = "type")]
    pub status_type: String,
    /// Whether the credential has been revoked.
    pub revoked: bool,
    /// Why (`null` until revoked).
    pub revocation_reason: Option<String>,
    /// When (`null` until revoked).
    pub revoked_at: Option<Timestamp>,
}

/// An `Ed25519Signature2020` proof, of a credential or of a presentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// Always [`PROOF_TYPE`].
    #[serde(rename = "type")]
    pub proof_type: String,
    /// When the proof was made.
    pub created: Timestamp,
    /// The signing key: `did:key:z…#z…`.
    #[serde(rename = "verificationMethod")]
    pub verification_method: String,
    /// `assertionMethod` for a credential, `authentication` for a presentation.
    #[serde(rename = "proofPurpose")]
    pub proof_purpose: String,
    /// base64url (with padding) of the Ed25519 signature.
    #[serde(rename = "proofValue")]
    pub proof_value: String,
    /// A presentation's challenge, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// A presentation's domain, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// A Verifiable Credential as this server issues it, fields in the reference's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiableCredential {
    /// [`VC_CONTEXT`].
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    /// `urn:uuid:…`.
    pub id: String,
    /// `["VerifiableCredential", <credential type>]`.
    #[serde(rename = "type")]
    pub types: Vec<String>,
    /// The issuing server.
    pub issuer: CredentialIssuer,
    /// When it was issued.
    #[serde(rename = "issuanceDate")]
    pub issuance_date: Timestamp,
    /// When it stops being valid.
    #[serde(rename = "expirationDate")]
    pub expiration_date: Timestamp,
    /// The subject and the claims.
    #[serde(rename = "credentialSubject")]
    pub credential_subject: CredentialSubject,
    /// Revocation status.
    #[serde(rename = "credentialStatus")]
    pub credential_status: CredentialStatus,
    /// The issuer's proof.
    pub proof: Proof,
}

/// What a new credential is made from: the checked fields of an issue request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    /// Whom the credential is about (an agent id).
    pub subject_id: String,
    /// The second entry of `type` (`AgentIdentityCredential`, …).
    pub credential_type: String,
    /// The issuing authority's name.
    pub issuer_name: String,
    /// The claims about the subject.
    pub claims: Claims,
    /// How long the credential stays valid.
    pub expiry_days: ExpiryDays,
}

/// The outcome of checking a credential given as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CredentialVerification {
    /// It is an object whose `type` includes `VerifiableCredential` and not
    /// `VerifiablePresentation`.
    pub structure_valid: bool,
    /// Its proof is an `Ed25519Signature2020` for `assertionMethod`, a valid signature
    /// by the key of `issuer.id` over a document whose strings are all NFC.
    pub signature_valid: bool,
    /// It has no `expirationDate`, or `now` is before it (an unreadable date is expired).
    pub not_expired: bool,
    /// Not revoked: by the issuer's records when `revocation_checked`, otherwise only by
    /// the embedded `credentialStatus`, which is outside the proof (anyone can rewrite it).
    pub not_revoked: bool,
    /// Whether `not_revoked` comes from the issuer's records
    /// ([`CredentialVerification::apply_issuer_record`]).
    pub revocation_checked: bool,
    /// All of the above but `revocation_checked`.
    pub valid: bool,
}

/// What an issuer's own records say about a document it issued (a credential, or the
/// identity of a presentation's holder): the authority on revocation, since the
/// embedded status is not signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerRecord {
    /// The issuer has revoked it.
    pub revoked: bool,
    /// Its recorded expiry has passed.
    pub expired: bool,
}

impl IssuerRecord {
    /// Whether the record says the document is still good.
    pub fn is_active(&self) -> bool {
        !self.revoked && !self.expired
    }
}

impl CredentialVerification {
    /// Set `valid` from the four checks (after a caller has changed one of them).
    pub fn update_validity(&mut self) {
        self.valid =
            self.structure_valid && self.signature_valid && self.not_expired && self.not_revoked;
    }

    /// Replace the embedded status by the issuer's record of the credential. `None`,
    /// no record, counts as revoked: an issuer that signed a credential and keeps no
    /// record of it cannot vouch that it still stands.
    pub fn apply_issuer_record(&mut self, record: Option<IssuerRecord>) {
        let record = record.unwrap_or(IssuerRecord {
            revoked: true,
            expired: false,
        });
        self.not_revoked = !record.revoked;
        self.not_expired &= !record.expired;
        self.revocation_checked = true;
        self.update_validity();
    }
}

impl VerifiableCredential {
    /// Issue and sign a credential. `id` is a random UUIDv4 (the credential's id is
    /// `urn:uuid:<id>`).
    pub fn issue(
        params: NewCredential,
        signer: &SigningKey,
        now: OffsetDateTime,
        id: Uuid,
    ) -> Result<Self, IssueError> {
        if params.credential_type == PRESENTATION_TYPE {
            return Err(IssueError::PresentationTypedCredential);
        }
        let issued = Timestamp::from_datetime(now);
        let expires = issued
            .checked_add_days(params.expiry_days.get())
            .ok_or(IssueError::ExpiryOutOfRange)?;
        let id = format!("urn:uuid:{}", id.hyphenated());
        // Verification refuses strings not in NFC (see `document`), so every string
        // written here is NFC; the claims already are (`Claims`).
        let credential_type = to_nfc(params.credential_type);
        let mut credential = Self {
            context: VC_CONTEXT.iter().map(|c| (*c).to_owned()).collect(),
            id: id.clone(),
            types: vec![CREDENTIAL_TYPE.to_owned(), credential_type],
            issuer: CredentialIssuer {
                id: signer.did().to_owned(),
                name: to_nfc(params.issuer_name),
            },
            issuance_date: issued,
            expiration_date: expires,
            credential_subject: CredentialSubject {
                id: to_nfc(params.subject_id),
                claims: params.claims.into_map(),
            },
            credential_status: CredentialStatus {
                id: format!("{id}#status"),
                status_type: STATUS_TYPE.to_owned(),
                revoked: false,
                revocation_reason: None,
                revoked_at: None,
            },
            proof: Proof {
                proof_type: PROOF_TYPE.to_owned(),
                created: issued,
                verification_method: signer.verification_method(),
                proof_purpose: CREDENTIAL_PROOF_PURPOSE.to_owned(),
                proof_value: String::new(),
                challenge: None,
                domain: None,
            },
        };
        credential.sign(signer)?;
        Ok(credential)
    }

    /// The same credential under another id, signed again: for a server whose chosen
    /// id turned out to be taken before the credential was stored.
    pub fn with_new_id(mut self, signer: &SigningKey, id: Uuid) -> Result<Self, IssueError> {
        self.id = format!("urn:uuid:{}", id.hyphenated());
        self.credential_status.id = format!("{}#status", self.id);
        self.sign(signer)?;
        Ok(self)
    }

    fn sign(&mut self, signer: &SigningKey) -> Result<(), IssueError> {
        let value = self.to_value();
        let signed = canonical_bytes_without(&value, &CREDENTIAL_UNSIGNED_FIELDS)?;
        self.proof.proof_value = signer.sign_base64url(&signed);
        Ok(())
    }

    /// The credential as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a credential always serialises to JSON")
    }

    /// Check the credential as [`verify_credential`] checks its JSON.
    pub fn verify(&self, now: OffsetDateTime) -> CredentialVerification {
        verify_credential(&self.to_value(), now)
    }

    /// Mark the credential revoked at `now` for `reason`. The proof stays valid.
    pub fn revoke(&mut self, reason: impl Into<String>, now: OffsetDateTime) {
        self.credential_status = CredentialStatus {
            id: format!("{}#status", self.id),
            status_type: STATUS_TYPE.to_owned(),
            revoked: true,
            revocation_reason: Some(reason.into()),
            revoked_at: Some(Timestamp::from_datetime(now)),
        };
    }
}

/// The issuer DID of a credential's JSON: `issuer` as a string, or `issuer.id`.
pub fn credential_issuer_did(credential: &Value) -> Option<&str> {
    match credential.get("issuer")? {
        Value::String(did) => Some(did),
        Value::Object(issuer) => issuer.get("id")?.as_str(),
        _ => None,
    }
}

/// The subject id of a credential's JSON (`credentialSubject.id`).
pub fn credential_subject_id(credential: &Value) -> Option<&str> {
    credential.get("credentialSubject")?.get("id")?.as_str()
}

/// Whether `document`'s `proof` is an [`PROOF_TYPE`] proof for `purpose` whose
/// `proofValue` is a valid signature by `expected_did`'s key over `document` without
/// `unsigned_fields`. The key comes from `expected_did` (the trust anchor), never from
/// `proof.verificationMethod`, which is outside the signature; a `verificationMethod`
/// naming another DID fails the check. The proof's type and purpose are outside the
/// signature too, so they are checked here: a presentation's proof must not pass for a
/// credential's, nor the other way round. A document with a string not in NFC fails:
/// signing normalises, so the signature vouches only for the NFC text.
pub(crate) fn proof_is_valid(
    document: &Value,
    expected_did: &str,
    unsigned_fields: &[&str],
    purpose: &str,
) -> bool {
    let Some(proof) = document.get("proof").filter(|proof| proof.is_object()) else {
        return false;
    };
    if proof.get("type").and_then(Value::as_str) != Some(PROOF_TYPE)
        || proof.get("proofPurpose").and_then(Value::as_str) != Some(purpose)
        || !is_nfc_value(document)
    {
        return false;
    }
    let Some(proof_value) = proof
        .get("proofValue")
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
    else {
        return false;
    };
    match proof.get("verificationMethod") {
        None | Some(Value::Null) => {}
        Some(Value::String(method)) if method.is_empty() => {}
        Some(Value::String(method)) => {
            let method_did = method.split('#').next().unwrap_or_default();
            if method_did != expected_did {
                return false;
            }
        }
        Some(_) => return false,
    }
    let Ok(did) = DidKey::parse(expected_did) else {
        return false;
    };
    canonical_bytes_without(document, unsigned_fields)
        .is_ok_and(|bytes| verify_base64url_signature(&did.verifying_key(), &bytes, proof_value))
}

/// Whether a credential's JSON carries a valid proof by the key of its own `issuer.id`.
pub fn verify_credential_signature(credential: &Value) -> bool {
    credential_issuer_did(credential).is_some_and(|did| {
        proof_is_valid(
            credential,
            did,
            &CREDENTIAL_UNSIGNED_FIELDS,
            CREDENTIAL_PROOF_PURPOSE,
        )
    })
}

/// Whether the verifying key of a credential's issuer is `key` (a server checking that
/// it issued a credential itself).
pub fn credential_is_issued_by(credential: &Value, key: &VerifyingKey) -> bool {
    credential_issuer_did(credential)
        .and_then(|did| DidKey::parse(did).ok())
        .is_some_and(|did| did.verifying_key() == *key)
}

/// Python's truthiness of a JSON value, which the reference's checks rely on.
pub(crate) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Whether a document's `type` (a string or a list) names `wanted`.
pub(crate) fn has_type(document: &Value, wanted: &str) -> bool {
    match document.get("type") {
        Some(Value::Array(types)) => types.iter().any(|t| t.as_str() == Some(wanted)),
        Some(Value::String(t)) => t == wanted,
        _ => false,
    }
}

/// Check any JSON as a credential: structure, proof (against the key of `issuer.id`),
/// expiry at `now`, and the embedded revocation status (which the issuer's records
/// should replace: [`CredentialVerification::apply_issuer_record`]). Never panics,
/// whatever the JSON.
pub fn verify_credential(credential: &Value, now: OffsetDateTime) -> CredentialVerification {
    let structure_valid = credential.is_object()
        && has_type(credential, CREDENTIAL_TYPE)
        && !has_type(credential, PRESENTATION_TYPE);
    let not_revoked = !credential
        .get("credentialStatus")
        .and_then(|status| status.get("revoked"))
        .is_some_and(is_truthy);
    let not_expired = match credential.get("expirationDate") {
        None | Some(Value::Null) => true,
        Some(Value::String(date)) if date.is_empty() => true,
        Some(Value::String(date)) => {
            Timestamp::parse(date).is_ok_and(|expires| now < expires.datetime())
        }
        Some(_) => false,
    };
    let signature_valid = structure_valid && verify_credential_signature(credential);
    let mut verification = CredentialVerification {
        structure_valid,
        signature_valid,
        not_expired,
        not_revoked,
        revocation_checked: false,
        valid: false,
    };
    verification.update_validity();
    verification
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 06:42:10.099397 UTC);

    fn signer() -> SigningKey {
        SigningKey::from_seed([9; 32])
    }

    fn issue() -> VerifiableCredential {
        let claims = Claims::parse(json!({"role": "reporter", "level": 2})).expect("claims");
        VerifiableCredential::issue(
            NewCredential {
                subject_id: "attestix:4556112f7bb94b91".to_owned(),
                credential_type: "AgentIdentityCredential".to_owned(),
                issuer_name: "Acme".to_owned(),
                claims,
                expiry_days: ExpiryDays::DEFAULT,
            },
            &signer(),
            NOW,
            Uuid::from_u128(0x19a4012e_30e9_48be_a6c1_d67cd742e290),
        )
        .expect("issues")
    }

    #[test]
    fn serialises_in_the_reference_field_order() {
        let credential = issue();
        let did = signer().did().to_owned();
        let method = signer().verification_method();
        let text = serde_json::to_string(&credential).expect("serialises");
        let expected_prefix = format!(
            r#"{{"@context":["https://www.w3.org/2018/credentials/v1","https://w3id.org/security/suites/ed25519-2020/v1"],"id":"urn:uuid:19a4012e-30e9-48be-a6c1-d67cd742e290","type":["VerifiableCredential","AgentIdentityCredential"],"issuer":{{"id":"{did}","name":"Acme"}},"issuanceDate":"2026-11-28T06:42:10.099397+00:00","expirationDate":"2027-11-28T06:42:10.099397+00:00","credentialSubject":{{"id":"attestix:4556112f7bb94b91","role":"reporter","level":2}},"credentialStatus":{{"id":"urn:uuid:19a4012e-30e9-48be-a6c1-d67cd742e290#status","type":"RevocationList2021Status","revoked":false,"revocation_reason":null,"revoked_at":null}},"proof":{{"type":"Ed25519Signature2020","created":"2026-11-28T06:42:10.099397+00:00","verificationMethod":"{method}","proofPurpose":"assertionMethod","proofValue":""#
        );
        assert!(text.starts_with(&expected_prefix), "{text}");
        assert!(text.ends_with("==\"}}"), "{text}");
    }

    #[test]
    fn a_fresh_credential_verifies() {
        let verification = issue().verify(NOW);
        assert_eq!(
            verification,
            CredentialVerification {
                structure_valid: true,
                signature_valid: true,
                not_expired: true,
                not_revoked: true,
                revocation_checked: false,
                valid: true
            }
        );
    }

    #[test]
    fn revocation_keeps_the_proof_valid_but_fails_not_revoked() {
        let mut credential = issue();
        credential.revoke("superseded", NOW);
        let verification = credential.verify(NOW);
        assert!(verification.signature_valid);
        assert!(!verification.not_revoked);
        assert!(!verification.valid);
        assert_eq!(
            credential.credential_status.revocation_reason.as_deref(),
            Some("superseded")
        );
    }

    #[test]
    fn changed_claims_break_the_proof() {
        let mut value = issue().to_value();
        value["credentialSubject"]["level"] = json!(3);
        let verification = verify_credential(&value, NOW);
        assert!(
            verification.structure_valid && !verification.signature_valid && !verification.valid
        );
    }

    #[test]
    fn issuer_may_be_a_plain_string() {
        let mut value = issue().to_value();
        // Re-sign with `issuer` as a string, as other issuers write it.
        value["issuer"] = json!(signer().did());
        let signed =
            canonical_bytes_without(&value, &CREDENTIAL_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(signer().sign_base64url(&signed));
        assert!(verify_credential(&value, NOW).valid);
    }

    #[test]
    fn a_verification_method_of_another_did_is_rejected() {
        let mut value = issue().to_value();
        value["proof"]["verificationMethod"] =
            json!(SigningKey::from_seed([1; 32]).verification_method());
        assert!(!verify_credential(&value, NOW).signature_valid);
    }

    #[test]
    fn a_self_signed_credential_cannot_claim_another_issuer() {
        // An attacker signs with their own key but names the server as issuer.
        let attacker = SigningKey::from_seed([66; 32]);
        let mut value = issue().to_value();
        let signed =
            canonical_bytes_without(&value, &CREDENTIAL_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(attacker.sign_base64url(&signed));
        value["proof"]["verificationMethod"] = json!(attacker.verification_method());
        assert!(!verify_credential(&value, NOW).signature_valid);
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let credential = issue();
        assert!(
            !credential
                .verify(datetime!(2027-11-28 06:42:10.099397 UTC))
                .not_expired
        );
        let mut value = credential.to_value();
        value["expirationDate"] = json!("not a date");
        assert!(!verify_credential(&value, NOW).not_expired);
        value
            .as_object_mut()
            .expect("object")
            .remove("expirationDate");
        assert!(verify_credential(&value, NOW).not_expired);
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_never_valid() {
        let inputs = [
            json!(null),
            json!(1),
            json!("VerifiableCredential"),
            json!([]),
            json!({}),
            json!({"type": "VerifiableCredential"}),
            json!({"type": ["VerifiableCredential"], "issuer": 5, "proof": {"proofValue": "x"}}),
            json!({"type": ["VerifiableCredential"], "issuer": {"id": "did:key:z"}, "proof": {"proofValue": "x", "verificationMethod": 3}}),
            json!({"type": ["VerifiableCredential"], "issuer": "did:key:zzzz", "proof": []}),
            json!({"type": ["VerifiableCredential"], "credentialStatus": "revoked", "expirationDate": 7}),
        ];
        for input in inputs {
            assert!(!verify_credential(&input, NOW).valid, "{input}");
        }
    }

    #[test]
    fn every_field_replaced_by_odd_json_never_panics() {
        let original = issue().to_value();
        let odd = [
            json!(null),
            json!(0),
            json!(-1.5),
            json!(""),
            json!("did:key:z"),
            json!([]),
            json!({}),
            json!([null]),
            json!({"id": {}}),
        ];
        let mut paths: Vec<Vec<String>> = Vec::new();
        for (key, value) in original.as_object().expect("object") {
            paths.push(vec![key.clone()]);
            if let Some(inner) = value.as_object() {
                paths.extend(inner.keys().map(|k| vec![key.clone(), k.clone()]));
            }
        }
        for path in &paths {
            for replacement in &odd {
                let mut value = original.clone();
                let mut slot = &mut value;
                for key in path {
                    slot = &mut slot[key.as_str()];
                }
                *slot = replacement.clone();
                let verification = verify_credential(&value, NOW);
                // Everything outside `proof` and `credentialStatus` is signed.
                if path[0] != "proof" && path[0] != "credentialStatus" {
                    assert!(!verification.valid, "{path:?} = {replacement}");
                }
            }
        }
    }

    #[test]
    fn another_proof_type_or_purpose_fails_the_signature_check() {
        for (field, value) in [
            ("type", json!("JsonWebSignature2020")),
            ("proofPurpose", json!("authentication")),
            ("proofPurpose", json!(null)),
        ] {
            let mut edited = issue().to_value();
            edited["proof"][field] = value;
            let verification = verify_credential(&edited, NOW);
            assert!(
                !verification.signature_valid && !verification.valid,
                "{field}"
            );
        }
    }

    #[test]
    fn a_credential_typed_as_a_presentation_is_neither_issued_nor_valid() {
        let mut params = NewCredential {
            subject_id: "attestix:4556112f7bb94b91".to_owned(),
            credential_type: PRESENTATION_TYPE.to_owned(),
            issuer_name: "Acme".to_owned(),
            claims: Claims::default(),
            expiry_days: ExpiryDays::DEFAULT,
        };
        assert_eq!(
            VerifiableCredential::issue(params.clone(), &signer(), NOW, Uuid::from_u128(1)),
            Err(IssueError::PresentationTypedCredential)
        );
        // Signed anyway, as another signer might.
        params.credential_type = "AgentIdentityCredential".to_owned();
        let mut value = VerifiableCredential::issue(params, &signer(), NOW, Uuid::from_u128(1))
            .expect("issues")
            .to_value();
        value["type"] = json!(["VerifiableCredential", "VerifiablePresentation"]);
        let signed =
            canonical_bytes_without(&value, &CREDENTIAL_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(signer().sign_base64url(&signed));
        assert!(
            verify_credential_signature(&value),
            "the signature itself is good"
        );
        let verification = verify_credential(&value, NOW);
        assert!(!verification.structure_valid && !verification.valid);
    }

    #[test]
    fn strings_not_in_nfc_fail_though_their_normal_form_was_signed() {
        let mut value = issue().to_value();
        value["credentialSubject"]["role"] = json!("repo\u{212a}ter");
        let signed =
            canonical_bytes_without(&value, &CREDENTIAL_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(signer().sign_base64url(&signed));
        assert!(!verify_credential(&value, NOW).signature_valid);
        value["credentialSubject"]["role"] = json!("repoKter");
        assert!(
            verify_credential(&value, NOW).valid,
            "the NFC form verifies"
        );
    }

    #[test]
    fn issued_strings_are_nfc() {
        let credential = VerifiableCredential::issue(
            NewCredential {
                subject_id: "did:example:\u{212b}".to_owned(),
                credential_type: "\u{212a}Credential".to_owned(),
                issuer_name: "\u{212b}cme".to_owned(),
                claims: Claims::parse(json!({"unit": "\u{212a}"})).expect("claims"),
                expiry_days: ExpiryDays::DEFAULT,
            },
            &signer(),
            NOW,
            Uuid::from_u128(2),
        )
        .expect("issues");
        let value = credential.to_value();
        assert!(crate::document::is_nfc_value(&value), "{value}");
        assert_eq!(value["issuer"]["name"], "\u{c5}cme");
        assert!(verify_credential(&value, NOW).valid);
    }

    #[test]
    fn the_issuer_record_replaces_the_embedded_status() {
        let mut revoked = issue();
        revoked.revoke("superseded", NOW);
        let mut check = issue().verify(NOW);
        assert!(check.valid && !check.revocation_checked);
        check.apply_issuer_record(Some(IssuerRecord {
            revoked: true,
            expired: false,
        }));
        assert!(check.revocation_checked && !check.not_revoked && !check.valid);

        let mut check = revoked.verify(NOW);
        check.apply_issuer_record(Some(IssuerRecord {
            revoked: false,
            expired: false,
        }));
        assert!(check.valid, "the record, not the unsigned copy, decides");

        let mut check = issue().verify(NOW);
        check.apply_issuer_record(None);
        assert!(
            !check.not_revoked && !check.valid,
            "no record: not vouched for"
        );

        let mut check = issue().verify(NOW);
        check.apply_issuer_record(Some(IssuerRecord {
            revoked: false,
            expired: true,
        }));
        assert!(!check.not_expired && !check.valid);
    }

    #[test]
    fn round_trips_through_json() {
        let credential = issue();
        let text = serde_json::to_string(&credential).expect("serialises");
        let back: VerifiableCredential = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, credential);
        assert_eq!(serde_json::to_string(&back).expect("serialises"), text);
    }

    #[test]
    fn issued_by_compares_the_issuer_key() {
        let value = issue().to_value();
        assert!(credential_is_issued_by(&value, &signer().verifying_key()));
        assert!(!credential_is_issued_by(
            &value,
            &SigningKey::from_seed([1; 32]).verifying_key()
        ));
        assert_eq!(
            credential_subject_id(&value),
            Some("attestix:4556112f7bb94b91")
        );
    }
}
