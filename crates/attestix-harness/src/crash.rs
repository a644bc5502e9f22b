//! The crash harness: clients send keyed creates, each retried with the same key
//! until it gets a 2xx, while the server is SIGKILLed at random moments and
//! restarted. At the end every key must map to exactly one identity, and every
//! client's final answer must name that identity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use serde_json::{json, Value};

use crate::server::ServerSpec;

/// Settings of one crash run.
#[derive(Debug, Clone)]
pub struct CrashPlan {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys each client creates, one after the other.
    pub keys_per_client: usize,
    /// How many times the server is killed.
    pub kills: usize,
    /// Random pause before each kill, in milliseconds (low, high).
    pub kill_after_ms: (u64, u64),
}

/// What a crash run saw.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Kills performed.
    pub kills: usize,
    /// Distinct keys the clients used.
    pub keys: usize,
    /// Identities in the database at the end.
    pub identities: usize,
    /// Client attempts (including retries).
    pub attempts: u64,
    /// Attempts that failed at the connection (the server was down).
    pub connection_errors: u64,
    /// 5xx answers seen.
    pub server_errors: u64,
    /// 409 in-flight answers seen (keys held by a killed worker until its lease).
    pub in_flight: u64,
    /// Final answers that were replays.
    pub replayed: u64,
    /// Every broken promise found; empty means the run passed.
    pub violations: Vec<String>,
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    connection_errors: AtomicU64,
    server_errors: AtomicU64,
    in_flight: AtomicU64,
    replayed: AtomicU64,
}

