//! Provenance: the per-agent hash-chained action log (EU AI Act Art. 12), in the
//! reference's `ProvenanceService.log_action` format.
//!
//! The chain hash is not the signing form: it is sha256 of `prev_hash` + `":"` + the
//! entry (with `prev_hash`, without `chain_hash` and `signature`) as Python's
//! `json.dumps(entry, sort_keys=True, separators=(",", ":"))` writes it ([`dumps`]),
//! so chains written here verify with the reference's code and the reference's here.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::AuditDraft;
use tokio::sync::oneshot;

use crate::storage::records::{self, kind, ChainLink, NewRecord, Tx, GENESIS_HASH};
use crate::storage::StorageError;

/// The action types the reference accepts, sorted (its error message lists them so).
pub const ACTION_TYPES: [&str; 4] = ["data_access", "delegation", "external_call", "inference"];

/// `value` as Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))`.
pub fn dumps(value: &Value) -> String {
    attestix_core::python_json::dumps_sorted(value)
}

/// sha256 hex of `prev_hash` + `":"` + [`dumps`] of `entry` (the reference's
/// `ProvenanceService._chain_hash`).
pub fn chain_hash(prev_hash: &str, entry: &Value) -> String {
    let combined = format!("{prev_hash}:{}", dumps(entry));
    hex::encode(Sha256::digest(combined.as_bytes()))
}

/// The `chain_heads` name of an agent's action log.
pub(crate) fn chain_of(agent_id: &str) -> String {
    format!("actions:{agent_id}")
}

/// Appends `entry` (the log entry without `prev_hash`, `chain_hash` and `signature`)
/// to its agent's chain in `scope` and appends `event`, in the caller's transaction.
/// The entry is linked and signed with `sign` (over the entry without `signature`)
/// when its chain's head is known, at the end of a shared write turn; the receiver
/// gets the stored document then, and has it once the transaction has committed.
pub async fn append_action(
    tx: &mut dyn Tx,
    scope: &str,
    mut entry: serde_json::Map<String, Value>,
    sign: impl FnOnce(&Value) -> Result<String, StorageError> + Send + 'static,
    event: &AuditDraft,
    created_at_ms: i64,
) -> Result<oneshot::Receiver<String>, StorageError> {
    let text = |key: &str, entry: &serde_json::Map<String, Value>| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| StorageError::database(format!("a log entry without {key}")))
    };
    let agent_id = text("agent_id", &entry)?;
    let log_id = text("log_id", &entry)?;
    let action_type = text("action_type", &entry)?;
    let (stored, document) = oneshot::channel();
    let record_scope = scope.to_owned();
    let chain = chain_of(&agent_id);
    let make = move |prev_hash: &str| {
        entry.insert("prev_hash".into(), Value::from(prev_hash));
        let hash = chain_hash(prev_hash, &Value::Object(entry.clone()));
        entry.insert("chain_hash".into(), Value::from(hash.as_str()));
        let signature = sign(&Value::Object(entry.clone()))?;
        entry.insert("signature".into(), Value::from(signature));
        let text = serde_json::to_string(&entry).map_err(StorageError::database)?;
        // The receiver is gone only when its request was dropped; the entry stays.
        let _ = stored.send(text.clone());
        let record = NewRecord {
            scope: record_scope,
            kind: kind::ACTION,
            id: log_id,
            subject: Some(agent_id.clone()),
            label: Some(action_type),
            created_at_ms,
            document: text,
            refs: vec![agent_id],
        };
        Ok((record, hash))
    };
    tx.link(ChainLink {
        scope: scope.to_owned(),
        chain,
        make: Box::new(make),
    })
    .await?;
    tx.audit(event).await?;
    Ok(document)
}

/// What `GET /v1/provenance/audit-trail/{agent_id}/verify` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TrailReport {
    /// Every link verifies.
    pub valid: bool,
    /// How many entries the agent's chain has.
    pub entries: u64,
    /// The `log_id` of the first entry that does not verify.
    pub broken_at: Option<String>,
}

