//! Agreement with the Python reference (attestix 0.4.3), on fixtures it produced
//! (`tests/fixtures/generate_python_vectors.py` says how). No Python runs here.

use attestix_core::canonical::canonical_bytes;
use attestix_core::document::{is_nfc_value, nfc_value};
use attestix_core::{
    describe_identity_token, verify_credential, verify_presentation, verify_uait_signature, DidKey,
    ExpectedBinding, SigningKey, Uait, VerifiableCredential,
};
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

const CANONICAL_VECTORS: &str = include_str!("fixtures/canonical_vectors.jsonl");
const FLOAT_VECTORS: &str = include_str!("fixtures/float_vectors.json");
const TOKEN_INFO_VECTORS: &str = include_str!("fixtures/token_info_vectors.json");
const PYTHON_DOCUMENTS: &str = include_str!("fixtures/python_documents.json");

/// Between the fixtures' issue date and the expiry of the shortest-lived document.
const NOW: OffsetDateTime = datetime!(2026-12-01 00:00:00 UTC);

fn documents() -> Value {
    serde_json::from_str(PYTHON_DOCUMENTS).expect("fixture is JSON")
}

fn reference_key() -> SigningKey {
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).expect("i < 32"));
    SigningKey::from_seed(seed)
}

#[test]
fn canonical_bytes_match_python_on_random_documents() {
    let mut checked = 0;
    for (line_number, line) in CANONICAL_VECTORS.lines().enumerate() {
        let vector: Value = serde_json::from_str(line).expect("fixture line is JSON");
        let input_text = vector["input"].as_str().expect("input is a string");
        let expected = vector["canonical"].as_str().expect("canonical is a string");
        let input: Value = serde_json::from_str(input_text).expect("input text is JSON");
        let actual = canonical_bytes(&input).expect("Python canonicalised this input");
        assert_eq!(
            String::from_utf8(actual).expect("UTF-8"),
            expected,
            "line {}: {input_text}",
            line_number + 1
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} vectors");
}

#[test]
fn floats_match_python_repr_and_integral_conversion() {
    let vectors: Vec<(String, String)> =
        serde_json::from_str(FLOAT_VECTORS).expect("fixture is JSON");
    let mismatches: Vec<String> = vectors
        .iter()
        .filter_map(|(input, expected)| {
            let value: Value = serde_json::from_str(input).expect("input is JSON");
            let actual =
                String::from_utf8(canonical_bytes(&value).expect("finite")).expect("UTF-8");
            (&actual != expected).then(|| format!("{input}: got {actual}, Python {expected}"))
        })
        .collect();
    assert!(vectors.len() > 1000);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn token_info_matches_python() {
    let vectors: Vec<(String, Value)> =
        serde_json::from_str(TOKEN_INFO_VECTORS).expect("fixture is JSON");
    for (token, expected) in vectors {
        let actual = Value::Object(describe_identity_token(&token));
        assert_eq!(actual, expected, "token {token:?}");
    }
}

#[test]
fn the_reference_key_has_the_reference_did() {
    assert_eq!(
        reference_key().did(),
        documents()["did"].as_str().expect("did")
    );
}

#[test]
fn python_uaits_verify_and_round_trip() {
    let key = reference_key().verifying_key();
    for name in ["uait", "revoked_uait"] {
        let json = &documents()[name];
        assert!(verify_uait_signature(json, &key), "{name}");
        let uait: Uait = serde_json::from_value(json.clone()).expect("a Python UAIT parses");
        assert_eq!(
            &serde_json::to_value(&uait).expect("serialises"),
            json,
            "{name}"
        );
        assert!(uait.signature_is_valid(&key), "{name}");
        assert_eq!(uait.verify(&key, NOW).not_revoked, name == "uait");
    }
    let mut tampered = documents()["uait"].clone();
    tampered["capabilities"][0] = "admin".into();
    assert!(!verify_uait_signature(&tampered, &key));
}

#[test]
fn python_credentials_verify_and_round_trip() {
    let credential = &documents()["credential"];
    // The reference signs the NFC form but returns a claim key as it was given
    // ("cafe" + U+0301). This crate refuses such a document: the signature vouches
    // only for the NFC text. Normalised first, the same document verifies.
    assert!(!is_nfc_value(credential));
    assert!(!verify_credential(credential, NOW).signature_valid);
    let verification = verify_credential(&nfc_value(credential.clone()), NOW);
    assert!(verification.valid, "{verification:?}");
    let parsed: VerifiableCredential =
        serde_json::from_value(credential.clone()).expect("a Python credential parses");
    assert_eq!(&parsed.to_value(), credential);

    let revoked = verify_credential(&documents()["revoked_credential"], NOW);
    assert!(revoked.signature_valid && !revoked.not_revoked && !revoked.valid);
}

#[test]
fn python_presentations_verify() {
    let server = DidKey::parse(reference_key().did()).expect("did");
    // As for credentials: the reference's embedded credential has a key not in NFC.
    let as_given = &documents()["presentation"];
    let refused = verify_presentation(as_given, &server, ExpectedBinding::default(), NOW);
    assert!(!refused.signature_valid && !refused.valid);
    let presentation = &nfc_value(as_given.clone());
    let verification = verify_presentation(
        presentation,
        &server,
        ExpectedBinding {
            challenge: Some("nonce-123"),
            domain: Some("did:web:verifier.example"),
        },
        NOW,
    );
    assert!(verification.valid, "{verification:?}");
    let wrong = verify_presentation(
        presentation,
        &server,
        ExpectedBinding {
            challenge: Some("nonce-124"),
            domain: None,
        },
        NOW,
    );
    assert!(!wrong.valid);
}

#[test]
fn identity_translations_match_python_key_for_key() {
    use attestix_core::translate::{translate, TargetFormat};
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/translate_vectors.json")).expect("JSON");
    assert_eq!(vectors.len(), 12);
    for vector in vectors {
        let name = vector["format"].as_str().unwrap();
        let format = TargetFormat::parse(name).expect("a known format");
        let actual = translate(&vector["uait"], format);
        // Same values and the same key order, serialised.
        assert_eq!(
            serde_json::to_string(&actual).unwrap(),
            serde_json::to_string(&vector["expected"]).unwrap(),
            "{name}"
        );
    }
    assert_eq!(TargetFormat::parse("xml"), None);
}

#[test]
fn agent_cards_are_generated_and_parsed_as_python_does() {
    use attestix_core::agent_card::{generate, parse, Skill};
    let vectors: Value =
        serde_json::from_str(include_str!("fixtures/agent_card_vectors.json")).expect("JSON");
    for vector in vectors["generate"].as_array().unwrap() {
        let input = &vector["input"];
        let skills: Vec<Skill> = input["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|skill| Skill {
                id: skill["id"].as_str().unwrap().into(),
                name: skill["name"].as_str().unwrap().into(),
                description: skill["description"].as_str().unwrap().into(),
            })
            .collect();
        let text = |name: &str| input[name].as_str().unwrap();
        let mut actual = generate(
            text("name"),
            text("url"),
            text("description"),
            &skills,
            text("version"),
        );
        let mut expected = vector["expected"].clone();
        // The one deliberate difference: no `//` where the URL ends in `/`.
        let instructions = actual["instructions"].as_str().unwrap().to_owned();
        assert!(
            !instructions.replace("https://", "").contains("//"),
            "{instructions}"
        );
        assert_eq!(
            instructions,
            expected["instructions"]
                .as_str()
                .unwrap()
                .replace("//.well-known", "/.well-known")
        );
        actual.as_object_mut().unwrap().remove("instructions");
        expected.as_object_mut().unwrap().remove("instructions");
        assert_eq!(
            serde_json::to_string(&actual).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }
    for vector in vectors["parse"].as_array().unwrap() {
        let actual = parse(vector["card"].as_object().unwrap()).expect("parses");
        assert_eq!(
            serde_json::to_string(&actual).unwrap(),
            serde_json::to_string(&vector["expected"]).unwrap(),
            "{}",
            vector["card"]
        );
    }
    // What the reference would choke on (or misread) is an error naming the field.
    for (card, field) in [
        (serde_json::json!({"skills": "abc"}), "card.skills"),
        (serde_json::json!({"skills": [1]}), "card.skills[0]"),
        (serde_json::json!({"capabilities": []}), "card.capabilities"),
        (serde_json::json!({"provider": 3}), "card.provider"),
        (
            serde_json::json!({"authentication": "x"}),
            "card.authentication",
        ),
    ] {
        assert_eq!(parse(card.as_object().unwrap()).unwrap_err().field, field);
    }
}
