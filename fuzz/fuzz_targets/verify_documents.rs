//! The document verifiers on any JSON: `verify_credential`, `verify_presentation`,
//! `verify_uait_signature` (what `POST /v1/credentials/verify-external` and
//! `POST /v1/presentations/verify` run on a client's JSON) and the typed `verify`
//! methods never panic, and nothing unsigned by the trusted key verifies as signed.
//!
//! The seeds in `fuzz/seeds/verify_documents` (written by
//! `cargo run --example make_seeds`) are valid documents signed by [`signer`], so the
//! fuzzer starts from inputs that reach the signature checks.

#![no_main]

use attestix_core::{
    credential_issuer_did, credential_subject_id, verify_credential, verify_credential_signature,
    verify_presentation, verify_uait_signature, DidKey, ExpectedBinding, SigningKey, Uait,
    VerifiableCredential, VerifiablePresentation,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

/// The moment every check runs at (the seeds are valid then).
const NOW: OffsetDateTime = datetime!(2026-11-28 06:42:10 UTC);

/// The trusted server key: the same seed as `examples/make_seeds.rs`.
fn signer() -> SigningKey {
    SigningKey::from_seed([7; 32])
}

fn check(document: &Value, binding: &Value) {
    let key = signer();
    let expected = ExpectedBinding {
        challenge: binding.get("challenge").and_then(Value::as_str),
        domain: binding.get("domain").and_then(Value::as_str),
    };

    let credential = verify_credential(document, NOW);
    assert_eq!(
        credential.valid,
        credential.structure_valid
            && credential.signature_valid
            && credential.not_expired
            && credential.not_revoked
    );
    let _ = verify_credential_signature(document);
    let _ = credential_issuer_did(document).map(DidKey::parse);
    let _ = credential_subject_id(document);

    let presentation = verify_presentation(document, key.did_key(), expected, NOW);
    if presentation.valid {
        assert!(presentation.signature_valid && presentation.structure_valid);
    }
    let _ = verify_uait_signature(document, &key.verifying_key());

    // The typed paths a server takes with documents it reads back.
    if let Ok(uait) = serde_json::from_value::<Uait>(document.clone()) {
        let _ = uait.verify(&key.verifying_key(), NOW);
        let _ = uait.signed_bytes();
    }
    if let Ok(credential) = serde_json::from_value::<VerifiableCredential>(document.clone()) {
        let _ = credential.verify(NOW);
        let _ = serde_json::to_value(&credential);
    }
    if let Ok(presentation) = serde_json::from_value::<VerifiablePresentation>(document.clone()) {
        let _ = serde_json::to_value(&presentation);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(&value, &value);
    // The request bodies of the verify endpoints wrap the document.
    for field in ["credential", "presentation"] {
        if let Some(inner) = value.get(field) {
            check(inner, &value);
        }
    }
    if let Some(Value::Array(items)) = value.get("verifiableCredential") {
        for item in items {
            check(item, &value);
        }
    }
});
