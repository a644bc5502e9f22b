//! Getting a server ready for a scenario: prefilling identities, priming the
//! replay key, creating the credential subject, walking to a deep list page.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::load::{run_load, Connection, LoadSettings};
use crate::scenario::{profile_body, random_key_prefix, RequestPlan, Scenario, Target};
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
            let agent_id = create_identity(&mut link, &plan).await?;
            plan = plan.with_subject(&agent_id);
        }
        Scenario::DelegateNokey | Scenario::DelegateKey => {
            let issuer = create_identity(&mut link, &plan).await?;
            let audience = create_identity(&mut link, &plan).await?;
            plan = plan.with_target(Target::Delegation { issuer, audience });
        }
        Scenario::VerifyChain => {
            let token = three_deep_chain(&mut link, &plan).await?;
            let verified = post_json(
                &mut link,
                &plan,
                "/v1/delegations/verify",
                &serde_json::json!({ "token": token }),
            )
            .await?;
            anyhow::ensure!(
                verified["valid"] == true,
                "the three-deep chain does not verify: {verified}"
            );
            plan = plan.with_target(Target::Token(token));
        }
        Scenario::Translate => {
            let agent_id = create_identity(&mut link, &plan).await?;
            plan = plan.with_target(Target::Identity(agent_id));
        }
        Scenario::CardParse => {
            let body: serde_json::Value =
                serde_json::from_str(crate::scenario::CARD_BODY).expect("the card body is JSON");
            let generated = post_json(&mut link, &plan, "/v1/agent-cards/generate", &body).await?;
            plan = plan.with_target(Target::Card(generated["agent_card"].clone()));
        }
        Scenario::AssessmentNokey | Scenario::AssessmentKey => {
            let agent_id = agent_with_profile(&mut link, &plan, |_| {}).await?;
            plan = plan.with_target(Target::Post {
                path: "/v1/compliance/assessments".to_owned(),
                body: passed_assessment(&agent_id),
            });
        }
        Scenario::StatusSmall | Scenario::StatusLarge => {
            let entries = if scenario == Scenario::StatusSmall {
                10
            } else {
                10_000
            };
            let agent_id = agent_with_profile(&mut link, &plan, |profile| {
                profile["risk_category"] = "high".into();
            })
            .await?;
            let training = serde_json::json!({"agent_id": agent_id, "dataset_name": "bench corpus",
                                              "source": "https://bench.example/corpus"});
            let lineage = serde_json::json!({"agent_id": agent_id, "base_model": "bench-base"});
            seed(
                server,
                api_key,
                "/v1/provenance/training-data",
                training,
                entries / 2,
            )
            .await?;
            seed(
                server,
                api_key,
                "/v1/provenance/model-lineage",
                lineage,
                entries / 2,
            )
            .await?;
            plan = plan.with_target(Target::ComplianceStatus(agent_id));
        }
        Scenario::ProfileNokey
        | Scenario::ProfileKey
        | Scenario::PurgeNokey
        | Scenario::PurgeKey => {
            let agents = agent_pool(server, &plan, AGENT_POOL_SIZE).await?;
            plan = plan.with_target(Target::Pool(agents));
        }
        Scenario::PatchNokey | Scenario::PatchKey => {
            let agent_id = agent_with_profile(&mut link, &plan, |_| {}).await?;
            plan = plan.with_target(Target::Patch {
                agent_id,
                body: serde_json::json!({"intended_purpose": "attestix-bench, patched",
                                         "transparency_obligations": "labelled as AI"}),
            });
        }
        Scenario::DeclarationNokey | Scenario::DeclarationKey => {
            // Annex V asks for every field a declaration states.
            let agent_id = agent_with_profile(&mut link, &plan, |profile| {
                profile["transparency_obligations"] = "labelled as AI".into();
            })
            .await?;
            let assessment = passed_assessment(&agent_id);
            post_json(&mut link, &plan, "/v1/compliance/assessments", &assessment).await?;
            let body = serde_json::json!({ "agent_id": agent_id });
            post_json(&mut link, &plan, "/v1/compliance/declarations", &body).await?;
            plan = plan.with_target(Target::Post {
                path: "/v1/compliance/declarations".to_owned(),
                body,
            });
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
        Scenario::CreateNokey
        | Scenario::CreateKey
        | Scenario::Storm
        | Scenario::CardGenerate
        | Scenario::DidKey
        | Scenario::DidWeb
        | Scenario::ActionNokey
        | Scenario::ActionKey
        | Scenario::InteractionNokey
        | Scenario::InteractionKey
        | Scenario::TrainingNokey
        | Scenario::TrainingKey
        | Scenario::LineageNokey
        | Scenario::LineageKey => {}
    }
    Ok(Arc::new(plan))
}

