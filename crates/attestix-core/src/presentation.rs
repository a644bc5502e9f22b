//! Verifiable Presentations: credentials bundled for a verifier and signed by the
//! server on behalf of their holder, optionally bound to a verifier's `domain` and
//! `challenge` (replay protection).
//!
//! The proof (purpose `authentication`) signs the canonical bytes of everything but
//! `proof`, including `domain` and `challenge`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonical_bytes_without;
use crate::credential::{
    credential_subject_id, has_type, proof_is_valid, verify_credential, CredentialVerification,
    IssuerRecord, Proof, CREDENTIAL_TYPE, PRESENTATION_TYPE, PROOF_TYPE, VC_CONTEXT,
};
use crate::document::to_nfc;
use crate::error::IssueError;
use crate::keys::{DidKey, SigningKey};
use crate::timestamp::Timestamp;

/// Top-level presentation fields the proof does not cover.
pub const PRESENTATION_UNSIGNED_FIELDS: [&str; 1] = ["proof"];

/// The `proofPurpose` of a presentation's proof.
pub const PRESENTATION_PROOF_PURPOSE: &str = "authentication";

/// A Verifiable Presentation, fields in the reference's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiablePresentation {
    /// The credentials `@context`.
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    /// `urn:uuid:…`.
    pub id: String,
    /// `["VerifiablePresentation"]`.
    #[serde(rename = "type")]
    pub types: Vec<String>,
    /// The agent presenting the credentials (their subject).
    pub holder: String,
    /// The credentials, exactly as stored.
    #[serde(rename = "verifiableCredential")]
    pub verifiable_credential: Vec<Value>,
    /// The intended verifier's DID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The verifier's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// The server's proof, repeating `challenge` and `domain`.
    pub proof: Proof,
}

/// What a new presentation is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPresentation {
    /// The holder (the credentials' subject); the caller checks that each credential
    /// belongs to them.
    pub holder: String,
    /// The credentials to embed, as stored.
    pub credentials: Vec<Value>,
    /// The intended verifier's DID (`audience_did`); empty means none.
    pub domain: Option<String>,
    /// The verifier's challenge; empty means none.
    pub challenge: Option<String>,
}

/// What a verifier expects a presentation to be bound to. `None` means "not checked";
/// `Some("")` never matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpectedBinding<'a> {
    /// The challenge the verifier issued.
    pub challenge: Option<&'a str>,
    /// The verifier's own DID.
    pub domain: Option<&'a str>,
}

/// The outcome of checking a presentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresentationVerification {
    /// It is an object whose `type` includes `VerifiablePresentation` and not
    /// `VerifiableCredential`, and whose `verifiableCredential`, if present, is a list.
    pub structure_valid: bool,
    /// Its proof is an `Ed25519Signature2020` for `authentication`, a valid signature by
    /// the expected signer over all but `proof`, of a document whose strings are NFC.
    pub signature_valid: bool,
    /// `proof.challenge` is absent or equals the signed `challenge`.
    pub challenge_consistent: bool,
    /// `proof.domain` is absent or equals the signed `domain`.
    pub domain_consistent: bool,
    /// Whether the signed `challenge` equals the expected one (`None`: none expected).
    pub challenge_matches: Option<bool>,
    /// Whether the signed `domain` equals the expected one (`None`: none expected).
    pub domain_matches: Option<bool>,
    /// Every embedded credential's subject is the holder.
    pub holder_matches_subjects: bool,
    /// The holder's identity is neither revoked nor expired by the issuer's records
    /// ([`PresentationVerification::apply_holder_record`]); `None`: not consulted.
    pub holder_active: Option<bool>,
    /// Each embedded credential's own verification, in order.
    pub credentials: Vec<CredentialVerification>,
    /// Every embedded credential is valid.
    pub credentials_valid: bool,
    /// All of the above.
    pub valid: bool,
}

impl PresentationVerification {
    /// Recompute `credentials_valid` and `valid` from the other fields (after a caller
    /// has refined a credential's check, for example `not_revoked` from its records).
    pub fn update_validity(&mut self) {
        self.credentials_valid = self.credentials.iter().all(|check| check.valid);
        self.valid = self.structure_valid
            && self.signature_valid
            && self.challenge_consistent
            && self.domain_consistent
            && self.challenge_matches.unwrap_or(true)
            && self.domain_matches.unwrap_or(true)
            && self.holder_matches_subjects
            && self.holder_active.unwrap_or(true)
            && self.credentials_valid;
    }

