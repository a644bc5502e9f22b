//! `attestix provenance log|training|lineage|trail|verify|show`.

use serde_json::{json, Value};

use super::{emit, idempotency_key, note_replay, text, Outcome, Session};
use crate::cli::{Claim, IdempotencyArgs, ProvenanceArgs, ProvenanceCommand};

/// Runs a `provenance` subcommand.
pub async fn run(args: ProvenanceArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        ProvenanceCommand::Log {
            agent_id,
            action_type,
            input_summary,
            output_summary,
            decision_rationale,
            human_override,
            idempotency,
        } => {
            let body = json!({
                "agent_id": agent_id,
                "action_type": action_type,
                "input_summary": input_summary.unwrap_or_default(),
                "output_summary": output_summary.unwrap_or_default(),
                "decision_rationale": decision_rationale.unwrap_or_default(),
                "human_override": human_override,
            });
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "provenance", "actions"], &body, &key)
                .await?;
            session.print(&response, |entry| {
                format!(
                    "Logged {} {} for {}.",
                    text(entry, "action_type"),
                    text(entry, "log_id"),
                    text(entry, "agent_id")
                )
            })?;
        }
        ProvenanceCommand::Training {
            agent_id,
            dataset_name,
            source_url,
            dataset_version,
            license,
            data_categories,
            contains_personal_data,
            data_governance_measures,
            idempotency,
        } => {
            let body = json!({
                "agent_id": agent_id,
                "dataset_name": dataset_name,
                "source_url": source_url.unwrap_or_default(),
                "dataset_version": dataset_version.unwrap_or_default(),
                "license": license.unwrap_or_default(),
                "data_categories": data_categories,
                "contains_personal_data": contains_personal_data,
                "data_governance_measures": data_governance_measures.unwrap_or_default(),
            });
            record_entry(
                &session,
                "training-data",
                &body,
                &idempotency,
                "dataset_name",
            )
            .await?;
        }
        ProvenanceCommand::Lineage {
            agent_id,
            base_model,
            base_model_provider,
            fine_tuning_method,
            evaluation_metrics,
            training_config,
            idempotency,
        } => {
            let body = json!({
                "agent_id": agent_id,
                "base_model": base_model,
                "base_model_provider": base_model_provider.unwrap_or_default(),
                "fine_tuning_method": fine_tuning_method.unwrap_or_default(),
                "evaluation_metrics": object(evaluation_metrics),
                "training_config": object(training_config),
            });
            record_entry(&session, "model-lineage", &body, &idempotency, "base_model").await?;
        }
        ProvenanceCommand::Trail {
            agent_id,
            action_type,
            start_date,
            end_date,
            page,
        } => {
            let mut query = Vec::new();
            for (name, value) in [
                ("action_type", action_type),
                ("start_date", start_date),
                ("end_date", end_date),
            ] {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            session
                .list(
                    &["v1", "provenance", "audit-trail", &agent_id],
                    query,
                    &page,
                    "entries",
                    &format!("{:<20} {:<14} {:<33} CHAIN", "LOG ID", "TYPE", "TIME"),
                    |entry| {
                        format!(
                            "{:<20} {:<14} {:<33} {}",
                            text(entry, "log_id"),
                            text(entry, "action_type"),
                            text(entry, "timestamp"),
                            text(entry, "chain_hash").get(..16).unwrap_or_default(),
                        )
                    },
                )
                .await?;
        }
        ProvenanceCommand::Show { agent_id } => {
            let response = session
                .client
                .get(&["v1", "provenance", &agent_id], &[])
                .await?;
            session.print(&response, super::pretty)?;
        }
        ProvenanceCommand::Verify { agent_id } => {
            let response = session
                .client
                .get(
                    &["v1", "provenance", "audit-trail", &agent_id, "verify"],
                    &[],
                )
                .await?;
            let report = response.json()?;
            let valid = report.get("valid").and_then(Value::as_bool) == Some(true);
            if session.json {
                emit(&response.text())?;
            } else {
                emit(&render(&agent_id, &report, valid))?;
            }
            note_replay(&response);
            return Ok(if valid {
                Outcome::Success
            } else {
                Outcome::Negative
            });
        }
    }
    Ok(Outcome::Success)
}

/// POSTs `body` to `/v1/provenance/{kind}` and prints the entry recorded: its id,
/// its `named_by` field and its agent.
async fn record_entry(
    session: &Session,
    kind: &str,
    body: &Value,
    idempotency: &IdempotencyArgs,
    named_by: &str,
) -> anyhow::Result<()> {
    let key = idempotency_key(idempotency);
    let response = session
        .client
        .post(&["v1", "provenance", kind], body, &key)
        .await?;
    session.print(&response, |entry| {
        format!(
            "Recorded {} {} ({}) for {}.",
            text(entry, "entry_type"),
            text(entry, "entry_id"),
            text(entry, named_by),
            text(entry, "agent_id")
        )
    })
}

/// `key=value` pairs as one JSON object (a later pair wins over an earlier one of
/// the same key).
fn object(pairs: Vec<Claim>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|pair| (pair.key, pair.value))
            .collect(),
    )
}

/// A trail verification for a person.
fn render(agent_id: &str, report: &Value, valid: bool) -> String {
    if valid {
        format!(
            "VALID: action trail of {agent_id}, {} entries",
            report["entries"]
        )
    } else {
        format!(
            "BROKEN: action trail of {agent_id}, first bad entry {}",
            text(report, "broken_at")
        )
    }
}
