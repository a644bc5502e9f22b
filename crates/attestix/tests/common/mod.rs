//! Running the real `attestix` binary as a server process, for tests that kill it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_attestix");

/// A server process; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

/// How to start a server process.
#[derive(Default, Clone)]
pub struct ServerOptions<'a> {
    pub database_url: Option<&'a str>,
    /// A `FAILPOINTS` specification, e.g. `identity.after_commit=return(abort)`.
    pub failpoints: Option<&'a str>,
    pub lease: Option<&'a str>,
    pub extra_args: Vec<&'a str>,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, options: ServerOptions<'_>) -> Self {
        let mut child = Self::command(data_dir, options)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the attestix binary starts");
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

    /// Runs a server that must refuse to start; returns what it said on stderr.
    pub fn refused(data_dir: &Path, options: ServerOptions<'_>) -> String {
        let output = Self::command(data_dir, options)
            .stdout(Stdio::null())
            .output()
            .expect("the attestix binary runs");
        assert!(
            !output.status.success(),
            "the server was expected to refuse to start"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn command(data_dir: &Path, options: ServerOptions<'_>) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(["--idempotency-lease", options.lease.unwrap_or("1s")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(&options.extra_args)
            .env_remove("ATTESTIX_API_KEY")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn");
        if let Some(url) = options.database_url {
            command.args(["--database-url", url]);
        }
        match options.failpoints {
            Some(spec) => command.env("FAILPOINTS", spec),
            None => command.env_remove("FAILPOINTS"),
        };
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for the process to end by itself (for example at an aborting failpoint).
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("the process can be waited on") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit: was the binary built with the failpoints feature?"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no cleanup, exactly like a crashed machine.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates an API key with `attestix keys create` on the given data.
pub fn create_api_key(data_dir: &Path, database_url: Option<&str>) -> String {
    let mut command = Command::new(BINARY);
    command
        .args(["keys", "create", "--principal", "tester", "--data-dir"])
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

/// A keyed POST.
pub async fn post_keyed(
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

/// Every item of a list endpoint (one page of up to 1000).
pub async fn list(client: &reqwest::Client, url: &str, api_key: &str) -> Vec<Value> {
    let separator = if url.contains('?') { '&' } else { '?' };
    client
        .get(format!("{url}{separator}limit=1000&include_revoked=true"))
        .header("x-api-key", api_key)
        .send()
        .await
        .expect("listing works")
        .json()
        .await
        .expect("a JSON list")
}

/// Retries a keyed POST until it is no longer 409 (in flight), for at most 30 s.
pub async fn retry_until_done(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = post_keyed(client, url, api_key, key, body).await.unwrap();
        if response.status() != 409 {
            return response;
        }
        assert!(Instant::now() < deadline, "the key stayed reserved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
