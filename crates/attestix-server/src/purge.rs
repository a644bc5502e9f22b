//! GDPR Article 17 erasure: every record of a scope that belongs to or mentions an
//! agent, in one transaction, written once for both backends.
//!
//! What is removed: the agent's identity, the credentials issued to it, the
//! delegations it granted or received, and every record (any kind of the `records`
//! table) that references the agent or one of those ids, found through
//! `record_refs` and `subject` and followed until no new id turns up (an event about
//! a credential of the agent names the credential, not the agent). Audit events are
//! redacted instead: their content is erased, their `event_id`, `prev_hash` and
//! `chain_hash` kept, so the chain still verifies end to end. The agent's action-log
//! chain head goes too.

use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditDraft;
use crate::storage::records::{kind, Col, Stmt, Tx, Value as Bind};
use crate::storage::StorageError;

/// How many records of each kind a purge removed, under the reference's keys and
/// in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PurgeCounts {
    /// Identities.
    pub identities: u64,
    /// Credentials issued to the agent.
    pub credentials: u64,
    /// Delegations granted or received.
    pub delegations: u64,
    /// EU AI Act profiles.
    pub compliance_profiles: u64,
    /// Conformity assessments.
    pub compliance_assessments: u64,
    /// Declarations of conformity.
    pub compliance_declarations: u64,
    /// Reputation interactions, as agent or counterparty.
    pub reputation_interactions: u64,
    /// Training-data and model-lineage entries.
    pub provenance_entries: u64,
    /// Action-log entries.
    pub audit_log_entries: u64,
    /// Local records of on-chain anchors (the chain keeps its copy).
    pub local_anchor_references: u64,
    /// Audit events redacted (their links kept).
    pub audit_events: u64,
    /// Stored idempotency responses that mentioned the agent.
    pub idempotency_responses: u64,
}

impl PurgeCounts {
    /// The counter of records of kind `kind`, if a purge reports that kind.
    fn of_kind(&mut self, kind: &str) -> Option<&mut u64> {
        match kind {
            kind::INTERACTION => Some(&mut self.reputation_interactions),
            kind::PROVENANCE_ENTRY => Some(&mut self.provenance_entries),
            kind::ACTION => Some(&mut self.audit_log_entries),
            kind::AUDIT_EVENT => Some(&mut self.audit_events),
            kind::COMPLIANCE_PROFILE => Some(&mut self.compliance_profiles),
            kind::COMPLIANCE_ASSESSMENT => Some(&mut self.compliance_assessments),
            kind::COMPLIANCE_DECLARATION => Some(&mut self.compliance_declarations),
            kind::ANCHOR => Some(&mut self.local_anchor_references),
            _ => None,
        }
    }
}

/// The body of `DELETE /v1/identities/{agent_id}/purge`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeReport {
    /// The agent whose records were erased.
    pub agent_id: String,
    /// When, as Python's `isoformat()`.
    pub purged_at: String,
    /// What was removed.
    pub counts: PurgeCounts,
    /// What the server cannot erase.
    pub external_copies: String,
}

/// What the reference says about copies outside the server.
pub const EXTERNAL_COPIES: &str =
    "Operator-managed exports and remote backups require separate erasure";

/// At most this many rounds of following ids from records to the records naming
/// them: identity → credential → event about the credential needs two.
const MAX_ROUNDS: usize = 8;

