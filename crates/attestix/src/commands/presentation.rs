//! `attestix presentation create|verify`.

use serde_json::{json, Value};

use super::{idempotency_key, pretty, read_json, Outcome, Session};
use crate::cli::{PresentationArgs, PresentationCommand};

/// Runs a `presentation` subcommand.
pub async fn run(args: PresentationArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        PresentationCommand::Create {
            agent_id,
            credential_ids,
            audience_did,
            challenge,
            idempotency,
        } => {
            let mut body = json!({ "agent_id": agent_id, "credential_ids": credential_ids });
            if let Some(fields) = body.as_object_mut() {
                if let Some(audience) = audience_did {
                    fields.insert("audience_did".into(), json!(audience));
                }
                if let Some(challenge) = challenge {
                    fields.insert("challenge".into(), json!(challenge));
                }
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "presentations"], &body, &key)
                .await?;
            // The presentation is the product: print it whole, to hand to a verifier.
            session.print(&response, pretty)?;
            Ok(Outcome::Success)
        }
        PresentationCommand::Verify {
            file,
            challenge,
            domain,
            idempotency,
        } => {
            let presentation = read_json(&file)?;
            let what = match presentation.get("id").and_then(Value::as_str) {
                Some(id) => format!("presentation {id}"),
                None => "presentation".to_owned(),
            };
            let mut body = json!({ "presentation": presentation });
            if let Some(fields) = body.as_object_mut() {
                if let Some(challenge) = challenge {
                    fields.insert("challenge".into(), json!(challenge));
                }
                if let Some(domain) = domain {
                    fields.insert("domain".into(), json!(domain));
                }
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "presentations", "verify"], &body, &key)
                .await?;
            session.print_verification(&response, &what)
        }
    }
}
