//! Blockchain anchoring against a real local chain (ganache with EAS deployed).

use std::sync::Arc;

use alloy::primitives::B256;
use attestix_core::anchor::anchor_schema_uid;
use attestix_server::chain::{AnchorFields, ChainClient};

use crate::evm::TestChain;

/// The UID the spec gives for the Attestix schema.
const SPEC_SCHEMA_UID: &str = "0x395d14d6af29e5b35fa76509e1293f057168c2de16487177ba65bb5e61e0e2ab";

fn fields(n: usize) -> AnchorFields {
    AnchorFields {
        artifact_hash: B256::repeat_byte(n as u8),
        artifact_type: "identity".into(),
        artifact_id: format!("attestix:{n:04}"),
        issuer_did: "did:key:z6MkTest".into(),
    }
}

async fn no_record(_: attestix_server::chain::SignedTx) -> Result<(), std::convert::Infallible> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_registered_on_first_use_under_the_uid_attestix_computes() {
    let Some(chain) = TestChain::start().await else {
        return;
    };
    assert_eq!(anchor_schema_uid().to_string(), SPEC_SCHEMA_UID);
    let client = ChainClient::new(&chain.settings()).unwrap();
    // The registry's Registered event carries the UID; ensure_schema fails on a mismatch.
    assert_eq!(client.ensure_schema().await.unwrap(), anchor_schema_uid());
    use alloy::providers::Provider as _;
    let wallet = client.attester();
    assert_eq!(
        chain.provider.get_transaction_count(wallet).await.unwrap(),
        1
    );
    // A second process finds the schema registered and sends nothing.
    let again = ChainClient::new(&chain.settings()).unwrap();
    assert_eq!(again.ensure_schema().await.unwrap(), anchor_schema_uid());
    assert_eq!(
        chain.provider.get_transaction_count(wallet).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_anchors_share_the_wallet_with_consecutive_nonces() {
    let Some(chain) = TestChain::start().await else {
        return;
    };
    let client = Arc::new(ChainClient::new(&chain.settings()).unwrap());
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let sent = client.attest(&fields(n), no_record).await.expect("sent");
                let mined = client.wait_for(sent.hash).await.expect("mined");
                (sent, mined)
            })
        })
        .collect();
    let mut nonces = Vec::new();
    let mut sent_uids = Vec::new();
    for task in tasks {
        let (sent, mined) = task.await.unwrap();
        assert_eq!(chain.nonce_of(sent.hash).await, sent.nonce);
        nonces.push(sent.nonce);
        sent_uids.push(mined.attestation_uid);
    }
    let mut uids = sent_uids.clone();
    nonces.sort_unstable();
    // Nonce 0 registered the schema; the anchors took 1..=32 with no gap.
    assert_eq!(nonces, (1..=32).collect::<Vec<u64>>());
    let mut on_chain = chain.attested_uids().await;
    on_chain.sort_unstable();
    uids.sort_unstable();
    assert_eq!(
        on_chain, uids,
        "32 attestations, each the one its request sent"
    );
    // Each decodes to what its request anchored.
    for (n, uid) in sent_uids.iter().enumerate() {
        let held = client.attestation(*uid).await.unwrap().expect("on chain");
        assert_eq!(held.fields, Some(fields(n)));
        assert_eq!(held.attester, client.attester());
        assert_eq!(held.revocation_time, 0);
    }
}

// ---- The API, on both backends, against the chain ----

use crate::helpers::{identity_body, Backend, Reply, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// A chain and a server pointed at it, or `None` when either is unavailable.
async fn anchoring_server(backend: Backend) -> Option<(TestChain, TestServer)> {
    let chain = TestChain::start().await?;
    let settings = chain.settings();
    let server = TestServer::start_with(backend, move |mut config| {
        config.anchoring = Some(settings);
        config
    })
    .await?;
    Some((chain, server))
}

async fn new_identity(server: &TestServer, name: &str) -> String {
    let reply = Reply::of(
        server
            .request(Method::POST, "/v1/identities")
            .json(&identity_body(name))
            .send(),
    )
    .await;
    assert_eq!(reply.status, 201);
    reply.json()["agent_id"].as_str().unwrap().to_owned()
}

fn sha256_canonical(document: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        attestix_core::canonical_bytes(document).unwrap(),
    ))
}

