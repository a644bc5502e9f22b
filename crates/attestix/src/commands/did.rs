//! `attestix did create-key|create-web|resolve`.

use serde_json::json;

use super::{idempotency_key, pretty, text, Outcome, Session};
use crate::cli::{DidArgs, DidCommand};

/// Runs a `did` subcommand.
pub async fn run(args: DidArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        DidCommand::CreateKey { idempotency } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "dids", "key"], &json!({}), &key)
                .await?;
            session.print(&response, |created| {
                format!(
                    "{}\n  keypair: {} (the private key stays on the server, encrypted)",
                    text(created, "did"),
                    text(created, "keypair_id")
                )
            })?;
        }
        DidCommand::CreateWeb {
            domain,
            path,
            idempotency,
        } => {
            let mut body = json!({ "domain": domain });
            if let (Some(path), Some(fields)) = (path, body.as_object_mut()) {
                fields.insert("path".into(), json!(path));
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "dids", "web"], &body, &key)
                .await?;
            session.print(&response, |created| {
                format!(
                    "{}\n  host the document at: {}\n  keypair: {} (the private key stays on the server, encrypted)",
                    text(created, "did"),
                    text(created, "hosting_url"),
                    text(created, "keypair_id")
                )
            })?;
        }
        DidCommand::Resolve { did } => {
            let response = session
                .client
                .get(&["v1", "dids", "resolve", &did], &[])
                .await?;
            session.print(&response, pretty)?;
        }
    }
    Ok(Outcome::Success)
}
