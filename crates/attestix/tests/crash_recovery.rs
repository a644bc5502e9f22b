//! A real crash between "resource committed" and "response stored": the server
//! process aborts at a failpoint, is started again, and the client's retry with the
//! same key gets the resource that was already made, never a second one.
//!
//! The failpoints are compiled into the binary only for tests (the `failpoints`
//! feature of attestix-server, turned on by this crate's dev-dependencies).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idempotency_sql::pg_test::TestDatabase;
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_attestix");

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path, database_url: Option<&str>, failpoints: Option<&str>) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--idempotency-lease",
                "1s",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("ATTESTIX_API_KEY")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        match failpoints {
            Some(spec) => command.env("FAILPOINTS", spec),
            None => command.env_remove("FAILPOINTS"),
        };
        let mut child = command.spawn().expect("the attestix binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// Waits for the process to end by itself (it aborts at the failpoint).
    fn wait_for_crash(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("the process can be waited on") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the failpoint did not fire: was the binary built with the failpoints feature?"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_api_key(data_dir: &Path, database_url: Option<&str>) -> String {
    let mut command = Command::new(BINARY);
    command
        .args([
            "keys",
            "create",
            "--principal",
            "crash-tester",
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let output = command.output().expect("keys create runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("x-api-key", api_key)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

async fn list(client: &reqwest::Client, url: &str, api_key: &str) -> Vec<Value> {
    client
        .get(url)
        .header("x-api-key", api_key)
        .send()
        .await
        .expect("listing works")
        .json()
        .await
        .expect("a JSON list")
}

/// Crashes the server after the resource of `path` commits, restarts it, retries.
async fn crash_after_commit_then_retry(
    database_url: Option<&str>,
    failpoint: &str,
    path: &str,
    body: Value,
    list_path: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let api_key = create_api_key(dir.path(), database_url);
    let client = reqwest::Client::new();

    // A subject for credentials exists before the crash run.
    let mut body = body;
    if body.get("subject_id").is_some() {
        let setup = Server::start(dir.path(), database_url, None);
        let agent: Value = post(
            &client,
            &format!("{}/v1/identities", setup.base),
            &api_key,
            "subject",
            &json!({"display_name": "Subject", "source_protocol": "api_key"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        body["subject_id"] = agent["agent_id"].clone();
        drop(setup);
    }
    let before = {
        let server = Server::start(dir.path(), database_url, None);
        let count = list(&client, &format!("{}{list_path}", server.base), &api_key)
            .await
            .len();
        drop(server);
        count
    };

    let mut crashing = Server::start(
        dir.path(),
        database_url,
        Some(&format!("{failpoint}=return(abort)")),
    );
    let url = format!("{}{path}", crashing.base);
    let outcome = post(&client, &url, &api_key, "crash-key", &body).await;
    assert!(
        outcome.is_err(),
        "the client sees the connection die: {outcome:?}"
    );
    let status = crashing.wait_for_crash();
    assert!(!status.success(), "the server died at the failpoint");

    let server = Server::start(dir.path(), database_url, None);
    let url = format!("{}{path}", server.base);
    // The dead worker's reservation frees itself after its 1 s lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        let response = post(&client, &url, &api_key, "crash-key", &body)
            .await
            .unwrap();
        if response.status() != 409 {
            break response;
        }
        assert!(Instant::now() < deadline, "the key stayed reserved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(response.status(), 201);
    let recovered: Value = response.json().await.unwrap();

    let after = list(&client, &format!("{}{list_path}", server.base), &api_key).await;
    assert_eq!(
        after.len(),
        before + 1,
        "exactly one resource exists for the key"
    );
    let id_field = if path.contains("credentials") {
        "id"
    } else {
        "agent_id"
    };
    assert!(
        after
            .iter()
            .any(|item| item[id_field] == recovered[id_field]),
        "the retry returned the resource made before the crash"
    );
    // And from now on it is a plain replay.
    let replay = post(&client, &url, &api_key, "crash-key", &body)
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed[id_field], recovered[id_field]);
}

fn identity() -> Value {
    json!({"display_name": "Crash Bot", "source_protocol": "api_key"})
}

fn credential() -> Value {
    json!({"subject_id": "", "credential_type": "AgentIdentityCredential", "issuer_name": "Acme", "claims": {"role": "tester"}})
}

#[tokio::test]
async fn sqlite_identity_created_before_a_crash_is_returned_to_the_retry() {
    crash_after_commit_then_retry(
        None,
        "identity.after_commit",
        "/v1/identities",
        identity(),
        "/v1/identities",
    )
    .await;
}

#[tokio::test]
async fn sqlite_credential_issued_before_a_crash_is_returned_to_the_retry() {
    crash_after_commit_then_retry(
        None,
        "credential.after_commit",
        "/v1/credentials",
        credential(),
        "/v1/credentials",
    )
    .await;
}

#[tokio::test]
async fn postgres_identity_created_before_a_crash_is_returned_to_the_retry() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    crash_after_commit_then_retry(
        Some(database.url()),
        "identity.after_commit",
        "/v1/identities",
        identity(),
        "/v1/identities",
    )
    .await;
    let _ = database.drop_database().await;
}

#[tokio::test]
async fn postgres_credential_issued_before_a_crash_is_returned_to_the_retry() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    crash_after_commit_then_retry(
        Some(database.url()),
        "credential.after_commit",
        "/v1/credentials",
        credential(),
        "/v1/credentials",
    )
    .await;
    let _ = database.drop_database().await;
}
