//! `attestix keys create|list|revoke`: API keys, managed in the database directly.

use attestix_server::{open_storage, ServerConfig};
use time::OffsetDateTime;

use crate::cli::{DataArgs, KeysCommand};

fn config(data: &DataArgs) -> ServerConfig {
    ServerConfig {
        data_dir: data.data_dir.clone(),
        database_url: data.database_url.clone(),
        database_pool_size: 2,
        ..ServerConfig::default()
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { principal, data } => {
            let storage = open_storage(&config(&data)).await?;
            let issued =
                attestix_server::issue_api_key(storage.as_ref(), &principal, now_ms()).await?;
            eprintln!(
                "Created key {} for principal `{}`. The key is shown only this once:",
                issued.record.id, issued.record.principal
            );
            println!("{}", issued.secret);
        }
        KeysCommand::List { data } => {
            let storage = open_storage(&config(&data)).await?;
            let keys = storage.list_api_keys().await?;
            if keys.is_empty() {
                eprintln!("No API keys.");
            }
            for key in keys {
                let status = match key.revoked_at_ms {
                    Some(at) => format!("revoked {}", format_ms(at)),
                    None => "active".to_owned(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{}",
                    key.id,
                    key.principal,
                    format_ms(key.created_at_ms),
                    status
                );
            }
        }
        KeysCommand::Revoke { id, data } => {
            let storage = open_storage(&config(&data)).await?;
            if storage.revoke_api_key(&id, now_ms()).await? {
                eprintln!("Revoked key {id}; it stops working at once.");
            } else {
                anyhow::bail!(
                    "there is no active API key with the id `{id}` (see `attestix keys list`)"
                );
            }
        }
    }
    Ok(())
}
