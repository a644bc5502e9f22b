//! Ids for resources created under an `Idempotency-Key`, derived so that the id
//! itself is the recovery point.
//!
//! A create that carries a key stores `(scope, key)` beside the resource, so that a
//! retry after a crash (resource committed, response never stored) gets the resource
//! already made instead of a second one. Looking the resource up by `(scope, key)`
//! needs an index of its own, and in SQLite that index cost about a tenth of keyed
//! create throughput: its entries are random, so every batch of inserts dirtied one
//! more page per row (docs/BENCHMARKS.md).
//!
//! Instead, the id of such a resource is a keyed PRF of `(kind, scope, key, n)`. A
//! retry derives the same id, so the table's existing unique id is the recovery
//! point, and the lookup is the probe of the primary index that the insert makes
//! anyway.
//!
//! `n` counts the uses of one key. A key may be used again once its record has
//! expired (after the retention), and that is a new request that must get a new
//! resource: its insert finds use 0's row at its id, created before the retention, so
//! not its own, and moves on to `n = 1`, and so on. A retry walks the same chain and
//! stops at the first id that is free or holds a resource made within the retention
//! under the same `(scope, key)`: its own. (An earlier design derived ids per
//! retention window, and so had to probe the neighbouring windows' ids on every
//! keyed insert; the chain costs extra steps only when a key is reused.)
//!
//! The ids keep the documented format: 16 bytes of HMAC-SHA256 output made into a
//! UUIDv4 (version and variant bits set), from which `agent_id` takes its first 16
//! hex digits as for a random UUID. The HMAC key is derived from the server's
//! signing key, which every instance of a fleet shares, so every instance derives the
//! same ids; without the signing key nobody can predict them.
//!
//! What this does not cover: a key reused more than [`MAX_KEY_USES`] times, or a
//! derived id already taken by an unrelated resource (a 1 in 2^60 collision), gets a
//! random id for that one resource, which then has no recovery point SQLite can find.

use attestix_core::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Which table a derived id is for; part of the PRF input, so an identity and a
/// credential created under the same key get unrelated ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `identities.agent_id`.
    Identity,
    /// `credentials.credential_id`.
    Credential,
    /// `delegations.jti` (the 16 bytes as 22 base64url characters).
    Delegation,
    /// `did_keys` (found by its (scope, key), not by a derived id).
    Did,
    /// Blockchain anchors (`anchor:` ids): the id under which the sent transaction
    /// is recorded, so that a retry after a crash finds it.
    Anchor,
}

impl ResourceKind {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Identity => b"identity",
            Self::Credential => b"credential",
            Self::Delegation => b"delegation",
            Self::Did => b"did",
            Self::Anchor => b"anchor",
        }
    }
}

/// Derives resource ids from `(kind, scope, key, n)` with a key only the server holds.
#[derive(Clone)]
pub struct RecoveryIds {
    /// The HMAC with its key already absorbed: cloning it skips the two compressions
    /// of the key pads that keying anew costs for every id.
    keyed: HmacSha256,
}

impl std::fmt::Debug for RecoveryIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryIds(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl RecoveryIds {
    /// Derives the PRF key from the signing key's seed (domain-separated, so it
    /// reveals nothing about the signing key and is useless for anything else).
    pub fn from_signing_key(signer: &SigningKey) -> Self {
        let mut mac =
            HmacSha256::new_from_slice(&signer.seed()).expect("HMAC accepts a key of any length");
        mac.update(b"attestix/recovery-ids/v1");
        let key = mac.finalize().into_bytes();
        Self {
            keyed: HmacSha256::new_from_slice(&key).expect("HMAC accepts a key of any length"),
        }
    }

    /// The id of the resource of `kind` made by use `n` (from 0) of `(scope, key)`.
    pub fn derive(&self, kind: ResourceKind, scope: &str, key: &str, n: u32) -> Uuid {
        let mut mac = self.keyed.clone();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [kind.label(), scope.as_bytes(), key.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&n.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The most uses of one key that get derived ids; later ones get random ids.
pub const MAX_KEY_USES: u32 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> RecoveryIds {
        RecoveryIds::from_signing_key(&SigningKey::from_seed([7; 32]))
    }

    #[test]
    fn ids_depend_on_kind_scope_key_use_and_server_key() {
        let ids = ids();
        let base = ids.derive(ResourceKind::Identity, "alice", "k", 0);
        assert_ne!(base, ids.derive(ResourceKind::Credential, "alice", "k", 0));
        assert_ne!(base, ids.derive(ResourceKind::Identity, "bob", "k", 0));
        assert_ne!(base, ids.derive(ResourceKind::Identity, "alice", "k2", 0));
        assert_ne!(base, ids.derive(ResourceKind::Identity, "alice", "k", 1));
        // Length-prefixed: moving a character from the scope to the key changes the id.
        assert_ne!(
            ids.derive(ResourceKind::Identity, "ab", "c", 0),
            ids.derive(ResourceKind::Identity, "a", "bc", 0)
        );
        let other_server = RecoveryIds::from_signing_key(&SigningKey::from_seed([8; 32]));
        assert_ne!(
            base,
            other_server.derive(ResourceKind::Identity, "alice", "k", 0)
        );
        // And the same inputs give the same id, which is the point.
        assert_eq!(base, ids.derive(ResourceKind::Identity, "alice", "k", 0));
    }

    #[test]
    fn derived_ids_are_formatted_as_uuid_v4() {
        let id = ids().derive(ResourceKind::Identity, "alice", "k", 0);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn the_uses_of_one_key_get_distinct_ids() {
        let ids = ids();
        let chain: std::collections::HashSet<Uuid> = (0..MAX_KEY_USES)
            .map(|n| ids.derive(ResourceKind::Identity, "alice", "k", n))
            .collect();
        assert_eq!(chain.len(), MAX_KEY_USES as usize);
    }
}
