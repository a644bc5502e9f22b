//! `attestix-bench footprint`: bytes the memory store holds per stored response,
//! from the growth of process memory against a layer-off baseline.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::FootprintArgs;
use crate::load::{run_load, LoadSettings};
use crate::scenario::{random_key_prefix, RequestPlan, Scenario};
use crate::servers::{Executables, ProcessMemory, RunningServer, ServerKind};

/// Bytes per stored response: the extra growth of the memory-store server over
/// the baseline, divided by the responses stored.
pub fn bytes_per_response(growth_kib: i64, baseline_growth_kib: i64, stored: u64) -> Option<f64> {
    (stored > 0).then(|| (growth_kib - baseline_growth_kib) as f64 * 1024.0 / stored as f64)
}

/// Runs the command.
pub async fn run(args: FootprintArgs) -> anyhow::Result<()> {
    let executables = Executables::locate(args.server_bin.clone())?;
    let mut growth = Vec::new();
    for (kind, scenario) in [
        (ServerKind::Off, Scenario::CreateNokey),
        (ServerKind::Memory, Scenario::CreateKey),
    ] {
        let server = RunningServer::start(&kind, &executables, &[]).await?;
        let pid = server.pid().expect("a started server has a pid");
        let plan = Arc::new(RequestPlan::new(
            scenario,
            &server.host,
            None,
            &random_key_prefix(),
        )?);
        // A short warm-up first, so one-time allocations (pools, caches) are in the base.
        let settings = |requests| LoadSettings {
            connections: args.connections,
            duration: None,
            requests: Some(requests),
            warmup: Duration::ZERO,
        };
        run_load(server.addr, plan.clone(), settings(2_000)).await?;
        let before = ProcessMemory::read(pid)?;
        let measured = run_load(server.addr, plan, settings(args.requests)).await?;
        let after = ProcessMemory::read(pid)?;
        let stored = measured.tally.successes();
        let metrics = crate::run::store_metrics(&server).await;
        println!(
            "{}: {} {} requests ({} 2xx); RSS {:.1} -> {:.1} MiB (anon {:.1} -> {:.1} MiB){}",
            kind.label(),
            args.requests,
            scenario,
            stored,
            before.rss_kib as f64 / 1024.0,
            after.rss_kib as f64 / 1024.0,
            before.anon_kib as f64 / 1024.0,
            after.anon_kib as f64 / 1024.0,
            metrics.map_or(String::new(), |(records, bytes)| format!(
                "; store's estimate: {records} records, {bytes} bytes ({} per record)",
                bytes.checked_div(records).unwrap_or(0)
            ))
        );
        growth.push((after.anon_kib as i64 - before.anon_kib as i64, stored));
    }
    let (baseline, _) = growth[0];
    let (memory, stored) = growth[1];
    if let Some(bytes) = bytes_per_response(memory, baseline, stored) {
        println!(
            "memory store: {bytes:.0} bytes of anonymous RSS per stored response (growth {memory} KiB minus layer-off growth {baseline} KiB, over {stored} responses)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_over_the_baseline_is_divided_by_the_stored_responses() {
        assert_eq!(bytes_per_response(2_000, 1_000, 1_024), Some(1_000.0));
        assert_eq!(bytes_per_response(500, 1_000, 1_024), Some(-500.0));
        assert_eq!(bytes_per_response(1, 0, 0), None);
    }
}
