//! Ed25519 keys, `did:key` identifiers, and the `.signing_key.json` file format.
//!
//! A `did:key` is `did:key:z` + base58btc(`0xED 0x01` ‖ the 32-byte public key), the
//! multicodec prefix `0xED 0x01` marking an Ed25519 public key.
//!
//! ```
//! use attestix_core::keys::{DidKey, SigningKey};
//!
//! let key = SigningKey::from_seed([7; 32]);
//! let did = DidKey::parse(key.did()).unwrap();
//! assert_eq!(did.verifying_key(), key.verifying_key());
//! ```

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The multicodec prefix of an Ed25519 public key.
pub const ED25519_MULTICODEC_PREFIX: [u8; 2] = [0xED, 0x01];

/// The `note` the Python reference writes into a new signing key file.
pub const SIGNING_KEY_FILE_NOTE: &str = "Attestix server signing key. Do NOT share.";

/// The file name of the server's signing key inside a data directory.
pub const SIGNING_KEY_FILE_NAME: &str = ".signing_key.json";

/// Why a string is not a usable Ed25519 `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidKeyError {
    /// The string does not start with `did:key:z` (a base58btc multibase `did:key`).
    #[error("not a base58btc did:key (expected the prefix \"did:key:z\")")]
    NotDidKey,
    /// The part after `did:key:z` is not base58btc.
    #[error("the did:key's key part is not valid base58btc")]
    InvalidBase58,
    /// The multicodec prefix is not Ed25519's `0xED 0x01`.
    #[error("not an Ed25519 did:key (wrong multicodec prefix)")]
    WrongMulticodec,
    /// The key after the prefix is not 32 bytes long.
    #[error("an Ed25519 public key is 32 bytes, this did:key holds {0}")]
    WrongKeyLength(usize),
    /// The 32 bytes are not a point on the curve.
    #[error("the did:key's bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
}

/// A parsed Ed25519 `did:key`: the identifier and the public key it encodes.
#[derive(Clone, PartialEq, Eq)]
pub struct DidKey {
    did: String,
    key: VerifyingKey,
}

impl DidKey {
    /// Parse `did:key:z…`, checking the multicodec prefix and the key.
    pub fn parse(did: &str) -> Result<Self, DidKeyError> {
        let encoded = did
            .strip_prefix("did:key:z")
            .ok_or(DidKeyError::NotDidKey)?;
        let decoded = bs58::decode(encoded)
            .into_vec()
            .map_err(|_| DidKeyError::InvalidBase58)?;
        let raw = decoded
            .strip_prefix(&ED25519_MULTICODEC_PREFIX)
            .ok_or(DidKeyError::WrongMulticodec)?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| DidKeyError::WrongKeyLength(raw.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| DidKeyError::InvalidPublicKey)?;
        Ok(Self {
            did: did.to_owned(),
            key,
        })
    }

    /// The `did:key` of a public key.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_MULTICODEC_PREFIX);
        bytes.extend_from_slice(key.as_bytes());
        let did = format!("did:key:z{}", bs58::encode(bytes).into_string());
        Self { did, key }
    }

    /// The identifier, `did:key:z…`.
    pub fn as_str(&self) -> &str {
        &self.did
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key
    }

    /// The verification method id a proof names: the DID, `#`, and the multibase key
    /// (`did:key:z6Mk…#z6Mk…`), as the Python reference writes it.
    pub fn verification_method(&self) -> String {
        verification_method(&self.did)
    }
}

impl fmt::Display for DidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.did)
    }
}

impl fmt::Debug for DidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DidKey({})", self.did)
    }
}

/// `did#fragment` where the fragment is the part after `did:key:` (the key's multibase).
fn verification_method(did: &str) -> String {
    let multibase = did.strip_prefix("did:key:").unwrap_or(did);
    format!("{did}#{multibase}")
}

/// The Ed25519 key that signs documents, with its `did:key`.
///
/// `Debug` shows the DID only; the seed never appears in formatted output.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    did: DidKey,
}

