//! `attestix identity import FILE`: many identities from a JSON Lines file, safely
//! resumable.
//!
//! Each line's Idempotency-Key is `import-<first 16 hex digits of the SHA-256 of
//! the file's bytes>-<line number>`. Running the same file again after an
//! interruption therefore replays the lines the server already did and creates
//! only the missing ones. Lines run concurrently (`--concurrency`, default 8).
//!
//! A line that the server refuses (422, 400, a key reused with another body)
//! is reported and the import goes on; so is a line whose key is still in flight
//! after the retries (a request of an earlier, killed run that the server still
//! holds until its lease ends). A failure that every following line
//! would share (the server unreachable or failing, the API key refused) stops
//! the import: the lines not sent are counted, and the command ends with an
//! error that says to run it again.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{emit, read_input, Outcome, Session};
use crate::cli::ImportArgs;
use crate::client::{ApiClient, ClientError};

/// A line of the file that holds a request.
#[derive(Debug)]
struct ImportLine {
    /// 1-based line number.
    number: usize,
    /// The request body.
    body: Value,
}

/// What became of one line.
#[derive(Debug)]
enum LineResult {
    /// A new identity.
    Created { agent_id: String },
    /// An identity already created (by an earlier run, or by this one's own
    /// timed-out attempt): its stored result was returned.
    Replayed { agent_id: String },
    /// The server refused the line; the import goes on.
    Failed { reason: String },
    /// A failure every line would share; the import stops.
    Stopped { error: ClientError },
    /// Not sent because the import had stopped.
    NotSent,
}

/// A line that failed, for the summary.
#[derive(Debug)]
struct LineFailure {
    number: usize,
    reason: String,
}

/// The idempotency key of a line: the file's digest prefix and the line number.
pub fn line_key(file_digest_prefix: &str, line_number: usize) -> String {
    format!("import-{file_digest_prefix}-{line_number}")
}

/// The first 16 hex digits of the SHA-256 of the file's bytes.
pub fn digest_prefix(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Splits the file into request lines and lines that cannot be requests.
fn parse_lines(bytes: &[u8]) -> (Vec<ImportLine>, Vec<LineFailure>) {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(body @ Value::Object(_)) => lines.push(ImportLine { number, body }),
            Ok(_) => failures.push(LineFailure {
                number,
                reason: "not a JSON object (each line is one create-identity request body)".into(),
            }),
            Err(error) => failures.push(LineFailure {
                number,
                reason: format!("not valid JSON: {error}"),
            }),
        }
    }
    (lines, failures)
}

/// Whether every following line would fail the same way.
fn stops_import(error: &ClientError) -> bool {
    match error {
        // A key still in flight (say, from a run that was killed) concerns one line.
        ClientError::Status { status, .. } => {
            status.is_server_error()
                || *status == StatusCode::TOO_MANY_REQUESTS
                || *status == StatusCode::UNAUTHORIZED
                || *status == StatusCode::FORBIDDEN
        }
        ClientError::NotJson { .. } => false,
        ClientError::BadServerUrl { .. }
        | ClientError::Unreachable { .. }
        | ClientError::Untrusted { .. }
        | ClientError::Interrupted { .. } => true,
    }
}

