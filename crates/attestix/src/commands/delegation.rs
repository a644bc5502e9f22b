//! `attestix delegation create|verify|list|revoke`.

use std::io::Read as _;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{emit, idempotency_key, note_replay, text, Outcome, Session};
use crate::cli::{
    DelegationArgs, DelegationCommand, DelegationCreateArgs, DelegationListArgs, DelegationRoleArg,
};

/// Runs a `delegation` subcommand.
pub async fn run(args: DelegationArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        DelegationCommand::Create(create) => {
            let body = create_body(&create)?;
            let key = idempotency_key(&create.idempotency);
            let response = session
                .client
                .post(&["v1", "delegations"], &body, &key)
                .await?;
            if session.json {
                emit(&response.text())?;
            } else {
                let created = response.json()?;
                let record = &created["delegation"];
                eprintln!(
                    "{} delegation {} from {} to {} ({}), expires {}",
                    if response.replayed {
                        "Done: stored result for"
                    } else {
                        "Created"
                    },
                    text(record, "jti"),
                    text(record, "issuer"),
                    text(record, "audience"),
                    capabilities(record.get("capabilities")),
                    text(record, "expires_at"),
                );
                // The token alone on stdout, so that it can be piped or captured.
                emit(text(&created, "token"))?;
            }
            note_replay(&response);
        }
        DelegationCommand::Verify { token, idempotency } => {
            let token = read_token(&token)?;
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "delegations", "verify"],
                    &json!({ "token": token }),
                    &key,
                )
                .await?;
            let verdict = response.json()?;
            let valid = verdict.get("valid").and_then(Value::as_bool) == Some(true);
            if session.json {
                emit(&response.text())?;
            } else {
                emit(&render_verdict(&verdict, valid))?;
            }
            note_replay(&response);
            return Ok(if valid {
                Outcome::Success
            } else {
                Outcome::Negative
            });
        }
        DelegationCommand::List(list) => run_list(&session, &list).await?,
        DelegationCommand::Revoke {
            jti,
            reason,
            idempotency,
        } => {
            let body = reason.map(|reason| json!({ "reason": reason }));
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .delete_keyed(&["v1", "delegations", &jti], body.as_ref(), &key)
                .await?;
            session.print(&response, |revoked| {
                let reason = text(revoked, "reason");
                if reason.is_empty() {
                    format!("Revoked delegation {}.", text(revoked, "jti"))
                } else {
                    format!("Revoked delegation {} ({reason}).", text(revoked, "jti"))
                }
            })?;
        }
    }
    Ok(Outcome::Success)
}

/// A token given on the command line, or read from stdin for `-` (trimmed).
fn read_token(argument: &str) -> anyhow::Result<String> {
    if argument != "-" {
        return Ok(argument.to_owned());
    }
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .context("reading the token from stdin")?;
    Ok(token.trim().to_owned())
}

/// The body of `POST /v1/delegations` the flags describe.
pub fn create_body(args: &DelegationCreateArgs) -> anyhow::Result<Value> {
    let mut body = json!({
        "issuer_agent_id": args.issuer,
        "audience_agent_id": args.audience,
        "capabilities": args.capabilities,
    });
    let fields = body.as_object_mut().context("the body is an object")?;
    if let Some(hours) = args.expiry_hours {
        fields.insert("expiry_hours".into(), json!(hours));
    }
    if let Some(parent) = &args.parent_token {
        fields.insert("parent_token".into(), json!(read_token(parent)?));
    }
    Ok(body)
}

/// Capabilities as `read, write`.
fn capabilities(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A verification verdict for a person.
fn render_verdict(verdict: &Value, valid: bool) -> String {
    if !valid {
        return format!(
            "INVALID: delegation token\n  reason: {}",
            text(verdict, "reason")
        );
    }
    let chain = verdict
        .get("proof_chain")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!(
        "VALID: delegation {}\n  delegator:    {}\n  audience:     {}\n  capabilities: {}\n  issued:       {}\n  expires:      {}\n  parents:      {chain}",
        text(verdict, "jti"),
        text(verdict, "delegator"),
        text(verdict, "audience"),
        capabilities(verdict.get("capabilities")),
        text(verdict, "issued_at"),
        text(verdict, "expires_at"),
    )
}

/// `delegation list`: the filters as the query, one line per delegation.
async fn run_list(session: &Session, args: &DelegationListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(agent_id) = &args.agent_id {
        query.push(("agent_id", agent_id.clone()));
    }
    if let Some(role) = args.role {
        let role = match role {
            DelegationRoleArg::Issuer => "issuer",
            DelegationRoleArg::Audience => "audience",
            DelegationRoleArg::Any => "any",
        };
        query.push(("role", role.to_owned()));
    }
    if args.include_expired {
        query.push(("include_expired", "true".to_owned()));
    }
    if args.include_revoked {
        query.push(("include_revoked", "true".to_owned()));
    }
    session
        .list(
            &["v1", "delegations"],
            query,
            &args.page,
            "delegations",
            &format!(
                "{:<23} {:<26} {:<26} {:<8} CAPABILITIES",
                "JTI", "ISSUER", "AUDIENCE", "STATUS"
            ),
            |record| {
                let revoked = record
                    .get("revoked")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                format!(
                    "{:<23} {:<26} {:<26} {:<8} {}",
                    text(record, "jti"),
                    text(record, "issuer"),
                    text(record, "audience"),
                    if revoked { "revoked" } else { "active" },
                    capabilities(record.get("capabilities")),
                )
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_verdict_shows_the_servers_reason() {
        let text = render_verdict(
            &json!({"valid": false, "reason": "Token has been revoked"}),
            false,
        );
        assert_eq!(
            text,
            "INVALID: delegation token\n  reason: Token has been revoked"
        );
    }

    #[test]
    fn a_valid_verdict_shows_who_may_do_what() {
        let text = render_verdict(
            &json!({"valid": true, "jti": "j", "delegator": "a", "audience": "b",
                    "capabilities": ["read", "write"], "proof_chain": ["t"],
                    "issued_at": "i", "expires_at": "e"}),
            true,
        );
        assert!(text.starts_with("VALID: delegation j"), "{text}");
        assert!(text.contains("capabilities: read, write"), "{text}");
        assert!(text.contains("parents:      1"), "{text}");
    }
}