/// Walks an agent's log entries in chain order.
pub fn verify_trail(documents: &[String]) -> TrailReport {
    let mut expected_prev = GENESIS_HASH.to_owned();
    for document in documents {
        let mut entry: serde_json::Map<String, Value> =
            serde_json::from_str(document).unwrap_or_default();
        let log_id = entry
            .get("log_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        entry.remove("signature");
        let stored = entry.remove("chain_hash");
        let prev = entry.get("prev_hash").and_then(Value::as_str);
        let ok = prev == Some(expected_prev.as_str())
            && stored.as_ref().and_then(Value::as_str)
                == Some(chain_hash(&expected_prev, &Value::Object(entry.clone())).as_str());
        if !ok {
            return TrailReport {
                valid: false,
                entries: documents.len() as u64,
                broken_at: Some(log_id),
            };
        }
        expected_prev = stored
            .and_then(|hash| hash.as_str().map(str::to_owned))
            .unwrap_or_default();
    }
    TrailReport {
        valid: true,
        entries: documents.len() as u64,
        broken_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_writes_what_python_writes() {
        let value = json!({"b": "naïve 😀\u{7f}\"\\\n", "a": [true, null, 1, 1.0, 0.5, 1e16]});
        assert_eq!(
            dumps(&value),
            r#"{"a":[true,null,1,1.0,0.5,1e+16],"b":"na\u00efve \ud83d\ude00\u007f\"\\\n"}"#
        );
    }
}

/// What `GET /v1/provenance/{agent_id}` reports: the agent's training data and model
/// lineage, and a summary of its action log and of the audit events about it (about
/// the agent itself, the credentials issued to it, or a record whose subject it is).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Aggregate {
    /// The agent.
    pub agent_id: String,
    /// Its training-data entries, oldest first, as stored.
    #[schema(value_type = Vec<Object>)]
    pub training_data: Vec<Box<serde_json::value::RawValue>>,
    /// Its model-lineage entries, oldest first, as stored.
    #[schema(value_type = Vec<Object>)]
    pub model_lineage: Vec<Box<serde_json::value::RawValue>>,
    /// Action-log entries plus audit events.
    pub audit_log_count: u64,
    /// Action-log entries.
    pub audit_chain_count_legacy: u64,
    /// Audit events about the agent.
    pub audit_events_count: u64,
    /// The last five of the action-log entries followed by the events.
    #[schema(value_type = Vec<Object>)]
    pub latest_audit_entries: Vec<Box<serde_json::value::RawValue>>,
}

impl Aggregate {
    /// The aggregate of an agent with nothing recorded.
    pub fn empty(agent_id: String) -> Self {
        Self {
            agent_id,
            training_data: Vec::new(),
            model_lineage: Vec::new(),
            audit_log_count: 0,
            audit_chain_count_legacy: 0,
            audit_events_count: 0,
            latest_audit_entries: Vec::new(),
        }
    }
}

/// How many of the newest entries [`Aggregate::latest_audit_entries`] shows.
const LATEST: i64 = 5;

/// The aggregate of `agent_id` in `scope`. Counts are SQL counts and only the five
/// newest entries of each log are read, so the cost does not grow with the logs.
pub async fn aggregate(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
) -> Result<Aggregate, StorageError> {
    use records::{Col, Stmt};
    let raw = |text: String| {
        serde_json::value::RawValue::from_string(text).map_err(StorageError::database)
    };
    let entries = |label: &'static str| {
        Stmt::new("SELECT document FROM records WHERE scope = ")
            .bind(scope)
            .sql(" AND kind = ")
            .bind(kind::PROVENANCE_ENTRY)
            .sql(" AND subject = ")
            .bind(agent_id)
            .sql(" AND label = ")
            .bind(label)
            .sql(" ORDER BY seq")
    };
    let documents = |rows: Vec<records::DbRow>| -> Result<Vec<_>, StorageError> {
        rows.iter().map(|row| raw(row.text(0)?)).collect()
    };
    let training_data = documents(tx.fetch(entries("training_data"), &[Col::Text]).await?)?;
    let model_lineage = documents(tx.fetch(entries("model_lineage"), &[Col::Text]).await?)?;

    let actions = || {
        Stmt::new(" FROM records WHERE scope = ")
            .bind(scope)
            .sql(" AND kind = ")
            .bind(kind::ACTION)
            .sql(" AND subject = ")
            .bind(agent_id)
    };
    // Events whose target is the agent, a credential issued to it, or one of the
    // records about it (the reference's attribution by target_id).
    let events = || {
        Stmt::new(" FROM records WHERE scope = ")
            .bind(scope)
            .sql(" AND kind = ")
            .bind(kind::AUDIT_EVENT)
            .sql(" AND (subject = ")
            .bind(agent_id)
            .sql(" OR subject IN (SELECT credential_id FROM credentials WHERE owner = ")
            .bind(scope)
            .sql(" AND subject_id = ")
            .bind(agent_id)
            .sql(") OR subject IN (SELECT id FROM records WHERE scope = ")
            .bind(scope)
            .sql(" AND subject = ")
            .bind(agent_id)
            .sql(" AND kind <> ")
            .bind(kind::AUDIT_EVENT)
            .sql("))")
    };
    let count = |from: Stmt| Stmt::new("SELECT COUNT(*)").sql_stmt(from);
    let newest = |from: Stmt| {
        Stmt::new("SELECT document")
            .sql_stmt(from)
            .sql(" ORDER BY seq DESC LIMIT ")
            .bind(LATEST)
    };
    let legacy = tx.fetch(count(actions()), &[Col::Int]).await?;
    let legacy = u64::try_from(legacy.first().map_or(Ok(0), |row| row.int(0))?).unwrap_or(0);
    let about = tx.fetch(count(events()), &[Col::Int]).await?;
    let about = u64::try_from(about.first().map_or(Ok(0), |row| row.int(0))?).unwrap_or(0);
    let mut latest_actions = documents(tx.fetch(newest(actions()), &[Col::Text]).await?)?;
    let mut latest_events = documents(tx.fetch(newest(events()), &[Col::Text]).await?)?;
    latest_actions.reverse();
    latest_events.reverse();
    let mut latest = latest_actions;
    latest.append(&mut latest_events);
    let skip = latest.len().saturating_sub(LATEST as usize);
    latest.drain(..skip);
    Ok(Aggregate {
        agent_id: agent_id.to_owned(),
        training_data,
        model_lineage,
        audit_log_count: legacy + about,
        audit_chain_count_legacy: legacy,
        audit_events_count: about,
        latest_audit_entries: latest,
    })
}
