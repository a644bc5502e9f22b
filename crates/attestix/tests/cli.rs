//! The `attestix` binary's client commands, run as a person or a script would run
//! them, against a server started in the test on port 0.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestix_server::{Application, IdempotencySettings, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

/// A server running in this process, on a fresh data directory.
struct TestServer {
    port: u16,
    api_key: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(IdempotencySettings::default()).await
    }

    async fn start_with(idempotency: IdempotencySettings) -> Self {
        let data = tempfile::tempdir().expect("a temporary directory can be made");
        let app = Application::build(ServerConfig {
            bind: "127.0.0.1:0".parse().expect("a literal address parses"),
            data_dir: data.path().to_path_buf(),
            idempotency,
            ..ServerConfig::default()
        })
        .await
        .expect("the server starts");
        let api_key = app
            .first_admin_key()
            .expect("an empty data directory gets a first admin key")
            .to_owned();
        let port = app.port();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            port,
            api_key,
            shutdown: Some(shutdown),
            _data: data,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The `attestix` command, pointed at this server with the admin key.
    fn attestix(&self) -> Command {
        self.attestix_via(&self.url())
    }

    /// The `attestix` command, pointed at `url` with this server's admin key.
    fn attestix_via(&self, url: &str) -> Command {
        let mut command = attestix();
        command
            .env("ATTESTIX_URL", url)
            .env("ATTESTIX_API_KEY", &self.api_key);
        command
    }

    /// Every identity of the admin principal, read straight from the API.
    async fn identities(&self) -> Vec<Value> {
        let http = reqwest::Client::new();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/v1/identities?limit=1000&include_revoked=true",
                self.url()
            );
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let response = http
                .get(url)
                .header("X-API-Key", &self.api_key)
                .send()
                .await
                .expect("the server answers");
            assert_eq!(response.status(), 200);
            cursor = response
                .headers()
                .get("x-next-cursor")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let page: Vec<Value> = response.json().await.expect("a list is a JSON array");
            all.extend(page);
            if cursor.is_none() {
                return all;
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The binary, with none of the caller's client settings leaking in.
fn attestix() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attestix"));
    command
        .env_remove("ATTESTIX_URL")
        .env_remove("ATTESTIX_API_KEY")
        .env_remove("ATTESTIX_TENANT")
        .env_remove("ATTESTIX_TIMEOUT")
        .kill_on_drop(true);
    command
}

async fn run(command: &mut Command) -> Output {
    command.output().await.expect("the attestix binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}):\n{}\nstderr:\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// What the test proxy does to the traffic it forwards.
#[derive(Clone, Copy)]
enum ProxyMode {
    /// The first connection: forward the request, wait until the server has
    /// answered, then close the client's connection without forwarding the answer.
    /// Later connections pass through.
    DropFirstResponse,
    /// Forward everything, each chunk from the client this much later.
    Delay(Duration),
}

/// A TCP proxy in front of `upstream`; returns its address and how many
/// responses it has dropped.
async fn start_proxy(upstream: SocketAddr, mode: ProxyMode) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the proxy binds");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let dropped = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(AtomicBool::new(true));
    let counter = dropped.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let drop_this =
                matches!(mode, ProxyMode::DropFirstResponse) && first.swap(false, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                match mode {
                    ProxyMode::DropFirstResponse if drop_this => {
                        drop_first_response(client, server).await;
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    ProxyMode::DropFirstResponse => {
                        let (mut client, mut server) = (client, server);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    ProxyMode::Delay(delay) => delay_requests(client, server, delay).await,
                }
            });
        }
    });
    (address, dropped)
}

async fn drop_first_response(client: TcpStream, server: TcpStream) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let forward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // The first bytes of the answer mean the server has handled the request.
    let mut answer = [0u8; 1];
    let _ = server_read.read(&mut answer).await;
    forward.abort();
    drop(client_write);
}

async fn delay_requests(client: TcpStream, server: TcpStream, delay: Duration) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tokio::time::sleep(delay).await;
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    upstream.abort();
}

/// A port on which nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port can be bound");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