/// Erases `agent_id` from `scope` inside `tx` and appends `event` (the purge's own
/// audit event, which must not name the agent). The caller runs this with
/// [`Storage::write_after_events`](crate::storage::Storage::write_after_events) so
/// that every event written before it is redacted too.
pub async fn purge(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
    event: &AuditDraft,
) -> Result<PurgeCounts, StorageError> {
    let mut counts = PurgeCounts::default();
    let mut ids = vec![agent_id.to_owned()];
    ids.extend(
        column(
            tx,
            Stmt::new("SELECT credential_id FROM credentials WHERE owner = ")
                .bind(scope)
                .sql(" AND subject_id = ")
                .bind(agent_id),
        )
        .await?,
    );
    ids.extend(
        column(
            tx,
            Stmt::new("SELECT jti FROM delegations").sql_stmt(of_agent(scope, agent_id)),
        )
        .await?,
    );
    counts.identities = tx
        .execute(
            Stmt::new("DELETE FROM identities WHERE owner = ")
                .bind(scope)
                .sql(" AND agent_id = ")
                .bind(agent_id),
        )
        .await?;
    counts.credentials = tx
        .execute(
            Stmt::new("DELETE FROM credentials WHERE owner = ")
                .bind(scope)
                .sql(" AND subject_id = ")
                .bind(agent_id),
        )
        .await?;
    counts.delegations = tx
        .execute(Stmt::new("DELETE FROM delegations").sql_stmt(of_agent(scope, agent_id)))
        .await?;

    // Records naming any id found so far, until a round finds no new id.
    let mut matched: Vec<(i64, String, String)> = Vec::new();
    let mut searched = 0;
    for _ in 0..MAX_ROUNDS {
        if searched == ids.len() {
            break;
        }
        let new_ids: Vec<Bind> = ids[searched..]
            .iter()
            .map(|id| id.as_str().into())
            .collect();
        searched = ids.len();
        let rows = tx
            .fetch(
                Stmt::new("SELECT seq, kind, id, document FROM records WHERE scope = ")
                    .bind(scope)
                    .sql(" AND (subject IN (")
                    .bind_list(new_ids.clone())
                    .sql(") OR seq IN (SELECT record_seq FROM record_refs WHERE scope = ")
                    .bind(scope)
                    .sql(" AND agent_id IN (")
                    .bind_list(new_ids)
                    .sql(")))"),
                &[Col::Int, Col::Text, Col::Text, Col::Text],
            )
            .await?;
        for row in rows {
            let seq = row.int(0)?;
            if matched.iter().any(|(known, _, _)| *known == seq) {
                continue;
            }
            let (record_kind, id) = (row.text(1)?, row.text(2)?);
            // An event's own id names nothing; every other record's id may be named.
            if record_kind != kind::AUDIT_EVENT && !ids.contains(&id) {
                ids.push(id);
            }
            matched.push((seq, record_kind, row.text(3)?));
        }
    }

    for (seq, record_kind, document) in &matched {
        if let Some(counter) = counts.of_kind(record_kind) {
            *counter += 1;
        }
        tx.execute(Stmt::new("DELETE FROM record_refs WHERE record_seq = ").bind(*seq))
            .await?;
        if record_kind == kind::AUDIT_EVENT {
            tx.execute(
                Stmt::new("UPDATE records SET document = ")
                    .bind(redacted(document)?)
                    .sql(", subject = NULL, label = NULL WHERE seq = ")
                    .bind(*seq),
            )
            .await?;
        } else {
            tx.execute(Stmt::new("DELETE FROM records WHERE seq = ").bind(*seq))
                .await?;
        }
    }
    tx.execute(
        Stmt::new("DELETE FROM chain_heads WHERE scope = ")
            .bind(scope)
            .sql(" AND chain = ")
            .bind(crate::provenance::chain_of(agent_id)),
    )
    .await?;
    tx.audit(event).await?;
    Ok(counts)
}

/// `WHERE` `scope`'s delegations granted or received by `agent_id`.
fn of_agent(scope: &str, agent_id: &str) -> Stmt {
    Stmt::new(" WHERE owner = ")
        .bind(scope)
        .sql(" AND (issuer = ")
        .bind(agent_id)
        .sql(" OR audience = ")
        .bind(agent_id)
        .sql(")")
}

/// The first column of every row of `stmt`, as text.
async fn column(tx: &mut dyn Tx, stmt: Stmt) -> Result<Vec<String>, StorageError> {
    tx.fetch(stmt, &[Col::Text])
        .await?
        .iter()
        .map(|row| row.text(0))
        .collect()
}

/// An audit event with its content erased and its links kept.
fn redacted(document: &str) -> Result<String, StorageError> {
    let event: Value = serde_json::from_str(document).map_err(StorageError::database)?;
    if event.get("redacted").and_then(Value::as_bool) == Some(true) {
        return Ok(document.to_owned());
    }
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    serde_json::to_string(&serde_json::json!({
        "event_id": field("event_id"),
        "redacted": true,
        "prev_hash": field("prev_hash"),
        "chain_hash": field("chain_hash"),
    }))
    .map_err(StorageError::database)
}

/// A salted digest standing for the purged agent in the purge's own event: it
/// cannot be traced back to the id without the salt, which is not kept.
pub fn salted_digest(agent_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let salt: [u8; 16] = rand::random();
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(agent_id.as_bytes());
    format!("purged:{}", hex::encode(hasher.finalize()))
}