/// Runs the crash harness against the server described by `spec`.
pub async fn run(spec: &ServerSpec, plan: &CrashPlan) -> anyhow::Result<CrashReport> {
    let api_key = spec.create_api_key("crash-harness")?;
    let mut server = Some(spec.start()?);
    let base = spec.base_url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()?;
    let counters = Arc::new(Counters::default());

    let mut tasks = Vec::new();
    for client_index in 0..plan.clients {
        let (client, base, api_key, counters) = (
            client.clone(),
            base.clone(),
            api_key.clone(),
            counters.clone(),
        );
        let keys = plan.keys_per_client;
        tasks.push(tokio::spawn(async move {
            let mut finals = Vec::with_capacity(keys);
            for key_index in 0..keys {
                let key = format!("crash-{client_index}-{key_index}");
                let document =
                    create_until_success(&client, &base, &api_key, &key, &counters).await?;
                finals.push((key, document));
            }
            anyhow::Ok(finals)
        }));
    }

    // The killer: SIGKILL at a random moment, restart at once, `kills` times,
    // while the clients are still working.
    let mut kills = 0;
    while kills < plan.kills {
        let pause = rand::thread_rng().gen_range(plan.kill_after_ms.0..=plan.kill_after_ms.1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if tasks.iter().all(|task| task.is_finished()) {
            break;
        }
        if let Some(process) = server.take() {
            process.kill();
        }
        kills += 1;
        server = Some(spec.start().context("restart after a kill")?);
    }

    let mut finals: HashMap<String, Value> = HashMap::new();
    for task in tasks {
        for (key, document) in task.await?? {
            finals.insert(key, document);
        }
    }
    let identities = list_all(&client, &base, &api_key).await?;
    if let Some(process) = server.take() {
        let _ = process.stop(Duration::from_secs(10));
    }

    let mut report = CrashReport {
        kills,
        keys: finals.len(),
        identities: identities.len(),
        attempts: counters.attempts.load(Ordering::Relaxed),
        connection_errors: counters.connection_errors.load(Ordering::Relaxed),
        server_errors: counters.server_errors.load(Ordering::Relaxed),
        in_flight: counters.in_flight.load(Ordering::Relaxed),
        replayed: counters.replayed.load(Ordering::Relaxed),
        violations: Vec::new(),
    };
    check(&finals, &identities, plan, &mut report);
    Ok(report)
}

fn check(
    finals: &HashMap<String, Value>,
    identities: &[Value],
    plan: &CrashPlan,
    report: &mut CrashReport,
) {
    let expected_keys = plan.clients * plan.keys_per_client;
    if finals.len() != expected_keys {
        report.violations.push(format!(
            "{} keys finished, {expected_keys} expected",
            finals.len()
        ));
    }
    if identities.len() != finals.len() {
        report.violations.push(format!(
            "{} identities exist for {} distinct keys",
            identities.len(),
            finals.len()
        ));
    }
    // The display name carries the key, so each identity can be traced to its key.
    let mut by_key: HashMap<&str, Vec<&Value>> = HashMap::new();
    for identity in identities {
        let name = identity["display_name"].as_str().unwrap_or_default();
        by_key.entry(name).or_default().push(identity);
    }
    for (key, answer) in finals {
        let made = by_key
            .get(key.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        match made {
            [only] => {
                if only["agent_id"] != answer["agent_id"] {
                    report.violations.push(format!(
                        "key {key}: the client was told {} but {} exists",
                        answer["agent_id"], only["agent_id"]
                    ));
                }
            }
            [] => report
                .violations
                .push(format!("key {key}: no identity exists")),
            many => report
                .violations
                .push(format!("key {key}: {} identities exist", many.len())),
        }
    }
}

async fn create_until_success(
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
    key: &str,
    counters: &Counters,
) -> anyhow::Result<Value> {
    let body = json!({"display_name": key, "source_protocol": "api_key"});
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut backoff = Duration::from_millis(20);
    loop {
        if Instant::now() > deadline {
            bail!("key {key} never succeeded within 300 s");
        }
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        let sent = client
            .post(format!("{base}/v1/identities"))
            .header("x-api-key", api_key)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await;
        match sent {
            Err(_) => {
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) if response.status().is_success() => {
                if response.headers().contains_key("idempotency-replayed") {
                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                }
                match response.json::<Value>().await {
                    Ok(document) => return Ok(document),
                    // Killed while sending the body: retry, the key will replay.
                    Err(_) => {
                        counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(response) if response.status() == 409 => {
                let problem: Value = response.json().await.unwrap_or_default();
                let kind = problem["type"].as_str().unwrap_or_default();
                if !kind.ends_with("/in-flight") {
                    bail!("key {key}: unexpected 409 {problem}");
                }
                counters.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) if response.status().is_server_error() => {
                counters.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("key {key}: unexpected answer {status}: {text}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

async fn list_all(
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/identities?include_revoked=true&limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = client.get(&url).header("x-api-key", api_key).send().await?;
        if !response.status().is_success() {
            bail!("listing identities failed: {}", response.status());
        }
        cursor = response
            .headers()
            .get("x-next-cursor")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let page: Vec<Value> = response.json().await?;
        items.extend(page);
        if cursor.is_none() {
            return Ok(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CrashPlan {
        CrashPlan {
            clients: 1,
            keys_per_client: 2,
            kills: 0,
            kill_after_ms: (1, 1),
        }
    }

    #[test]
    fn a_duplicate_identity_is_a_violation() {
        let finals = HashMap::from([
            ("a".to_owned(), json!({"agent_id": "attestix:1"})),
            ("b".to_owned(), json!({"agent_id": "attestix:2"})),
        ]);
        let identities = vec![
            json!({"agent_id": "attestix:1", "display_name": "a"}),
            json!({"agent_id": "attestix:2", "display_name": "b"}),
            json!({"agent_id": "attestix:3", "display_name": "b"}),
        ];
        let mut report = CrashReport::default();
        check(&finals, &identities, &plan(), &mut report);
        assert_eq!(report.violations.len(), 2, "{:?}", report.violations);
        assert!(report
            .violations
            .iter()
            .any(|v| v.contains("2 identities exist")));
    }

    #[test]
    fn a_client_told_another_identity_is_a_violation() {
        let finals = HashMap::from([
            ("a".to_owned(), json!({"agent_id": "attestix:9"})),
            ("b".to_owned(), json!({"agent_id": "attestix:2"})),
        ]);
        let identities = vec![
            json!({"agent_id": "attestix:1", "display_name": "a"}),
            json!({"agent_id": "attestix:2", "display_name": "b"}),
        ];
        let mut report = CrashReport::default();
        check(&finals, &identities, &plan(), &mut report);
        assert_eq!(report.violations.len(), 1);
        assert!(report.violations[0].contains("was told"));
    }

    #[test]
    fn a_clean_run_has_no_violations() {
        let finals = HashMap::from([
            ("a".to_owned(), json!({"agent_id": "attestix:1"})),
            ("b".to_owned(), json!({"agent_id": "attestix:2"})),
        ]);
        let identities = vec![
            json!({"agent_id": "attestix:1", "display_name": "a"}),
            json!({"agent_id": "attestix:2", "display_name": "b"}),
        ];
        let mut report = CrashReport::default();
        check(&finals, &identities, &plan(), &mut report);
        assert!(report.violations.is_empty());
    }
}
