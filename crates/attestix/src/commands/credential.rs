//! `attestix credential issue|list|get|verify|verify-external|revoke`.

use anyhow::Context as _;
use serde_json::{json, Map, Value};

use super::{idempotency_key, pretty, read_json, text, Outcome, Session};
use crate::cli::{CredentialArgs, CredentialCommand, CredentialIssueArgs, CredentialListArgs};

/// Runs a `credential` subcommand.
pub async fn run(args: CredentialArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        CredentialCommand::Issue(issue) => {
            let body = issue_body(&issue)?;
            let key = idempotency_key(&issue.idempotency);
            let response = session
                .client
                .post(&["v1", "credentials"], &body, &key)
                .await?;
            session.print(&response, |credential| {
                format!(
                    "{} credential {} ({}) about {}\n  issuer:  {}\n  expires: {}",
                    // As for identities: done, without saying by whom.
                    if response.replayed {
                        "Done: stored result for"
                    } else {
                        "Issued"
                    },
                    text(credential, "id"),
                    credential_type(credential),
                    subject(credential),
                    credential
                        .pointer("/issuer/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    text(credential, "expirationDate"),
                )
            })?;
        }
        CredentialCommand::List(list) => run_list(&session, &list).await?,
        CredentialCommand::Get { credential_id } => {
            let response = session
                .client
                .get(&["v1", "credentials", &credential_id], &[])
                .await?;
            session.print(&response, pretty)?;
        }
        CredentialCommand::Verify {
            credential_id,
            idempotency,
        } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "credentials", &credential_id, "verify"],
                    &json!({}),
                    &key,
                )
                .await?;
            return session.print_verification(&response, &format!("credential {credential_id}"));
        }
        CredentialCommand::VerifyExternal { file, idempotency } => {
            let credential = read_json(&file)?;
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "credentials", "verify-external"],
                    &json!({ "credential": credential }),
                    &key,
                )
                .await?;
            let what = match credential.get("id").and_then(Value::as_str) {
                Some(id) => format!("credential {id}"),
                None => "credential".to_owned(),
            };
            return session.print_verification(&response, &what);
        }
        CredentialCommand::Revoke {
            credential_id,
            reason,
        } => {
            let body = reason.map(|reason| json!({ "reason": reason }));
            let response = session
                .client
                .delete(&["v1", "credentials", &credential_id], body.as_ref())
                .await?;
            session.print(&response, |revoked| {
                let reason = text(revoked, "reason");
                if reason.is_empty() {
                    format!("Revoked credential {}.", text(revoked, "credential_id"))
                } else {
                    format!(
                        "Revoked credential {} ({reason}).",
                        text(revoked, "credential_id")
                    )
                }
            })?;
        }
    }
    Ok(Outcome::Success)
}

/// The body of `POST /v1/credentials` the flags describe.
pub fn issue_body(args: &CredentialIssueArgs) -> anyhow::Result<Value> {
    let claims = match &args.claims_file {
        Some(path) => {
            let claims = read_json(path)?;
            anyhow::ensure!(
                claims.is_object(),
                "{} must hold one JSON object of claims (got {})",
                path.display(),
                kind(&claims)
            );
            claims
        }
        None => {
            let mut claims = Map::new();
            for claim in &args.claims {
                let previous = claims.insert(claim.key.clone(), claim.value.clone());
                anyhow::ensure!(
                    previous.is_none(),
                    "the claim `{}` is given twice",
                    claim.key
                );
            }
            Value::Object(claims)
        }
    };
    let mut body = json!({
        "subject_id": args.subject,
        "credential_type": args.credential_type,
        "issuer_name": args.issuer,
        "claims": claims,
    });
    if let Some(days) = args.expiry_days {
        body.as_object_mut()
            .context("the body is an object")?
            .insert("expiry_days".into(), json!(days));
    }
    Ok(body)
}

/// The JSON kind of a value, for an error message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The most specific type of a credential (the last of `type`).
fn credential_type(credential: &Value) -> &str {
    credential
        .get("type")
        .and_then(Value::as_array)
        .and_then(|types| types.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The credential's subject id.
fn subject(credential: &Value) -> &str {
    credential
        .pointer("/credentialSubject/id")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `credential list`: the filters as the query, one line per credential.
async fn run_list(session: &Session, args: &CredentialListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(agent_id) = &args.agent_id {
        query.push(("agent_id", agent_id.clone()));
    }
    if let Some(credential_type) = &args.credential_type {
        query.push(("credential_type", credential_type.clone()));
    }
    if args.valid_only {
        query.push(("valid_only", "true".to_owned()));
    }
    session
        .list(
            &["v1", "credentials"],
            query,
            &args.page,
            "credentials",
            &format!(
                "{:<46} {:<26} {:<8} TYPE",
                "CREDENTIAL_ID", "SUBJECT", "STATUS"
            ),
            |credential| {
                let revoked = credential
                    .pointer("/credentialStatus/revoked")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                format!(
                    "{:<46} {:<26} {:<8} {}",
                    text(credential, "id"),
                    subject(credential),
                    if revoked { "revoked" } else { "active" },
                    credential_type(credential),
                )
            },
        )
        .await
}
