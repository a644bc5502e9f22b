//! The chain client: Attestix anchors as Ethereum Attestation Service (EAS)
//! attestations on an EVM chain, with the `alloy` crates for JSON-RPC, ABI and
//! transactions.
//!
//! One wallet signs every transaction. Its nonces are handed out one at a time by
//! [`ChainClient::send_recorded`], which signs the transaction, lets the caller
//! store it, and only then broadcasts it: a transaction the chain may have seen is
//! always one the server remembers, so a retry waits for that transaction instead
//! of sending another ([`ChainClient::wait_for`], [`ChainClient::rebroadcast`]).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{address, Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use attestix_core::anchor::{anchor_schema_uid, ANCHOR_SCHEMA};

sol! {
    /// EAS `AttestationRequestData`.
    struct AttestationRequestData {
        address recipient;
        uint64 expirationTime;
        bool revocable;
        bytes32 refUID;
        bytes data;
        uint256 value;
    }

    /// EAS `AttestationRequest`.
    struct AttestationRequest {
        bytes32 schema;
        AttestationRequestData data;
    }

    /// EAS `RevocationRequestData`.
    struct RevocationRequestData {
        bytes32 uid;
        uint256 value;
    }

    /// EAS `RevocationRequest`.
    struct RevocationRequest {
        bytes32 schema;
        RevocationRequestData data;
    }

    /// EAS `Attestation`, as `getAttestation` returns it.
    struct Attestation {
        bytes32 uid;
        bytes32 schema;
        uint64 time;
        uint64 expirationTime;
        uint64 revocationTime;
        bytes32 refUID;
        address recipient;
        address attester;
        bool revocable;
        bytes data;
    }

    /// `SchemaRegistry`'s `SchemaRecord`.
    struct SchemaRecord {
        bytes32 uid;
        address resolver;
        bool revocable;
        string schema;
    }

    /// The part of the EAS contract Attestix calls.
    interface IEAS {
        function attest(AttestationRequest calldata request) external payable returns (bytes32);
        function revoke(RevocationRequest calldata request) external payable;
        function getAttestation(bytes32 uid) external view returns (Attestation memory);
        event Attested(address indexed recipient, address indexed attester, bytes32 uid, bytes32 indexed schemaUID);
    }

    /// The part of the `SchemaRegistry` contract Attestix calls.
    interface ISchemaRegistry {
        function register(string calldata schema, address resolver, bool revocable) external returns (bytes32);
        function getSchema(bytes32 uid) external view returns (SchemaRecord memory);
        event Registered(bytes32 indexed uid, address indexed registerer, SchemaRecord schema);
    }
}

/// Base's EAS predeploy (Base mainnet and Base Sepolia).
pub const BASE_EAS: Address = address!("4200000000000000000000000000000000000021");
/// Base's SchemaRegistry predeploy (Base mainnet and Base Sepolia).
pub const BASE_SCHEMA_REGISTRY: Address = address!("4200000000000000000000000000000000000020");

/// The chain anchors go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Base Sepolia (chain 84532), the testnet.
    BaseSepolia,
    /// Base mainnet (chain 8453).
    BaseMainnet,
    /// Any other EVM chain with EAS deployed.
    Custom {
        /// Its chain id (EIP-155).
        chain_id: u64,
        /// The EAS contract.
        eas: Address,
        /// The SchemaRegistry contract.
        schema_registry: Address,
    },
}

impl Network {
    /// Reads `base-sepolia`, `base-mainnet` or `base` (the custom network is built from
    /// its parts, not parsed).
    pub fn parse_named(name: &str) -> Result<Self, String> {
        match name {
            "base-sepolia" | "sepolia" => Ok(Self::BaseSepolia),
            "base-mainnet" | "base" | "mainnet" => Ok(Self::BaseMainnet),
            other => Err(format!(
                "`{other}` is not a known network: base-sepolia, base-mainnet, or custom (with --evm-chain-id, --evm-eas-address and --evm-schema-registry-address)"
            )),
        }
    }

