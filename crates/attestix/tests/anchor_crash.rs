//! Exactly once on chain across a crash: the server is SIGKILLed after it sent an
//! anchor's transaction and before it answered; the retry with the same key
//! waits for that transaction, and the chain holds exactly one attestation.

mod common;
#[path = "../../attestix-server/tests/api/evm.rs"]
#[allow(dead_code)]
mod evm;

use std::time::{Duration, Instant};

use common::{create_api_key, post_keyed, retry_until_done, ServerOptions, ServerProcess};
use serde_json::{json, Value};

fn chain_args(chain: &evm::TestChain, key_file: &std::path::Path) -> Vec<String> {
    vec![
        "--evm-private-key-file".into(),
        key_file.display().to_string(),
        "--evm-network".into(),
        "custom".into(),
        "--evm-chain-id".into(),
        evm::CHAIN_ID.to_string(),
        "--evm-eas-address".into(),
        chain.eas.to_string(),
        "--evm-schema-registry-address".into(),
        chain.registry.to_string(),
        "--evm-rpc-url".into(),
        chain.rpc_url.to_string(),
    ]
}

async fn sigkill_after_send_then_retry(database_url: Option<&str>) {
    let Some(chain) = evm::TestChain::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("wallet.key");
    std::fs::write(&key_file, evm::SERVER_KEY).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let api_key = create_api_key(&data, database_url);
    let client = reqwest::Client::new();
    let args = chain_args(&chain, &key_file);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();

    let setup = ServerProcess::start(
        &data,
        ServerOptions {
            database_url,
            extra_args: extra.clone(),
            ..Default::default()
        },
    );
    let identity: Value = post_keyed(
        &client,
        &setup.url("/v1/identities"),
        &api_key,
        "subject",
        &json!({"display_name": "Crash Anchor", "source_protocol": "api_key"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    drop(setup);
    let body = json!({"agent_id": identity["agent_id"]});

    // The transaction goes out, then the handler stops before the receipt.
    let mut crashing = ServerProcess::start(
        &data,
        ServerOptions {
            database_url,
            failpoints: Some("blockchain.after_send=pause"),
            extra_args: extra.clone(),
            ..Default::default()
        },
    );
    let url = crashing.url("/v1/blockchain/anchor/identity");
    let (client2, api2, body2) = (client.clone(), api_key.clone(), body.clone());
    let request =
        tokio::spawn(
            async move { post_keyed(&client2, &url, &api2, "anchor-crash", &body2).await },
        );
    let deadline = Instant::now() + Duration::from_secs(60);
    while chain.attested_uids().await.is_empty() {
        assert!(Instant::now() < deadline, "the transaction was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crashing.kill();
    assert!(
        request.await.unwrap().is_err(),
        "the client never got an answer"
    );
    let sent = chain.attested_uids().await;
    assert_eq!(sent.len(), 1);

    let server = ServerProcess::start(
        &data,
        ServerOptions {
            database_url,
            extra_args: extra,
            ..Default::default()
        },
    );
    let url = server.url("/v1/blockchain/anchor/identity");
    let response = retry_until_done(&client, &url, &api_key, "anchor-crash", &body).await;
    assert_eq!(response.status(), 201);
    let anchor: Value = response.json().await.unwrap();
    assert_eq!(anchor["attestation_uid"], sent[0].to_string().as_str());
    assert_eq!(
        chain.attested_uids().await.len(),
        1,
        "exactly one attestation on chain for the key"
    );
    // From now on a plain replay.
    let replay = post_keyed(&client, &url, &api_key, "anchor-crash", &body)
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed["tx_hash"], anchor["tx_hash"]);
    assert_eq!(chain.attested_uids().await.len(), 1);
    // And a new key is a new anchor: the wallet's nonce moved on without a gap.
    let second = post_keyed(&client, &url, &api_key, "anchor-second", &body)
        .await
        .unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(chain.attested_uids().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_sigkill_between_send_and_answer_leaves_exactly_one_attestation() {
    sigkill_after_send_then_retry(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_sigkill_between_send_and_answer_leaves_exactly_one_attestation() {
    let Some(database) = idempotency_sql::pg_test::TestDatabase::create().await else {
        return;
    };
    sigkill_after_send_then_retry(Some(database.url())).await;
}

/// `attestix anchor …` against a server on the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anchor_commands_anchor_once_per_key_verify_list_and_estimate() {
    let Some(chain) = evm::TestChain::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("wallet.key");
    std::fs::write(&key_file, evm::SERVER_KEY).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let api_key = create_api_key(&data, None);
    let args = chain_args(&chain, &key_file);
    let server = ServerProcess::start(
        &data,
        ServerOptions {
            extra_args: args.iter().map(String::as_str).collect(),
            ..Default::default()
        },
    );
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_attestix"))
            .args(args)
            .env("ATTESTIX_URL", &server.base)
            .env("ATTESTIX_API_KEY", &api_key)
            .env_remove("EVM_PRIVATE_KEY")
            .output()
            .expect("the attestix binary runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let identity: Value = post_keyed(
        &reqwest::Client::new(),
        &server.url("/v1/identities"),
        &api_key,
        "cli-subject",
        &json!({"display_name": "CLI Anchor", "source_protocol": "api_key"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent = identity["agent_id"].as_str().unwrap();

    let anchor_once = || {
        cli(&[
            "anchor",
            "identity",
            agent,
            "--idempotency-key",
            "cli-anchor",
            "--json",
        ])
    };
    let (code, first) = anchor_once();
    assert_eq!(code, Some(0), "{first}");
    let (_, again) = anchor_once();
    assert_eq!(first, again, "the retry replays the first answer");
    assert_eq!(chain.attested_uids().await.len(), 1);
    let anchor: Value = serde_json::from_str(&first).unwrap();
    let anchor_id = anchor["anchor_id"].as_str().unwrap();
    let hash = anchor["artifact_hash"].as_str().unwrap();

    let (code, out) = cli(&["anchor", "verify", anchor_id, "--artifact-hash", hash]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("VERIFIED"), "{out}");
    let (code, out) = cli(&[
        "anchor",
        "verify",
        anchor_id,
        "--artifact-hash",
        &"0".repeat(64),
    ]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = cli(&["anchor", "list", agent]);
    assert_eq!(code, Some(0));
    assert!(out.contains(anchor_id), "{out}");
    let (code, out) = cli(&["anchor", "estimate-cost"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("enough"), "{out}");
}
