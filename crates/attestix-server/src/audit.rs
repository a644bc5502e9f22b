//! Audit events: one hash chain per scope, in the reference's format
//! (`attestix/audit/events.py`).
//!
//! A route describes its mutation as an [`AuditDraft`]; the storage appends it as an
//! [`AuditEvent`] in the transaction that makes the change, after reading the chain
//! head there, so the event exists exactly when the change does and concurrent writers
//! of one scope line up on one chain ([`crate::storage::records::append_links`]).

use attestix_core::canonical::canonical_bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::storage::records::{kind, ChainLink, NewRecord, GENESIS_HASH};
use crate::storage::StorageError;

/// The chain name of a scope's audit events in `chain_heads`.
const AUDIT_CHAIN: &str = "audit";

/// The actor of the services that have no server DID of their own, as the reference
/// names them.
pub mod actor {
    /// `ReputationService.AUDIT_ACTOR`.
    pub const REPUTATION: &str = "attestix:reputation-service";
    /// `DIDService.AUDIT_ACTOR`.
    pub const DID: &str = "attestix:did-service";
}

/// A mutation to record, before its place in the chain is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// The chain: the caller's scope (principal and tenant).
    pub scope: String,
    /// `evt:` + 12 hex digits.
    pub event_id: String,
    /// The caller's tenant.
    pub tenant_id: String,
    /// Who acted: the server's DID, or a service name.
    pub actor: String,
    /// What happened (`identity.create`, ...).
    pub action: String,
    /// The id of the resource changed.
    pub target_id: String,
    /// Its collection (`identities`, ...).
    pub target_collection: String,
    /// When, as Python's `isoformat()`.
    pub occurred_at: String,
    /// The same instant, unix milliseconds (for the `since` filter).
    pub occurred_at_ms: i64,
    /// sha256 hex of the canonical `{"after": …}`.
    pub change_digest: String,
    /// The agents the event mentions (for purge).
    pub refs: Vec<String>,
}

impl AuditDraft {
    /// A draft of `action` on `target_id` in `target_collection`, by `actor`, with the
    /// reference's `after` payload, at `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scope: String,
        tenant_id: &str,
        actor: &str,
        action: &str,
        target_id: &str,
        target_collection: &str,
        after: Value,
        now: OffsetDateTime,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            scope,
            event_id: new_event_id(),
            tenant_id: tenant_id.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_id: target_id.to_owned(),
            target_collection: target_collection.to_owned(),
            occurred_at: attestix_core::format_isoformat(now.to_offset(time::UtcOffset::UTC)),
            occurred_at_ms: unix_ms(now),
            change_digest: change_digest(&after)?,
            refs: Vec::new(),
        })
    }

    /// The draft, also mentioning `agents` (kept for purge).
    pub fn mentioning<I: IntoIterator<Item = S>, S: Into<String>>(mut self, agents: I) -> Self {
        self.refs.extend(agents.into_iter().map(Into::into));
        self
    }

    /// The draft as a link of its scope's audit chain.
    pub fn chain_link(&self) -> ChainLink {
        let draft = self.clone();
        ChainLink {
            scope: self.scope.clone(),
            chain: AUDIT_CHAIN.to_owned(),
            make: Box::new(move |prev_hash| {
                let event = draft.link(prev_hash)?;
                let mut refs = draft.refs;
                refs.push(draft.target_id);
                let record = NewRecord {
                    scope: draft.scope,
                    kind: kind::AUDIT_EVENT,
                    id: event.event_id.clone(),
                    subject: Some(event.target_id.clone()),
                    label: Some(event.action.clone()),
                    created_at_ms: draft.occurred_at_ms,
                    document: serde_json::to_string(&event).map_err(StorageError::database)?,
                    refs,
                };
                Ok((record, event.chain_hash))
            }),
        }
    }

    /// The event this draft becomes after `prev_hash`.
    pub fn link(&self, prev_hash: &str) -> Result<AuditEvent, StorageError> {
        let mut event = AuditEvent {
            event_id: self.event_id.clone(),
            tenant_id: self.tenant_id.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            target_id: self.target_id.clone(),
            target_collection: self.target_collection.clone(),
            occurred_at: self.occurred_at.clone(),
            change_digest: self.change_digest.clone(),
            prev_hash: prev_hash.to_owned(),
            chain_hash: String::new(),
        };
        event.chain_hash = event.compute_chain_hash()?;
        Ok(event)
    }
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `evt:` + the first 12 hex digits of a random UUID, as the reference makes them.
pub fn new_event_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("evt:{}", &hex[..12])
}