impl SigningKey {
    /// A new random key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key with this 32-byte seed (the "private key" of RFC 8032).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> Self {
        let did = DidKey::from_verifying_key(key.verifying_key());
        Self { key, did }
    }

    /// The 32-byte seed. Handle with care: it is the whole secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key's `did:key` identifier.
    pub fn did(&self) -> &str {
        self.did.as_str()
    }

    /// The key's `did:key`, parsed.
    pub fn did_key(&self) -> &DidKey {
        &self.did
    }

    /// The verification method a proof by this key names (`did:key:z…#z…`).
    pub fn verification_method(&self) -> String {
        self.did.verification_method()
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    /// The signature of `message` as the documents carry it: base64url with padding.
    pub fn sign_base64url(&self, message: &[u8]) -> String {
        URL_SAFE.encode(self.sign(message).to_bytes())
    }

    /// The contents of a `.signing_key.json` file holding this key.
    pub fn to_key_file(&self) -> SigningKeyFile {
        SigningKeyFile {
            did_key: self.did().to_owned(),
            algorithm: "Ed25519".to_owned(),
            note: SIGNING_KEY_FILE_NOTE.to_owned(),
            private_key_b64: STANDARD.encode(self.seed()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("did", &self.did.as_str())
            .finish_non_exhaustive()
    }
}

/// Verify a document signature as the documents carry it (base64url; padding optional)
/// over `message`. Any malformed signature is simply invalid.
///
/// Like the reference's `base64.urlsafe_b64decode`, this also accepts the standard
/// alphabet's `+` and `/`.
pub fn verify_base64url_signature(key: &VerifyingKey, message: &[u8], signature: &str) -> bool {
    let trimmed = signature.trim_end_matches('=');
    let decoded = if trimmed.contains(['+', '/']) {
        URL_SAFE_NO_PAD.decode(trimmed.replace('+', "-").replace('/', "_"))
    } else {
        URL_SAFE_NO_PAD.decode(trimmed)
    };
    let Ok(bytes) = decoded else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    // RFC 8032 verification with a canonical `S`, as OpenSSL (behind the Python
    // reference's `cryptography`) does; dalek's `verify_strict` would also reject
    // weak keys the reference accepts.
    key.verify(message, &signature).is_ok()
}

/// Why a `.signing_key.json` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyFileError {
    /// The text is not the expected JSON object.
    #[error("the signing key file is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    /// The key is encrypted with `ATTESTIX_KEY_PASSWORD` (Fernet); not supported here.
    #[error("the signing key file is encrypted (private_key_encrypted); encrypted key files are not supported")]
    Encrypted,
    /// Neither `private_key_b64` nor `private_key_encrypted` is present.
    #[error("the signing key file has neither private_key_b64 nor private_key_encrypted")]
    MissingPrivateKey,
    /// `algorithm` is present and is not `Ed25519`.
    #[error("the signing key file's algorithm is {0:?}, expected \"Ed25519\"")]
    UnsupportedAlgorithm(String),
    /// `private_key_b64` is not standard base64.
    #[error("the signing key file's private_key_b64 is not valid base64")]
    InvalidBase64,
    /// The decoded seed is not 32 bytes.
    #[error("the signing key file's private key is {0} bytes, an Ed25519 seed is 32")]
    WrongSeedLength(usize),
    /// `did_key` names a different key than the private key's.
    #[error(
        "the signing key file's did_key {recorded:?} does not match its private key ({derived})"
    )]
    DidMismatch {
        /// The `did_key` in the file.
        recorded: String,
        /// The `did:key` of the file's private key.
        derived: String,
    },
}

/// The JSON in a `.signing_key.json` file (the unencrypted form the Python reference
/// writes): `{"did_key", "algorithm", "note", "private_key_b64"}`.
///
/// This type only formats and parses; reading and writing the file (mode 0600) is the
/// caller's job. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyFile {
    /// The key's `did:key`.
    pub did_key: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// A human note, `"Attestix server signing key. Do NOT share."`.
    pub note: String,
    /// Standard base64 (with padding) of the 32-byte seed.
    pub private_key_b64: String,
}

