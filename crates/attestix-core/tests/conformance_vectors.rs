//! The public cross-language conformance vectors of the reference,
//! `spec/verify/v1/vectors.json` in VibeTensor/attestix (commit
//! c20d2348222d4f929b78ac5ff96ae1112488652c), copied unchanged into
//! `tests/fixtures/verify_v1_vectors.json`. Every vector must give its `expected`
//! values.

use attestix_core::canonical::canonical_bytes;
use attestix_core::delegation::{decode, verify_chain, ChainVerdict};
use attestix_core::{verify_credential, DidKey};
use serde_json::Value;
use time::macros::datetime;

const VECTORS: &str = include_str!("fixtures/verify_v1_vectors.json");

fn vectors() -> Vec<Value> {
    let file: Value = serde_json::from_str(VECTORS).expect("the vector file is JSON");
    let vectors = file["vectors"]
        .as_array()
        .expect("vectors is a list")
        .clone();
    assert_eq!(vectors.len() as u64, file["vector_count"].as_u64().unwrap());
    vectors
}

fn of_kind(kind: &str) -> Vec<Value> {
    vectors()
        .into_iter()
        .filter(|vector| vector["kind"] == kind)
        .collect()
}

fn server_key(vector: &Value) -> attestix_core::VerifyingKey {
    let raw = hex_bytes(vector["pubkey_raw_hex"].as_str().unwrap());
    attestix_core::VerifyingKey::from_bytes(&raw.try_into().unwrap()).unwrap()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Within every vector token's validity (iat 2026-01-01, exp 2100-01-01).
const NOW: i64 = 1_800_000_000;

#[test]
fn delegation_chain_vectors_give_their_expected_verdicts() {
    let chains = of_kind("verify_delegation_chain");
    assert_eq!(chains.len(), 2);
    for vector in chains {
        let id = vector["id"].as_str().unwrap();
        let key = server_key(&vector);
        let expected = &vector["expected"];
        let token = vector["input"]["token"].as_str().unwrap();
        let parent = vector["input"]["parent_token"].as_str().unwrap();
        let child = decode(token, &key, NOW);
        let parent_decoded = decode(parent, &key, NOW);
        assert_eq!(
            child.is_ok(),
            expected["child_signature_valid"].as_bool().unwrap(),
            "{id}"
        );
        assert_eq!(
            parent_decoded.is_ok(),
            expected["parent_signature_valid"].as_bool().unwrap(),
            "{id}"
        );
        let child = child.unwrap();
        let parent_decoded = parent_decoded.unwrap();
        let held = parent_decoded.capabilities();
        assert_eq!(
            child.capabilities().is_subset(&held),
            expected["attenuation_is_subset"].as_bool().unwrap(),
            "{id}"
        );
        // The whole chain, through the token's own `prf`.
        let verdict = verify_chain(token, &key, NOW, &|_| false);
        assert_eq!(
            matches!(verdict, ChainVerdict::Valid(_)),
            expected["verify"].as_bool().unwrap(),
            "{id}: {verdict:?}"
        );
        // And the same chain with the parent revoked is refused.
        let revoked = verify_chain(token, &key, NOW, &|jti| jti == "root-jti-fixed-0001");
        assert!(matches!(revoked, ChainVerdict::Invalid { .. }), "{id}");
    }
}

#[test]
fn canonicalisation_vectors_match_byte_for_byte() {
    for vector in of_kind("canonicalize") {
        let bytes = canonical_bytes(&vector["input"]).expect("canonicalisable");
        assert_eq!(
            to_hex(bytes),
            vector["canonical_bytes_hex"].as_str().unwrap(),
            "{}",
            vector["id"]
        );
    }
}

#[test]
fn did_key_vectors_decode_to_their_raw_keys() {
    for vector in of_kind("did_key_decode") {
        let did = DidKey::parse(vector["input"]["did"].as_str().unwrap()).expect("a did:key");
        assert_eq!(
            to_hex(did.verifying_key().to_bytes()),
            vector["expected"]["pubkey_raw_hex"].as_str().unwrap()
        );
        assert_eq!(
            did.verification_method(),
            vector["expected"]["verification_method"].as_str().unwrap()
        );
    }
}

#[test]
fn credential_vectors_give_their_expected_checks() {
    // After 2021 (the expired vector's expiry) and before 2027 (the valid one's).
    let now = datetime!(2026-06-01 00:00:00 UTC);
    let credentials = of_kind("verify_credential");
    assert_eq!(credentials.len(), 3);
    for vector in credentials {
        let check = verify_credential(&vector["input"], now);
        let expected = &vector["expected"];
        let id = &vector["id"];
        assert_eq!(check.signature_valid, expected["signature_valid"], "{id}");
        assert_eq!(check.not_expired, expected["not_expired"], "{id}");
        assert_eq!(check.not_revoked, expected["not_revoked"], "{id}");
        assert_eq!(check.valid, expected["verify"], "{id}");
    }
}
