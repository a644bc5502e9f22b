//! The documents of Attestix, attestation infrastructure for AI agents: canonical JSON,
//! Ed25519 keys and `did:key`, Unified Agent Identity Tokens (UAITs), and W3C
//! Verifiable Credentials and Presentations, byte-compatible with the Python reference
//! (`attestix` 0.4), so that a document either one signs verifies in the other.
//!
//! This crate does no I/O: callers pass in the time (`now`) and the randomness (UUIDs),
//! and read and write key files themselves.
//!
//! ```
//! use attestix_core::{DisplayName, NewIdentity, SigningKey, Uait};
//! use time::OffsetDateTime;
//! use uuid::Uuid;
//!
//! let server_key = SigningKey::generate();
//! let now = OffsetDateTime::now_utc();
//!
//! let mut request = NewIdentity::new(DisplayName::parse("Report Bot")?, "api_key");
//! request.capabilities = vec!["summarize".to_owned()];
//! let uait = Uait::issue(request, &server_key, now, Uuid::new_v4())?;
//!
//! assert!(uait.agent_id.starts_with("attestix:"));
//! let check = uait.verify(&server_key.verifying_key(), now);
//! assert!(check.valid && check.signature_valid);
//!
//! // The JSON a client receives verifies on its own too.
//! let json = serde_json::to_value(&uait)?;
//! assert!(attestix_core::verify_uait_signature(&json, &server_key.verifying_key()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Contents
//! - [`agent_card`]: A2A agent cards, generated and parsed.
//! - [`canonical`]: the bytes that are signed.
//! - [`keys`]: the Ed25519 signing key, `did:key`, the `.signing_key.json` format.
//! - [`uait`]: agent identities.
//! - [`credential`]: Verifiable Credentials.
//! - [`presentation`]: Verifiable Presentations.
//! - [`did`]: DID documents for `did:key` and `did:web`, and `did:web` names.
//! - [`delegation`]: UCAN-style delegation tokens (EdDSA JWTs) and their proof chains.
//! - [`document`]: documents read strictly for verification (no repeated keys, NFC).
//! - [`identity_token`]: what a UAIT keeps of an identity token (masked form, metadata).
//! - [`translate`]: an identity as an A2A agent card, DID document, OAuth claims or summary.
//! - [`timestamp`]: times written as Python's `isoformat()` writes them.
//! - [`validation`]: checked request inputs (display name, expiry, claims).

pub mod agent_card;
pub mod anchor;
pub mod canonical;
pub mod credential;
pub mod delegation;
pub mod did;
pub mod document;
pub mod error;
pub mod identity_token;
pub mod keys;
pub mod presentation;
pub mod python_json;
pub mod timestamp;
pub mod translate;
pub mod uait;
pub mod validation;

pub use canonical::{canonical_bytes, canonical_bytes_without, CanonicalError};
pub use credential::{
    credential_is_issued_by, credential_issuer_did, credential_subject_id, verify_credential,
    verify_credential_signature, CredentialIssuer, CredentialStatus, CredentialSubject,
    CredentialVerification, IssuerRecord, NewCredential, Proof, VerifiableCredential,
    CREDENTIAL_PROOF_PURPOSE, CREDENTIAL_TYPE, PRESENTATION_TYPE, VC_CONTEXT,
};
pub use document::{SignedDocument, UniqueKeys};
pub use ed25519_dalek::VerifyingKey;
pub use error::IssueError;
pub use identity_token::{describe_identity_token, mask_identity_token, TokenKind};
pub use keys::{
    verify_base64url_signature, DidKey, DidKeyError, SigningKey, SigningKeyFile,
    SigningKeyFileError, SIGNING_KEY_FILE_NAME,
};
pub use presentation::{
    verify_presentation, ExpectedBinding, NewPresentation, PresentationVerification,
    VerifiablePresentation, PRESENTATION_PROOF_PURPOSE,
};
pub use timestamp::{format_isoformat, Timestamp};
pub use uait::{
    agent_id_from_uuid, verify_uait_signature, NewIdentity, Uait, UaitIssuer, UaitVerification,
    UAIT_VERSION,
};
pub use validation::{Claims, DisplayName, ExpiryDays, ValidationError};
