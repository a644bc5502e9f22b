//! One module per command, and what the client commands share: how they print
//! documents, replays, verification results and generated Idempotency-Keys.

pub mod agent_card;
pub mod anchor;
pub mod compliance;
pub mod credential;
pub mod delegation;
pub mod did;
pub mod health;
pub mod identity;
pub mod import;
pub mod keys;
pub mod mcp;
pub mod presentation;
pub mod provenance;
pub mod reputation;
pub mod serve;

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::cli::{ClientArgs, IdempotencyArgs, PageArgs};
use crate::client::{ApiClient, ApiResponse};

/// How a command that ran to its end came out; errors are reported separately.
///
/// Exit codes: 0 for [`Outcome::Success`], 1 for [`Outcome::Negative`], 2 for an
/// error (bad usage, an unreachable server, an error answer, an unreadable file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked, and the answer is yes.
    Success,
    /// It ran, and the answer is no: a verification found the document invalid,
    /// or an import had lines that failed.
    Negative,
}

/// What every client command needs: the client, and how to print.
#[derive(Debug, Clone)]
pub struct Session {
    /// The HTTP client.
    pub client: ApiClient,
    /// Print the server's JSON unchanged instead of a summary.
    pub json: bool,
}

impl Session {
    /// A session for a command group's client options.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        Ok(Self {
            client: ApiClient::new(args)?,
            json: args.json,
        })
    }

    /// Prints a response: its body unchanged with `--json`, otherwise what
    /// `human` makes of it. Says on stderr when the response was a replay.
    pub fn print(
        &self,
        response: &ApiResponse,
        human: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            emit(&response.text())?;
        } else {
            let document = response.json()?;
            emit(&human(&document))?;
        }
        note_replay(response);
        Ok(())
    }

    /// Prints a verification result and tells whether it says valid.
    pub fn print_verification(
        &self,
        response: &ApiResponse,
        what: &str,
    ) -> anyhow::Result<Outcome> {
        let document = response.json()?;
        let valid = document
            .get("valid")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if self.json {
            emit(&response.text())?;
        } else {
            emit(&render_verification(&document, what, valid))?;
        }
        note_replay(response);
        Ok(if valid {
            Outcome::Success
        } else {
            Outcome::Negative
        })
    }

    /// Fetches one page, or every page with `--all`, and prints the documents:
    /// with `--json` the server's array (one array holding every page with
    /// `--all`), otherwise one line per document made by `row`.
    pub async fn list(
        &self,
        path: &[&str],
        mut query: Vec<(&'static str, String)>,
        page: &PageArgs,
        noun: &str,
        header: &str,
        row: impl Fn(&Value) -> String,
    ) -> anyhow::Result<()> {
        match (page.limit, page.all) {
            (Some(limit), _) => query.push(("limit", limit.to_string())),
            (None, true) => query.push(("limit", "1000".to_owned())),
            (None, false) => {}
        }
        let mut cursor = page.cursor.clone();
        let mut documents = Vec::new();
        let next = loop {
            let mut page_query = query.clone();
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor.clone()));
            }
            let response = self.client.get(path, &page_query).await?;
            if self.json && !page.all {
                emit(&response.text())?;
                break response.next_cursor;
            }
            match response.json()? {
                Value::Array(items) => documents.extend(items),
                other => {
                    anyhow::bail!("the server answered with {other} where a list was expected")
                }
            }
            match response.next_cursor {
                Some(next) if page.all => cursor = Some(next),
                next => break next,
            }
        };
        if self.json {
            if page.all {
                emit(&Value::Array(documents).to_string())?;
            }
        } else if documents.is_empty() {
            eprintln!("No {noun}.");
        } else {
            emit(header)?;
            for document in &documents {
                emit(&row(document))?;
            }
        }
        if let Some(next) = next {
            eprintln!(
                "More {noun}: add --cursor {next} for the next page, or --all for every page."
            );
        }
        Ok(())
    }
}

/// Writes a line on stdout. A reader that went away (`attestix … | head`) is
/// not an error.
pub fn emit(line: &str) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    emit_bytes(&bytes)
}

/// Writes bytes on stdout, as [`emit`] does.
pub fn emit_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// The Idempotency-Key to send: the one given, or a new UUIDv4, printed on
/// stderr so that a person can retry the exact operation by hand.
pub fn idempotency_key(args: &IdempotencyArgs) -> String {
    match &args.idempotency_key {
        Some(key) => key.clone(),
        None => {
            let key = uuid::Uuid::new_v4().to_string();
            eprintln!("Idempotency-Key: {key} (reuse it with --idempotency-key to retry this exact operation)");
            key
        }
    }
}

/// Says on stderr that a response was a replay. Not who did the work: the
/// first attempt may have been this very command's, timed out and retried.
pub fn note_replay(response: &ApiResponse) {
    if response.replayed {
        eprintln!("(replayed: the operation is done; the server returned its stored result)");
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Reads a JSON document from a file, or stdin for `-`.
pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let bytes = read_input(path)?;
    serde_json::from_slice(&bytes).with_context(|| {
        let name = if path == Path::new("-") {
            "standard input".to_owned()
        } else {
            path.display().to_string()
        };
        format!("{name} is not valid JSON")
    })
}

/// A string field of a document, or "" when absent.
pub fn text<'a>(document: &'a Value, field: &str) -> &'a str {
    document
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A document as indented JSON.
pub fn pretty(document: &Value) -> String {
    serde_json::to_string_pretty(document).unwrap_or_else(|_| document.to_string())
}

/// A verification result for a person: the verdict, then each check.
fn render_verification(document: &Value, what: &str, valid: bool) -> String {
    let mut lines = vec![format!(
        "{}: {what}",
        if valid { "VALID" } else { "INVALID" }
    )];
    let checks = match document.get("checks") {
        Some(Value::Object(checks)) => checks.iter().collect::<Vec<_>>(),
        // A presentation's checks are the result's own fields.
        _ => document
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .filter(|(name, value)| {
                        *name != "valid" && (value.is_boolean() || value.is_null())
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    for (name, value) in checks {
        let verdict = match value {
            Value::Bool(true) => "yes",
            Value::Bool(false) => "NO",
            _ => "not checked",
        };
        lines.push(format!("  {name:<24} {verdict}"));
    }
    if let Some(Value::Array(credentials)) = document.get("credentials") {
        for (index, credential) in credentials.iter().enumerate() {
            let valid = credential
                .get("valid")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let failed = credential
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(name, value)| *name != "valid" && **value == Value::Bool(false))
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let verdict = if valid {
                "valid".to_owned()
            } else {
                format!("INVALID ({})", failed.join(", "))
            };
            lines.push(format!("  credential {:<13} {verdict}", index + 1));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_verification_shows_the_verdict_and_each_check() {
        let result = json!({"valid": false, "agent_id": "attestix:1", "checks": {"exists": true, "not_revoked": false}});
        let text = render_verification(&result, "identity attestix:1", false);
        assert!(text.starts_with("INVALID: identity attestix:1"), "{text}");
        assert!(
            text.contains("not_revoked") && text.contains("NO"),
            "{text}"
        );
    }
}
