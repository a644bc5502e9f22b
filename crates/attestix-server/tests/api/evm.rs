//! A local EVM chain per test: ganache from `tests/evm/node_modules` (installed by
//! `npm ci` there, which `.ci/run` does), with SchemaRegistry and EAS deployed from
//! the compiled artifacts of `@ethereum-attestation-service/eas-contracts`.
//!
//! Without `node_modules` the tests print SKIPPED, unless `CI` is set: then they
//! fail, so that CI never passes by skipping the chain.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolEvent, SolValue};
use attestix_server::chain::{AnchorSettings, Network, WalletKey};

/// The server's wallet (ganache's first deterministic key).
pub const SERVER_KEY: &str = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
/// The deployer's wallet (ganache's second deterministic key): kept apart from the
/// server's so the server's nonces start at 0.
const DEPLOYER_KEY: &str = "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1";
/// The chain id ganache is started with.
pub const CHAIN_ID: u64 = 1337;

/// `crates/attestix-server/tests/evm`, from either crate that includes this file.
fn evm_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../attestix-server/tests/evm"
    ))
}

/// A running ganache with the EAS contracts.
pub struct TestChain {
    child: tokio::process::Child,
    /// Its JSON-RPC URL.
    pub rpc_url: url::Url,
    /// The EAS contract.
    pub eas: Address,
    /// The SchemaRegistry contract.
    pub registry: Address,
    /// A read-only provider.
    pub provider: RootProvider,
}

impl TestChain {
    /// A fresh chain, or `None` (after printing SKIPPED) when the npm packages are
    /// not installed outside CI.
    pub async fn start() -> Option<Self> {
        let modules = evm_dir().join("node_modules");
        let cli = modules.join("ganache/dist/node/cli.js");
        if !cli.exists() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but {} is missing: run `npm ci` in {}",
                    cli.display(),
                    evm_dir().display()
                );
            }
            eprintln!(
                "SKIPPED: no local EVM chain (run `npm ci` in {})",
                evm_dir().display()
            );
            return None;
        }
        let port = free_port();
        let balance = "0x3635C9ADC5DEA00000"; // 1000 ETH
        let child = tokio::process::Command::new("node")
            .arg(&cli)
            .args(["--server.host", "127.0.0.1", "--server.port"])
            .arg(port.to_string())
            .args(["--chain.chainId", &CHAIN_ID.to_string()])
            .arg("--wallet.accounts")
            .arg(format!("{SERVER_KEY},{balance}"))
            .arg("--wallet.accounts")
            .arg(format!("{DEPLOYER_KEY},{balance}"))
            .args(["--logging.quiet", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs ganache");
        let rpc_url: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
        let provider = RootProvider::new_http(rpc_url.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while provider.get_chain_id().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "ganache did not answer within a minute"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut chain = Self {
            child,
            rpc_url,
            eas: Address::ZERO,
            registry: Address::ZERO,
            provider,
        };
        chain.registry = chain.deploy("SchemaRegistry", Bytes::new()).await;
        chain.eas = chain
            .deploy("EAS", chain.registry.abi_encode().into())
            .await;
        Some(chain)
    }

    async fn deploy(&self, contract: &str, constructor_args: Bytes) -> Address {
        let artifact = evm_dir().join(format!(
            "node_modules/@ethereum-attestation-service/eas-contracts/artifacts/contracts/{contract}.sol/{contract}.json"
        ));
        let artifact: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&artifact).expect("the artifact is installed"))
                .expect("the artifact is JSON");
        let bytecode: Bytes = artifact["bytecode"]
            .as_str()
            .expect("the artifact has bytecode")
            .parse()
            .expect("the bytecode is hex");
        let mut code = bytecode.to_vec();
        code.extend_from_slice(&constructor_args);
        let signer: PrivateKeySigner = DEPLOYER_KEY.parse().unwrap();
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(self.rpc_url.clone());
        let receipt = deployer
            .send_transaction(TransactionRequest::default().with_deploy_code(code))
            .await
            .expect("the deployment is accepted")
            .get_receipt()
            .await
            .expect("the deployment is mined");
        assert!(receipt.status(), "{contract} deployed");
        receipt.contract_address.expect("a contract was created")
    }

    /// Settings that point a server at this chain.
    pub fn settings(&self) -> AnchorSettings {
        AnchorSettings {
            rpc_url: self.rpc_url.clone(),
            wallet_key: WalletKey::new(SERVER_KEY),
            network: Network::Custom {
                chain_id: CHAIN_ID,
                eas: self.eas,
                schema_registry: self.registry,
            },
            receipt_timeout: Duration::from_secs(60),
        }
    }

    /// The UIDs of every attestation EAS has made, from its `Attested` logs.
    pub async fn attested_uids(&self) -> Vec<B256> {
        let filter = Filter::new()
            .address(self.eas)
            .event_signature(attestix_server::chain::IEAS::Attested::SIGNATURE_HASH)
            .from_block(0);
        self.provider
            .get_logs(&filter)
            .await
            .expect("logs are readable")
            .iter()
            .map(|log| {
                attestix_server::chain::IEAS::Attested::decode_log_data(log.data())
                    .expect("an Attested log decodes")
                    .uid
            })
            .collect()
    }

    /// The nonce of transaction `hash`.
    pub async fn nonce_of(&self, hash: B256) -> u64 {
        use alloy::consensus::Transaction as _;
        self.provider
            .get_transaction_by_hash(hash)
            .await
            .expect("the transaction is readable")
            .expect("the transaction exists")
            .nonce()
    }
}

impl Drop for TestChain {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