    /// The name stored in anchor records.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BaseSepolia => "base-sepolia",
            Self::BaseMainnet => "base-mainnet",
            Self::Custom { .. } => "custom",
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        match self {
            Self::BaseSepolia => 84532,
            Self::BaseMainnet => 8453,
            Self::Custom { chain_id, .. } => *chain_id,
        }
    }

    /// The EAS contract.
    pub fn eas(&self) -> Address {
        match self {
            Self::BaseSepolia | Self::BaseMainnet => BASE_EAS,
            Self::Custom { eas, .. } => *eas,
        }
    }

    /// The SchemaRegistry contract.
    pub fn schema_registry(&self) -> Address {
        match self {
            Self::BaseSepolia | Self::BaseMainnet => BASE_SCHEMA_REGISTRY,
            Self::Custom {
                schema_registry, ..
            } => *schema_registry,
        }
    }

    /// The public block explorer, for the known networks.
    pub fn explorer(&self) -> Option<&'static str> {
        match self {
            Self::BaseSepolia => Some("https://sepolia.basescan.org"),
            Self::BaseMainnet => Some("https://basescan.org"),
            Self::Custom { .. } => None,
        }
    }

    /// The public RPC endpoint, for the known networks.
    pub fn default_rpc_url(&self) -> Option<&'static str> {
        match self {
            Self::BaseSepolia => Some("https://sepolia.base.org"),
            Self::BaseMainnet => Some("https://mainnet.base.org"),
            Self::Custom { .. } => None,
        }
    }
}

/// The wallet's private key. Its `Debug` never shows it, and nothing serialises it.
#[derive(Clone)]
pub struct WalletKey(String);

impl WalletKey {
    /// A key from its hex text (with or without `0x`; surrounding whitespace, as in a
    /// key file, is ignored). Checked when the client is built.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into().trim().to_owned())
    }

    fn signer(&self) -> Result<PrivateKeySigner, ChainError> {
        self.0.parse::<PrivateKeySigner>().map_err(|_| {
            ChainError::Settings("the wallet key is not a 32-byte hex secp256k1 key".into())
        })
    }
}

impl std::str::FromStr for WalletKey {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text))
    }
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WalletKey(<redacted>)")
    }
}

/// Settings of blockchain anchoring; without them every anchoring call is 503.
#[derive(Debug, Clone)]
pub struct AnchorSettings {
    /// The JSON-RPC endpoint.
    pub rpc_url: url::Url,
    /// The wallet that pays for and signs the attestations.
    pub wallet_key: WalletKey,
    /// The chain and its contracts.
    pub network: Network,
    /// How long an anchor waits for its transaction's receipt.
    pub receipt_timeout: Duration,
}

/// What can go wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The settings cannot work (a bad key).
    #[error("anchoring settings: {0}")]
    Settings(String),
    /// The RPC endpoint failed or answered an error.
    #[error("the chain's RPC endpoint failed: {0}")]
    Rpc(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The endpoint serves a different chain than the settings name.
    #[error("the RPC endpoint serves chain {actual}, the settings say {expected}")]
    WrongChain {
        /// The configured chain id.
        expected: u64,
        /// The endpoint's.
        actual: u64,
    },
    /// A transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// No receipt came in time.
    #[error("no receipt for transaction {0} within the timeout")]
    Timeout(B256),
    /// A contract answered something that does not decode, or a receipt lacks the
    /// event it must carry.
    #[error("unexpected answer from the chain: {0}")]
    Unexpected(String),
    /// The registry registered the schema under another UID than Attestix computes.
    #[error("the SchemaRegistry registered the schema as {registered}, not {computed}")]
    SchemaMismatch {
        /// Ours.
        computed: B256,
        /// The registry's.
        registered: B256,
    },
}

impl ChainError {
    fn rpc(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Rpc(Box::new(error))
    }
}

/// Why [`ChainClient::send_recorded`] failed: the chain, or the caller's recording.
#[derive(Debug)]
pub enum SendError<E> {
    /// Signing or broadcasting failed.
    Chain(ChainError),
    /// Storing the signed transaction failed: it was not broadcast.
    Record(E),
}

/// A signed transaction, as stored before it is broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// Its hash.
    pub hash: B256,
    /// The wallet nonce it uses.
    pub nonce: u64,
    /// The EIP-2718 encoding, for a rebroadcast.
    pub raw: Bytes,
}

/// The four fields of the Attestix schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorFields {
    /// The artifact's SHA-256.
    pub artifact_hash: B256,
    /// `identity`, `credential`, `declaration` or `audit_batch`.
    pub artifact_type: String,
    /// The artifact's id.
    pub artifact_id: String,
    /// The server's DID.
    pub issuer_did: String,
}