crate::on_both_backends!(
    unconfigured_anchoring_is_503_and_local_reads_still_work,
    an_identity_anchor_is_attested_once_per_key_and_verifies_on_chain,
    an_audit_batch_anchors_the_merkle_root_with_a_proof_per_entry,
    thirty_two_concurrent_api_anchors_send_thirty_two_transactions,
);

async fn unconfigured_anchoring_is_503_and_local_reads_still_work(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let agent = new_identity(&server, "Unanchored").await;
    for (path, body) in [
        ("/v1/blockchain/anchor/identity", json!({"agent_id": agent})),
        (
            "/v1/blockchain/anchor/credential",
            json!({"credential_id": "urn:uuid:x"}),
        ),
        (
            "/v1/blockchain/anchor/audit-batch",
            json!({"agent_id": agent}),
        ),
        (
            "/v1/blockchain/verify/anchor:000000000000",
            json!({"artifact_hash": "00".repeat(32)}),
        ),
    ] {
        let reply = Reply::of(server.post_keyed(path, "k", &body).send()).await;
        assert_eq!(reply.status, 503, "{path}: {}", reply.body_text());
        assert!(reply.problem()["detail"]
            .as_str()
            .unwrap()
            .contains("anchoring not configured"));
    }
    let cost = Reply::of(
        server
            .request(Method::GET, "/v1/blockchain/estimate-cost")
            .send(),
    )
    .await;
    assert_eq!(cost.status, 503);
    let list = Reply::of(
        server
            .request(Method::GET, &format!("/v1/blockchain/anchors/{agent}"))
            .send(),
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["total_anchors"], 0);
    server.finish().await;
}