/// Creates an identity with a minimal-risk compliance profile, changed first by
/// `adjust`, and returns its agent id.
async fn agent_with_profile(
    link: &mut Connection,
    plan: &RequestPlan,
    adjust: impl FnOnce(&mut serde_json::Value),
) -> anyhow::Result<String> {
    let agent_id = create_identity(link, plan).await?;
    let mut profile = profile_body(&agent_id, "minimal");
    adjust(&mut profile);
    post_json(link, plan, "/v1/compliance/profiles", &profile).await?;
    Ok(agent_id)
}

/// A passed self-assessment of `agent_id`.
fn passed_assessment(agent_id: &str) -> serde_json::Value {
    serde_json::json!({"agent_id": agent_id, "assessment_type": "self",
                       "assessor_name": "Bench QA", "result": "pass"})
}

/// How many identities a pooled scenario (profile, purge) creates first: each
/// request uses one, so a run of one side must stay under it (at 2,000/s, ten
/// rounds of a second); past it the requests fail, and the run says so.
const AGENT_POOL_SIZE: usize = 24_000;

/// Creates `count` identities over 16 connections and returns their agent ids.
async fn agent_pool(
    server: &RunningServer,
    plan: &RequestPlan,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    const CONNECTIONS: usize = 16;
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for connection in 0..CONNECTIONS {
        let (addr, plan) = (server.addr, plan.clone());
        let share = count / CONNECTIONS + usize::from(connection < count % CONNECTIONS);
        tasks.push(tokio::spawn(async move {
            let mut link = Connection::new(addr);
            let mut agents = Vec::with_capacity(share);
            for _ in 0..share {
                agents.push(create_identity(&mut link, &plan).await?);
            }
            anyhow::Ok(agents)
        }));
    }
    let mut agents = Vec::with_capacity(count);
    for task in tasks {
        agents.extend(task.await.context("a pool-filling task panicked")??);
    }
    Ok(agents)
}

/// POSTs `body` to `path` `count` times without a key, over 16 connections.
async fn seed(
    server: &RunningServer,
    api_key: Option<&str>,
    path: &str,
    body: serde_json::Value,
    count: u64,
) -> anyhow::Result<()> {
    let plan = RequestPlan::new(Scenario::TrainingNokey, &server.host, api_key, "seed")?
        .with_target(Target::Post {
            path: path.to_owned(),
            body,
        });
    let measured = run_load(
        server.addr,
        Arc::new(plan),
        LoadSettings {
            connections: 16,
            duration: None,
            requests: Some(count),
            warmup: Duration::ZERO,
        },
    )
    .await?;
    let created = measured.tally.successes();
    anyhow::ensure!(
        created == count,
        "seeding {path} created {created} of {count}: {:?} {:?}",
        measured.tally.statuses,
        measured.tally.error_samples
    );
    Ok(())
}

/// POSTs `body` to `path` without a key and returns the 2xx answer's JSON.
async fn post_json(
    link: &mut Connection,
    plan: &RequestPlan,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let response = link.send(plan.setup_post(path, body)).await?;
    anyhow::ensure!(
        (200..300).contains(&response.status),
        "set-up POST {path} got {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice(&response.body).with_context(|| format!("POST {path} answered no JSON"))
}

/// Creates one identity and returns its agent id.
async fn create_identity(link: &mut Connection, plan: &RequestPlan) -> anyhow::Result<String> {
    let identity = post_json(
        link,
        plan,
        "/v1/identities",
        &serde_json::from_str(crate::scenario::CREATE_IDENTITY_BODY)
            .expect("the identity body is JSON"),
    )
    .await?;
    identity["agent_id"]
        .as_str()
        .map(str::to_owned)
        .context("the created identity has no agent_id")
}

/// Delegates A → B → C → D, each link attenuating its parent, and returns the
/// last token: verifying it walks the three-deep proof chain.
async fn three_deep_chain(link: &mut Connection, plan: &RequestPlan) -> anyhow::Result<String> {
    let mut agents = Vec::new();
    for _ in 0..4 {
        agents.push(create_identity(link, plan).await?);
    }
    let capabilities = [
        vec!["read", "write", "admin"],
        vec!["read", "write"],
        vec!["read"],
    ];
    let mut parent: Option<String> = None;
    for (hop, capabilities) in capabilities.iter().enumerate() {
        let created = post_json(
            link,
            plan,
            "/v1/delegations",
            &serde_json::json!({
                "issuer_agent_id": agents[hop],
                "audience_agent_id": agents[hop + 1],
                "capabilities": capabilities,
                "expiry_hours": 24,
                "parent_token": parent,
            }),
        )
        .await?;
        parent = Some(
            created["token"]
                .as_str()
                .context("the delegation answer has no token")?
                .to_owned(),
        );
    }
    parent.context("a chain has three links")
}
