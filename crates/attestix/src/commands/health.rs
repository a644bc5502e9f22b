//! `attestix health`.

use super::{text, Outcome, Session};
use crate::cli::HealthArgs;

/// Asks the server whether it is up (GET /health, which needs no API key).
pub async fn run(args: HealthArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    let response = session.client.get(&["health"], &[]).await?;
    let server = session.client.server().to_owned();
    session.print(&response, |health| {
        format!(
            "{} is {}: {} {}",
            server,
            text(health, "status"),
            text(health, "service"),
            text(health, "version"),
        )
    })?;
    Ok(Outcome::Success)
}