async fn an_identity_anchor_is_attested_once_per_key_and_verifies_on_chain(backend: Backend) {
    let Some((chain, server)) = anchoring_server(backend).await else {
        return;
    };
    let agent = new_identity(&server, "Anchored").await;
    let stored = Reply::of(
        server
            .request(Method::GET, &format!("/v1/identities/{agent}"))
            .send(),
    )
    .await
    .json();
    let body = json!({"agent_id": agent});
    let first = Reply::of(
        server
            .post_keyed("/v1/blockchain/anchor/identity", "anchor-1", &body)
            .send(),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body_text());
    let anchor = first.json();
    assert_eq!(anchor["artifact_type"], "identity");
    assert_eq!(anchor["artifact_id"], agent.as_str());
    assert_eq!(anchor["artifact_hash"], sha256_canonical(&stored).as_str());
    assert_eq!(anchor["schema_uid"], SPEC_SCHEMA_UID);
    assert_eq!(anchor["chain_id"], crate::evm::CHAIN_ID);
    assert_eq!(anchor["network"], "custom");
    assert!(anchor["anchor_id"].as_str().unwrap().starts_with("anchor:"));
    let uids = chain.attested_uids().await;
    assert_eq!(uids.len(), 1);
    assert_eq!(anchor["attestation_uid"], uids[0].to_string().as_str());

    // The same key replays; no second transaction.
    let retry = Reply::of(
        server
            .post_keyed("/v1/blockchain/anchor/identity", "anchor-1", &body)
            .send(),
    )
    .await;
    assert_eq!(retry.status, 201);
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(chain.attested_uids().await.len(), 1);

    // Verify reads the attestation and compares the decoded hash.
    let anchor_id = anchor["anchor_id"].as_str().unwrap();
    let verify = |hash: String| {
        Reply::of(
            server
                .request(Method::POST, &format!("/v1/blockchain/verify/{anchor_id}"))
                .json(&json!({"artifact_hash": hash}))
                .send(),
        )
    };
    let good = verify(sha256_canonical(&stored)).await;
    assert_eq!(good.status, 200, "{}", good.body_text());
    assert_eq!(good.json()["verified"], true, "{}", good.body_text());
    assert_eq!(good.json()["anchors"][0]["hash_matches"], true);
    let wrong = verify("ab".repeat(32)).await;
    assert_eq!(wrong.json()["verified"], false);
    assert_eq!(wrong.json()["anchors"][0]["hash_matches"], false);
    let bad = verify("not-hex".into()).await;
    assert_eq!(bad.status, 422);

    // Listed by exact agent id; a prefix of it finds nothing.
    let list = Reply::of(
        server
            .request(Method::GET, &format!("/v1/blockchain/anchors/{agent}"))
            .send(),
    )
    .await
    .json();
    assert_eq!(list["total_anchors"], 1);
    assert_eq!(list["by_type"]["identity"], 1);
    let prefix = &agent[..agent.len() - 2];
    let none = Reply::of(
        server
            .request(Method::GET, &format!("/v1/blockchain/anchors/{prefix}"))
            .send(),
    )
    .await
    .json();
    assert_eq!(none["total_anchors"], 0);

    // Revoked on chain: reported as such.
    let client = ChainClient::new(&chain.settings()).unwrap();
    client.revoke(uids[0]).await.unwrap();
    let revoked = verify(sha256_canonical(&stored)).await.json();
    assert_eq!(revoked["verified"], false);
    assert_eq!(revoked["anchors"][0]["on_chain_revoked"], true);

    // The audit event is in the caller's chain.
    let events = Reply::of(
        server
            .request(Method::GET, "/v1/audit/events?action=blockchain.anchor")
            .send(),
    )
    .await
    .json();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["target_id"], anchor_id);

    // Estimate cost reads the chain.
    let cost = Reply::of(
        server
            .request(
                Method::GET,
                "/v1/blockchain/estimate-cost?artifact_type=credential",
            )
            .send(),
    )
    .await;
    assert_eq!(cost.status, 200);
    assert_eq!(cost.json()["can_afford"], true);
    assert_eq!(cost.json()["artifact_type"], "credential");
    // The schema is registered now, so the gas is the node's estimate plus a fifth,
    // at least what the anchor above used.
    let gas_used = anchor["gas_used"].as_u64().unwrap();
    let estimated = cost.json()["estimated_gas"].as_u64().unwrap();
    assert!(estimated > gas_used, "{estimated} covers {gas_used}");
    let bad_type = Reply::of(
        server
            .request(
                Method::GET,
                "/v1/blockchain/estimate-cost?artifact_type=nft",
            )
            .send(),
    )
    .await;
    assert_eq!(bad_type.status, 422);
    server.finish().await;
}

