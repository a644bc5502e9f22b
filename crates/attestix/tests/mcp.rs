//! `attestix mcp`: its tool list against the reference server's own `list_tools`
//! output (the committed fixture), and real MCP clients (the `mcp` PyPI package,
//! over stdio and streamable HTTP) driving it against a running server.
//!
//! The client tests need a Python with `mcp` (env `ATTESTIX_MCP_PYTHON`, default
//! `python3`): without it they print SKIPPED, or fail when `CI` is set.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attestix_server::{Application, ServerConfig};
use serde_json::{json, Value};

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_attestix");

/// The reference's tools, as `scripts/dump_reference_mcp_tools.py` wrote them.
const FIXTURE: &str = include_str!("fixtures/reference_mcp_tools.json");

/// The argument our writing tools add to the reference's.
const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// Python's `inspect.cleandoc`: the reference's descriptions are raw docstrings,
/// ours the same text without the source's indentation.
fn cleandoc(text: &str) -> String {
    let text = text.replace('\t', "        ");
    let lines: Vec<&str> = text.split('\n').collect();
    let margin = lines
        .iter()
        .skip(1)
        .filter(|line| !line.trim_start().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut cleaned: Vec<&str> = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        cleaned.push(if index == 0 {
            line.trim_start()
        } else {
            line.get(margin..).unwrap_or("")
        });
    }
    while cleaned.last().is_some_and(|line| line.is_empty()) {
        cleaned.pop();
    }
    while cleaned.first().is_some_and(|line| line.is_empty()) {
        cleaned.remove(0);
    }
    cleaned.join("\n")
}