impl AnchorFields {
    /// The attestation's `data`: `abi.encode(bytes32, string, string, string)`.
    pub fn encode(&self) -> Bytes {
        (
            self.artifact_hash,
            self.artifact_type.clone(),
            self.artifact_id.clone(),
            self.issuer_did.clone(),
        )
            .abi_encode_params()
            .into()
    }

    /// Decodes an attestation's `data`.
    pub fn decode(data: &[u8]) -> Result<Self, ChainError> {
        let (artifact_hash, artifact_type, artifact_id, issuer_did) =
            <(B256, String, String, String)>::abi_decode_params(data)
                .map_err(|error| ChainError::Unexpected(format!("attestation data: {error}")))?;
        Ok(Self {
            artifact_hash,
            artifact_type,
            artifact_id,
            issuer_did,
        })
    }
}

/// A mined attestation transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mined {
    /// The block it is in.
    pub block_number: u64,
    /// The gas it used.
    pub gas_used: u64,
    /// The attestation UID from its `Attested` event.
    pub attestation_uid: B256,
}

/// An attestation as the chain holds it.
#[derive(Debug, Clone)]
pub struct OnChain {
    /// Creation time (unix seconds).
    pub time: u64,
    /// Revocation time (unix seconds), 0 when not revoked.
    pub revocation_time: u64,
    /// Expiration time (unix seconds), 0 for none.
    pub expiration_time: u64,
    /// Who attested.
    pub attester: Address,
    /// Its schema.
    pub schema: B256,
    /// Its decoded data, `None` when it is not the Attestix schema's.
    pub fields: Option<AnchorFields>,
}

/// What an anchor costs now.
#[derive(Debug, Clone)]
pub struct CostEstimate {
    /// The gas limit an attestation would be sent with.
    pub gas: u64,
    /// The current gas price (wei).
    pub gas_price: u128,
    /// The current priority fee (wei).
    pub max_priority_fee: u128,
    /// The most it can cost: `gas × max fee per gas` (wei).
    pub max_cost_wei: U256,
    /// The wallet's balance (wei).
    pub balance_wei: U256,
}

/// The least gas limit of an attestation (the reference's fixed limit). The limit
/// sent is the node's estimate plus a fifth when that is more: an EAS `attest`
/// stores the encoded data, about 350,000 gas with ids of a few dozen characters.
pub const ATTEST_GAS: u64 = 300_000;
/// The least gas limit of the schema registration.
const REGISTER_GAS: u64 = 200_000;

/// The chain client: one wallet, one RPC endpoint, one EAS deployment.
pub struct ChainClient {
    provider: RootProvider,
    wallet: EthereumWallet,
    attester: Address,
    network: Network,
    receipt_timeout: Duration,
    /// The next nonce to hand out, once read from the chain. The lock is held from
    /// assigning a nonce until its transaction is stored and broadcast, so nonces
    /// go out one at a time, in order, with no gaps.
    next_nonce: tokio::sync::Mutex<Option<u64>>,
    schema: tokio::sync::OnceCell<B256>,
}

