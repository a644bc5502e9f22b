//! Writes the seed inputs of the fuzz targets into `fuzz/seeds/<target>/`: valid
//! documents signed by the key the `verify_documents` target trusts, the canonical
//! JSON examples of the specification, and well-formed Idempotency-Keys.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds`.

use std::fs;
use std::path::Path;

use attestix_core::{
    verify_credential, verify_presentation, verify_uait_signature, Claims, DisplayName,
    ExpectedBinding, ExpiryDays, NewCredential, NewIdentity, NewPresentation, SigningKey, Uait,
    VerifiableCredential, VerifiablePresentation,
};
use serde_json::{json, Value};
use time::macros::datetime;
use uuid::Uuid;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("the seed directory can be made");
    fs::write(dir.join(name), bytes).expect("the seed can be written");
}

fn main() {
    // The same key and moment as fuzz_targets/verify_documents.rs.
    let key = SigningKey::from_seed([7; 32]);
    let issued_at = datetime!(2026-06-01 00:00:00.5 UTC);

    let mut identity = NewIdentity::new(DisplayName::parse("Report Bot").unwrap(), "api_key");
    identity.capabilities = vec!["summarize".into()];
    identity.identity_token = "eyJhbGciOiJIUzI1NiJ9.e30.abc".into();
    let uait = Uait::issue(identity, &key, issued_at, Uuid::from_u128(1)).unwrap();
    let uait = serde_json::to_value(&uait).unwrap();

    let credential = VerifiableCredential::issue(
        NewCredential {
            subject_id: uait["agent_id"].as_str().unwrap().to_owned(),
            credential_type: "AgentIdentityCredential".into(),
            issuer_name: "Acme".into(),
            claims: Claims::parse(
                json!({"role": "reporter", "level": 2, "score": 0.5, "tags": ["a", "é"]}),
            )
            .unwrap(),
            expiry_days: ExpiryDays::DEFAULT,
        },
        &key,
        issued_at,
        Uuid::from_u128(2),
    )
    .unwrap();
    let mut revoked = credential.clone();
    revoked.revoke("compromised", issued_at);
    let credential = credential.to_value();

    let presentation = VerifiablePresentation::create(
        NewPresentation {
            holder: uait["agent_id"].as_str().unwrap().to_owned(),
            credentials: vec![credential.clone()],
            domain: Some("did:web:verifier".into()),
            challenge: Some("nonce-1".into()),
        },
        &key,
        issued_at,
        Uuid::from_u128(3),
    )
    .unwrap()
    .to_value();

    // The seeds must reach the signature checks as valid documents at the target's
    // moment, or the fuzzer starts from nothing better than random JSON.
    let now = datetime!(2026-11-28 06:42:10 UTC);
    assert!(verify_uait_signature(&uait, &key.verifying_key()));
    assert!(verify_credential(&credential, now).valid);
    let binding = ExpectedBinding {
        challenge: Some("nonce-1"),
        domain: Some("did:web:verifier"),
    };
    assert!(verify_presentation(&presentation, key.did_key(), binding, now).valid);

    let documents: [(&str, Value); 6] = [
        ("uait.json", uait),
        ("credential.json", credential.clone()),
        ("revoked-credential.json", revoked.to_value()),
        ("presentation.json", presentation.clone()),
        (
            "verify-external-body.json",
            json!({ "credential": credential }),
        ),
        (
            "verify-presentation-body.json",
            json!({"presentation": presentation, "challenge": "nonce-1", "domain": "did:web:verifier"}),
        ),
    ];
    for (name, document) in &documents {
        let text = serde_json::to_vec(document).unwrap();
        write("verify_documents", name, &text);
        write("canonical_json", name, &text);
    }

    let canonical_examples: [&[u8]; 5] = [
        br#"{"b":1,"a":[1.0,2.5,-0.0,1e-07,1e21,0.30000000000000004,1e16,123456789.125]}"#,
        "{\"cafe\u{301}\":\"xe\u{301}\",\"e\":\"\u{1F600}\",\"k\":\"\\\"q\\\"\\\\\\n\\t\\u0001\"}".as_bytes(),
        "{\"\u{1F600}\":1,\"\u{FF61}\":2,\"a\":3}".as_bytes(),
        b"[1e300, -1e-300, 5e-324, 9007199254740993, 18446744073709551615, -9223372036854775808, 123456789012345678901234567890]",
        "{\"e\u{301}\":1,\"\u{e9}\":2}".as_bytes(),
    ];
    for (index, example) in canonical_examples.iter().enumerate() {
        write("canonical_json", &format!("spec-{index}.json"), example);
    }

    let keys: [&[u8]; 6] = [
        b"3f0c1a9e-6f3c-4d2b-9a51-2c1f8e7b6d40",
        b"\"abc\"",
        br#""a\"b\\c""#,
        b"\"a",
        b"!~",
        &[b'k'; 255],
    ];
    for (index, key) in keys.iter().enumerate() {
        write("idempotency_key", &format!("key-{index}"), key);
    }
    println!("seeds written under {}/seeds", env!("CARGO_MANIFEST_DIR"));
}
