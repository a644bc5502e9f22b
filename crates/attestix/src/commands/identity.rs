//! `attestix identity create|list|get|verify|revoke|purge|translate|import`.

use serde_json::{json, Map, Value};

use super::{idempotency_key, import, pretty, text, Outcome, Session};
use crate::cli::{IdentityArgs, IdentityCommand, IdentityCreateArgs, IdentityListArgs};

/// Runs an `identity` subcommand.
pub async fn run(args: IdentityArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        IdentityCommand::Create(create) => {
            let key = idempotency_key(&create.idempotency);
            let response = session
                .client
                .post(&["v1", "identities"], &create_body(&create), &key)
                .await?;
            session.print(&response, |uait| {
                format!(
                    "{} identity {} ({})\n  did:     {}\n  expires: {}",
                    // A replay may be of this command's own timed-out attempt, so
                    // it says the work is done, not that someone else did it.
                    if response.replayed {
                        "Done: stored result for"
                    } else {
                        "Created"
                    },
                    text(uait, "agent_id"),
                    text(uait, "display_name"),
                    text(uait, "did"),
                    text(uait, "expires_at"),
                )
            })?;
        }
        IdentityCommand::List(list) => run_list(&session, &list).await?,
        IdentityCommand::Get { agent_id } => {
            let response = session
                .client
                .get(&["v1", "identities", &agent_id], &[])
                .await?;
            session.print(&response, pretty)?;
        }
        IdentityCommand::Verify {
            agent_id,
            idempotency,
        } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "identities", &agent_id, "verify"], &json!({}), &key)
                .await?;
            let document = response.json()?;
            let what = match document.get("display_name").and_then(Value::as_str) {
                Some(name) => format!("identity {agent_id} ({name})"),
                None => format!("identity {agent_id}"),
            };
            return session.print_verification(&response, &what);
        }
        IdentityCommand::Revoke { agent_id, reason } => {
            let body = reason.map(|reason| json!({ "reason": reason }));
            let response = session
                .client
                .delete(&["v1", "identities", &agent_id], body.as_ref())
                .await?;
            session.print(&response, |uait| {
                let reason = text(uait, "revocation_reason");
                if reason.is_empty() {
                    format!("Revoked identity {}.", text(uait, "agent_id"))
                } else {
                    format!("Revoked identity {} ({reason}).", text(uait, "agent_id"))
                }
            })?;
        }
        IdentityCommand::Purge {
            agent_id,
            idempotency,
        } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .delete_keyed(&["v1", "identities", &agent_id, "purge"], None, &key)
                .await?;
            session.print(&response, |report| {
                let mut lines = vec![format!("Purged {}:", text(report, "agent_id"))];
                if let Some(counts) = report.get("counts").and_then(Value::as_object) {
                    for (kind, count) in counts {
                        lines.push(format!("  {kind}: {count}"));
                    }
                }
                lines.push(format!("  note: {}", text(report, "external_copies")));
                lines.join("\n")
            })?;
        }
        IdentityCommand::Translate {
            agent_id,
            target_format,
            idempotency,
        } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "identities", &agent_id, "translate"],
                    &json!({ "target_format": target_format.wire_name() }),
                    &key,
                )
                .await?;
            session.print(&response, pretty)?;
        }
        IdentityCommand::Import(import_args) => return import::run(&session, &import_args).await,
    }
    Ok(Outcome::Success)
}

/// The body of `POST /v1/identities` the flags describe; fields not given are
/// left out so that the server's defaults apply.
pub fn create_body(args: &IdentityCreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("display_name".into(), json!(args.name));
    body.insert("source_protocol".into(), json!(args.protocol));
    if !args.capabilities.is_empty() {
        body.insert("capabilities".into(), json!(args.capabilities));
    }
    let optional = [
        ("description", &args.description),
        ("issuer_name", &args.issuer),
        ("identity_token", &args.identity_token),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            body.insert(field.into(), json!(value));
        }
    }
    if let Some(days) = args.expiry_days {
        body.insert("expiry_days".into(), json!(days));
    }
    Value::Object(body)
}

/// `identity list`: the filters as the query, one line per identity.
async fn run_list(session: &Session, args: &IdentityListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(protocol) = &args.protocol {
        query.push(("source_protocol", protocol.clone()));
    }
    if args.include_revoked {
        query.push(("include_revoked", "true".to_owned()));
    }
    session
        .list(
            &["v1", "identities"],
            query,
            &args.page,
            "identities",
            &format!(
                "{:<26} {:<12} {:<34} {:<8} NAME",
                "AGENT_ID", "PROTOCOL", "CREATED", "STATUS"
            ),
            |uait| {
                let status = if uait
                    .get("revoked")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    "revoked"
                } else {
                    "active"
                };
                format!(
                    "{:<26} {:<12} {:<34} {:<8} {}",
                    text(uait, "agent_id"),
                    text(uait, "source_protocol"),
                    text(uait, "created_at"),
                    status,
                    text(uait, "display_name"),
                )
            },
        )
        .await
}
