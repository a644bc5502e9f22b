//! Isolation between principals, API-key revocation and secrets in logs, checked on
//! the real `attestix` binary (`attestix serve` in a child process, keys made with
//! `attestix keys create|revoke` from other processes, as an operator would).
//!
//! What the black-box API tests (attestix-server `tests/api/auth.rs`) already cover
//! is not repeated here: 401/403, an unauthenticated request never replaying or
//! poisoning a stored response, the same Idempotency-Key used by two principals, GET
//! and DELETE of another principal's identity, its identity list, tenants as
//! separate idempotency scopes, and a key revoked through the storage API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_attestix");

/// `attestix serve` on a data directory and a free port.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
    // Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the server; its stderr goes to `stderr_log` when given.
    fn start(data_dir: &Path, envs: &[(&str, &str)], stderr_log: Option<&Path>) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("ATTESTIX_API_KEY")
            .env_remove("ATTESTIX_ALLOW_NO_AUTH")
            .env_remove("DATABASE_URL")
            .env_remove("FAILPOINTS")
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped());
        match stderr_log {
            Some(path) => {
                command.stderr(std::fs::File::create(path).expect("the log file can be made"))
            }
            None => command.stderr(Stdio::null()),
        };
        let mut child = command.spawn().expect("the attestix binary starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the server prints its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self {
            child,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
            _stdout: stdout,
        }
    }

    fn request(&self, method: Method, path: &str, api_key: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", api_key)
    }

    /// Sends a request and reads the answer whole.
    async fn call(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotency-replayed")
            .is_some_and(|v| v == "true");
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            replayed,
            text,
            json,
        }
    }

    async fn get(&self, path: &str, api_key: &str) -> Answer {
        self.call(self.request(Method::GET, path, api_key)).await
    }

    async fn post(&self, path: &str, api_key: &str, body: &Value) -> Answer {
        self.call(self.request(Method::POST, path, api_key).json(body))
            .await
    }

    async fn post_keyed(&self, path: &str, api_key: &str, key: &str, body: &Value) -> Answer {
        self.call(
            self.request(Method::POST, path, api_key)
                .header("idempotency-key", key)
                .json(body),
        )
        .await
    }

    async fn delete(&self, path: &str, api_key: &str) -> Answer {
        self.call(self.request(Method::DELETE, path, api_key)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    text: String,
    json: Value,
}

impl Answer {
    fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        self
    }

    fn list(&self) -> &Vec<Value> {
        self.json.as_array().expect("a JSON list")
    }
}

