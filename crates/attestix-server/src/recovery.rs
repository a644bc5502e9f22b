//! Ids for resources created under an `Idempotency-Key`, derived so that the id
//! itself is the recovery point.
//!
//! A create that carries a key stores `(scope, key)` beside the resource, so that a
//! retry after a crash (resource committed, response never stored) gets the resource
//! already made instead of a second one. Looking the resource up by `(scope, key)`
//! needs an index of its own, and in SQLite that index cost about a tenth of keyed
//! create throughput: its entries are random, so every batch of inserts dirtied one
//! more page per row (docs/BENCHMARKS.md, fourth session).
//!
//! Instead, the id of such a resource is a keyed PRF of `(kind, scope, key, window)`,
//! where `window` is the creation instant divided by the idempotency retention. A
//! retry derives the same id, so the table's existing unique id is the recovery
//! point, and the lookup is a probe of the primary index that the insert makes anyway.
//!
//! Why windows: a key may be used again once its record has expired (after the
//! retention), and that is a new request that must get a new resource. Uses of one
//! key start at least one retention apart, so no two fall in the same window; a retry
//! happens within one retention of the original, so the original lies in the retry's
//! window or the one before. The insert therefore also checks the two neighbouring
//! windows' ids (the one after covers a clock a little ahead on another instance).
//!
//! The ids keep the documented format: 16 bytes of HMAC-SHA256 output made into a
//! UUIDv4 (version and variant bits set), from which `agent_id` takes its first 16
//! hex digits as for a random UUID. The HMAC key is derived from the server's
//! signing key, which every instance of a fleet shares, so every instance derives the
//! same ids; without the signing key nobody can predict them.
//!
//! What this does not cover: if `--idempotency-ttl` changes between a crash and the
//! retry, the windows move and the retry creates a new resource. A derived id already
//! taken by an unrelated resource (a 1 in 2^60 collision) falls back to a random id
//! for that one resource, which then has no recovery point SQLite can find.

use std::time::Duration;

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
}

impl ResourceKind {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Identity => b"identity",
            Self::Credential => b"credential",
        }
    }
}

/// The ids of one keyed create: the one to use, and those an earlier execution of the
/// same request may have used (the windows before and after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivedIds {
    /// The new resource's id.
    pub own: Uuid,
    /// The ids of the same `(kind, scope, key)` in the neighbouring windows.
    pub neighbours: [Uuid; 2],
}

/// Derives resource ids from `(kind, scope, key, window)` with a key only the server
/// holds.
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

    /// The ids of a resource of `kind` created at `created_at_ms` (Unix milliseconds)
    /// under `(scope, key)`, with records kept for `retention`.
    pub fn derive(
        &self,
        kind: ResourceKind,
        scope: &str,
        key: &str,
        created_at_ms: i64,
        retention: Duration,
    ) -> DerivedIds {
        let window = window_of(created_at_ms, retention);
        DerivedIds {
            own: self.id(kind, scope, key, window),
            neighbours: [
                self.id(kind, scope, key, window - 1),
                self.id(kind, scope, key, window + 1),
            ],
        }
    }

    fn id(&self, kind: ResourceKind, scope: &str, key: &str, window: i64) -> Uuid {
        let mut mac = self.keyed.clone();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [kind.label(), scope.as_bytes(), key.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&window.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The retention window an instant falls in.
fn window_of(at_ms: i64, retention: Duration) -> i64 {
    let length = i64::try_from(retention.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    at_ms.div_euclid(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const DAY_MS: i64 = 86_400_000;

    fn ids() -> RecoveryIds {
        RecoveryIds::from_signing_key(&SigningKey::from_seed([7; 32]))
    }

    #[test]
    fn a_retry_within_the_retention_finds_the_original_among_its_ids() {
        let ids = ids();
        // Whatever the original's place in its window, a retry up to one retention
        // later names the original's id as its own or as a neighbour.
        for original_at in [0, 1, DAY_MS / 2, DAY_MS - 1] {
            let original = ids.derive(ResourceKind::Identity, "alice", "k", original_at, DAY);
            for delay in [0, 1, DAY_MS / 3, DAY_MS - 1] {
                let retry = ids.derive(
                    ResourceKind::Identity,
                    "alice",
                    "k",
                    original_at + delay,
                    DAY,
                );
                assert!(
                    retry.own == original.own || retry.neighbours.contains(&original.own),
                    "original at {original_at}, retry {delay} ms later"
                );
            }
        }
    }

    #[test]
    fn uses_a_retention_apart_get_different_ids() {
        let ids = ids();
        let first = ids.derive(ResourceKind::Identity, "alice", "k", 1_000, DAY);
        let reuse = ids.derive(ResourceKind::Identity, "alice", "k", 1_000 + DAY_MS, DAY);
        assert_ne!(first.own, reuse.own);
    }

    #[test]
    fn ids_depend_on_kind_scope_key_and_server_key() {
        let ids = ids();
        let base = ids.derive(ResourceKind::Identity, "alice", "k", 5, DAY).own;
        assert_ne!(
            base,
            ids.derive(ResourceKind::Credential, "alice", "k", 5, DAY)
                .own
        );
        assert_ne!(
            base,
            ids.derive(ResourceKind::Identity, "bob", "k", 5, DAY).own
        );
        assert_ne!(
            base,
            ids.derive(ResourceKind::Identity, "alice", "k2", 5, DAY)
                .own
        );
        // Length-prefixed: moving a character from the scope to the key changes the id.
        assert_ne!(
            ids.derive(ResourceKind::Identity, "ab", "c", 5, DAY).own,
            ids.derive(ResourceKind::Identity, "a", "bc", 5, DAY).own
        );
        let other_server = RecoveryIds::from_signing_key(&SigningKey::from_seed([8; 32]));
        assert_ne!(
            base,
            other_server
                .derive(ResourceKind::Identity, "alice", "k", 5, DAY)
                .own
        );
        // And the same inputs give the same id, which is the point.
        assert_eq!(
            base,
            ids.derive(ResourceKind::Identity, "alice", "k", 5, DAY).own
        );
    }

    #[test]
    fn derived_ids_are_formatted_as_uuid_v4() {
        let id = ids()
            .derive(ResourceKind::Identity, "alice", "k", 5, DAY)
            .own;
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn windows_before_the_epoch_still_have_neighbours() {
        assert_eq!(window_of(-1, DAY), -1);
        assert_eq!(window_of(0, DAY), 0);
        assert_eq!(window_of(DAY_MS, DAY), 1);
        assert_eq!(
            window_of(5, Duration::ZERO),
            5,
            "a zero retention is one ms"
        );
    }
}
