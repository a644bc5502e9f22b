//! Delegation tokens against the Python reference itself (attestix 0.4.3), run where
//! it is installed: the interpreter named by `ATTESTIX_REFERENCE_PYTHON`, else
//! `python3`, must import `attestix` 0.4.3 (for example `python3 -m venv ref-venv &&
//! ref-venv/bin/pip install "attestix[api]==0.4.3"`, then
//! `ATTESTIX_REFERENCE_PYTHON=ref-venv/bin/python`). Without it the test prints
//! `SKIPPED: …` and passes.
//!
//! Both sides share one `.signing_key.json`: tokens minted here must verify there with
//! the same answers, and a token the reference mints on top of ours must verify here
//! and be, byte for byte, the token this crate mints from the same claims.

use std::io::Write as _;
use std::process::Command;

use attestix_core::delegation::{decode, verify_chain, ChainVerdict, DelegationClaims};
use attestix_core::SigningKey;
use serde_json::{json, Value};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/delegation_interop.py"
);

fn reference_python() -> Option<String> {
    let python = std::env::var("ATTESTIX_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args([
            "-c",
            "import attestix, sys; sys.exit(0 if attestix.__version__ == '0.4.3' else 1)",
        ])
        .output()
        .ok()?;
    probe.status.success().then_some(python)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(
    key: &SigningKey,
    jti: &str,
    audience: &str,
    delegator: &str,
    capabilities: &[&str],
    proofs: Vec<String>,
    expires_in: i64,
) -> DelegationClaims {
    let now = now();
    DelegationClaims {
        issuer_did: key.did().to_owned(),
        audience: audience.to_owned(),
        issued_at: now - 5,
        expires_at: now + expires_in,
        jti: jti.to_owned(),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        delegator: delegator.to_owned(),
        proofs,
    }
}

#[test]
fn tokens_verify_across_both_implementations() {
    let Some(python) = reference_python() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the reference attestix 0.4.3 is not importable (set ATTESTIX_REFERENCE_PYTHON)"
        );
        return;
    };
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).expect("i < 32"));
    let key = SigningKey::from_seed(seed);
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        data_dir.path().join(".signing_key.json"),
        key.to_key_file().to_json_pretty(),
    )
    .expect("the key file is written");

    let alice = "did:key:zAlicé";
    let root = claims(
        &key,
        "rust-root-jti-000000001",
        alice,
        "attestix:0011223344556677",
        &["read", "write", "naïve ☃ 😀"],
        vec![],
        3600,
    )
    .mint(&key);
    let child = claims(
        &key,
        "rust-child-jti-00000002",
        "did:key:zBob",
        alice,
        &["read"],
        vec![root.clone()],
        3600,
    )
    .mint(&key);
    let expired = claims(&key, "rust-expired", alice, "a", &["read"], vec![], -10).mint(&key);
    let forged = claims(&key, "rust-forged", alice, "a", &["read"], vec![], 60)
        .mint(&SigningKey::from_seed([9; 32]));
    let tokens = json!({"root": root, "child": child, "expired": expired, "forged": forged});

    let input = data_dir.path().join("in.json");
    let output = data_dir.path().join("out.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&json!({"tokens": tokens, "parent": "child"})).unwrap(),
    )
    .unwrap();
    let run = Command::new(&python)
        .arg(SCRIPT)
        .arg(&input)
        .arg(&output)
        .env("ATTESTIX_DATA_DIR", data_dir.path())
        .output()
        .expect("the reference runs");
    assert!(
        run.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(
        out["server_did"],
        key.did(),
        "the reference read our key file"
    );

    // Ours, verified there: the same answers, field for field.
    let verifying = key.verifying_key();
    for name in ["root", "child"] {
        let token = tokens[name].as_str().unwrap();
        let ChainVerdict::Valid(ours) = verify_chain(token, &verifying, now(), &|_| false) else {
            panic!("{name} does not verify here");
        };
        assert_eq!(
            out["verified"][name],
            serde_json::to_value(&*ours).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        out["verified"]["expired"],
        json!({"valid": false, "reason": "Token has expired"})
    );
    assert_eq!(
        out["verified"]["forged"],
        json!({"valid": false, "reason": "Invalid token"})
    );

    // Theirs, on top of ours, verified here and minted identically from its claims.
    let python_child = &out["python_child"];
    let token = python_child["token"]
        .as_str()
        .unwrap_or_else(|| panic!("the reference minted no token: {python_child}"));
    let decoded = decode(token, &verifying, now()).expect("the reference's token verifies");
    let ChainVerdict::Valid(verified) = verify_chain(token, &verifying, now(), &|_| false) else {
        panic!("the reference's chain does not verify here");
    };
    assert_eq!(verified.capabilities, json!(["read"]));
    assert_eq!(verified.proof_chain, json!([child]));
    let strings = |name: &str| -> Vec<String> {
        decoded.claims[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let text = |name: &str| decoded.claims[name].as_str().unwrap().to_owned();
    let again = DelegationClaims {
        issuer_did: text("iss"),
        audience: text("aud"),
        issued_at: decoded.issued_at,
        expires_at: decoded.expires_at,
        jti: text("jti"),
        capabilities: strings("att"),
        delegator: text("delegator"),
        proofs: strings("prf"),
    };
    assert_eq!(again.mint(&key), token, "byte-identical token");
    let record_keys: Vec<&str> = python_child["delegation"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        record_keys,
        [
            "jti",
            "issuer",
            "audience",
            "capabilities",
            "created_at",
            "expires_at",
            "revoked"
        ]
    );
}
