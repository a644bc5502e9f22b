//! `attestix mcp`: the MCP server over stdio, or over streamable HTTP with `--http`.

use anyhow::Context as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;

use super::serve::shutdown_signal;
use crate::cli::McpArgs;
use crate::client::ApiClient;
use crate::mcp::AttestixMcp;

/// Serves the tools until the host closes stdin (stdio) or until Ctrl-C / SIGTERM (HTTP).
pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    // stdout is the protocol's (stdio) or the address line's: retries are told on stderr.
    let client = ApiClient::new(&args.client)?;
    let server = AttestixMcp::new(client);
    match args.http {
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("cannot start the MCP session on stdio")?;
            running
                .waiting()
                .await
                .context("the MCP session on stdio failed")?;
        }
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            let local = listener
                .local_addr()
                .context("cannot read the listening address")?;
            // Hosts checked against DNS rebinding: loopback, plus the address bound.
            let config = StreamableHttpServerConfig::default().with_allowed_hosts([
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
                local.ip().to_string(),
                local.to_string(),
            ]);
            let service = StreamableHttpService::new(
                move || Ok(server.clone()),
                LocalSessionManager::default().into(),
                config,
            );
            let router = axum::Router::new().nest_service("/mcp", service);
            println!("listening on http://{local}/mcp");
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("the MCP HTTP server failed")?;
        }
    }
    Ok(())
}