    /// Set `holder_active` from the issuer's record of the holder's identity; `None`,
    /// no record, counts as inactive (the issuer cannot vouch for the holder).
    pub fn apply_holder_record(&mut self, record: Option<IssuerRecord>) {
        self.holder_active = Some(record.is_some_and(|record| record.is_active()));
        self.update_validity();
    }
}

impl VerifiablePresentation {
    /// Bundle and sign a presentation. `id` is a random UUIDv4.
    pub fn create(
        params: NewPresentation,
        signer: &SigningKey,
        now: OffsetDateTime,
        id: Uuid,
    ) -> Result<Self, IssueError> {
        // NFC, as every string this crate signs (verification refuses other strings).
        let domain = params
            .domain
            .filter(|domain| !domain.is_empty())
            .map(to_nfc);
        let challenge = params
            .challenge
            .filter(|challenge| !challenge.is_empty())
            .map(to_nfc);
        let mut presentation = Self {
            context: VC_CONTEXT.iter().map(|c| (*c).to_owned()).collect(),
            id: format!("urn:uuid:{}", id.hyphenated()),
            types: vec![PRESENTATION_TYPE.to_owned()],
            holder: to_nfc(params.holder),
            verifiable_credential: params.credentials,
            domain: domain.clone(),
            challenge: challenge.clone(),
            proof: Proof {
                proof_type: PROOF_TYPE.to_owned(),
                created: Timestamp::from_datetime(now),
                verification_method: signer.verification_method(),
                proof_purpose: PRESENTATION_PROOF_PURPOSE.to_owned(),
                proof_value: String::new(),
                challenge,
                domain,
            },
        };
        let value = presentation.to_value();
        let signed = canonical_bytes_without(&value, &PRESENTATION_UNSIGNED_FIELDS)?;
        presentation.proof.proof_value = signer.sign_base64url(&signed);
        Ok(presentation)
    }

    /// The presentation as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a presentation always serialises to JSON")
    }
}

