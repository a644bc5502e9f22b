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
                let sent = client
                    .attest(&fields(n), no_record)
                    .await
                    .ok()
                    .expect("sent");
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
