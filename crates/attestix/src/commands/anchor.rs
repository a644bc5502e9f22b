//! `attestix anchor identity|credential|audit-batch|verify|list|estimate-cost`.

use serde_json::{json, Value};

use super::{emit, idempotency_key, note_replay, text, Outcome, Session};
use crate::cli::{AnchorCliArgs, AnchorCommand};

/// A one-line summary of an anchor record.
fn render_anchor(anchor: &Value) -> String {
    let mut line = format!(
        "Anchored {} {} as {}: attestation {} in block {} (tx {}).",
        text(anchor, "artifact_type"),
        text(anchor, "artifact_id"),
        text(anchor, "anchor_id"),
        text(anchor, "attestation_uid"),
        anchor["block_number"],
        text(anchor, "tx_hash"),
    );
    if let Some(root) = anchor.pointer("/batch_metadata/merkle_root") {
        line.push_str(&format!(
            "\nMerkle root {} over {} entries.",
            root.as_str().unwrap_or_default(),
            anchor["batch_metadata"]["entry_count"]
        ));
    }
    line
}

/// Runs an `anchor` subcommand.
pub async fn run(args: AnchorCliArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    let post = |path: &'static str, body: Value, key: String| {
        let session = session.clone();
        async move {
            let response = session
                .client
                .post(&["v1", "blockchain", "anchor", path], &body, &key)
                .await?;
            session.print(&response, render_anchor)?;
            Ok::<Outcome, anyhow::Error>(Outcome::Success)
        }
    };
    match args.command {
        AnchorCommand::Identity {
            agent_id,
            idempotency,
        } => {
            post(
                "identity",
                json!({"agent_id": agent_id}),
                idempotency_key(&idempotency),
            )
            .await
        }
        AnchorCommand::Credential {
            credential_id,
            idempotency,
        } => {
            post(
                "credential",
                json!({"credential_id": credential_id}),
                idempotency_key(&idempotency),
            )
            .await
        }
        AnchorCommand::AuditBatch {
            agent_id,
            start_date,
            end_date,
            idempotency,
        } => {
            let mut body = json!({"agent_id": agent_id});
            if let Some(start) = start_date {
                body["start_date"] = json!(start);
            }
            if let Some(end) = end_date {
                body["end_date"] = json!(end);
            }
            post("audit-batch", body, idempotency_key(&idempotency)).await
        }
        AnchorCommand::Verify {
            anchor_id,
            artifact_hash,
        } => {
            // A verification changes nothing; its key only satisfies the layer.
            let key = uuid::Uuid::new_v4().to_string();
            let response = session
                .client
                .post(
                    &["v1", "blockchain", "verify", &anchor_id],
                    &json!({"artifact_hash": artifact_hash}),
                    &key,
                )
                .await?;
            let report = response.json()?;
            let verified = report["verified"].as_bool() == Some(true);
            if session.json {
                emit(&response.text())?;
            } else {
                let mut lines = vec![if verified {
                    format!("VERIFIED: {anchor_id} holds {artifact_hash} on chain.")
                } else {
                    format!("NOT VERIFIED: {anchor_id} against {artifact_hash}.")
                }];
                for anchor in report["anchors"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "  {}: valid {}, revoked {}, missing {}, hash matches {}",
                        text(anchor, "anchor_id"),
                        anchor["on_chain_valid"],
                        anchor["on_chain_revoked"],
                        anchor["on_chain_missing"],
                        anchor["hash_matches"],
                    ));
                }
                emit(&lines.join("\n"))?;
            }
            note_replay(&response);
            Ok(if verified {
                Outcome::Success
            } else {
                Outcome::Negative
            })
        }
        AnchorCommand::List { agent_id } => {
            let response = session
                .client
                .get(&["v1", "blockchain", "anchors", &agent_id], &[])
                .await?;
            session.print(&response, |listing| {
                let mut lines = vec![format!(
                    "{:<20} {:<12} {:<68} BLOCK",
                    "ANCHOR", "TYPE", "ATTESTATION"
                )];
                for anchor in listing["anchors"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "{:<20} {:<12} {:<68} {}",
                        text(anchor, "anchor_id"),
                        text(anchor, "artifact_type"),
                        text(anchor, "attestation_uid"),
                        anchor["block_number"],
                    ));
                }
                lines.join("\n")
            })?;
            Ok(Outcome::Success)
        }
        AnchorCommand::EstimateCost { artifact_type } => {
            let response = session
                .client
                .get(
                    &["v1", "blockchain", "estimate-cost"],
                    &[("artifact_type", artifact_type)],
                )
                .await?;
            session.print(&response, |cost| {
                format!(
                    "An anchor on {} (chain {}) uses up to {} gas at {} gwei: at most {} ETH. Wallet {} holds {} ETH ({}).",
                    text(cost, "network"),
                    cost["chain_id"],
                    cost["estimated_gas"],
                    text(cost, "gas_price_gwei"),
                    text(cost, "estimated_cost_eth"),
                    text(cost, "wallet"),
                    text(cost, "balance_eth"),
                    if cost["can_afford"] == true { "enough" } else { "NOT enough" },
                )
            })?;
            Ok(Outcome::Success)
        }
    }
}
