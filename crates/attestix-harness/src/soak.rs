//! The soak: steady mixed load at a fraction of the measured maximum, with the
//! server's resident memory and open descriptors sampled every second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde_json::json;

use crate::server::{footprint, ServerSpec};

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// How long the measured load runs.
    pub duration: Duration,
    /// How long the maximum is probed before.
    pub probe: Duration,
    /// The fraction of the probed maximum to hold (0.8).
    pub load_fraction: f64,
    /// Concurrent connections.
    pub connections: usize,
}

/// One second of the soak.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the measured load began.
    pub second: u64,
    /// Resident set size, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Requests completed in this second.
    pub requests: u64,
    /// Unexpected answers in this second.
    pub errors: u64,
}

/// What the soak saw.
#[derive(Debug)]
pub struct SoakReport {
    /// The probed maximum, requests per second.
    pub max_rate: f64,
    /// The rate held, requests per second.
    pub target_rate: f64,
    /// Every second's sample.
    pub samples: Vec<Sample>,
    /// Deliberate mismatches answered 409, as they should be.
    pub deliberate_conflicts: u64,
    /// Everything else that was not the expected answer.
    pub unexpected: u64,
    /// A few examples of unexpected answers.
    pub unexpected_examples: Vec<String>,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    conflicts: AtomicU64,
}

/// Runs the soak against a server started from `spec`.
pub async fn run(spec: &ServerSpec, plan: &SoakPlan) -> anyhow::Result<SoakReport> {
    let api_key = spec.create_api_key("soak")?;
    let server = spec.start()?;
    let pid = server.pid();
    let base = spec.base_url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(plan.connections)
        .build()?;

    // Probe the maximum with the same mix, unthrottled.
    let probe_tally = Arc::new(Tally::default());
    let examples = Arc::new(std::sync::Mutex::new(Vec::new()));
    drive(
        &client,
        &base,
        &api_key,
        plan.connections,
        None,
        plan.probe,
        probe_tally.clone(),
        examples.clone(),
    )
    .await;
    let max_rate = probe_tally.requests.load(Ordering::Relaxed) as f64 / plan.probe.as_secs_f64();
    let target_rate = max_rate * plan.load_fraction;

    let tally = Arc::new(Tally::default());
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (tally, running) = (tally.clone(), running.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let (mut last_requests, mut last_errors) = (0, 0);
            let mut second = 0;
            while running.load(Ordering::SeqCst) {
                ticker.tick().await;
                second += 1;
                let requests = tally.requests.load(Ordering::Relaxed);
                let errors = tally.errors.load(Ordering::Relaxed);
                if let Some((rss, fds)) = footprint(pid) {
                    samples.push(Sample {
                        second,
                        rss,
                        fds,
                        requests: requests - last_requests,
                        errors: errors - last_errors,
                    });
                }
                (last_requests, last_errors) = (requests, errors);
            }
            samples
        })
    };
    let unexpected_before = probe_tally.errors.load(Ordering::Relaxed);
    drive(
        &client,
        &base,
        &api_key,
        plan.connections,
        Some(target_rate),
        plan.duration,
        tally.clone(),
        examples.clone(),
    )
    .await;
    running.store(false, Ordering::SeqCst);
    let samples = sampler.await.context("the sampler")?;
    server.stop(Duration::from_secs(30))?;
    let examples = examples.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(SoakReport {
        max_rate,
        target_rate,
        samples,
        deliberate_conflicts: tally.conflicts.load(Ordering::Relaxed),
        unexpected: tally.errors.load(Ordering::Relaxed) + unexpected_before,
        unexpected_examples: examples,
    })
}

/// The request mix: half keyed creates with fresh keys, a fifth replays, a tenth
/// unkeyed creates, some reads, and a few deliberate key reuses with another body.
#[allow(clippy::too_many_arguments)]
async fn drive(
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
    tally: Arc<Tally>,
    examples: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let deadline = Instant::now() + duration;
    let per_worker_interval =
        rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(1.0)));
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (client, base, api_key, tally, examples) = (
            client.clone(),
            base.to_owned(),
            api_key.to_owned(),
            tally.clone(),
            examples.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sequence = 0u64;
            let mut next = Instant::now();
            while Instant::now() < deadline {
                if let Some(interval) = per_worker_interval {
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                sequence += 1;
                let roll: u32 = rand::thread_rng().gen_range(0..100);
                let key = format!("soak-{worker}-{sequence}");
                let recent = format!("soak-{worker}-{}", sequence.saturating_sub(1).max(1));
                let body =
                    json!({"display_name": format!("Soak {worker}"), "source_protocol": "api_key"});
                let (request, expect_conflict) = match roll {
                    0..=49 => (
                        client
                            .post(format!("{base}/v1/identities"))
                            .header("idempotency-key", &key)
                            .json(&body),
                        false,
                    ),
                    50..=69 => (
                        client
                            .post(format!("{base}/v1/identities"))
                            .header("idempotency-key", &recent)
                            .json(&body),
                        false,
                    ),
                    70..=79 => (
                        client.post(format!("{base}/v1/identities")).json(&body),
                        false,
                    ),
                    80..=94 => (client.get(format!("{base}/v1/identities?limit=20")), false),
                    _ => {
                        // The same key as a request just made, with another body: 409 is right.
                        let other =
                            json!({"display_name": "Different", "source_protocol": "api_key"});
                        (
                            client
                                .post(format!("{base}/v1/identities"))
                                .header("idempotency-key", &recent)
                                .json(&other),
                            true,
                        )
                    }
                };
                let outcome = request.header("x-api-key", &api_key).send().await;
                tally.requests.fetch_add(1, Ordering::Relaxed);
                let verdict = match outcome {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        match (status, expect_conflict) {
                            (200 | 201, false) => None,
                            (409, true) => {
                                tally.conflicts.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                            // A replay of the request made a moment ago may still be in flight,
                            // and a deliberate reuse may hit a key whose first request failed.
                            (409, false) | (201, true) => None,
                            (status, _) => Some(format!("status {status} (roll {roll})")),
                        }
                    }
                    Err(error) => Some(format!("transport: {error}")),
                };
                if let Some(problem) = verdict {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut examples) = examples.lock() {
                        if examples.len() < 10 {
                            examples.push(problem);
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
}

/// Median of a slice of numbers (0 when empty).
pub fn median(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 3);
        assert_eq!(median(&mut []), 0);
    }
}
