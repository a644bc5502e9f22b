//! HTTPS end to end: `attestix serve --tls-cert --tls-key` serving, the CLI
//! speaking HTTPS to it with `--ca-file`, and a wrong CA refused with a clear error.

#[path = "../../attestix-server/tests/tls/mod.rs"]
mod tls;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The binary, with none of the caller's client settings leaking in.
fn attestix() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attestix"));
    for variable in [
        "ATTESTIX_URL",
        "ATTESTIX_API_KEY",
        "ATTESTIX_TENANT",
        "ATTESTIX_CA_FILE",
        "ATTESTIX_TLS_CERT",
        "ATTESTIX_TLS_KEY",
        "FAILPOINTS",
    ] {
        command.env_remove(variable);
    }
    command.kill_on_drop(true);
    command
}

/// `attestix serve` over TLS on a free port: the child, its URL, the admin key.
async fn serve_tls(
    dir: &Path,
    certificate: &Path,
    key: &Path,
) -> (tokio::process::Child, String, String) {
    let mut child = attestix()
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(certificate)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut admin_key = String::new();
    let mut url = String::new();
    // The key (stderr) and the address (stdout) come in either order: wait for both.
    tokio::time::timeout(Duration::from_secs(30), async {
        while url.is_empty() || admin_key.is_empty() {
            tokio::select! {
                line = stdout.next_line(), if url.is_empty() => {
                    let line = line.unwrap().expect("the server prints where it listens");
                    if let Some(address) = line.strip_prefix("listening on ") {
                        url = address.to_owned();
                    }
                }
                line = stderr.next_line(), if admin_key.is_empty() => {
                    let line = line.unwrap().expect("the server prints its first key");
                    let line = line.trim();
                    if line.len() > 40 && !line.contains(' ') {
                        admin_key = line.to_owned();
                    }
                }
            }
        }
    })
    .await
    .expect("the server starts within 30 s");
    (child, url, admin_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_to_a_tls_server_and_refuses_a_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::TestCa::new();
    let (chain, key) = ca.server_pem(&["localhost", "127.0.0.1"]);
    let certificate_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    let ca_path = dir.path().join("ca.pem");
    let other_ca_path = dir.path().join("other-ca.pem");
    std::fs::write(&certificate_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&other_ca_path, tls::TestCa::new().pem()).unwrap();

    let (_server, url, admin_key) = serve_tls(dir.path(), &certificate_path, &key_path).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(!admin_key.is_empty(), "the first admin key is printed");

    let run = |ca_file: &Path, args: &[&str]| {
        let mut command = attestix();
        command
            .args(args)
            .env("ATTESTIX_URL", &url)
            .env("ATTESTIX_API_KEY", &admin_key)
            .arg("--ca-file")
            .arg(ca_file);
        command
    };
    let health = run(&ca_path, &["health"]).output().await.unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    let created = run(
        &ca_path,
        &["identity", "create", "--name", "Over TLS", "--json"],
    )
    .output()
    .await
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let identity: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert!(identity["agent_id"]
        .as_str()
        .unwrap()
        .starts_with("attestix:"));

    // Another CA: refused at once (no retries), with what to do about it.
    let started = std::time::Instant::now();
    let refused = run(&other_ca_path, &["health"]).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not trusted"), "{stderr}");
    assert!(stderr.contains("--ca-file"), "{stderr}");
    assert!(
        !stderr.contains("retrying"),
        "a certificate failure is not retried: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Plain HTTP to the TLS port does not get through either.
    let plain = attestix()
        .args(["health"])
        .env("ATTESTIX_URL", url.replace("https://", "http://"))
        .arg("--retries")
        .arg("0")
        .output()
        .await
        .unwrap();
    assert_eq!(plain.status.code(), Some(2));
}