async fn an_audit_batch_anchors_the_merkle_root_with_a_proof_per_entry(backend: Backend) {
    let Some((_chain, server)) = anchoring_server(backend).await else {
        return;
    };
    let agent = new_identity(&server, "Batched").await;
    for n in 0..5 {
        let reply = Reply::of(
            server
                .request(Method::POST, "/v1/provenance/actions")
                .json(&json!({
                    "agent_id": agent,
                    "action_type": "inference",
                    "input_summary": format!("question {n} — ünïcode"),
                    "output_summary": "answer",
                }))
                .send(),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body_text());
    }
    let trail = Reply::of(
        server
            .request(Method::GET, &format!("/v1/provenance/audit-trail/{agent}"))
            .send(),
    )
    .await
    .json();
    let entries = trail.as_array().unwrap().clone();
    assert_eq!(entries.len(), 5);
    let leaves: Vec<[u8; 32]> = entries
        .iter()
        .map(|entry| {
            attestix_core::anchor::leaf_hash(
                attestix_core::python_json::dumps_sorted_unicode(entry).as_bytes(),
            )
        })
        .collect();
    let root = hex::encode(attestix_core::anchor::merkle_root(&leaves).unwrap());

    let reply = Reply::of(
        server
            .post_keyed(
                "/v1/blockchain/anchor/audit-batch",
                "batch-1",
                &json!({"agent_id": agent}),
            )
            .send(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body_text());
    let anchor = reply.json();
    assert_eq!(anchor["artifact_type"], "audit_batch");
    assert_eq!(anchor["artifact_hash"], root.as_str());
    let metadata = &anchor["batch_metadata"];
    assert_eq!(metadata["agent_id"], agent.as_str());
    assert_eq!(metadata["entry_count"], 5);
    assert_eq!(metadata["merkle_root"], root.as_str());
    assert_eq!(metadata["start_date"], entries[0]["timestamp"]);
    assert_eq!(metadata["end_date"], entries[4]["timestamp"]);

    let anchor_id = anchor["anchor_id"].as_str().unwrap();
    for (index, entry) in entries.iter().enumerate() {
        let entry_id = entry["log_id"].as_str().unwrap();
        let proof = Reply::of(
            server
                .request(
                    Method::GET,
                    &format!("/v1/blockchain/batches/{anchor_id}/proofs/{entry_id}"),
                )
                .send(),
        )
        .await;
        assert_eq!(proof.status, 200, "{}", proof.body_text());
        let proof = proof.json();
        // A client checks the path against the anchored root on its own.
        let path: Vec<[u8; 32]> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hash| {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(hash.as_str().unwrap(), &mut bytes).unwrap();
                bytes
            })
            .collect();
        let mut anchored = [0u8; 32];
        hex::decode_to_slice(anchor["artifact_hash"].as_str().unwrap(), &mut anchored).unwrap();
        assert!(attestix_core::anchor::verify_inclusion(
            &leaves[index],
            index,
            5,
            &path,
            &anchored
        ));
        assert_eq!(proof["leaf_index"], index);
        assert_eq!(proof["valid"], true);
    }
    let missing = Reply::of(
        server
            .request(
                Method::GET,
                &format!("/v1/blockchain/batches/{anchor_id}/proofs/audit:nope"),
            )
            .send(),
    )
    .await;
    assert_eq!(missing.status, 404);
    // An agent without entries has nothing to anchor.
    let empty = Reply::of(
        server
            .post_keyed(
                "/v1/blockchain/anchor/audit-batch",
                "batch-2",
                &json!({"agent_id": "attestix:nobody"}),
            )
            .send(),
    )
    .await;
    assert_eq!(empty.status, 404);
    let bad_date = Reply::of(
        server
            .post_keyed(
                "/v1/blockchain/anchor/audit-batch",
                "batch-3",
                &json!({"agent_id": agent, "start_date": "yesterday"}),
            )
            .send(),
    )
    .await;
    assert_eq!(bad_date.status, 422);
    server.finish().await;
}

async fn thirty_two_concurrent_api_anchors_send_thirty_two_transactions(backend: Backend) {
    let Some((chain, server)) = anchoring_server(backend).await else {
        return;
    };
    let agent = new_identity(&server, "Busy").await;
    let server = Arc::new(server);
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let server = Arc::clone(&server);
            let agent = agent.clone();
            tokio::spawn(async move {
                Reply::of(
                    server
                        .post_keyed(
                            "/v1/blockchain/anchor/identity",
                            &format!("busy-{n}"),
                            &json!({"agent_id": agent}),
                        )
                        .send(),
                )
                .await
            })
        })
        .collect();
    let mut nonces = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.body_text());
        let hash: B256 = reply.json()["tx_hash"].as_str().unwrap().parse().unwrap();
        nonces.push(chain.nonce_of(hash).await);
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (1..=32).collect::<Vec<u64>>());
    assert_eq!(chain.attested_uids().await.len(), 32);
    let list = Reply::of(
        server
            .request(
                Method::GET,
                &format!("/v1/blockchain/anchors/{agent}?limit=1000"),
            )
            .send(),
    )
    .await
    .json();
    assert_eq!(list["total_anchors"], 32);
}