impl fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClient")
            .field("attester", &self.attester)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// A client for `settings`. Nothing is sent until the first call.
    pub fn new(settings: &AnchorSettings) -> Result<Self, ChainError> {
        let signer = settings.wallet_key.signer()?;
        let attester = signer.address();
        Ok(Self {
            provider: RootProvider::new_http(settings.rpc_url.clone()),
            wallet: EthereumWallet::from(signer),
            attester,
            network: settings.network.clone(),
            receipt_timeout: settings.receipt_timeout,
            next_nonce: tokio::sync::Mutex::new(None),
            schema: tokio::sync::OnceCell::new(),
        })
    }

    /// The wallet's address: the attester of every anchor.
    pub fn attester(&self) -> Address {
        self.attester
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The Attestix schema's UID, registering the schema first when the registry
    /// lacks it. Registration happens at most once per process.
    pub async fn ensure_schema(&self) -> Result<B256, ChainError> {
        self.schema
            .get_or_try_init(|| self.register_schema())
            .await
            .copied()
    }

    async fn register_schema(&self) -> Result<B256, ChainError> {
        let computed = anchor_schema_uid();
        let chain = self
            .provider
            .get_chain_id()
            .await
            .map_err(ChainError::rpc)?;
        if chain != self.network.chain_id() {
            return Err(ChainError::WrongChain {
                expected: self.network.chain_id(),
                actual: chain,
            });
        }
        let existing = self
            .call(
                self.network.schema_registry(),
                ISchemaRegistry::getSchemaCall { uid: computed }.abi_encode(),
            )
            .await?;
        let record = ISchemaRegistry::getSchemaCall::abi_decode_returns(&existing)
            .map_err(|error| ChainError::Unexpected(format!("getSchema: {error}")))?;
        if record.uid == computed {
            return Ok(computed);
        }
        let input = ISchemaRegistry::registerCall {
            schema: ANCHOR_SCHEMA.to_owned(),
            resolver: Address::ZERO,
            revocable: true,
        }
        .abi_encode();
        let sent = self
            .send_recorded(
                self.network.schema_registry(),
                input.into(),
                REGISTER_GAS,
                |_| async { Ok::<(), std::convert::Infallible>(()) },
            )
            .await
            .map_err(|error| match error {
                SendError::Chain(error) => error,
                SendError::Record(never) => match never {},
            })?;
        let receipt = self.receipt(sent.hash).await?;
        let registered = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.network.schema_registry())
            .find_map(|log| ISchemaRegistry::Registered::decode_log_data(log.data()).ok())
            .map(|event| event.uid)
            .ok_or_else(|| ChainError::Unexpected("no Registered event in the receipt".into()))?;
        if registered != computed {
            return Err(ChainError::SchemaMismatch {
                computed,
                registered,
            });
        }
        tracing::info!(schema_uid = %computed, "registered the Attestix EAS schema");
        Ok(computed)
    }

    /// Signs an EAS attestation of `fields`, calls `record` with it, and broadcasts
    /// it once `record` succeeded. See [`ChainClient::send_recorded`].
    pub async fn attest<E, F, Fut>(
        &self,
        fields: &AnchorFields,
        record: F,
    ) -> Result<SignedTx, SendError<E>>
    where
        F: FnOnce(SignedTx) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let schema = self.ensure_schema().await.map_err(SendError::Chain)?;
        let input = IEAS::attestCall {
            request: AttestationRequest {
                schema,
                data: AttestationRequestData {
                    recipient: self.attester,
                    expirationTime: 0,
                    revocable: true,
                    refUID: B256::ZERO,
                    data: fields.encode(),
                    value: U256::ZERO,
                },
            },
        }
        .abi_encode();
        self.send_recorded(self.network.eas(), input.into(), ATTEST_GAS, record)
            .await
    }

    /// Revokes an attestation this wallet made (operators and tests; no route).
    pub async fn revoke(&self, uid: B256) -> Result<(), ChainError> {
        let schema = self.ensure_schema().await?;
        let input = IEAS::revokeCall {
            request: RevocationRequest {
                schema,
                data: RevocationRequestData {
                    uid,
                    value: U256::ZERO,
                },
            },
        }
        .abi_encode();
        let sent = self
            .send_recorded(self.network.eas(), input.into(), ATTEST_GAS, |_| async {
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .map_err(|error| match error {
                SendError::Chain(error) => error,
                SendError::Record(never) => match never {},
            })?;
        self.receipt(sent.hash).await.map(|_| ())
    }

    /// Takes the wallet's next nonce, signs an EIP-1559 transaction calling `to` with
    /// `input`, hands it to `record` (which must store it durably), and broadcasts
    /// it only when `record` succeeded. The nonce lock is held throughout, so
    /// concurrent calls get consecutive nonces in the order they are broadcast.
    ///
    /// When `record` fails nothing was broadcast and the nonce is handed out again.
    /// When the broadcast fails the transaction is stored and may or may not have
    /// reached the chain: the nonce counter is read from the chain again next time,
    /// and a retry rebroadcasts the stored transaction ([`ChainClient::rebroadcast`]).
    pub async fn send_recorded<E, F, Fut>(
        &self,
        to: Address,
        input: Bytes,
        gas: u64,
        record: F,
    ) -> Result<SignedTx, SendError<E>>
    where
        F: FnOnce(SignedTx) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let mut next_nonce = self.next_nonce.lock().await;
        let nonce = match *next_nonce {
            Some(nonce) => nonce,
            None => self
                .provider
                .get_transaction_count(self.attester)
                .pending()
                .await
                .map_err(|error| SendError::Chain(ChainError::rpc(error)))?,
        };
        let signed = self
            .sign(to, input, gas, nonce)
            .await
            .map_err(SendError::Chain)?;
        record(signed.clone()).await.map_err(SendError::Record)?;
        match self.provider.send_raw_transaction(&signed.raw).await {
            Ok(_) => {
                *next_nonce = Some(nonce + 1);
                Ok(signed)
            }
            Err(error) => {
                *next_nonce = None;
                Err(SendError::Chain(ChainError::rpc(error)))
            }
        }
    }

    async fn sign(
        &self,
        to: Address,
        input: Bytes,
        gas: u64,
        nonce: u64,
    ) -> Result<SignedTx, ChainError> {
        let gas_price = self
            .provider
            .get_gas_price()
            .await
            .map_err(ChainError::rpc)?;
        let priority = self
            .provider
            .get_max_priority_fee_per_gas()
            .await
            .map_err(ChainError::rpc)?;
        let request = TransactionRequest::default()
            .with_from(self.attester)
            .with_to(to)
            .with_input(input)
            .with_value(U256::ZERO);
        // The node's estimate plus a fifth: an attestation stores its data, so its
        // gas grows with the ids' lengths. `gas` is the floor.
        let estimate = self
            .provider
            .estimate_gas(request.clone())
            .await
            .map_err(ChainError::rpc)?;
        let request = request
            .with_nonce(nonce)
            .with_chain_id(self.network.chain_id())
            .with_gas_limit(gas.max(estimate.saturating_add(estimate / 5)))
            .with_max_fee_per_gas(gas_price.saturating_mul(2).max(priority))
            .with_max_priority_fee_per_gas(priority);
        let envelope: TxEnvelope = request
            .build(&self.wallet)
            .await
            .map_err(|error| ChainError::Unexpected(format!("signing: {error}")))?;
        Ok(SignedTx {
            hash: *envelope.tx_hash(),
            nonce,
            raw: envelope.encoded_2718().into(),
        })
    }

    /// Broadcasts a stored transaction again: after a crash it may never have left
    /// the server, or the node may have dropped it. The node refusing it as known,
    /// or its nonce as used, is not an error: [`ChainClient::wait_for`] tells.
    pub async fn rebroadcast(&self, raw: &[u8]) {
        if TxEnvelope::decode_2718(&mut &raw[..]).is_err() {
            tracing::warn!("a stored transaction does not decode; not rebroadcast");
            return;
        }
        if let Err(error) = self.provider.send_raw_transaction(raw).await {
            tracing::debug!(%error, "rebroadcast refused (usually: already known or mined)");
        }
    }

    /// Waits for transaction `hash` and reads the attestation UID from its
    /// `Attested` event.
    pub async fn wait_for(&self, hash: B256) -> Result<Mined, ChainError> {
        let receipt = self.receipt(hash).await?;
        let attestation_uid = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.network.eas())
            .find_map(|log| IEAS::Attested::decode_log_data(log.data()).ok())
            .map(|event| event.uid)
            .ok_or_else(|| ChainError::Unexpected("no Attested event in the receipt".into()))?;
        Ok(Mined {
            block_number: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
            attestation_uid,
        })
    }

    async fn receipt(&self, hash: B256) -> Result<TransactionReceipt, ChainError> {
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(receipt) = self
                .provider
                .get_transaction_receipt(hash)
                .await
                .map_err(ChainError::rpc)?
            {
                if !receipt.status() {
                    return Err(ChainError::Reverted(hash));
                }
                return Ok(receipt);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChainError::Timeout(hash));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The attestation `uid`, `None` when the chain has none.
    pub async fn attestation(&self, uid: B256) -> Result<Option<OnChain>, ChainError> {
        let answer = self
            .call(
                self.network.eas(),
                IEAS::getAttestationCall { uid }.abi_encode(),
            )
            .await?;
        let attestation = IEAS::getAttestationCall::abi_decode_returns(&answer)
            .map_err(|error| ChainError::Unexpected(format!("getAttestation: {error}")))?;
        if attestation.uid.is_zero() {
            return Ok(None);
        }
        let fields = (attestation.schema == anchor_schema_uid())
            .then(|| AnchorFields::decode(&attestation.data).ok())
            .flatten();
        Ok(Some(OnChain {
            time: attestation.time,
            revocation_time: attestation.revocationTime,
            expiration_time: attestation.expirationTime,
            attester: attestation.attester,
            schema: attestation.schema,
            fields,
        }))
    }

    /// What an anchor of `artifact_type` costs now, and what the wallet holds. The
    /// gas is the node's estimate for a typical attestation (ids of a few dozen
    /// characters) plus the fifth the server adds, once the schema is registered;
    /// before that, the floor [`ATTEST_GAS`].
    pub async fn estimate_cost(&self, artifact_type: &str) -> Result<CostEstimate, ChainError> {
        let gas_price = self
            .provider
            .get_gas_price()
            .await
            .map_err(ChainError::rpc)?;
        let max_priority_fee = self
            .provider
            .get_max_priority_fee_per_gas()
            .await
            .map_err(ChainError::rpc)?;
        let balance_wei = self
            .provider
            .get_balance(self.attester)
            .await
            .map_err(ChainError::rpc)?;
        let sample = AnchorFields {
            artifact_hash: B256::repeat_byte(0x5a),
            artifact_type: artifact_type.to_owned(),
            artifact_id: format!("attestix:{}", "0".repeat(32)),
            issuer_did: format!("did:key:z6Mk{}", "0".repeat(44)),
        };
        let input = IEAS::attestCall {
            request: AttestationRequest {
                schema: anchor_schema_uid(),
                data: AttestationRequestData {
                    recipient: self.attester,
                    expirationTime: 0,
                    revocable: true,
                    refUID: B256::ZERO,
                    data: sample.encode(),
                    value: U256::ZERO,
                },
            },
        }
        .abi_encode();
        let request = TransactionRequest::default()
            .with_from(self.attester)
            .with_to(self.network.eas())
            .with_input(Bytes::from(input));
        // Reverts while the schema is unregistered: then the floor.
        let gas = match self.provider.estimate_gas(request).await {
            Ok(estimate) => ATTEST_GAS.max(estimate.saturating_add(estimate / 5)),
            Err(_) => ATTEST_GAS,
        };
        let max_fee = gas_price.saturating_mul(2).max(max_priority_fee);
        Ok(CostEstimate {
            gas,
            gas_price,
            max_priority_fee,
            max_cost_wei: U256::from(gas) * U256::from(max_fee),
            balance_wei,
        })
    }

    async fn call(&self, to: Address, input: Vec<u8>) -> Result<Bytes, ChainError> {
        let request = TransactionRequest::default()
            .with_to(to)
            .with_input(Bytes::from(input));
        self.provider.call(request).await.map_err(ChainError::rpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wallet_key_never_shows_in_debug_output() {
        let key = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
        let settings = AnchorSettings {
            rpc_url: "http://127.0.0.1:8545".parse().unwrap(),
            wallet_key: WalletKey::new(key),
            network: Network::BaseSepolia,
            receipt_timeout: Duration::from_secs(1),
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains(&key[2..]), "{shown}");
        assert!(!shown.contains(&key[2..12]), "{shown}");
        assert!(shown.contains("<redacted>"));
        let client = ChainClient::new(&settings).unwrap();
        assert!(!format!("{client:?}").contains(&key[2..12]));
        // The address derived from the key is the well-known first ganache account.
        assert_eq!(
            client.attester(),
            address!("90F8bf6A479f320ead074411a4B0e7944Ea8c9C1")
        );
    }

    #[test]
    fn a_bad_key_is_refused_without_echoing_it() {
        let settings = AnchorSettings {
            rpc_url: "http://127.0.0.1:8545".parse().unwrap(),
            wallet_key: WalletKey::new("0xnot-a-key-secret"),
            network: Network::BaseSepolia,
            receipt_timeout: Duration::from_secs(1),
        };
        let error = ChainClient::new(&settings).unwrap_err().to_string();
        assert!(!error.contains("not-a-key-secret"), "{error}");
    }

    #[test]
    fn attestation_data_round_trips_through_the_abi() {
        let fields = AnchorFields {
            artifact_hash: B256::repeat_byte(0xab),
            artifact_type: "identity".into(),
            artifact_id: "attestix:1234".into(),
            issuer_did: "did:key:z6Mk".into(),
        };
        assert_eq!(AnchorFields::decode(&fields.encode()).unwrap(), fields);
    }

    #[test]
    fn base_networks_use_the_predeploys() {
        assert_eq!(Network::BaseSepolia.chain_id(), 84532);
        assert_eq!(Network::BaseMainnet.chain_id(), 8453);
        assert_eq!(
            Network::parse_named("base-sepolia").unwrap().eas(),
            address!("4200000000000000000000000000000000000021")
        );
        assert!(Network::parse_named("goerli").is_err());
    }
}