fn write_import_file(dir: &Path, lines: usize) -> std::path::PathBuf {
    let path = dir.join("agents.jsonl");
    let mut text = String::new();
    for line in 1..=lines {
        text.push_str(&format!(
            "{{\"display_name\":\"agent {line}\",\"source_protocol\":\"api_key\",\"capabilities\":[\"import\"]}}\n"
        ));
    }
    std::fs::write(&path, text).expect("the import file is written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_with_the_same_key_returns_the_same_identity_marked_as_replayed() {
    let server = TestServer::start().await;
    let create = |server: &TestServer| {
        let mut command = server.attestix();
        command.args([
            "identity",
            "create",
            "--name",
            "Report Bot",
            "--capability",
            "summarize",
            "--idempotency-key",
            "order-42",
            "--json",
        ]);
        command
    };

    let first = run(&mut create(&server)).await;
    assert_exit(&first, 0);
    let second = run(&mut create(&server)).await;
    assert_exit(&second, 0);

    let (first_uait, second_uait) = (json_stdout(&first), json_stdout(&second));
    assert_eq!(first_uait["agent_id"], second_uait["agent_id"]);
    assert_eq!(
        first.stdout, second.stdout,
        "a replay is the same document, byte for byte"
    );
    assert!(!stderr(&first).contains("replayed"), "{}", stderr(&first));
    assert!(
        stderr(&second).contains("(replayed:"),
        "{}",
        stderr(&second)
    );
    assert!(
        !stderr(&first).contains("Idempotency-Key:"),
        "an explicit key is not announced again"
    );
    assert_eq!(server.identities().await.len(), 1);

    // The human output says so as well.
    let mut human = server.attestix();
    human.args([
        "identity",
        "create",
        "--name",
        "Report Bot",
        "--capability",
        "summarize",
    ]);
    human.args(["--idempotency-key", "order-42"]);
    let human = run(&mut human).await;
    assert_exit(&human, 0);
    assert!(
        stdout(&human).starts_with("Done: stored result for identity "),
        "{}",
        stdout(&human)
    );
    assert!(stdout(&human).contains(first_uait["agent_id"].as_str().unwrap_or("?")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_without_a_key_sends_a_generated_uuid_v4_and_prints_it() {
    let server = TestServer::start().await;
    let output = run(server
        .attestix()
        .args(["identity", "create", "--name", "Bot", "--json"]))
    .await;
    assert_exit(&output, 0);
    let agent_id = json_stdout(&output)["agent_id"].clone();

    let line = stderr(&output)
        .lines()
        .find_map(|line| line.strip_prefix("Idempotency-Key: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no Idempotency-Key on stderr:\n{}", stderr(&output)));
    let key = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let uuid =
        uuid::Uuid::parse_str(&key).unwrap_or_else(|error| panic!("{key} is not a UUID: {error}"));
    assert_eq!(uuid.get_version_num(), 4, "{key} is not a version 4 UUID");
    assert!(
        line.contains("--idempotency-key"),
        "the line says how to reuse it: {line}"
    );

    // The printed key is the one that was sent: retrying with it replays.
    let retry = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "Bot",
        "--json",
        "--idempotency-key",
        &key,
    ]))
    .await;
    assert_exit(&retry, 0);
    assert_eq!(json_stdout(&retry)["agent_id"], agent_id);
    assert!(stderr(&retry).contains("(replayed:"), "{}", stderr(&retry));
    assert_eq!(server.identities().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_response_is_retried_with_the_same_key_and_creates_exactly_one_identity() {
    let server = TestServer::start().await;
    let (proxy, dropped) = start_proxy(server.addr(), ProxyMode::DropFirstResponse).await;

    let output = run(server.attestix_via(&format!("http://{proxy}")).args([
        "identity",
        "create",
        "--name",
        "Flaky Network Bot",
        "--retries",
        "3",
        "--json",
    ]))
    .await;
    assert_exit(&output, 0);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the proxy dropped the first answer"
    );
    let errors = stderr(&output);
    assert!(errors.contains("retrying in"), "{errors}");
    assert!(errors.contains("with the same Idempotency-Key"), "{errors}");
    assert!(
        errors.contains("(replayed:"),
        "the retry got the first execution's answer: {errors}"
    );

    let identities = server.identities().await;
    assert_eq!(identities.len(), 1, "one create, however many sends");
    assert_eq!(identities[0]["agent_id"], json_stdout(&output)["agent_id"]);
}

/// Issue 16: when the first attempt's answer was lost and the retry replayed it,
/// the CLI said "Already created … nothing new was created", as if someone else
/// had done the work, although this very command had. It now says the operation
/// is done and the stored result was returned, without saying who did it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_replays_its_own_first_attempt_claims_nobody_else_did_it() {
    let server = TestServer::start().await;
    let (proxy, dropped) = start_proxy(server.addr(), ProxyMode::DropFirstResponse).await;
    let output = run(server.attestix_via(&format!("http://{proxy}")).args([
        "identity",
        "create",
        "--name",
        "Own Retry Bot",
        "--retries",
        "3",
    ]))
    .await;
    assert_exit(&output, 0);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the first answer was lost"
    );
    let (out, errors) = (stdout(&output), stderr(&output));
    for claim in ["Already", "already been done", "nothing new was created"] {
        assert!(
            !out.contains(claim) && !errors.contains(claim),
            "{claim:?} claims someone else did it:\n{out}\n{errors}"
        );
    }
    assert!(
        out.starts_with("Done: stored result for identity "),
        "{out}"
    );
    assert!(
        errors.contains("the operation is done; the server returned its stored result"),
        "{errors}"
    );
    assert_eq!(server.identities().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_dropped_response_says_how_to_retry_safely() {
    let server = TestServer::start().await;
    let (proxy, _dropped) = start_proxy(server.addr(), ProxyMode::DropFirstResponse).await;

    let output = run(server.attestix_via(&format!("http://{proxy}")).args([
        "identity",
        "create",
        "--name",
        "Bot",
        "--retries",
        "0",
        "--idempotency-key",
        "by-hand-1",
    ]))
    .await;
    assert_exit(&output, 2);
    let errors = stderr(&output);
    assert!(errors.contains("may or may not have done it"), "{errors}");
    assert!(errors.contains("--idempotency-key by-hand-1"), "{errors}");

    let retry = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "Bot",
        "--idempotency-key",
        "by-hand-1",
        "--json",
    ]))
    .await;
    assert_exit(&retry, 0);
    assert!(stderr(&retry).contains("(replayed:"), "{}", stderr(&retry));
    assert_eq!(server.identities().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_halfway_and_run_again_creates_exactly_the_missing_identities() {
    // The default 60 s lease: requests cut off by the kill are carried through by
    // the server (the layer detaches them once reserved), so no key stays stuck and
    // the second run needs only its ordinary in-flight retries.
    let server = TestServer::start_with(IdempotencySettings::default()).await;
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let file = write_import_file(dir.path(), 500);
    let file = file.to_str().expect("the temporary path is UTF-8");

    // Slowed down by a proxy, so that the kill lands halfway on any machine.
    let (proxy, _) = start_proxy(server.addr(), ProxyMode::Delay(Duration::from_millis(10))).await;
    let mut first = server
        .attestix_via(&format!("http://{proxy}"))
        .args(["identity", "import", file, "--concurrency", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the import starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = server.identities().await.len();
        if count >= 150 {
            break;
        }
        if let Ok(Some(status)) = first.try_wait() {
            panic!("the import ended ({status}) before it was killed, with {count} identities");
        }
        assert!(
            Instant::now() < deadline,
            "the import made only {count} identities in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.expect("the import can be killed");
    // Requests the server had received still finish; let them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done_before = server.identities().await;
    assert!(
        (150..500).contains(&done_before.len()),
        "killed halfway: {} identities",
        done_before.len()
    );

    let second =
        run(server
            .attestix()
            .args(["identity", "import", file, "--json", "--retries", "6"]))
        .await;
    assert_exit(&second, 0);
    let summary = json_stdout(&second);
    let created = summary["created"].as_u64().unwrap_or(u64::MAX);
    let replayed = summary["replayed"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(created + replayed, 500, "{summary}");
    assert!(
        replayed >= done_before.len() as u64,
        "every line done before the kill is replayed: {summary}"
    );
    assert_eq!(summary["failed"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["not_sent"], 0, "{summary}");

    let identities = server.identities().await;
    assert_eq!(identities.len(), 500, "exactly one identity per line");
    let mut names: Vec<&str> = identities
        .iter()
        .filter_map(|uait| uait["display_name"].as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 500, "no line was created twice");

    // A third run creates nothing, and says so in words.
    let third = run(server.attestix().args(["identity", "import", file])).await;
    assert_exit(&third, 0);
    assert!(
        stdout(&third).contains("0 created, 500 replayed"),
        "{}",
        stdout(&third)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reports_bad_lines_by_number_and_exits_1() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(
        &path,
        "{\"display_name\":\"one\",\"source_protocol\":\"api_key\"}\n\
         \n\
         {not json\n\
         {\"display_name\":\"  \",\"source_protocol\":\"api_key\"}\n\
         {\"display_name\":\"five\",\"source_protocol\":\"mcp\"}\n",
    )
    .expect("the file is written");

    let output =
        run(server
            .attestix()
            .args(["identity", "import", path.to_str().unwrap_or_default()]))
        .await;
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(text.contains("2 created, 0 replayed"), "{text}");
    assert!(text.contains("2 failed"), "{text}");
    assert!(text.contains("line 3: not valid JSON"), "{text}");
    assert!(
        text.contains("line 4: The request is invalid (HTTP 422)"),
        "{text}"
    );
    assert!(text.contains("display_name"), "{text}");
    assert_eq!(server.identities().await.len(), 2);

    // From stdin, the same bytes are the same import: nothing new.
    let mut again = server.attestix();
    again
        .args(["identity", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = again.spawn().expect("the import starts");
    let bytes = std::fs::read(&path).expect("the file is readable");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(&bytes).await.expect("stdin takes the file");
    drop(stdin);
    let output = child.wait_with_output().await.expect("the import ends");
    assert_exit(&output, 1);
    assert!(
        stdout(&output).contains("0 created, 2 replayed"),
        "{}",
        stdout(&output)
    );
    assert_eq!(server.identities().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_as_json_for_every_kind_of_document() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory can be made");

    let health = run(server.attestix().args(["health", "--json"])).await;
    assert_exit(&health, 0);
    assert_eq!(json_stdout(&health)["status"], "healthy");

    let identity = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "Bot",
        "--protocol",
        "mcp",
        "--description",
        "d",
        "--issuer",
        "Acme",
        "--expiry-days",
        "30",
        "--identity-token",
        "tok-1234567890",
        "--json",
    ]))
    .await;
    assert_exit(&identity, 0);
    let uait = json_stdout(&identity);
    let agent_id = uait["agent_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(uait["source_protocol"], "mcp");
    assert_eq!(uait["issuer"]["name"], "Acme");
    assert_eq!(uait["identity_token"], "tok-...7890");

    let got = run(server
        .attestix()
        .args(["identity", "get", &agent_id, "--json"]))
    .await;
    assert_exit(&got, 0);
    assert_eq!(json_stdout(&got), uait);

    let list = run(server
        .attestix()
        .args(["identity", "list", "--protocol", "mcp", "--json"]))
    .await;
    assert_exit(&list, 0);
    assert_eq!(json_stdout(&list).as_array().map(Vec::len), Some(1));

    let issued = run(server.attestix().args([
        "credential",
        "issue",
        "--subject",
        &agent_id,
        "--type",
        "AgentIdentityCredential",
        "--issuer",
        "Acme",
        "--claim",
        "role=reporter",
        "--claim",
        "level=2",
        "--json",
    ]))
    .await;
    assert_exit(&issued, 0);
    let credential = json_stdout(&issued);
    assert_eq!(credential["credentialSubject"]["role"], "reporter");
    assert_eq!(credential["credentialSubject"]["level"], 2);
    let credential_id = credential["id"].as_str().unwrap_or_default().to_owned();

    let credential_file = dir.path().join("credential.json");
    std::fs::write(&credential_file, credential.to_string()).expect("the credential is saved");
    let external = run(server.attestix().args([
        "credential",
        "verify-external",
        credential_file.to_str().unwrap_or_default(),
        "--json",
    ]))
    .await;
    assert_exit(&external, 0);
    assert_eq!(json_stdout(&external)["valid"], true);

    let listed = run(server.attestix().args([
        "credential",
        "list",
        "--agent",
        &agent_id,
        "--all",
        "--json",
    ]))
    .await;
    assert_exit(&listed, 0);
    assert_eq!(json_stdout(&listed).as_array().map(Vec::len), Some(1));

    let presentation = run(server.attestix().args([
        "presentation",
        "create",
        "--agent",
        &agent_id,
        "--credential",
        &credential_id,
        "--challenge",
        "nonce-1",
        "--json",
    ]))
    .await;
    assert_exit(&presentation, 0);
    let presentation_file = dir.path().join("presentation.json");
    std::fs::write(&presentation_file, &presentation.stdout).expect("the presentation is saved");
    let verified = run(server.attestix().args([
        "presentation",
        "verify",
        presentation_file.to_str().unwrap_or_default(),
        "--challenge",
        "nonce-1",
        "--json",
    ]))
    .await;
    assert_exit(&verified, 0);
    assert_eq!(json_stdout(&verified)["valid"], true);

    let revoked = run(server.attestix().args([
        "credential",
        "revoke",
        &credential_id,
        "--reason",
        "done",
        "--json",
    ]))
    .await;
    assert_exit(&revoked, 0);
    assert_eq!(json_stdout(&revoked)["revoked"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_1_with_json_when_the_identity_is_revoked() {
    let server = TestServer::start().await;
    let created = run(server
        .attestix()
        .args(["identity", "create", "--name", "Bot", "--json"]))
    .await;
    assert_exit(&created, 0);
    let agent_id = json_stdout(&created)["agent_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let valid = run(server
        .attestix()
        .args(["identity", "verify", &agent_id, "--json"]))
    .await;
    assert_exit(&valid, 0);
    assert_eq!(json_stdout(&valid)["valid"], true);

    let revoke =
        run(server
            .attestix()
            .args(["identity", "revoke", &agent_id, "--reason", "compromised"]))
        .await;
    assert_exit(&revoke, 0);
    assert!(
        stdout(&revoke).contains("Revoked identity"),
        "{}",
        stdout(&revoke)
    );

    let invalid = run(server
        .attestix()
        .args(["identity", "verify", &agent_id, "--json"]))
    .await;
    assert_exit(&invalid, 1);
    let result = json_stdout(&invalid);
    assert_eq!(result["valid"], false);
    assert_eq!(result["checks"]["not_revoked"], false);

    let human = run(server.attestix().args(["identity", "verify", &agent_id])).await;
    assert_exit(&human, 1);
    assert!(
        stdout(&human).starts_with("INVALID: identity"),
        "{}",
        stdout(&human)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_2_with_a_usage_message() {
    let cases: &[&[&str]] = &[
        &["identity", "create", "--name", "Bot", "--no-such-flag"],
        &["identity", "create"],
        &[
            "credential",
            "issue",
            "--subject",
            "s",
            "--type",
            "t",
            "--issuer",
            "i",
            "--claim",
            "no-equals-sign",
        ],
        &["identity", "create", "--name", "Bot", "--timeout", "soon"],
        &[
            "identity",
            "create",
            "--name",
            "Bot",
            "--idempotency-key",
            "has space",
        ],
        &["identity", "list", "--limit", "0"],
    ];
    for args in cases {
        let output = run(attestix().args(*args)).await;
        assert_exit(&output, 2);
        let errors = stderr(&output);
        assert!(errors.starts_with("error:"), "{args:?}: {errors}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}");
    let output =
        run(attestix().args(["identity", "list", "--server", &url, "--retries", "1"])).await;
    assert_exit(&output, 2);
    let errors = stderr(&output);
    assert!(
        errors.contains(&format!("cannot connect to the Attestix server at {url}")),
        "{errors}"
    );
    assert!(
        errors.contains(&format!("is the server running at {url}?")),
        "{errors}"
    );
    assert!(errors.contains("attestix serve"), "{errors}");
    assert!(
        errors.contains("retrying"),
        "one retry was announced: {errors}"
    );

    // https is spoken now: a closed https port is unreachable like any other.
    let https_url = format!("https://127.0.0.1:{port}");
    let https = run(attestix().args(["health", "--server", &https_url, "--retries", "0"])).await;
    assert_exit(&https, 2);
    assert!(
        stderr(&https).contains(&format!(
            "cannot connect to the Attestix server at {https_url}"
        )),
        "{}",
        stderr(&https)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_api_key_says_what_to_check() {
    let server = TestServer::start().await;
    let wrong = run(attestix().args([
        "identity",
        "list",
        "--server",
        &server.url(),
        "--api-key",
        "atx_wrong",
    ]))
    .await;
    assert_exit(&wrong, 2);
    let errors = stderr(&wrong);
    assert!(errors.contains("HTTP 403"), "{errors}");
    assert!(
        errors.contains("--api-key") && errors.contains("ATTESTIX_API_KEY"),
        "{errors}"
    );

    let missing = run(attestix().args([
        "identity",
        "create",
        "--name",
        "Bot",
        "--server",
        &server.url(),
    ]))
    .await;
    assert_exit(&missing, 2);
    assert!(
        stderr(&missing).contains("HTTP 401"),
        "{}",
        stderr(&missing)
    );
    assert!(
        stderr(&missing).contains("ATTESTIX_API_KEY"),
        "{}",
        stderr(&missing)
    );

    // /health needs no key.
    let health = run(attestix().args(["health", "--server", &server.url()])).await;
    assert_exit(&health, 0);
    assert!(stdout(&health).contains("healthy"), "{}", stdout(&health));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_request_is_final_and_explained() {
    let server = TestServer::start().await;
    let first = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "One",
        "--idempotency-key",
        "k-1",
    ]))
    .await;
    assert_exit(&first, 0);
    let other = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "Two",
        "--idempotency-key",
        "k-1",
    ]))
    .await;
    assert_exit(&other, 2);
    let errors = stderr(&other);
    assert!(errors.contains("HTTP 409"), "{errors}");
    assert!(
        !errors.contains("retrying"),
        "a mismatch is not retried: {errors}"
    );
    assert!(
        errors.contains("hint: leave out --idempotency-key"),
        "{errors}"
    );
    assert_eq!(server.identities().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_option_keeps_identities_apart() {
    let server = TestServer::start().await;
    let created = run(server
        .attestix()
        .args(["identity", "create", "--name", "Bot", "--tenant", "team-a"]))
    .await;
    assert_exit(&created, 0);
    let team_a = run(server
        .attestix()
        .args(["identity", "list", "--tenant", "team-a", "--json"]))
    .await;
    assert_eq!(json_stdout(&team_a).as_array().map(Vec::len), Some(1));
    let default = run(server.attestix().args(["identity", "list", "--json"])).await;
    assert_eq!(json_stdout(&default).as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_own_flags_and_completions_are_printed() {
    let help = run(attestix().args(["serve", "--help"])).await;
    assert_exit(&help, 0);
    let text = stdout(&help);
    assert!(
        text.contains("--api-key") && text.contains("--bind"),
        "{text}"
    );
    assert!(
        !text.contains("--server") && !text.contains("--retries"),
        "{text}"
    );

    let completions = run(attestix().args(["completions", "bash"])).await;
    assert_exit(&completions, 0);
    assert!(
        stdout(&completions).contains("attestix"),
        "{}",
        stdout(&completions)
    );
}

/// Issue 16: `keys create --principal default` (or `anonymous`) made a key that
/// silently joined the principal of the legacy `ATTESTIX_API_KEY` (or of every
/// caller when authentication is off), sharing its identities and idempotency
/// records. Those names are refused with a clear error, and no key is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_refuses_the_built_in_principals() {
    let data = tempfile::tempdir().expect("a temporary directory can be made");
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    for principal in ["default", "anonymous"] {
        let output = run(attestix().args([
            "keys",
            "create",
            "--principal",
            principal,
            "--data-dir",
            data_dir,
        ]))
        .await;
        assert_exit(&output, 2);
        let message = stderr(&output);
        assert!(
            message.contains(&format!("`{principal}`")) && message.contains("reserved"),
            "{message}"
        );
        assert!(stdout(&output).is_empty(), "no key is printed");
    }
    let listed = run(attestix().args(["keys", "list", "--data-dir", data_dir])).await;
    assert_exit(&listed, 0);
    assert!(
        stdout(&listed).is_empty(),
        "no key was stored: {}",
        stdout(&listed)
    );

    // An ordinary name still works.
    let output = run(attestix().args([
        "keys",
        "create",
        "--principal",
        "ci-bot",
        "--data-dir",
        data_dir,
    ]))
    .await;
    assert_exit(&output, 0);
    assert!(stdout(&output).starts_with("atx_"), "{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_commands_create_chain_verify_list_and_revoke_with_keys() {
    let server = TestServer::start().await;
    let mut agents = Vec::new();
    for name in ["Alice", "Bob"] {
        let created = run(server
            .attestix()
            .args(["identity", "create", "--name", name, "--json"]))
        .await;
        assert_exit(&created, 0);
        agents.push(
            json_stdout(&created)["agent_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (alice, bob) = (&agents[0], &agents[1]);

    // The token alone on stdout; the same key twice is one delegation.
    let create = |key: &'static str| {
        let mut command = server.attestix();
        command.args([
            "delegation",
            "create",
            "--issuer",
            alice,
            "--audience",
            bob,
            "--capability",
            "read",
            "--capability",
            "write",
            "--expiry-hours",
            "2",
            "--idempotency-key",
            key,
        ]);
        command
    };
    let first = run(&mut create("cli-deleg-1")).await;
    assert_exit(&first, 0);
    let token = stdout(&first).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert!(
        stderr(&first).contains("Created delegation"),
        "{}",
        stderr(&first)
    );
    let again = run(&mut create("cli-deleg-1")).await;
    assert_exit(&again, 0);
    assert_eq!(
        stdout(&again).trim(),
        token,
        "the replay prints the same token"
    );
    assert!(stderr(&again).contains("replayed"), "{}", stderr(&again));

    // Bob passes on part of it; the chain verifies.
    let child = run(server.attestix().args([
        "delegation",
        "create",
        "--issuer",
        bob,
        "--audience",
        "did:key:zCarol",
        "--capability",
        "read",
        "--parent-token",
        &token,
        "--json",
    ]))
    .await;
    assert_exit(&child, 0);
    let child_token = json_stdout(&child)["token"].as_str().unwrap().to_owned();
    let verified = run(server
        .attestix()
        .args(["delegation", "verify", &child_token]))
    .await;
    assert_exit(&verified, 0);
    assert!(
        stdout(&verified).starts_with("VALID: delegation"),
        "{}",
        stdout(&verified)
    );
    assert!(
        stdout(&verified).contains("parents:      1"),
        "{}",
        stdout(&verified)
    );
    // More than the parent holds is refused, naming the field.
    let escalated = run(server.attestix().args([
        "delegation",
        "create",
        "--issuer",
        bob,
        "--audience",
        "did:key:zCarol",
        "--capability",
        "admin",
        "--parent-token",
        &token,
    ]))
    .await;
    assert_exit(&escalated, 2);
    assert!(
        stderr(&escalated).contains("capabilities"),
        "{}",
        stderr(&escalated)
    );

    let listed = run(server.attestix().args([
        "delegation",
        "list",
        "--agent",
        alice,
        "--role",
        "issuer",
        "--json",
    ]))
    .await;
    assert_exit(&listed, 0);
    let records = json_stdout(&listed);
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    let jti = records[0]["jti"].as_str().unwrap().to_owned();

    // A revocation retried with its key replays; the chain then fails to verify.
    let revoke = || {
        let mut command = server.attestix();
        command.args([
            "delegation",
            "revoke",
            &jti,
            "--reason",
            "rotated",
            "--idempotency-key",
            "cli-rev-1",
        ]);
        command
    };
    let revoked = run(&mut revoke()).await;
    assert_exit(&revoked, 0);
    assert!(
        stdout(&revoked).contains("Revoked delegation"),
        "{}",
        stdout(&revoked)
    );
    let revoked_again = run(&mut revoke()).await;
    assert_exit(&revoked_again, 0);
    assert!(
        stderr(&revoked_again).contains("replayed"),
        "{}",
        stderr(&revoked_again)
    );
    let invalid = run(server
        .attestix()
        .args(["delegation", "verify", &child_token, "--json"]))
    .await;
    assert_exit(&invalid, 1);
    assert_eq!(
        json_stdout(&invalid)["reason"],
        "Invalid parent in proof chain: Token has been revoked"
    );
    let unknown_role =
        run(server
            .attestix()
            .args(["delegation", "list", "--agent", alice, "--role", "boss"]))
        .await;
    assert_exit(&unknown_role, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn did_commands_create_and_resolve_without_showing_a_private_key() {
    let server = TestServer::start().await;
    let created = run(server.attestix().args([
        "did",
        "create-key",
        "--idempotency-key",
        "cli-did-1",
        "--json",
    ]))
    .await;
    assert_exit(&created, 0);
    let document = json_stdout(&created);
    let did = document["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    assert!(
        !stdout(&created).contains("private_key"),
        "{}",
        stdout(&created)
    );
    let again =
        run(server
            .attestix()
            .args(["did", "create-key", "--idempotency-key", "cli-did-1"]))
        .await;
    assert_exit(&again, 0);
    assert!(stdout(&again).starts_with(&did), "{}", stdout(&again));

    let resolved = run(server.attestix().args(["did", "resolve", &did, "--json"])).await;
    assert_exit(&resolved, 0);
    assert_eq!(json_stdout(&resolved), document["did_document"]);

    let web = run(server.attestix().args([
        "did",
        "create-web",
        "--domain",
        "example.com%3A8443",
        "--path",
        "agents/bot",
    ]))
    .await;
    assert_exit(&web, 0);
    assert!(
        stdout(&web).contains("https://example.com:8443/agents/bot/did.json"),
        "{}",
        stdout(&web)
    );
    let bad = run(server
        .attestix()
        .args(["did", "create-web", "--domain", "Example.COM"]))
    .await;
    assert_exit(&bad, 2);
    assert!(stderr(&bad).contains("domain"), "{}", stderr(&bad));
    let unsupported = run(server
        .attestix()
        .args(["did", "resolve", "did:web:db.internal"]))
    .await;
    assert_exit(&unsupported, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_translate_prints_each_format() {
    let server = TestServer::start().await;
    let created = run(server.attestix().args([
        "identity",
        "create",
        "--name",
        "Card Bot",
        "--capability",
        "chat",
        "--json",
    ]))
    .await;
    assert_exit(&created, 0);
    let agent_id = json_stdout(&created)["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let card = run(server.attestix().args([
        "identity",
        "translate",
        &agent_id,
        "--format",
        "a2a-agent-card",
        "--json",
    ]))
    .await;
    assert_exit(&card, 0);
    assert_eq!(json_stdout(&card)["skills"][0]["name"], "chat");
    let document = run(server.attestix().args([
        "identity",
        "translate",
        &agent_id,
        "--format",
        "did-document",
    ]))
    .await;
    assert_exit(&document, 0);
    assert!(
        stdout(&document).contains("verificationMethod"),
        "{}",
        stdout(&document)
    );
    let bad = run(server
        .attestix()
        .args(["identity", "translate", &agent_id, "--format", "xml"]))
    .await;
    assert_exit(&bad, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_card_commands_generate_and_parse() {
    let server = TestServer::start().await;
    let generated = run(server.attestix().args([
        "agent-card",
        "generate",
        "--name",
        "Bot",
        "--url",
        "https://bot.example",
        "--skill",
        "s1=search",
        "--json",
    ]))
    .await;
    assert_exit(&generated, 0);
    let card = json_stdout(&generated)["agent_card"].clone();
    assert_eq!(card["skills"][0]["name"], "search");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    std::fs::write(&path, card.to_string()).unwrap();
    let parsed =
        run(server
            .attestix()
            .args(["agent-card", "parse", path.to_str().unwrap(), "--json"]))
        .await;
    assert_exit(&parsed, 0);
    assert_eq!(json_stdout(&parsed)["capabilities"][0], "search");
    let refused = run(server
        .attestix()
        .args(["agent-card", "discover", "http://bot.example"]))
    .await;
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).contains("base_url"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_commands_record_show_and_query_and_audit_verify() {
    let server = TestServer::start().await;
    let record = |outcome: &'static str, key: &'static str| {
        let mut command = server.attestix();
        command.args([
            "reputation",
            "record",
            "--agent",
            "agent-r",
            "--counterparty",
            "peer",
            "--outcome",
            outcome,
            "--category",
            "task",
            "--idempotency-key",
            key,
        ]);
        command
    };
    let first = run(&mut record("success", "cli-rep-1")).await;
    assert_exit(&first, 0);
    assert!(
        stdout(&first).contains("trust score 1.0 over 1 interactions"),
        "{}",
        stdout(&first)
    );
    // The same key again is a replay, not a second interaction.
    let again = run(&mut record("success", "cli-rep-1")).await;
    assert_exit(&again, 0);
    assert!(stderr(&again).contains("replayed"), "{}", stderr(&again));
    assert_exit(&run(&mut record("failure", "cli-rep-2")).await, 0);

    let shown = run(server
        .attestix()
        .args(["reputation", "show", "agent-r", "--json"]))
    .await;
    assert_exit(&shown, 0);
    let shown = json_stdout(&shown);
    assert_eq!(shown["total_interactions"], 2);
    assert_eq!(shown["category_breakdown"]["task"]["failure"], 1);

    let queried = run(server
        .attestix()
        .args(["reputation", "query", "--min-interactions", "2"]))
    .await;
    assert_exit(&queried, 0);
    assert!(stdout(&queried).contains("agent-r"), "{}", stdout(&queried));

    let verified = run(server.attestix().args(["audit", "verify"])).await;
    assert_exit(&verified, 0);
    assert!(
        stdout(&verified).contains("VALID: audit chain of 2 events"),
        "{}",
        stdout(&verified)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_commands_take_a_profile_to_a_declaration() {
    let server = TestServer::start().await;
    let created =
        run(server
            .attestix()
            .args(["identity", "create", "--name", "Compliant Bot", "--json"]))
        .await;
    assert_exit(&created, 0);
    let agent = json_stdout(&created)["agent_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for _ in 0..2 {
        let profile = run(server.attestix().args([
            "compliance",
            "profile",
            "create",
            "--agent",
            &agent,
            "--risk",
            "minimal",
            "--provider",
            "Acme",
            "--intended-purpose",
            "Summaries",
            "--idempotency-key",
            "cli-comp-1",
        ]))
        .await;
        assert_exit(&profile, 0);
        assert!(
            stdout(&profile).contains("minimal risk, provider Acme"),
            "{}",
            stdout(&profile)
        );
    }
    let status = run(server.attestix().args(["compliance", "status", &agent])).await;
    assert_exit(&status, 1);
    assert!(
        stdout(&status).contains("33.3% of the recorded-evidence checklist"),
        "{}",
        stdout(&status)
    );
    let refused = run(server
        .attestix()
        .args(["compliance", "declare", "--agent", &agent]))
    .await;
    assert_exit(&refused, 2);
    let updated = run(server.attestix().args([
        "compliance",
        "profile",
        "update",
        &agent,
        "--transparency-obligations",
        "Disclosed",
        "--risk-management-documented",
        "true",
        "--json",
    ]))
    .await;
    assert_exit(&updated, 0);
    let updated = json_stdout(&updated);
    assert_eq!(updated["transparency"]["obligations"], "Disclosed");
    assert_eq!(updated["risk_management"]["documented"], true);
    let assessed = run(server.attestix().args([
        "compliance",
        "assess",
        "--agent",
        &agent,
        "--type",
        "self",
        "--assessor",
        "QA",
        "--result",
        "pass",
    ]))
    .await;
    assert_exit(&assessed, 0);
    let declared =
        run(server
            .attestix()
            .args(["compliance", "declare", "--agent", &agent, "--json"]))
        .await;
    assert_exit(&declared, 0);
    assert!(json_stdout(&declared)["credential_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("urn:uuid:")));
    let listed = run(server
        .attestix()
        .args(["compliance", "profile", "list", "--compliant-only"]))
    .await;
    assert_exit(&listed, 0);
    assert!(stdout(&listed).contains(&agent), "{}", stdout(&listed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_commands_log_list_and_verify_the_trail() {
    let server = TestServer::start().await;
    for key in ["cli-prov-1", "cli-prov-1", "cli-prov-2"] {
        let logged = run(server.attestix().args([
            "provenance",
            "log",
            "--agent",
            "agent-p",
            "--action-type",
            "inference",
            "--input-summary",
            "question",
            "--idempotency-key",
            key,
        ]))
        .await;
        assert_exit(&logged, 0);
        assert!(
            stdout(&logged).contains("Logged inference audit:"),
            "{}",
            stdout(&logged)
        );
    }
    let trail = run(server
        .attestix()
        .args(["provenance", "trail", "agent-p", "--all"]))
    .await;
    assert_exit(&trail, 0);
    assert_eq!(
        stdout(&trail).matches("audit:").count(),
        2,
        "{}",
        stdout(&trail)
    );
    let verified = run(server.attestix().args(["provenance", "verify", "agent-p"])).await;
    assert_exit(&verified, 0);
    assert!(
        stdout(&verified).contains("VALID: action trail of agent-p, 2 entries"),
        "{}",
        stdout(&verified)
    );
    let shown = run(server
        .attestix()
        .args(["provenance", "show", "agent-p", "--json"]))
    .await;
    assert_exit(&shown, 0);
    let aggregate = json_stdout(&shown);
    assert_eq!(aggregate["audit_chain_count_legacy"], 2, "{aggregate}");
    assert_eq!(aggregate["audit_events_count"], 2, "{aggregate}");
    let bad = run(server.attestix().args([
        "provenance",
        "log",
        "--agent",
        "agent-p",
        "--action-type",
        "dance",
    ]))
    .await;
    assert_ne!(bad.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_training_and_lineage_record_once_per_key() {
    let server = TestServer::start().await;
    for _ in 0..2 {
        let trained = run(server.attestix().args([
            "provenance",
            "training",
            "--agent",
            "agent-t",
            "--dataset",
            "support tickets",
            "--source-url",
            "https://data.example/tickets",
            "--category",
            "text",
            "--category",
            "support",
            "--contains-personal-data",
            "--governance",
            "pseudonymised",
            "--idempotency-key",
            "cli-train-1",
        ]))
        .await;
        assert_exit(&trained, 0);
        assert!(
            stdout(&trained).contains("Recorded training_data prov:")
                && stdout(&trained).contains("(support tickets) for agent-t."),
            "{}",
            stdout(&trained)
        );
        let lineage = run(server.attestix().args([
            "provenance",
            "lineage",
            "--agent",
            "agent-t",
            "--base-model",
            "base-7b",
            "--provider",
            "Example AI",
            "--metric",
            "accuracy=0.91",
            "--metric",
            "suite=internal",
            "--setting",
            "epochs=3",
            "--idempotency-key",
            "cli-lineage-1",
        ]))
        .await;
        assert_exit(&lineage, 0);
        assert!(
            stdout(&lineage).contains("(base-7b) for agent-t."),
            "{}",
            stdout(&lineage)
        );
    }
    let shown = run(server
        .attestix()
        .args(["provenance", "show", "agent-t", "--json"]))
    .await;
    assert_exit(&shown, 0);
    let aggregate = json_stdout(&shown);
    let training = aggregate["training_data"].as_array().expect("a list");
    let lineage = aggregate["model_lineage"].as_array().expect("a list");
    assert_eq!(training.len(), 1, "one dataset per key: {aggregate}");
    assert_eq!(lineage.len(), 1, "one lineage entry per key: {aggregate}");
    assert_eq!(
        training[0]["data_categories"],
        serde_json::json!(["text", "support"])
    );
    assert_eq!(training[0]["contains_personal_data"], true);
    assert_eq!(training[0]["data_governance_measures"], "pseudonymised");
    assert_eq!(
        lineage[0]["evaluation_metrics"],
        serde_json::json!({"accuracy": 0.91, "suite": "internal"})
    );
    assert_eq!(
        lineage[0]["training_config"],
        serde_json::json!({"epochs": 3})
    );
    assert_eq!(lineage[0]["base_model_provider"], "Example AI");
    let bad = run(server.attestix().args([
        "provenance",
        "lineage",
        "--agent",
        "agent-t",
        "--base-model",
        "",
    ]))
    .await;
    assert_ne!(bad.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_purge_erases_the_agent_and_a_retry_replays() {
    let server = TestServer::start().await;
    let created =
        run(server
            .attestix()
            .args(["identity", "create", "--name", "Forget me", "--json"]))
        .await;
    assert_exit(&created, 0);
    let agent_id = json_stdout(&created)["agent_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let purge_args = [
        "identity",
        "purge",
        agent_id.as_str(),
        "--idempotency-key",
        "cli-purge-1",
    ];
    let first = run(server.attestix().args(purge_args)).await;
    assert_exit(&first, 0);
    assert!(
        stdout(&first).contains(&format!("Purged {agent_id}:")),
        "{}",
        stdout(&first)
    );
    assert!(
        stdout(&first).contains("  identities: 1"),
        "{}",
        stdout(&first)
    );
    // The retry with the same key is the same purge, answered from the stored response.
    let retry = run(server.attestix().args(purge_args)).await;
    assert_exit(&retry, 0);
    assert!(
        stdout(&retry).contains("  identities: 1"),
        "{}",
        stdout(&retry)
    );
    let gone = run(server.attestix().args(["identity", "get", &agent_id])).await;
    assert_ne!(gone.status.code(), Some(0));
    let audit = run(server.attestix().args(["audit", "verify"])).await;
    assert_exit(&audit, 0);
}
