//! `attestix reputation record|show|query` and `attestix audit verify`.

use serde_json::{json, Value};

use super::{emit, idempotency_key, note_replay, text, Outcome, Session};
use crate::cli::{AuditArgs, AuditCommand, OutcomeArg, ReputationArgs, ReputationCommand};

/// Runs a `reputation` subcommand.
pub async fn run(args: ReputationArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        ReputationCommand::Record {
            agent_id,
            counterparty_id,
            outcome,
            category,
            details,
            idempotency,
        } => {
            let mut body = json!({
                "agent_id": agent_id,
                "counterparty_id": counterparty_id,
                "outcome": outcome_name(outcome),
            });
            if let Some(category) = category {
                body["category"] = json!(category);
            }
            if let Some(details) = details {
                body["details"] = json!(details);
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "reputation", "interactions"], &body, &key)
                .await?;
            session.print(&response, |recorded| {
                let score = &recorded["updated_score"];
                format!(
                    "Recorded {} for {}: trust score {} over {} interactions.",
                    text(&recorded["interaction"], "outcome"),
                    text(&recorded["interaction"], "agent_id"),
                    score["trust_score"],
                    score["total_interactions"],
                )
            })?;
        }
        ReputationCommand::Show { agent_id } => {
            let response = session
                .client
                .get(&["v1", "reputation", &agent_id], &[])
                .await?;
            session.print(&response, render_reputation)?;
        }
        ReputationCommand::Query {
            min_score,
            max_score,
            min_interactions,
            category,
            page,
        } => {
            let mut query = Vec::new();
            if let Some(value) = min_score {
                query.push(("min_score", value.to_string()));
            }
            if let Some(value) = max_score {
                query.push(("max_score", value.to_string()));
            }
            if let Some(value) = min_interactions {
                query.push(("min_interactions", value.to_string()));
            }
            if let Some(value) = category {
                query.push(("category", value));
            }
            session
                .list(
                    &["v1", "reputation"],
                    query,
                    &page,
                    "agents",
                    &format!("{:<40} {:>8} INTERACTIONS", "AGENT", "SCORE"),
                    |ranked| {
                        format!(
                            "{:<40} {:>8} {}",
                            text(ranked, "agent_id"),
                            ranked["trust_score"],
                            ranked["interaction_count"],
                        )
                    },
                )
                .await?;
        }
    }
    Ok(Outcome::Success)
}

/// Runs an `audit` subcommand.
pub async fn run_audit(args: AuditArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        AuditCommand::Verify => {
            let response = session.client.get(&["v1", "audit", "verify"], &[]).await?;
            let report = response.json()?;
            let valid = report.get("valid").and_then(Value::as_bool) == Some(true);
            if session.json {
                emit(&response.text())?;
            } else {
                emit(&render_chain(&report, valid))?;
            }
            note_replay(&response);
            Ok(if valid {
                Outcome::Success
            } else {
                Outcome::Negative
            })
        }
    }
}

fn outcome_name(outcome: OutcomeArg) -> &'static str {
    match outcome {
        OutcomeArg::Success => "success",
        OutcomeArg::Partial => "partial",
        OutcomeArg::Timeout => "timeout",
        OutcomeArg::Failure => "failure",
    }
}

/// An agent's reputation for a person.
fn render_reputation(reputation: &Value) -> String {
    if reputation["trust_score"].is_null() {
        return format!(
            "{}: no interactions recorded.",
            text(reputation, "agent_id")
        );
    }
    let mut out = format!(
        "{}: trust score {} over {} interactions (last {})",
        text(reputation, "agent_id"),
        reputation["trust_score"],
        reputation["total_interactions"],
        text(reputation, "last_interaction"),
    );
    if let Some(categories) = reputation["category_breakdown"].as_object() {
        for (name, counts) in categories {
            out.push_str(&format!(
                "\n  {name}: {} success, {} partial, {} timeout, {} failure",
                counts["success"], counts["partial"], counts["timeout"], counts["failure"],
            ));
        }
    }
    out
}

/// A chain verification for a person.
fn render_chain(report: &Value, valid: bool) -> String {
    if valid {
        format!(
            "VALID: audit chain of {} events ({} redacted)",
            report["events"], report["redacted"]
        )
    } else {
        format!(
            "BROKEN: audit chain of {} events, first bad event {}",
            report["events"],
            text(report, "broken_at")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reputation_shows_each_category() {
        let text = render_reputation(&json!({
            "agent_id": "a", "trust_score": 0.5, "total_interactions": 2,
            "last_interaction": "t",
            "category_breakdown": {"task": {"success": 1, "partial": 0, "timeout": 0,
                                            "failure": 1, "total": 2}}
        }));
        assert!(text.starts_with("a: trust score 0.5 over 2"), "{text}");
        assert!(
            text.contains("task: 1 success, 0 partial, 0 timeout, 1 failure"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_chain_names_the_event() {
        let text = render_chain(&json!({"events": 3, "broken_at": "evt:1"}), false);
        assert_eq!(
            text,
            "BROKEN: audit chain of 3 events, first bad event evt:1"
        );
    }
}
