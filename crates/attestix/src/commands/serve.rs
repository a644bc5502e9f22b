//! `attestix serve`.

use attestix_server::{Application, IdempotencySettings, IdempotencyStoreChoice, ServerConfig};

use crate::cli::{ServeArgs, StoreArg};

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

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    attestix_server::telemetry::init_tracing(&args.log);
    let mut config = config(&args);
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