impl SigningKeyFile {
    /// The file's text as the Python reference writes it (`json.dump(..., indent=2)`,
    /// no trailing newline).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a struct of strings always serialises")
    }

    /// Parse a key file's text and load its key. The recorded `did_key` must be the
    /// key's own DID (the Python reference trusts it blindly; a mismatch here means a
    /// damaged or tampered file, and is an error rather than a silent new identity).
    pub fn parse_key(text: &str) -> Result<SigningKey, SigningKeyFileError> {
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| SigningKeyFileError::Malformed(error.to_string()))?;
        let object = raw
            .as_object()
            .ok_or_else(|| SigningKeyFileError::Malformed("not a JSON object".to_owned()))?;
        if let Some(algorithm) = object.get("algorithm") {
            match algorithm.as_str() {
                Some("Ed25519") => {}
                Some(other) => {
                    return Err(SigningKeyFileError::UnsupportedAlgorithm(other.to_owned()))
                }
                None => {
                    return Err(SigningKeyFileError::Malformed(
                        "algorithm is not a string".to_owned(),
                    ))
                }
            }
        }
        let encoded = match object.get("private_key_b64") {
            Some(serde_json::Value::String(encoded)) => encoded,
            Some(_) => {
                return Err(SigningKeyFileError::Malformed(
                    "private_key_b64 is not a string".to_owned(),
                ))
            }
            None if object.contains_key("private_key_encrypted") => {
                return Err(SigningKeyFileError::Encrypted)
            }
            None => return Err(SigningKeyFileError::MissingPrivateKey),
        };
        let recorded_did = object
            .get("did_key")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                SigningKeyFileError::Malformed("did_key is missing or not a string".to_owned())
            })?;
        let seed_bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SigningKeyFileError::InvalidBase64)?;
        let seed: [u8; 32] = seed_bytes
            .as_slice()
            .try_into()
            .map_err(|_| SigningKeyFileError::WrongSeedLength(seed_bytes.len()))?;
        let key = SigningKey::from_seed(seed);
        if key.did() != recorded_did {
            return Err(SigningKeyFileError::DidMismatch {
                recorded: recorded_did.to_owned(),
                derived: key.did().to_owned(),
            });
        }
        Ok(key)
    }
}