/// Check any JSON as a presentation signed by `signer` (the server that made it):
/// structure, proof, challenge and domain binding, and each embedded credential
/// (as [`verify_credential`] does, holder equal to each subject). Never panics.
pub fn verify_presentation(
    presentation: &Value,
    signer: &DidKey,
    expected: ExpectedBinding<'_>,
    now: OffsetDateTime,
) -> PresentationVerification {
    let is_presentation =
        has_type(presentation, PRESENTATION_TYPE) && !has_type(presentation, CREDENTIAL_TYPE);
    let embedded = match presentation.get("verifiableCredential") {
        None | Some(Value::Null) => Some(&[][..]),
        Some(Value::Array(credentials)) => Some(credentials.as_slice()),
        Some(_) => None,
    };
    let structure_valid = presentation.is_object() && is_presentation && embedded.is_some();
    let embedded = embedded.unwrap_or_default();

    let signature_valid = structure_valid
        && proof_is_valid(
            presentation,
            signer.as_str(),
            &PRESENTATION_UNSIGNED_FIELDS,
            PRESENTATION_PROOF_PURPOSE,
        );

    let proof = presentation.get("proof");
    let consistent = |field: &str| match proof.and_then(|proof| proof.get(field)) {
        None | Some(Value::Null) => true,
        Some(in_proof) => presentation.get(field) == Some(in_proof),
    };
    // The verifier's value is compared in NFC, the form a presentation is made with.
    let matches = |field: &str, wanted: Option<&str>| {
        wanted.map(|wanted| {
            !wanted.is_empty()
                && presentation.get(field).and_then(Value::as_str)
                    == Some(to_nfc(wanted.to_owned()).as_str())
        })
    };

    let holder = presentation.get("holder");
    let holder_matches_subjects = embedded.iter().all(|credential| {
        let subject = credential_subject_id(credential);
        subject.is_some() && subject == holder.and_then(Value::as_str)
    });
    let credentials = embedded
        .iter()
        .map(|credential| verify_credential(credential, now))
        .collect();

    let mut verification = PresentationVerification {
        structure_valid,
        signature_valid,
        challenge_consistent: consistent("challenge"),
        domain_consistent: consistent("domain"),
        challenge_matches: matches("challenge", expected.challenge),
        domain_matches: matches("domain", expected.domain),
        holder_matches_subjects,
        holder_active: None,
        credentials,
        credentials_valid: false,
        valid: false,
    };
    verification.update_validity();
    verification
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{NewCredential, VerifiableCredential};
    use crate::validation::{Claims, ExpiryDays};
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 06:42:10 UTC);
    const HOLDER: &str = "attestix:4556112f7bb94b91";

    fn signer() -> SigningKey {
        SigningKey::from_seed([3; 32])
    }

    fn credential(subject: &str) -> Value {
        VerifiableCredential::issue(
            NewCredential {
                subject_id: subject.to_owned(),
                credential_type: "AgentIdentityCredential".to_owned(),
                issuer_name: "Acme".to_owned(),
                claims: Claims::parse(json!({"role": "reporter"})).expect("claims"),
                expiry_days: ExpiryDays::DEFAULT,
            },
            &signer(),
            NOW,
            Uuid::from_u128(7),
        )
        .expect("issues")
        .to_value()
    }

    fn present(challenge: &str, domain: &str) -> VerifiablePresentation {
        VerifiablePresentation::create(
            NewPresentation {
                holder: HOLDER.to_owned(),
                credentials: vec![credential(HOLDER)],
                domain: Some(domain.to_owned()),
                challenge: Some(challenge.to_owned()),
            },
            &signer(),
            NOW,
            Uuid::from_u128(8),
        )
        .expect("creates")
    }

    fn verify(value: &Value, expected: ExpectedBinding<'_>) -> PresentationVerification {
        verify_presentation(value, signer().did_key(), expected, NOW)
    }

    #[test]
    fn serialises_in_the_reference_field_order() {
        let text = serde_json::to_string(&present("nonce-1", "did:web:verifier")).expect("json");
        let keys_in_order = [
            "\"@context\"",
            "\"id\":\"urn:uuid:00000000-0000-0000-0000-000000000008\"",
            "\"type\":[\"VerifiablePresentation\"]",
            "\"holder\"",
            "\"verifiableCredential\"",
            "\"domain\":\"did:web:verifier\",\"challenge\":\"nonce-1\",\"proof\"",
            "\"proofPurpose\":\"authentication\"",
            "\"proofValue\"",
            "\"challenge\":\"nonce-1\",\"domain\":\"did:web:verifier\"}}",
        ];
        let mut from = 0;
        for key in keys_in_order {
            let at = text[from..]
                .find(key)
                .unwrap_or_else(|| panic!("{key} after {from} in {text}"));
            from += at + key.len();
        }
    }

    #[test]
    fn empty_challenge_and_domain_are_left_out() {
        let value = present("", "").to_value();
        assert!(value.get("challenge").is_none() && value.get("domain").is_none());
        assert!(value["proof"].get("challenge").is_none());
        assert!(verify(&value, ExpectedBinding::default()).valid);
    }

    #[test]
    fn a_fresh_presentation_verifies_with_its_binding() {
        let value = present("nonce-1", "did:web:verifier").to_value();
        let verification = verify(
            &value,
            ExpectedBinding {
                challenge: Some("nonce-1"),
                domain: Some("did:web:verifier"),
            },
        );
        assert!(verification.valid, "{verification:?}");
        assert_eq!(verification.credentials.len(), 1);
        assert_eq!(verification.challenge_matches, Some(true));
    }

    #[test]
    fn a_different_challenge_or_domain_fails() {
        let value = present("nonce-1", "did:web:verifier").to_value();
        let wrong_challenge = verify(
            &value,
            ExpectedBinding {
                challenge: Some("nonce-2"),
                domain: None,
            },
        );
        assert_eq!(wrong_challenge.challenge_matches, Some(false));
        assert!(!wrong_challenge.valid);
        let wrong_domain = verify(
            &value,
            ExpectedBinding {
                challenge: None,
                domain: Some("did:web:evil"),
            },
        );
        assert!(!wrong_domain.valid);
        let empty = verify(
            &value,
            ExpectedBinding {
                challenge: Some(""),
                domain: None,
            },
        );
        assert!(!empty.valid);
    }

    #[test]
    fn changing_the_signed_challenge_breaks_the_proof() {
        let mut value = present("nonce-1", "").to_value();
        value["challenge"] = json!("nonce-2");
        value["proof"]["challenge"] = json!("nonce-2");
        let verification = verify(
            &value,
            ExpectedBinding {
                challenge: Some("nonce-2"),
                domain: None,
            },
        );
        assert!(!verification.signature_valid && !verification.valid);
    }

    #[test]
    fn a_proof_challenge_differing_from_the_signed_one_is_inconsistent() {
        let mut value = present("nonce-1", "").to_value();
        value["proof"]["challenge"] = json!("nonce-2");
        let verification = verify(&value, ExpectedBinding::default());
        assert!(!verification.challenge_consistent && !verification.valid);
    }

    #[test]
    fn another_signer_is_rejected() {
        let value = present("", "").to_value();
        let other = SigningKey::from_seed([4; 32]);
        let verification =
            verify_presentation(&value, other.did_key(), ExpectedBinding::default(), NOW);
        assert!(!verification.signature_valid);
    }

    #[test]
    fn credentials_of_another_subject_fail_the_holder_check() {
        let presentation = VerifiablePresentation::create(
            NewPresentation {
                holder: HOLDER.to_owned(),
                credentials: vec![credential("attestix:someone-else")],
                domain: None,
                challenge: None,
            },
            &signer(),
            NOW,
            Uuid::from_u128(9),
        )
        .expect("creates");
        let verification = verify(&presentation.to_value(), ExpectedBinding::default());
        assert!(verification.signature_valid && verification.credentials_valid);
        assert!(!verification.holder_matches_subjects && !verification.valid);
    }

    #[test]
    fn a_tampered_embedded_credential_fails() {
        let mut value = present("", "").to_value();
        value["verifiableCredential"][0]["credentialSubject"]["role"] = json!("admin");
        let verification = verify(&value, ExpectedBinding::default());
        assert!(!verification.signature_valid);
        assert!(!verification.credentials_valid);
        assert!(!verification.credentials[0].signature_valid);
    }

    #[test]
    fn a_proof_for_another_purpose_or_of_another_type_fails() {
        for (field, value) in [
            ("proofPurpose", json!("assertionMethod")),
            ("type", json!("Ed25519Signature2018")),
        ] {
            let mut edited = present("", "").to_value();
            edited["proof"][field] = value;
            let verification = verify(&edited, ExpectedBinding::default());
            assert!(
                !verification.signature_valid && !verification.valid,
                "{field}"
            );
        }
    }

    #[test]
    fn a_credential_without_its_status_does_not_pass_for_a_presentation() {
        // The signature of a credential covers all but `proof` (and the status), the
        // same bytes a presentation's covers once the status is gone.
        let mut value = credential(HOLDER);
        value["type"] = json!(["VerifiableCredential", "VerifiablePresentation"]);
        value
            .as_object_mut()
            .expect("object")
            .remove("credentialStatus");
        let signed =
            canonical_bytes_without(&value, &PRESENTATION_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(signer().sign_base64url(&signed));
        let verification = verify(&value, ExpectedBinding::default());
        assert!(!verification.structure_valid && !verification.valid);
        value["type"] = json!(["VerifiablePresentation"]);
        let signed =
            canonical_bytes_without(&value, &PRESENTATION_UNSIGNED_FIELDS).expect("canonical");
        value["proof"]["proofValue"] = json!(signer().sign_base64url(&signed));
        let verification = verify(&value, ExpectedBinding::default());
        assert!(
            !verification.signature_valid,
            "assertionMethod is not authentication"
        );
    }

    #[test]
    fn the_holder_record_decides_holder_active() {
        let value = present("", "").to_value();
        let mut verification = verify(&value, ExpectedBinding::default());
        assert_eq!(verification.holder_active, None);
        assert!(verification.valid);
        for (record, active) in [
            (
                Some(IssuerRecord {
                    revoked: false,
                    expired: false,
                }),
                true,
            ),
            (
                Some(IssuerRecord {
                    revoked: true,
                    expired: false,
                }),
                false,
            ),
            (
                Some(IssuerRecord {
                    revoked: false,
                    expired: true,
                }),
                false,
            ),
            (None, false),
        ] {
            verification.apply_holder_record(record);
            assert_eq!(verification.holder_active, Some(active), "{record:?}");
            assert_eq!(verification.valid, active, "{record:?}");
        }
    }

    #[test]
    fn challenge_and_domain_are_signed_in_nfc_and_compared_in_nfc() {
        let value = present("nonce-\u{212a}", "did:web:\u{212b}").to_value();
        assert_eq!(value["challenge"], "nonce-K");
        let verification = verify(
            &value,
            ExpectedBinding {
                challenge: Some("nonce-\u{212a}"),
                domain: Some("did:web:\u{c5}"),
            },
        );
        assert!(verification.valid, "{verification:?}");
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_never_valid() {
        for input in [
            json!(null),
            json!([]),
            json!({"type": "VerifiablePresentation", "verifiableCredential": {}}),
            json!({"type": ["VerifiablePresentation"], "proof": "x"}),
            json!({"type": ["VerifiablePresentation"], "verifiableCredential": [1, null], "proof": {"proofValue": 1}}),
        ] {
            assert!(!verify(&input, ExpectedBinding::default()).valid, "{input}");
        }
    }
}