/// Compares a tool list (as served) with the reference's, tool by tool.
fn assert_matches_reference(tools: &[Value]) {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    let reference = fixture["tools"].as_array().expect("a tool list");
    assert_eq!(reference.len(), 47, "the reference has 47 tools");
    let mut ours: Vec<&Value> = tools.iter().collect();
    ours.sort_by_key(|tool| tool["name"].as_str().unwrap_or_default().to_owned());
    let names = |list: &[&Value]| -> Vec<String> {
        list.iter()
            .map(|tool| tool["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let reference: Vec<&Value> = reference.iter().collect();
    assert_eq!(names(&ours), names(&reference), "the same tool names");
    for (our, theirs) in ours.iter().zip(&reference) {
        let name = theirs["name"].as_str().unwrap_or_default();
        assert_eq!(
            cleandoc(our["description"].as_str().unwrap_or_default()),
            cleandoc(theirs["description"].as_str().unwrap_or_default()),
            "{name}: the description"
        );
        let mut schema = our["inputSchema"].clone();
        let key = schema["properties"]
            .as_object_mut()
            .and_then(|properties| properties.remove(IDEMPOTENCY_KEY));
        if let Some(key) = &key {
            assert_eq!(key["type"], json!("string"), "{name}: idempotency_key");
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            assert!(
                !required.contains(&json!(IDEMPOTENCY_KEY)),
                "{name}: optional"
            );
        }
        // Argument names, types, titles, defaults and required, exactly.
        assert_eq!(schema, theirs["inputSchema"], "{name}: the input schema");
        assert_eq!(
            our["outputSchema"], theirs["outputSchema"],
            "{name}: the output schema"
        );
    }
}

/// Writes are the tools whose REST call is not a GET; each takes `idempotency_key`.
fn writes(tools: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = tools
        .iter()
        .filter(|tool| {
            tool["inputSchema"]["properties"]
                .get(IDEMPOTENCY_KEY)
                .is_some()
        })
        .map(|tool| tool["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// One JSON-RPC exchange over a child's stdio: newline-delimited messages.
fn rpc(
    child: &mut Child,
    reader: &mut impl BufRead,
    id: u64,
    method: &str,
    params: Value,
) -> Value {
    let stdin = child.stdin.as_mut().expect("stdin is piped");
    let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    writeln!(stdin, "{message}").expect("the server reads stdin");
    stdin.flush().expect("stdin flushes");
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .expect("the server writes stdout");
        assert!(
            read > 0,
            "the server closed stdout before answering {method}"
        );
        let answer: Value = serde_json::from_str(&line).expect("stdout carries JSON-RPC only");
        if answer["id"] == json!(id) {
            return answer;
        }
    }
}

#[test]
fn the_tool_list_is_the_references() {
    // No server needed: listing tools does not call it.
    let mut child = Command::new(BINARY)
        .args(["mcp", "--server", "http://127.0.0.1:9"])
        .env_remove("ATTESTIX_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("attestix mcp starts");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let init = rpc(
        &mut child,
        &mut reader,
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "attestix-test", "version": "0"}}),
    );
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        json!("attestix"),
        "{init}"
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    {
        let stdin = child.stdin.as_mut().expect("stdin is piped");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .expect("the server reads stdin");
    }
    let listed = rpc(&mut child, &mut reader, 2, "tools/list", json!({}));
    let tools = listed["result"]["tools"]
        .as_array()
        .expect("a tool list")
        .clone();
    assert_matches_reference(&tools);
    let expected_writes: Vec<String> = [
        "anchor_audit_batch",
        "anchor_credential",
        "anchor_identity",
        "create_agent_identity",
        "create_compliance_profile",
        "create_delegation",
        "create_did_key",
        "create_did_web",
        "create_verifiable_presentation",
        "discover_agent",
        "generate_agent_card",
        "generate_declaration_of_conformity",
        "issue_credential",
        "log_action",
        "parse_agent_card",
        "purge_agent_data",
        "record_conformity_assessment",
        "record_interaction",
        "record_model_lineage",
        "record_training_data",
        "resolve_identity",
        "revoke_credential",
        "revoke_delegation",
        "revoke_identity",
        "translate_identity",
        "update_compliance_profile",
        "verify_anchor",
        "verify_credential",
        "verify_credential_external",
        "verify_delegation",
        "verify_identity",
        "verify_presentation",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(
        writes(&tools),
        expected_writes,
        "every non-GET tool takes a key"
    );
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child
        .try_wait()
        .expect("the child can be waited on")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "attestix mcp did not exit when stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python with the `mcp` package, or `None` (after saying SKIPPED) outside CI.
fn mcp_python() -> Option<String> {
    let python = std::env::var("ATTESTIX_MCP_PYTHON").unwrap_or_else(|_| "python3".into());
    let importable = Command::new(&python)
        .args(["-c", "import mcp.client.stdio, mcp.client.streamable_http"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if importable {
        return Some(python);
    }
    let why = format!(
        "`{python}` cannot import the `mcp` package; set ATTESTIX_MCP_PYTHON to a Python \
         that has it (pip install mcp)"
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// A server in this process on a fresh data directory, and its admin key.
struct TestServer {
    base: String,
    api_key: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        let data = tempfile::tempdir().expect("a temporary directory can be made");
        let app = Application::build(ServerConfig {
            bind: "127.0.0.1:0".parse().expect("a literal address parses"),
            data_dir: data.path().to_path_buf(),
            ..ServerConfig::default()
        })
        .await
        .expect("the server starts");
        let api_key = app
            .first_admin_key()
            .expect("an empty data directory gets a first admin key")
            .to_owned();
        let base = format!("http://127.0.0.1:{}", app.port());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            api_key,
            shutdown: Some(shutdown),
            _data: data,
        }
    }

    /// The identities of the admin principal, straight from the REST API.
    async fn identities(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!(
                "{}/v1/identities?limit=1000&include_revoked=true",
                self.base
            ))
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON list")
    }

    /// A new identity of the admin principal, made through the REST API; its id.
    async fn new_identity(&self, name: &str) -> String {
        let created: Value = reqwest::Client::new()
            .post(format!("{}/v1/identities", self.base))
            .header("X-API-Key", &self.api_key)
            .json(&json!({"display_name": name, "source_protocol": "api_key"}))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("an identity");
        created["agent_id"]
            .as_str()
            .expect("an agent_id")
            .to_owned()
    }

    /// The problem document the REST API answers a bad identity body with.
    async fn problem_for(&self, body: &Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/identities", self.base))
            .header("X-API-Key", &self.api_key)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_client_error(), "{}", response.status());
        response.json().await.expect("a problem document")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Runs `mcp_drive.py` with `transport_args` and the plan; its JSON output.
async fn drive(python: &str, transport_args: &[&str], plan: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_drive.py");
    let mut child = tokio::process::Command::new(python)
        .arg(&script)
        .args(transport_args)
        .env_remove("ATTESTIX_API_KEY")
        .env_remove("ATTESTIX_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(plan.to_string().as_bytes())
            .await
            .expect("the plan is written");
    }
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the MCP client finished within 2 minutes")
        .expect("the MCP client ran");
    assert!(
        output.status.success(),
        "the MCP client failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the MCP client printed no JSON ({error}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A result's document, for a call that must have succeeded.
fn document(result: &Value) -> Value {
    assert_eq!(result["isError"], json!(false), "a tool error: {result}");
    // The reference's shape: the same text as the structured `result`.
    assert_eq!(
        result["structuredContent"],
        json!({"result": result["text"]}),
        "{result}"
    );
    serde_json::from_str(result["text"].as_str().unwrap_or_default())
        .unwrap_or_else(|error| panic!("the result is not a JSON document ({error}): {result}"))
}

/// A result's error text, for a call that must have failed.
fn error_text(result: &Value) -> String {
    assert_eq!(result["isError"], json!(true), "not a tool error: {result}");
    result["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_mcp_client_creates_one_identity_per_idempotency_key() {
    let Some(python) = mcp_python() else { return };
    let server = TestServer::start().await;
    let create = json!({"name": "create_agent_identity", "arguments": {
        "display_name": "mcp agent", "capabilities": "read, write",
        "idempotency_key": "mcp-test-create-1"}});
    let bad_body = json!({"display_name": "   ", "source_protocol": "manual"});
    let plan = json!([
        create,
        // The agent lost the answer and retries the same call with the same key.
        create,
        {"name": "anchor_identity", "arguments": {"agent_id": "attestix:x"}},
        {"name": "create_agent_identity", "arguments": {"display_name": "   "}},
        {"name": "create_agent_identity", "arguments": {"display_name": "x", "expiry_days": "ten"}},
        {"name": "get_identity", "arguments": {"agent_id": "attestix:nobody"}},
        {"name": "list_identities", "arguments": {}},
    ]);
    let output = drive(
        &python,
        &[
            "stdio",
            BINARY,
            "mcp",
            "--server",
            &server.base,
            "--api-key",
            &server.api_key,
        ],
        &plan,
    )
    .await;
    assert_eq!(output["server"]["name"], json!("attestix"));
    assert_matches_reference(output["tools"].as_array().expect("a tool list"));
    let results = output["results"].as_array().expect("results");

    let first = document(&results[0]);
    let agent_id = first["agent_id"].as_str().expect("an agent_id").to_owned();
    assert!(agent_id.starts_with("attestix:"), "{first}");
    assert_eq!(first["display_name"], json!("mcp agent"));
    assert_eq!(first["capabilities"], json!(["read", "write"]));
    assert_eq!(
        document(&results[1]),
        first,
        "the retry answers the first result"
    );
    let stored = server.identities().await;
    assert_eq!(stored.len(), 1, "one identity for one key: {stored:?}");
    assert_eq!(stored[0]["agent_id"], json!(agent_id));

    // The server has no chain configured: its 503 problem becomes a tool error that
    // says so and names the key to retry with.
    let unconfigured = error_text(&results[2]);
    assert!(
        unconfigured.contains("HTTP 503") && unconfigured.contains("anchoring not configured"),
        "{unconfigured}"
    );
    assert!(unconfigured.contains("idempotency_key"), "{unconfigured}");

    let problem = server.problem_for(&bad_body).await;
    let invalid = error_text(&results[3]);
    let title = problem["title"].as_str().expect("a title");
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(
        invalid.contains(title) && invalid.contains(detail),
        "{invalid} vs {problem}"
    );
    let mistyped = error_text(&results[4]);
    assert!(
        mistyped.contains("expiry_days: expected an integer"),
        "{mistyped}"
    );
    let missing = error_text(&results[5]);
    assert!(missing.contains("attestix:nobody"), "{missing}");
    assert!(
        !missing.contains("not served"),
        "a missing resource is not a missing endpoint"
    );

    let listed = document(&results[6]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compliance_tools_take_a_profile_to_a_declaration() {
    let Some(python) = mcp_python() else { return };
    let server = TestServer::start().await;
    let agent_id = server.new_identity("compliance agent").await;
    let plan = json!([
        {"name": "create_compliance_profile", "arguments": {
            "agent_id": agent_id, "risk_category": "limited", "provider_name": "Acme",
            "intended_purpose": "Chat support", "idempotency_key": "mcp-compliance-1"}},
        {"name": "create_compliance_profile", "arguments": {
            "agent_id": agent_id, "risk_category": "limited", "provider_name": "Acme",
            "intended_purpose": "Chat support", "idempotency_key": "mcp-compliance-1"}},
        {"name": "generate_declaration_of_conformity", "arguments": {"agent_id": agent_id}},
        {"name": "update_compliance_profile", "arguments": {
            "agent_id": agent_id, "transparency_obligations": "Users are told"}},
        {"name": "record_conformity_assessment", "arguments": {
            "agent_id": agent_id, "assessment_type": "self", "assessor_name": "QA",
            "result": "pass"}},
        {"name": "generate_declaration_of_conformity", "arguments": {"agent_id": agent_id}},
        {"name": "get_compliance_status", "arguments": {"agent_id": agent_id}},
        {"name": "get_compliance_profile", "arguments": {"agent_id": agent_id}},
        {"name": "list_compliance_profiles", "arguments": {"compliant_only": true}},
        {"name": "get_compliance_status", "arguments": {"agent_id": "attestix:nobody"}},
    ]);
    let output = drive(
        &python,
        &[
            "stdio",
            BINARY,
            "mcp",
            "--server",
            &server.base,
            "--api-key",
            &server.api_key,
        ],
        &plan,
    )
    .await;
    let results = output["results"].as_array().expect("results");
    let profile = document(&results[0]);
    assert_eq!(profile["agent_id"], json!(agent_id), "{profile}");
    assert_eq!(
        document(&results[1]),
        profile,
        "the retry answers the first result"
    );
    let refused = error_text(&results[2]);
    assert!(
        refused.contains("no completed conformity assessment"),
        "{refused}"
    );
    let updated = document(&results[3]);
    assert_eq!(
        updated["transparency"]["obligations"],
        json!("Users are told")
    );
    // Empty arguments are left out, so the patch changed nothing else.
    assert_eq!(updated["provider"]["name"], json!("Acme"));
    let assessment = document(&results[4]);
    assert_eq!(assessment["result"], json!("pass"));
    let declaration = document(&results[5]);
    assert!(
        declaration["credential_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("urn:uuid:")),
        "{declaration}"
    );
    let status = document(&results[6]);
    assert_eq!(status["completion_pct"], json!(71.4), "{status}");
    let stored = document(&results[7]);
    assert_eq!(
        stored["conformity"]["declaration_id"],
        declaration["declaration_id"]
    );
    let listed = document(&results[8]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let missing = error_text(&results[9]);
    assert!(missing.contains("attestix:nobody"), "{missing}");
    assert!(!missing.contains("not served"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_streamable_http_transport_serves_the_tools() {
    let Some(python) = mcp_python() else { return };
    let server = TestServer::start().await;
    let mut mcp = tokio::process::Command::new(BINARY)
        .args(["mcp", "--http", "127.0.0.1:0", "--server", &server.base])
        .args(["--api-key", &server.api_key])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("attestix mcp --http starts");
    let url = {
        use tokio::io::AsyncBufReadExt as _;
        let stdout = mcp.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the address is printed in time")
        .expect("stdout is readable");
        line.trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned()
    };
    let plan = json!([
        {"name": "create_did_key", "arguments": {"idempotency_key": "mcp-http-did-1"}},
        {"name": "create_did_key", "arguments": {"idempotency_key": "mcp-http-did-1"}},
        {"name": "get_anchor_status", "arguments": {"agent_id": "attestix:x"}},
    ]);
    let output = drive(&python, &["http", &url], &plan).await;
    assert_eq!(output["server"]["name"], json!("attestix"));
    assert_eq!(output["tools"].as_array().map(Vec::len), Some(47));
    let results = output["results"].as_array().expect("results");
    let did = document(&results[0]);
    assert!(
        did["did"]
            .as_str()
            .is_some_and(|d| d.starts_with("did:key:")),
        "{did}"
    );
    assert_eq!(
        document(&results[1]),
        did,
        "the same key answers the same DID"
    );
    // A read of the local anchor records works without a chain.
    let anchors = document(&results[2]);
    assert_eq!(anchors["agent_id"], json!("attestix:x"), "{anchors}");
    assert_eq!(anchors["total_anchors"], json!(0), "{anchors}");
    let _ = mcp.kill().await;
}

/// A TCP proxy in front of `upstream` that forwards the first connection's
/// request, waits until the server has answered, and closes that connection
/// without forwarding the answer (a lost response); later connections pass.
async fn drop_first_response_proxy(upstream: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let upstream = upstream
        .strip_prefix("http://")
        .expect("an http base")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the proxy binds");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let drop_this = std::mem::take(&mut first);
            tokio::spawn(async move {
                if drop_this {
                    let (mut client_read, client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let forward = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    // The first byte of the answer: the server has done the work.
                    let mut answer = [0u8; 1];
                    let _ = server_read.read(&mut answer).await;
                    forward.abort();
                    drop(client_write);
                } else {
                    let (mut client, mut server) = (client, server);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_is_retried_with_the_same_key_by_the_tool_itself() {
    let Some(python) = mcp_python() else { return };
    let server = TestServer::start().await;
    let proxy = drop_first_response_proxy(&server.base).await;
    let plan = json!([{"name": "create_agent_identity", "arguments": {"display_name": "lossy"}}]);
    let output = drive(
        &python,
        &[
            "stdio",
            BINARY,
            "mcp",
            "--server",
            &proxy,
            "--api-key",
            &server.api_key,
        ],
        &plan,
    )
    .await;
    let created = document(&output["results"][0]);
    let stored = server.identities().await;
    assert_eq!(
        stored.len(),
        1,
        "the retry replayed, not re-created: {stored:?}"
    );
    assert_eq!(stored[0]["agent_id"], created["agent_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_retries_the_error_names_the_key_and_a_call_with_it_gets_the_first_result() {
    let Some(python) = mcp_python() else { return };
    let server = TestServer::start().await;
    let proxy = drop_first_response_proxy(&server.base).await;
    let mcp = |server_url: String| {
        vec![
            "stdio".to_owned(),
            BINARY.to_owned(),
            "mcp".to_owned(),
            "--retries".to_owned(),
            "0".to_owned(),
            "--server".to_owned(),
            server_url,
            "--api-key".to_owned(),
            server.api_key.clone(),
        ]
    };
    let args = mcp(proxy);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plan = json!([{"name": "create_agent_identity", "arguments": {"display_name": "lost"}}]);
    let output = drive(&python, &args, &plan).await;
    let lost = error_text(&output["results"][0]);
    let key = lost
        .split("idempotency_key \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the error names the key to retry with: {lost}"))
        .to_owned();
    assert_eq!(server.identities().await.len(), 1, "the lost call was done");

    // The agent retries the call with the key the error named.
    let retry = json!([{"name": "create_agent_identity",
                        "arguments": {"display_name": "lost", "idempotency_key": key}}]);
    let args = mcp(server.base.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = drive(&python, &args, &retry).await;
    let created = document(&output["results"][0]);
    let stored = server.identities().await;
    assert_eq!(stored.len(), 1, "one identity for one key: {stored:?}");
    assert_eq!(stored[0]["agent_id"], created["agent_id"]);
}