impl fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyFile")
            .field("did_key", &self.did_key)
            .field("algorithm", &self.algorithm)
            .field("note", &self.note)
            .field("private_key_b64", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 test 1: seed 9d61…7f60, public key d75a…511a.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    /// The did:key of RFC 8032 test 1's public key, as the Python reference computes it
    /// (`public_key_to_did_key`).
    const RFC8032_DID: &str = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw";

    fn rfc8032_key() -> SigningKey {
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&RFC8032_SEED[2 * i..2 * i + 2], 16).expect("hex test vector");
        }
        SigningKey::from_seed(seed)
    }

    #[test]
    fn did_key_matches_the_python_reference() {
        assert_eq!(rfc8032_key().did(), RFC8032_DID);
    }

    #[test]
    fn did_key_round_trips_to_the_verifying_key() {
        let key = SigningKey::generate();
        assert!(key.did().starts_with("did:key:z6Mk"));
        let parsed = DidKey::parse(key.did()).expect("own DID parses");
        assert_eq!(parsed.verifying_key(), key.verifying_key());
        assert_eq!(parsed.as_str(), key.did());
    }

    #[test]
    fn verification_method_repeats_the_multibase_key_as_fragment() {
        let key = rfc8032_key();
        assert_eq!(
            key.verification_method(),
            format!("{RFC8032_DID}#{}", &RFC8032_DID["did:key:".len()..])
        );
    }

    #[test]
    fn malformed_did_keys_are_rejected_with_a_reason() {
        assert_eq!(
            DidKey::parse("did:web:example.com"),
            Err(DidKeyError::NotDidKey)
        );
        assert_eq!(
            DidKey::parse("did:key:z0OIl"),
            Err(DidKeyError::InvalidBase58)
        );
        // secp256k1's multicodec prefix is 0xe7 0x01.
        let mut secp = vec![0xe7, 0x01];
        secp.extend_from_slice(&[2u8; 33]);
        let secp_did = format!("did:key:z{}", bs58::encode(secp).into_string());
        assert_eq!(DidKey::parse(&secp_did), Err(DidKeyError::WrongMulticodec));
        let mut short = ED25519_MULTICODEC_PREFIX.to_vec();
        short.extend_from_slice(&[1u8; 31]);
        let short_did = format!("did:key:z{}", bs58::encode(short).into_string());
        assert_eq!(
            DidKey::parse(&short_did),
            Err(DidKeyError::WrongKeyLength(31))
        );
    }

    #[test]
    fn signatures_are_base64url_with_padding_and_verify() {
        let key = rfc8032_key();
        let signature = key.sign_base64url(b"");
        assert_eq!(signature.len(), 88);
        assert!(signature.ends_with("=="));
        // RFC 8032 test 1's signature of the empty message.
        assert_eq!(
            signature,
            "5VZDAMNgrHKQhuLMgG6CioSHfx645dl02HPgZSJJAVVfuIIVkKM7rMYeOXAc-bRr0lv18FlbviRlUUFDjnoQCw=="
        );
        assert!(verify_base64url_signature(
            &key.verifying_key(),
            b"",
            &signature
        ));
        assert!(!verify_base64url_signature(
            &key.verifying_key(),
            b"x",
            &signature
        ));
        assert!(!verify_base64url_signature(
            &key.verifying_key(),
            b"",
            "not base64!"
        ));
        assert!(!verify_base64url_signature(
            &key.verifying_key(),
            b"",
            "AAAA"
        ));
        let unpadded = signature.trim_end_matches('=');
        assert!(verify_base64url_signature(
            &key.verifying_key(),
            b"",
            unpadded
        ));
        let standard = STANDARD.encode(key.sign(b"").to_bytes());
        assert!(verify_base64url_signature(
            &key.verifying_key(),
            b"",
            &standard
        ));
    }

    #[test]
    fn debug_output_never_contains_the_seed() {
        let key = rfc8032_key();
        let file = key.to_key_file();
        for shown in [format!("{key:?}"), format!("{file:?}")] {
            assert!(!shown.contains(&file.private_key_b64), "{shown}");
            assert!(!shown.to_lowercase().contains(RFC8032_SEED), "{shown}");
            assert!(shown.contains(RFC8032_DID), "{shown}");
        }
    }

    #[test]
    fn key_file_is_written_as_python_writes_it() {
        let text = rfc8032_key().to_key_file().to_json_pretty();
        assert_eq!(
            text,
            format!(
                "{{\n  \"did_key\": \"{RFC8032_DID}\",\n  \"algorithm\": \"Ed25519\",\n  \"note\": \"Attestix server signing key. Do NOT share.\",\n  \"private_key_b64\": \"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"\n}}"
            )
        );
        let loaded = SigningKeyFile::parse_key(&text).expect("own key file loads");
        assert_eq!(loaded.seed(), rfc8032_key().seed());
    }

    #[test]
    fn unusable_key_files_are_errors_never_a_new_key() {
        let good = rfc8032_key().to_key_file();
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = serde_json::to_value(&good).expect("serialises");
            edit(&mut value);
            SigningKeyFile::parse_key(&value.to_string())
        };
        assert!(matches!(
            SigningKeyFile::parse_key("{not json"),
            Err(SigningKeyFileError::Malformed(_))
        ));
        assert_eq!(
            with(&|v| {
                let object = v.as_object_mut().expect("object");
                object.remove("private_key_b64");
                object.insert("private_key_encrypted".into(), "gAAAA".into());
            })
            .unwrap_err(),
            SigningKeyFileError::Encrypted
        );
        assert_eq!(
            with(&|v| {
                v.as_object_mut().expect("object").remove("private_key_b64");
            })
            .unwrap_err(),
            SigningKeyFileError::MissingPrivateKey
        );
        assert_eq!(
            with(&|v| v["private_key_b64"] = "***".into()).unwrap_err(),
            SigningKeyFileError::InvalidBase64
        );
        assert_eq!(
            with(&|v| v["private_key_b64"] = "AAAA".into()).unwrap_err(),
            SigningKeyFileError::WrongSeedLength(3)
        );
        assert_eq!(
            with(&|v| v["algorithm"] = "RSA".into()).unwrap_err(),
            SigningKeyFileError::UnsupportedAlgorithm("RSA".into())
        );
        let other_did = SigningKey::from_seed([1; 32]).did().to_owned();
        assert!(matches!(
            with(&|v| v["did_key"] = other_did.clone().into()).unwrap_err(),
            SigningKeyFileError::DidMismatch { .. }
        ));
    }
}