/// `attestix keys create`: the key (stdout) and its id (from the message on stderr).
fn create_key(data_dir: &Path, principal: &str) -> (String, String) {
    let output = Command::new(BINARY)
        .args(["keys", "create", "--principal", principal, "--data-dir"])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("keys create runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let key = String::from_utf8(output.stdout)
        .expect("the key is text")
        .trim()
        .to_owned();
    let id = stderr
        .split_whitespace()
        .find(|word| word.starts_with("key_"))
        .unwrap_or_else(|| panic!("no key id in {stderr:?}"))
        .to_owned();
    (key, id)
}

fn revoke_key(data_dir: &Path, id: &str) {
    let output = Command::new(BINARY)
        .args(["keys", "revoke", id, "--data-dir"])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("keys revoke runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn identity(name: &str, protocol: &str) -> Value {
    json!({"display_name": name, "source_protocol": protocol, "capabilities": ["read"]})
}

fn credential(subject: &str, credential_type: &str) -> Value {
    json!({
        "subject_id": subject,
        "credential_type": credential_type,
        "issuer_name": "Isolation Test",
        "claims": {"role": "auditor"},
    })
}

fn id_of(answer: &Answer, field: &str) -> String {
    answer.json[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {}", answer.text))
        .to_owned()
}

/// The detail of a 404 problem with the asked-for id replaced, so that "exists for
/// someone else" and "exists for no one" can be compared.
fn not_found_shape(answer: &Answer, id: &str) -> String {
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
    answer.text.replace(id, "<id>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_never_sees_uses_or_changes_another_principals_resources() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, _) = create_key(dir.path(), "alice");
    let (bob, _) = create_key(dir.path(), "bob");
    let server = Server::start(dir.path(), &[], None);

    // Alice's resources: an identity, a credential about it, a presentation of it,
    // and the same again in her tenant `eu`.
    let agent = server
        .post_keyed(
            "/v1/identities",
            &alice,
            "alice-identity",
            &identity("Alice Bot", "mcp"),
        )
        .await
        .expect(201);
    let agent_id = id_of(&agent, "agent_id");
    let issued = server
        .post_keyed(
            "/v1/credentials",
            &alice,
            "alice-credential",
            &credential(&agent_id, "AliceOnlyCredential"),
        )
        .await
        .expect(201);
    let credential_id = id_of(&issued, "id");
    server
        .post(
            "/v1/presentations",
            &alice,
            &json!({"agent_id": agent_id, "credential_ids": [credential_id]}),
        )
        .await
        .expect(201);
    let eu_agent = server
        .call(
            server
                .request(Method::POST, "/v1/identities", &alice)
                .header("x-attestix-tenant", "eu")
                .json(&identity("Alice EU Bot", "mcp")),
        )
        .await
        .expect(201);
    let eu_agent_id = id_of(&eu_agent, "agent_id");

    // Bob's own agent, for presentations.
    let bobs_agent = server
        .post("/v1/identities", &bob, &identity("Bob Bot", "api_key"))
        .await
        .expect(201);
    let bobs_agent_id = id_of(&bobs_agent, "agent_id");

    // Verifying Alice's identity as Bob reads exactly like verifying one that does
    // not exist: no display name, no checks passed.
    let missing_agent = "attestix:0123456789abcdef";
    let peeked = server
        .post(
            &format!("/v1/identities/{agent_id}/verify"),
            &bob,
            &json!({}),
        )
        .await
        .expect(200);
    let absent = server
        .post(
            &format!("/v1/identities/{missing_agent}/verify"),
            &bob,
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(peeked.json["checks"]["exists"], false, "{}", peeked.text);
    assert!(peeked.json["display_name"].is_null(), "{}", peeked.text);
    assert_eq!(
        peeked.text.replace(&agent_id, "<id>"),
        absent.text.replace(missing_agent, "<id>")
    );

    // Alice's credential: not readable, not verifiable, not revocable by Bob, and
    // each refusal is indistinguishable from one for a credential that does not exist.
    let missing_credential = "urn:uuid:00000000-0000-4000-8000-000000000000";
    for (mine, absent) in [
        (
            server
                .get(&format!("/v1/credentials/{credential_id}"), &bob)
                .await,
            server
                .get(&format!("/v1/credentials/{missing_credential}"), &bob)
                .await,
        ),
        (
            server
                .delete(&format!("/v1/credentials/{credential_id}"), &bob)
                .await,
            server
                .delete(&format!("/v1/credentials/{missing_credential}"), &bob)
                .await,
        ),
    ] {
        assert_eq!(
            not_found_shape(&mine, &credential_id),
            not_found_shape(&absent, missing_credential)
        );
    }
    let verified = server
        .post(
            &format!("/v1/credentials/{credential_id}/verify"),
            &bob,
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(verified.json["valid"], false);
    assert_eq!(verified.json["checks"]["exists"], false);
    assert!(verified.json["type"].is_null() && verified.json["subject"].is_null());
    // Bob's attempts changed nothing: Alice's identity and credential still verify.
    server
        .delete(&format!("/v1/identities/{agent_id}"), &bob)
        .await
        .expect(404);
    let still = server
        .post(
            &format!("/v1/credentials/{credential_id}/verify"),
            &alice,
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(still.json["valid"], true, "{}", still.text);
    let still = server
        .post(
            &format!("/v1/identities/{agent_id}/verify"),
            &alice,
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(still.json["valid"], true, "{}", still.text);

    // No list filter reaches Alice's data.
    for path in [
        "/v1/identities?source_protocol=mcp&include_revoked=true".to_owned(),
        "/v1/credentials".to_owned(),
        format!("/v1/credentials?agent_id={agent_id}"),
        "/v1/credentials?credential_type=AliceOnlyCredential".to_owned(),
        format!("/v1/credentials?agent_id={agent_id}&valid_only=true&limit=1000"),
    ] {
        let list = server.get(&path, &bob).await.expect(200);
        assert!(
            !list.text.contains("Alice") && !list.text.contains(&agent_id),
            "{path}: {}",
            list.text
        );
        if path.starts_with("/v1/credentials") {
            assert!(list.list().is_empty(), "{path}: {}", list.text);
        }
    }
    // Naming Alice's tenant does not make Bob part of it.
    let as_eu = server
        .call(
            server
                .request(Method::GET, &format!("/v1/identities/{eu_agent_id}"), &bob)
                .header("x-attestix-tenant", "eu"),
        )
        .await;
    as_eu.expect(404);
    let eu_list = server
        .call(
            server
                .request(Method::GET, "/v1/identities", &bob)
                .header("x-attestix-tenant", "eu"),
        )
        .await
        .expect(200);
    assert!(eu_list.list().is_empty(), "{}", eu_list.text);
    // Nor does Alice's default tenant see her `eu` tenant's identity.
    server
        .get(&format!("/v1/identities/{eu_agent_id}"), &alice)
        .await
        .expect(404);

    // Presentations: Alice's credential cannot be presented by Bob, neither for his
    // agent nor for hers.
    let for_bobs_agent = server
        .post(
            "/v1/presentations",
            &bob,
            &json!({"agent_id": bobs_agent_id, "credential_ids": [credential_id]}),
        )
        .await
        .expect(404);
    assert!(for_bobs_agent.text.contains(&credential_id));
    assert!(!for_bobs_agent.text.contains("auditor"));
    server
        .post(
            "/v1/presentations",
            &bob,
            &json!({"agent_id": agent_id, "credential_ids": [credential_id]}),
        )
        .await
        .expect(404);
    // A credential Bob issues *about* Alice's agent is his, not hers: it is not in her
    // lists and she cannot present it.
    let bobs_claim = server
        .post(
            "/v1/credentials",
            &bob,
            &credential(&agent_id, "BobsClaimAboutAlice"),
        )
        .await
        .expect(201);
    let bobs_claim_id = id_of(&bobs_claim, "id");
    let alices = server
        .get(&format!("/v1/credentials?agent_id={agent_id}"), &alice)
        .await
        .expect(200);
    assert_eq!(alices.list().len(), 1, "{}", alices.text);
    assert!(!alices.text.contains(&bobs_claim_id));
    server
        .post(
            "/v1/presentations",
            &alice,
            &json!({"agent_id": agent_id, "credential_ids": [bobs_claim_id]}),
        )
        .await
        .expect(404);

    // Idempotency: Alice's keys do not exist for Bob. Reusing one with another body
    // is a fresh execution for him, not a 409 that would reveal the key is taken;
    // reusing it with Alice's body is not a replay of her response.
    let reused = server
        .post_keyed(
            "/v1/identities",
            &bob,
            "alice-identity",
            &identity("Bob Again", "api_key"),
        )
        .await
        .expect(201);
    assert!(!reused.replayed);
    let same_body = server
        .post_keyed(
            "/v1/credentials",
            &bob,
            "alice-credential",
            &credential(&agent_id, "AliceOnlyCredential"),
        )
        .await
        .expect(201);
    assert!(!same_body.replayed);
    assert_ne!(id_of(&same_body, "id"), credential_id);
    // And Alice's own retry still replays her original.
    let retry = server
        .post_keyed(
            "/v1/identities",
            &alice,
            "alice-identity",
            &identity("Alice Bot", "mcp"),
        )
        .await
        .expect(201);
    assert!(retry.replayed);
    assert_eq!(retry.text, agent.text);

    // The metrics any principal may read name routes, not anyone's resources or keys.
    let metrics = server.get("/metrics", &bob).await.expect(200);
    for secret in [
        agent_id.as_str(),
        credential_id.as_str(),
        "alice-identity",
        alice.as_str(),
    ] {
        assert!(
            !metrics.text.contains(secret),
            "/metrics shows {secret}: {}",
            metrics.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_by_the_cli_stops_working_at_once_on_the_running_server() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (first, first_id) = create_key(dir.path(), "carol");
    let (second, _) = create_key(dir.path(), "carol");
    let server = Server::start(dir.path(), &[], None);

    let created = server
        .post_keyed(
            "/v1/identities",
            &first,
            "carol-1",
            &identity("Carol Bot", "api_key"),
        )
        .await
        .expect(201);
    let agent_id = id_of(&created, "agent_id");
    server.get("/v1/identities", &first).await.expect(200);

    // Revoked from another process, with no pause before the next request.
    revoke_key(dir.path(), &first_id);

    let refused = server.get("/v1/identities", &first).await.expect(403);
    assert!(refused.text.contains("revoked"), "{}", refused.text);
    let as_bearer = server
        .call(
            server
                .client
                .get(format!("{}/v1/identities", server.base))
                .bearer_auth(&first),
        )
        .await
        .expect(403);
    assert!(!as_bearer.text.contains(&agent_id));
    // A keyed retry with the revoked key is refused, not replayed.
    let retry = server
        .post_keyed(
            "/v1/identities",
            &first,
            "carol-1",
            &identity("Carol Bot", "api_key"),
        )
        .await
        .expect(403);
    assert!(!retry.replayed && !retry.text.contains(&agent_id));
    for (method, path) in [
        (Method::GET, format!("/v1/identities/{agent_id}")),
        (Method::POST, format!("/v1/identities/{agent_id}/verify")),
        (Method::DELETE, format!("/v1/identities/{agent_id}")),
        (Method::GET, "/metrics".to_owned()),
    ] {
        let answer = server
            .call(server.request(method.clone(), &path, &first))
            .await;
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text);
    }

    // The principal's other key works, and the principal (not the key) is the
    // idempotency scope, so it gets the stored response.
    let replay = server
        .post_keyed(
            "/v1/identities",
            &second,
            "carol-1",
            &identity("Carol Bot", "api_key"),
        )
        .await
        .expect(201);
    assert!(replay.replayed);
    assert_eq!(replay.text, created.text);
    let check = server
        .post(
            &format!("/v1/identities/{agent_id}/verify"),
            &second,
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(
        check.json["valid"], true,
        "the refused DELETE changed nothing"
    );

    // Revocation survives a restart.
    drop(server);
    let server = Server::start(dir.path(), &[], None);
    server.get("/v1/identities", &first).await.expect(403);
    server.get("/v1/identities", &second).await.expect(200);
}

/// `private_key_b64` of `<data dir>/.signing_key.json`.
fn signing_seed(data_dir: &Path) -> String {
    let file: PathBuf = data_dir.join(".signing_key.json");
    let text = std::fs::read_to_string(&file).expect("the server wrote its signing key");
    let json: Value = serde_json::from_str(&text).expect("the key file is JSON");
    json["private_key_b64"]
        .as_str()
        .expect("the key file has private_key_b64")
        .to_owned()
}

/// The seed's other spellings a careless log line could use: hex and base64url.
fn seed_spellings(standard_b64: &str) -> Vec<String> {
    let mut spellings = vec![standard_b64.to_owned()];
    let url_safe = standard_b64.replace('+', "-").replace('/', "_");
    spellings.push(url_safe.trim_end_matches('=').to_owned());
    spellings.push(standard_b64.trim_end_matches('=').to_owned());
    spellings.push(hex::encode(decode_base64(standard_b64)));
    spellings
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET
            .iter()
            .position(|a| *a == byte)
            .expect("standard base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_api_key_or_signing_seed_appears_in_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("server.log");
    let (api_key, _) = create_key(dir.path(), "logger");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let legacy_key = format!("legacy-secret-{unique}");
    let idempotency_key = format!("idem-secret-{unique}");
    let wrong_key = format!("atx_wrong-secret-{unique}");
    let identity_token = format!("tok-{unique}-secret-identity-token");
    let server = Server::start(
        dir.path(),
        &[("RUST_LOG", "trace"), ("ATTESTIX_API_KEY", &legacy_key)],
        Some(&log),
    );

    // A keyed create and its replay, with an identity token (stored masked only).
    let body = json!({
        "display_name": "Log Bot",
        "source_protocol": "api_key",
        "identity_token": identity_token,
    });
    let created = server
        .post_keyed("/v1/identities", &api_key, &idempotency_key, &body)
        .await
        .expect(201);
    assert!(
        !created.text.contains(&identity_token),
        "the identity token is masked"
    );
    let replay = server
        .post_keyed("/v1/identities", &api_key, &idempotency_key, &body)
        .await
        .expect(201);
    assert!(replay.replayed);
    // The same key with another body (a mismatch is logged somewhere, if anywhere).
    server
        .post_keyed(
            "/v1/identities",
            &api_key,
            &idempotency_key,
            &identity("Other", "api_key"),
        )
        .await
        .expect(409);
    // Authenticated reads, as Bearer and as the legacy key; a wrong key.
    server
        .call(
            server
                .client
                .get(format!("{}/v1/identities", server.base))
                .bearer_auth(&api_key),
        )
        .await
        .expect(200);
    server.get("/v1/identities", &legacy_key).await.expect(200);
    server.get("/v1/identities", &wrong_key).await.expect(403);
    server.get("/health", &api_key).await.expect(200);

    // stderr is unbuffered: once the answers are in, so are the log lines. Give the
    // tracing of the last response a moment, then stop the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);
    let logs = std::fs::read_to_string(&log).expect("the log was written");

    // The logs are really at trace level and cover the keyed request.
    assert!(logs.contains("TRACE"), "RUST_LOG=trace took effect");
    assert!(
        logs.contains("key_hash"),
        "the keyed request is logged (by its hash)"
    );
    let mut secrets = vec![
        ("the API key", api_key.clone()),
        (
            "the API key without its prefix",
            api_key.trim_start_matches("atx_").to_owned(),
        ),
        ("the legacy API key", legacy_key),
        ("a wrong API key", wrong_key),
        ("the Idempotency-Key", idempotency_key),
        ("the identity token", identity_token),
    ];
    for spelling in seed_spellings(&signing_seed(dir.path())) {
        secrets.push(("the signing seed", spelling));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter_map(|(what, secret)| {
            logs.lines()
                .find(|line| line.contains(secret.as_str()))
                .map(|line| format!("{what} is in the log: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} bytes of log; leaks:\n{}",
        logs.len(),
        leaks.join("\n")
    );
}
