//! `attestix serve`.

use attestix_server::{Application, IdempotencySettings, IdempotencyStoreChoice, ServerConfig};

use alloy_primitives::Address;
use anyhow::Context as _;
use attestix_server::chain::{AnchorSettings, Network, WalletKey};

use crate::cli::{AnchorArgs, ServeArgs, StoreArg};

/// The server configuration the flags describe.
pub fn config(args: &ServeArgs) -> ServerConfig {
    ServerConfig {
        bind: args.bind,
        data_dir: args.data.data_dir.clone(),
        database_url: args.data.database_url.clone(),
        database_pool_size: args.data.database_pool_size,
        legacy_api_key: args.legacy_api_key.clone().filter(|key| !key.is_empty()),
        allow_no_auth: args.allow_no_auth,
        public_metrics: args.public_metrics,
        max_body_bytes: args.max_body_bytes,
        max_response_bytes: args.max_response_bytes,
        request_head_timeout: args.request_head_timeout,
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        idempotency: IdempotencySettings {
            enabled: !args.no_idempotency,
            store: match args.idempotency_store {
                StoreArg::Database => IdempotencyStoreChoice::Database,
                StoreArg::Memory => IdempotencyStoreChoice::Memory,
            },
            retention: args.idempotency_ttl,
            lease: args.idempotency_lease,
            wait: args.idempotency_wait,
            ietf_status_codes: args.idempotency_ietf_codes,
            memory_max_bytes: args.idempotency_memory_max_bytes,
        },
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(certificate), Some(key)) => Some(attestix_server::TlsFiles {
                certificate: certificate.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        fetch: attestix_server::fetch::FetchSettings {
            extra_roots: Vec::new(),
            allow_loopback: args.fetch_allow_loopback,
        },
        universal_resolver: args.universal_resolver_url.clone(),
        ..ServerConfig::default()
    }
}

/// The anchoring settings the flags describe: `None` without a wallet key.
pub fn anchor_settings(args: &AnchorArgs) -> anyhow::Result<Option<AnchorSettings>> {
    let wallet_key = match (&args.evm_private_key_file, &args.evm_private_key) {
        (Some(path), _) => Some(read_key_file(path)?),
        (None, Some(key)) => Some(key.clone()),
        (None, None) => None,
    };
    let Some(wallet_key) = wallet_key else {
        return Ok(None);
    };
    let network = if args.evm_network == "custom" {
        let address = |flag: &str, value: &Option<String>| -> anyhow::Result<Address> {
            let text = value
                .as_deref()
                .with_context(|| format!("--evm-network custom needs {flag}"))?;
            text.parse()
                .with_context(|| format!("{flag} `{text}` is not a 20-byte hex address"))
        };
        Network::Custom {
            chain_id: args
                .evm_chain_id
                .context("--evm-network custom needs --evm-chain-id")?,
            eas: address("--evm-eas-address", &args.evm_eas_address)?,
            schema_registry: address(
                "--evm-schema-registry-address",
                &args.evm_schema_registry_address,
            )?,
        }
    } else {
        Network::parse_named(&args.evm_network).map_err(anyhow::Error::msg)?
    };
    let rpc_url = match (&args.evm_rpc_url, network.default_rpc_url()) {
        (Some(url), _) => url.clone(),
        (None, Some(default)) => default.parse().context("the default RPC URL parses")?,
        (None, None) => anyhow::bail!("--evm-network custom needs --evm-rpc-url"),
    };
    Ok(Some(AnchorSettings {
        rpc_url,
        wallet_key,
        network,
        receipt_timeout: args.evm_receipt_timeout,
    }))
}

/// Reads a key file, refusing one that group or others can read.
fn read_key_file(path: &std::path::Path) -> anyhow::Result<WalletKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the wallet key file {}", path.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the wallet key file {} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the wallet key file {}", path.display()))?;
    Ok(WalletKey::new(text))
}

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    attestix_server::telemetry::init_tracing(&args.log);
    let mut config = config(&args);
    config.anchoring = anchor_settings(&args.anchoring)?;
    if let Some(path) = &args.fetch_ca_file {
        config.fetch.extra_roots = attestix_server::fetch::load_ca_file(path)?;
        eprintln!(
            "WARNING: outbound fetches trust the extra CA roots of {} (--fetch-ca-file).",
            path.display()
        );
    }
    if config.fetch.allow_loopback {
        eprintln!("WARNING: outbound fetches may target loopback addresses (--fetch-allow-loopback); for tests only.");
    }
    if config.allow_no_auth {
        tracing::warn!("AUTHENTICATION IS OFF (--allow-no-auth): anyone who can reach this port can create and revoke identities");
        eprintln!("WARNING: authentication is off (--allow-no-auth / ATTESTIX_ALLOW_NO_AUTH); every caller is the principal `anonymous`.");
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let application = Application::build(config).await?;
    if let Some(key) = application.first_admin_key() {
        eprintln!(
            "\nCreated the first API key, for the principal `admin`. It is shown only this once; store it now:\n\n    {key}\n\nSend it as `X-API-Key: <key>` or `Authorization: Bearer <key>`.\n"
        );
    }
    tracing::info!(address = %application.local_addr(), did = application.did(), "attestix server listening");
    // A line for scripts and tests that start the server on port 0.
    println!("listening on {scheme}://{}", application.local_addr());
    application.run_until(shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod anchoring_tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    const KEY: &str = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["attestix", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("the flags parse").command {
            Command::Serve(args) => *args,
            _ => unreachable!("serve was asked for"),
        }
    }

    #[test]
    fn without_a_wallet_key_anchoring_is_off() {
        if std::env::var_os("EVM_PRIVATE_KEY").is_some() {
            return;
        }
        assert!(anchor_settings(&serve_args(&[]).anchoring)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_custom_network_needs_its_contracts_and_rpc_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wallet.key");
        std::fs::write(&file, format!("0x{KEY}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let path = file.to_str().unwrap();
        let missing = serve_args(&["--evm-private-key-file", path, "--evm-network", "custom"]);
        let error = anchor_settings(&missing.anchoring).unwrap_err().to_string();
        assert!(error.contains("--evm-chain-id"), "{error}");
        let args = serve_args(&[
            "--evm-private-key-file",
            path,
            "--evm-network",
            "custom",
            "--evm-chain-id",
            "1337",
            "--evm-eas-address",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "--evm-schema-registry-address",
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "--evm-rpc-url",
            "http://127.0.0.1:8545",
        ]);
        let settings = anchor_settings(&args.anchoring).unwrap().unwrap();
        assert_eq!(settings.network.chain_id(), 1337);
        // Neither the settings nor the parsed flags show the key.
        let shown = format!("{settings:?} {args:?}");
        assert!(!shown.contains(&KEY[..16]), "{shown}");
    }

    #[test]
    fn base_networks_default_to_base_rpc_and_predeploys_and_the_env_key_is_hidden() {
        let args = serve_args(&["--evm-private-key", KEY, "--evm-network", "base-mainnet"]);
        assert!(!format!("{args:?}").contains(&KEY[..16]));
        let settings = anchor_settings(&args.anchoring).unwrap().unwrap();
        assert_eq!(settings.network.chain_id(), 8453);
        assert_eq!(settings.rpc_url.as_str(), "https://mainnet.base.org/");
        assert!(!format!("{settings:?}").contains(&KEY[..16]));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wallet.key");
        std::fs::write(&file, KEY).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let args = serve_args(&["--evm-private-key-file", file.to_str().unwrap()]);
        let error = anchor_settings(&args.anchoring).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        assert!(!error.contains(KEY), "{error}");
    }
}
