//! A memo that lets a byte-identical retry skip canonicalising its JSON body.
//!
//! The fingerprint parses a JSON body and writes it in canonical form before hashing,
//! the largest single cost of a replay (6.7 % of a replay's CPU in the server's
//! profile). Most retries resend the same bytes. So once a replay of a record has been
//! matched the slow way, the layer remembers, for that record, a digest of the raw
//! request (method, path, query, content type, body) and the canonical fingerprint it
//! produced. A later request to the same record with the same raw digest has, by
//! construction, the same canonical fingerprint, so it is compared without parsing.
//!
//! Exactness: a hint is used only if its fingerprint equals the fingerprint of the
//! record found now, so a record replaced after expiry by a different request is
//! still told apart (its fingerprint differs from the hint's). Bounded: each shard
//! holds at most [`PER_SHARD`] hints and is simply emptied when full (a hint only
//! saves work; losing one costs one slow comparison).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use http::Method;

use crate::fingerprint::{digest_parts, Fingerprint};
use crate::store::RecordId;

const SHARDS: usize = 16;
/// 16 × 1,024 hints of about 200 bytes each: at most about 3 MiB. Retries come soon
/// after the first attempt, so recent records are the ones worth remembering.
const PER_SHARD: usize = 1024;

/// The digest of a request's raw inputs to its fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDigest([u8; 32]);

impl RawDigest {
    pub(crate) fn of_request(
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Self {
        Self(digest_parts(&[
            method.as_str().as_bytes(),
            path.as_bytes(),
            query.map(str::as_bytes).unwrap_or_default(),
            content_type.unwrap_or_default(),
            body,
        ]))
    }
}

/// One shard: per record, the raw digest of a matched request and its fingerprint.
type Shard = HashMap<RecordId, (RawDigest, Fingerprint)>;

pub(crate) struct ReplayHints {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl Default for ReplayHints {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl ReplayHints {
    fn shard(&self, id: &RecordId) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(id) as usize) % self.shards.len();
        // Every update is a single insert or clear: a poisoned map is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a request with `raw` is known to have the fingerprint `recorded`.
    pub(crate) fn confirms(&self, id: &RecordId, raw: RawDigest, recorded: &Fingerprint) -> bool {
        self.shard(id)
            .get(id)
            .is_some_and(|(known_raw, known)| *known_raw == raw && known == recorded)
    }

    /// Remembers that a request with `raw` has the fingerprint `fingerprint`.
    pub(crate) fn remember(&self, id: &RecordId, raw: RawDigest, fingerprint: Fingerprint) {
        let mut shard = self.shard(id);
        if shard.len() >= PER_SHARD && !shard.contains_key(id) {
            shard.clear();
        }
        shard.insert(id.clone(), (raw, fingerprint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(body: &str) -> RawDigest {
        RawDigest::of_request(
            &Method::POST,
            "/v1/x",
            None,
            Some(b"application/json"),
            body.as_bytes(),
        )
    }

    #[test]
    fn a_hint_confirms_only_the_same_bytes_and_the_same_recorded_fingerprint() {
        let hints = ReplayHints::default();
        let id = RecordId::new("scope", "key");
        let fingerprint = Fingerprint::from_bytes([1; 32]);
        assert!(!hints.confirms(&id, raw("{\"a\":1}"), &fingerprint));
        hints.remember(&id, raw("{\"a\":1}"), fingerprint);
        assert!(hints.confirms(&id, raw("{\"a\":1}"), &fingerprint));
        // Other bytes (even if canonically equal) take the slow path.
        assert!(!hints.confirms(&id, raw("{ \"a\": 1 }"), &fingerprint));
        // A record replaced by another request (another fingerprint) is not confirmed.
        assert!(!hints.confirms(&id, raw("{\"a\":1}"), &Fingerprint::from_bytes([2; 32])));
        // Other records know nothing.
        assert!(!hints.confirms(
            &RecordId::new("scope", "other"),
            raw("{\"a\":1}"),
            &fingerprint
        ));
    }

    #[test]
    fn hints_stay_bounded() {
        let hints = ReplayHints::default();
        for n in 0..(SHARDS * PER_SHARD * 3) {
            hints.remember(
                &RecordId::new("s", n.to_string()),
                raw("{}"),
                Fingerprint::from_bytes([0; 32]),
            );
        }
        let held: usize = hints
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap().len())
            .sum();
        assert!(held <= SHARDS * PER_SHARD, "{held} hints held");
    }
}
