//! Print a UAIT, a revoked UAIT, a credential and a presentation issued with the key
//! whose seed is the bytes 0..32, as one JSON object on stdout.
//!
//! `tests/fixtures/verify_rust_documents.py` checks them with the Python reference:
//!
//! ```text
//! cargo run -p attestix-core --example issue_documents > /tmp/rust_documents.json
//! python crates/attestix-core/tests/fixtures/verify_rust_documents.py /tmp/rust_documents.json
//! ```

use attestix_core::{
    Claims, DisplayName, ExpiryDays, NewCredential, NewIdentity, NewPresentation, SigningKey, Uait,
    VerifiableCredential, VerifiablePresentation,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).expect("i < 32"));
    let key = SigningKey::from_seed(seed);
    let now = OffsetDateTime::now_utc();

    let mut request = NewIdentity::new(
        DisplayName::parse(" Cafe\u{301} Bot \u{1F600} ")?,
        "api_key",
    );
    request.identity_token = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".to_owned();
    request.capabilities = vec!["summarize".to_owned(), "re\u{301}sume\u{301}".to_owned()];
    request.description = "Writes \"reports\"\n\t\u{1}".to_owned();
    request.issuer_name = "Acme".to_owned();
    request.expiry_days = ExpiryDays::parse(30)?;
    let uait = Uait::issue(request, &key, now, Uuid::new_v4())?;

    let mut revoked = Uait::issue(
        NewIdentity::new(DisplayName::parse("Old Bot")?, "oauth2"),
        &key,
        now,
        Uuid::new_v4(),
    )?;
    revoked.revoke("compromised", now);
    revoked.reputation_score = Some(0.8765);

    let credential = VerifiableCredential::issue(
        NewCredential {
            subject_id: uait.agent_id.clone(),
            credential_type: "AgentIdentityCredential".to_owned(),
            issuer_name: "Acme".to_owned(),
            claims: Claims::parse(json!({
                "role": "reporter", "level": 2, "score": 0.75, "big": 1e21, "tie": 644_988_699_245_121.0 + 0.25,
                "tiny": 1.5e-7, "neg_zero": -0.0, "cafe\u{301}": ["e\u{301}", null, true, {"\u{1F600}": 1, "\u{FF61}": 2}]
            }))?,
            expiry_days: ExpiryDays::DEFAULT,
        },
        &key,
        now,
        Uuid::new_v4(),
    )?;
    let presentation = VerifiablePresentation::create(
        NewPresentation {
            holder: uait.agent_id.clone(),
            credentials: vec![credential.to_value()],
            domain: Some("did:web:verifier.example".to_owned()),
            challenge: Some("nonce-123".to_owned()),
        },
        &key,
        now,
        Uuid::new_v4(),
    )?;

    let documents = json!({
        "did": key.did(),
        "uait": uait,
        "revoked_uait": revoked,
        "credential": credential,
        "presentation": presentation,
    });
    println!("{}", serde_json::to_string_pretty(&documents)?);
    Ok(())
}