/// Sends one line (unless the import has stopped) and says what became of it.
async fn import_line(
    client: ApiClient,
    prefix: Arc<str>,
    stop: Arc<AtomicBool>,
    line: ImportLine,
) -> (usize, LineResult) {
    if stop.load(Ordering::SeqCst) {
        return (line.number, LineResult::NotSent);
    }
    let key = line_key(&prefix, line.number);
    let result = match client.post(&["v1", "identities"], &line.body, &key).await {
        Ok(response) => {
            let agent_id = response
                .json()
                .ok()
                .and_then(|uait| {
                    uait.get("agent_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            if response.replayed {
                LineResult::Replayed { agent_id }
            } else {
                LineResult::Created { agent_id }
            }
        }
        Err(error) if stops_import(&error) => {
            stop.store(true, Ordering::SeqCst);
            LineResult::Stopped { error }
        }
        Err(error) => LineResult::Failed {
            reason: error.summary(),
        },
    };
    (line.number, result)
}

/// A progress bar on a terminal, a hidden one otherwise.
fn progress_bar(lines: usize) -> ProgressBar {
    // Drawn only for a person watching; a pipe or a log file gets the summary alone.
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(lines as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} lines (eta {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Runs the import and prints its summary.
pub async fn run(session: &Session, args: &ImportArgs) -> anyhow::Result<Outcome> {
    let bytes = read_input(&args.file)?;
    let prefix: Arc<str> = digest_prefix(&bytes).into();
    let (lines, mut failures) = parse_lines(&bytes);
    let source = if args.file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };

    let client = session.client.clone().with_retry_messages(false);
    let stop = Arc::new(AtomicBool::new(false));
    let bar = progress_bar(lines.len());
    let requests = lines
        .into_iter()
        .map(|line| import_line(client.clone(), prefix.clone(), stop.clone(), line));
    let mut results =
        futures_util::stream::iter(requests).buffer_unordered(usize::from(args.concurrency));

    let (mut created, mut replayed, mut not_sent) = (0usize, 0usize, 0usize);
    let mut identities = Vec::new();
    let mut stopped_by = None;
    while let Some((number, result)) = results.next().await {
        match result {
            LineResult::Created { agent_id } => {
                created += 1;
                identities.push((number, agent_id, false));
            }
            LineResult::Replayed { agent_id } => {
                replayed += 1;
                identities.push((number, agent_id, true));
            }
            LineResult::Failed { reason } => failures.push(LineFailure { number, reason }),
            LineResult::Stopped { error } => {
                failures.push(LineFailure {
                    number,
                    reason: error.summary(),
                });
                stopped_by.get_or_insert(error);
            }
            LineResult::NotSent => not_sent += 1,
        }
        bar.inc(1);
        bar.set_message(format!(
            "{created} created, {replayed} replayed, {} failed",
            failures.len()
        ));
    }
    bar.finish_and_clear();
    failures.sort_by_key(|failure| failure.number);
    identities.sort_by_key(|(number, _, _)| *number);

    if session.json {
        let summary = json!({
            "file_sha256_prefix": &*prefix,
            "created": created,
            "replayed": replayed,
            "failed": failures.iter().map(|f| json!({"line": f.number, "reason": f.reason})).collect::<Vec<_>>(),
            "not_sent": not_sent,
            "identities": identities.iter().map(|(line, agent_id, replayed)| {
                json!({"line": line, "agent_id": agent_id, "replayed": replayed})
            }).collect::<Vec<_>>(),
        });
        emit(&summary.to_string())?;
    } else {
        let mut summary = format!(
            "Imported {source}: {created} created, {replayed} replayed (already done: the stored results were returned, nothing created twice), {} failed",
            failures.len()
        );
        if not_sent > 0 {
            summary.push_str(&format!(", {not_sent} not sent"));
        }
        emit(&format!("{summary}."))?;
        if !failures.is_empty() {
            emit("Failed lines:")?;
            for failure in &failures {
                emit(&format!("  line {}: {}", failure.number, failure.reason))?;
            }
        }
    }

    if let Some(error) = stopped_by {
        anyhow::bail!(
            "the import stopped early{}: {error}\nRun the same command again to finish it: the lines \
             already done are replayed, not created twice.",
            if not_sent > 0 {
                format!(" ({not_sent} lines not sent)")
            } else {
                String::new()
            }
        );
    }
    if failures.is_empty() {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::Negative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_file_and_the_line() {
        let prefix = digest_prefix(b"{\"display_name\":\"a\"}\n");
        assert_eq!(prefix.len(), 16);
        assert_eq!(prefix, digest_prefix(b"{\"display_name\":\"a\"}\n"));
        assert_ne!(prefix, digest_prefix(b"{\"display_name\":\"b\"}\n"));
        assert_eq!(line_key("0123456789abcdef", 7), "import-0123456789abcdef-7");
    }

    #[test]
    fn blank_lines_are_skipped_and_bad_lines_keep_their_numbers() {
        let (lines, failures) = parse_lines(b"{\"a\":1}\r\n\n  \n[1]\n{oops\n{\"b\":2}\n");
        assert_eq!(
            lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            vec![1, 6]
        );
        assert_eq!(
            failures.iter().map(|f| f.number).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert!(failures[1].reason.starts_with("not valid JSON"));
    }
}
