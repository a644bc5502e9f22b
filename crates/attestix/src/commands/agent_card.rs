//! `attestix agent-card generate|parse|discover`.

use serde_json::{json, Value};

use super::{idempotency_key, pretty, read_json, Outcome, Session};
use crate::cli::{AgentCardArgs, AgentCardCommand};

/// Runs an `agent-card` subcommand.
pub async fn run(args: AgentCardArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    let (path, body, idempotency) = match args.command {
        AgentCardCommand::Generate {
            name,
            url,
            description,
            skills,
            card_version,
            idempotency,
        } => {
            let skills = skills
                .iter()
                .map(|skill| {
                    let (id, name) = skill.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!("a skill is written id=name (got `{skill}`)")
                    })?;
                    Ok(json!({"id": id, "name": name}))
                })
                .collect::<anyhow::Result<Vec<Value>>>()?;
            let mut body = json!({"name": name, "url": url, "skills": skills});
            if let Some(fields) = body.as_object_mut() {
                if let Some(description) = description {
                    fields.insert("description".into(), json!(description));
                }
                if let Some(version) = card_version {
                    fields.insert("version".into(), json!(version));
                }
            }
            ("generate", body, idempotency)
        }
        AgentCardCommand::Parse { file, idempotency } => {
            ("parse", json!({ "card": read_json(&file)? }), idempotency)
        }
        AgentCardCommand::Discover {
            base_url,
            idempotency,
        } => ("discover", json!({ "base_url": base_url }), idempotency),
    };
    let key = idempotency_key(&idempotency);
    let response = session
        .client
        .post(&["v1", "agent-cards", path], &body, &key)
        .await?;
    session.print(&response, pretty)?;
    Ok(Outcome::Success)
}
