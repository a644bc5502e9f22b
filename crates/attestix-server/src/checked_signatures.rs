//! Delegation-token signatures already checked. An agent presents the same
//! delegation with every call it makes under it, and a three-deep chain costs three
//! Ed25519 verifications, so the server remembers the signatures that verified.

use attestix_core::delegation::{Signature, SignatureCheck};
use attestix_core::VerifyingKey;
use sha2::{Digest, Sha256};

/// How many verified signatures are remembered (32-byte digests; under 2 MiB).
pub const REMEMBERED_SIGNATURES: usize = 16_384;

/// The server's key behind a bounded cache of the signatures it has verified.
/// Only successes are remembered: a SHA-256 digest of the signing input and the
/// signature names exactly one (input, signature) pair, so a hit is the same
/// check's answer. Times and revocation are checked on every verification.
pub struct CheckedSignatures {
    key: VerifyingKey,
    verified: quick_cache::sync::Cache<[u8; 32], ()>,
}

impl CheckedSignatures {
    /// Checks against `key`, remembering up to `capacity` verified signatures.
    pub fn new(key: VerifyingKey, capacity: usize) -> Self {
        Self {
            key,
            verified: quick_cache::sync::Cache::new(capacity),
        }
    }
}

impl std::fmt::Debug for CheckedSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedSignatures")
            .field("remembered", &self.verified.len())
            .finish()
    }
}

impl SignatureCheck for CheckedSignatures {
    fn verifies(&self, signing_input: &[u8], signature: &Signature) -> bool {
        let digest: [u8; 32] = Sha256::new()
            .chain_update(signing_input)
            .chain_update(signature.to_bytes())
            .finalize()
            .into();
        if self.verified.get(&digest).is_some() {
            return true;
        }
        let verified = self.key.verifies(signing_input, signature);
        if verified {
            self.verified.insert(digest, ());
        }
        verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestix_core::SigningKey;

    #[test]
    fn a_remembered_signature_still_names_its_own_input() {
        let key = SigningKey::generate();
        let checked = CheckedSignatures::new(key.verifying_key(), 16);
        let signature = key.sign(b"header.payload");
        assert!(checked.verifies(b"header.payload", &signature));
        // Remembered now; another input with the same signature is still refused.
        assert!(checked.verifies(b"header.payload", &signature));
        assert!(!checked.verifies(b"header.payload2", &signature));
        let other = SigningKey::generate().sign(b"header.payload");
        assert!(!checked.verifies(b"header.payload", &other));
        assert_eq!(checked.verified.len(), 1, "only successes are remembered");
    }
}