/// sha256 hex of the canonical `{"after": after}` (the reference's
/// `compute_change_digest(None, after)`).
pub fn change_digest(after: &Value) -> Result<String, StorageError> {
    let bytes = canonical_bytes(&json!({ "after": after })).map_err(StorageError::database)?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// A chained audit event, its fields in the reference's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// `evt:` + 12 hex digits.
    pub event_id: String,
    /// The tenant of the scope.
    pub tenant_id: String,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The resource changed.
    pub target_id: String,
    /// Its collection.
    pub target_collection: String,
    /// When (Python `isoformat()`).
    pub occurred_at: String,
    /// sha256 hex of the canonical change.
    pub change_digest: String,
    /// The previous event's `chain_hash` (64 zeros for the first).
    pub prev_hash: String,
    /// sha256 hex of `prev_hash` + `:` + the canonical other nine fields.
    pub chain_hash: String,
}

impl AuditEvent {
    /// sha256 hex of `prev_hash` + `":"` + the canonical bytes of the event without
    /// `chain_hash` (the reference's `AuditEvent._link_hash`).
    pub fn compute_chain_hash(&self) -> Result<String, StorageError> {
        let body = json!({
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "action": self.action,
            "target_id": self.target_id,
            "target_collection": self.target_collection,
            "occurred_at": self.occurred_at,
            "change_digest": self.change_digest,
            "prev_hash": self.prev_hash,
        });
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b":");
        hasher.update(canonical_bytes(&body).map_err(StorageError::database)?);
        Ok(hex::encode(hasher.finalize()))
    }
}

/// What `GET /v1/audit/verify` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// Every link verifies.
    pub valid: bool,
    /// How many events the chain has (redacted ones included).
    pub events: u64,
    /// How many of them were redacted by a purge (their links checked, their content
    /// erased).
    pub redacted: u64,
    /// The `event_id` of the first event that does not verify.
    pub broken_at: Option<String>,
}

/// Walks a scope's events in chain order. A redacted event (`"redacted": true`, its
/// content erased) keeps `prev_hash` and `chain_hash`, so its link is still checked.
pub fn verify(documents: &[String]) -> ChainReport {
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut redacted = 0;
    for (index, document) in documents.iter().enumerate() {
        let value: Value = serde_json::from_str(document).unwrap_or(Value::Null);
        let id_of = |value: &Value| {
            value
                .get("event_id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{}", index + 1), str::to_owned)
        };
        let broken = |value: &Value| ChainReport {
            valid: false,
            events: documents.len() as u64,
            redacted,
            broken_at: Some(id_of(value)),
        };
        if value.get("redacted").and_then(Value::as_bool) == Some(true) {
            let (Some(prev), Some(chain)) = (
                value.get("prev_hash").and_then(Value::as_str),
                value.get("chain_hash").and_then(Value::as_str),
            ) else {
                return broken(&value);
            };
            if prev != expected_prev {
                return broken(&value);
            }
            redacted += 1;
            expected_prev = chain.to_owned();
            continue;
        }
        let Ok(event) = serde_json::from_value::<AuditEvent>(value.clone()) else {
            return broken(&value);
        };
        if event.prev_hash != expected_prev
            || event.compute_chain_hash().ok().as_deref() != Some(event.chain_hash.as_str())
        {
            return broken(&value);
        }
        expected_prev = event.chain_hash;
    }
    ChainReport {
        valid: true,
        events: documents.len() as u64,
        redacted,
        broken_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: u32) -> AuditDraft {
        let mut draft = AuditDraft::new(
            "alice/default".into(),
            "default",
            "did:key:zTest",
            "identity.create",
            &format!("attestix:{n:016x}"),
            "identities",
            json!({"agent_id": format!("attestix:{n:016x}"), "source_protocol": "api_key"}),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        draft.event_id = format!("evt:{n:012x}");
        draft
    }

    fn chain(n: u32) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_owned();
        (0..n)
            .map(|i| {
                let event = draft(i).link(&prev).unwrap();
                prev = event.chain_hash.clone();
                serde_json::to_string(&event).unwrap()
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_a_changed_event_breaks_it_there() {
        let mut events = chain(3);
        assert!(verify(&events).valid);
        events[1] = events[1].replace("did:key:zTest", "did:key:zMallory");
        let report = verify(&events);
        assert!(!report.valid);
        assert_eq!(report.broken_at.as_deref(), Some("evt:000000000001"));
    }

    #[test]
    fn the_event_keys_are_in_the_reference_order() {
        let text = &chain(1)[0];
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "event_id",
                "tenant_id",
                "actor",
                "action",
                "target_id",
                "target_collection",
                "occurred_at",
                "change_digest",
                "prev_hash",
                "chain_hash"
            ]
        );
    }
}
