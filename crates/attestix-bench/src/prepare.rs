//! Getting a server ready for a scenario: prefilling identities, priming the
//! replay key, creating the credential subject, walking to a deep list page.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::load::{run_load, Connection, LoadSettings};
use crate::scenario::{random_key_prefix, RequestPlan, Scenario};
use crate::servers::RunningServer;

/// Creates `count` identities without keys, over `connections` connections.
pub async fn prefill(
    server: &RunningServer,
    api_key: Option<&str>,
    count: u64,
    connections: usize,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let plan = RequestPlan::new(Scenario::CreateNokey, &server.host, api_key, "prefill")?;
    let measured = run_load(
        server.addr,
        Arc::new(plan),
        LoadSettings {
            connections,
            duration: None,
            requests: Some(count),
            warmup: Duration::ZERO,
        },
    )
    .await?;
    let created = measured.tally.successes();
    anyhow::ensure!(
        created == count,
        "prefill created {created} of {count} identities: {:?} {:?}",
        measured.tally.statuses,
        measured.tally.error_samples
    );
    Ok(())
}

/// Builds the plan of `scenario` for `server` and does the set-up it needs.
pub async fn plan_for(
    server: &RunningServer,
    scenario: Scenario,
    api_key: Option<&str>,
    page: u32,
    page_size: u32,
) -> anyhow::Result<Arc<RequestPlan>> {
    let mut plan = RequestPlan::new(scenario, &server.host, api_key, &random_key_prefix())?;
    let mut link = Connection::new(server.addr);
    match scenario {
        Scenario::Replay => {
            let response = link.send(plan.request(0, 0)).await?;
            anyhow::ensure!(
                (200..300).contains(&response.status),
                "the priming request got {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Scenario::IssueKey => {
            let response = link.send(plan.setup_create()).await?;
            anyhow::ensure!(
                (200..300).contains(&response.status),
                "creating the credential subject got {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            let identity: serde_json::Value = serde_json::from_slice(&response.body)
                .context("the created identity is not JSON")?;
            let agent_id = identity["agent_id"]
                .as_str()
                .context("the created identity has no agent_id")?;
            plan = plan.with_subject(agent_id);
        }
        Scenario::List => {
            let mut cursor: Option<String> = None;
            for walked in 1..page {
                let response = link
                    .send(plan.setup_list(page_size, cursor.as_deref()))
                    .await?;
                anyhow::ensure!(
                    response.status == 200,
                    "listing page {walked} got {}",
                    response.status
                );
                cursor = Some(response.next_cursor.with_context(|| {
                    format!("the list ends at page {walked} of {page_size}; prefill more")
                })?);
            }
            plan = plan.with_page(page_size, cursor.as_deref());
        }
        Scenario::CreateNokey | Scenario::CreateKey | Scenario::Storm => {}
    }
    Ok(Arc::new(plan))
}
