//! `attestix-bench run`: one server, one scenario.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::load::{run_load, run_storm, Connection, LoadSettings};
use crate::prepare::{plan_for, prefill};
use crate::report::render;
use crate::scenario::Scenario;
use crate::servers::{Executables, ProcessMemory, RunningServer, ServerKind};

/// Runs the command.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let kind = match (&args.target, &args.server) {
        (Some(url), _) => ServerKind::External(url.clone()),
        (None, Some(name)) => ServerKind::parse(name)?,
        (None, None) => anyhow::bail!("give --target URL or --server KIND"),
    };
    let executables = Executables::locate(args.load.server_bin.clone())?;
    let server = RunningServer::start(&kind, &executables, &args.server_args).await?;
    let pid = server.pid().or(args.pid);
    println!("server: {} at {}", kind.label(), server.host);
    let api_key = args.load.api_key.as_deref();
    prefill(&server, api_key, args.prefill, args.load.connections).await?;

    let sampler = match (args.rss, pid) {
        (true, Some(pid)) => Some(MemorySampler::start(pid)?),
        (true, None) => anyhow::bail!("--rss needs a started server or --pid"),
        _ => None,
    };
    let plan = plan_for(&server, args.scenario, api_key, args.page, args.page_size).await?;
    let title = format!(
        "{} against {} ({} connections)",
        args.scenario,
        kind.label(),
        args.load.connections
    );
    if args.scenario == Scenario::Storm {
        let limit = args.load.duration.unwrap_or(Duration::from_secs(60));
        let (rounds, measured) =
            run_storm(server.addr, plan, args.load.connections, args.rounds, limit).await?;
        print!("{}", render(&title, &measured.tally, measured.elapsed));
        let single = rounds.iter().filter(|r| r.executed == 1).count();
        let most = rounds.iter().map(|r| r.executed).max().unwrap_or(0);
        let sum = |f: fn(&crate::load::StormRound) -> u64| rounds.iter().map(f).sum::<u64>();
        println!(
            "  storm: {} rounds of {} concurrent requests on one key each; rounds with exactly one execution: {}; most executions in a round: {most}",
            rounds.len(),
            args.load.connections,
            single
        );
        println!(
            "  totals: executed {}  replayed {}  409 {}  other {}",
            sum(|r| r.executed),
            sum(|r| r.replayed),
            sum(|r| r.conflicts),
            sum(|r| r.other)
        );
    } else {
        let settings = LoadSettings {
            connections: args.load.connections,
            duration: args.load.duration,
            requests: args.load.requests,
            warmup: args.load.warmup,
        };
        let measured = run_load(server.addr, plan, settings).await?;
        print!("{}", render(&title, &measured.tally, measured.elapsed));
    }
    if let Some(sampler) = sampler {
        sampler.report(pid.expect("a sampler has a pid"))?;
    }
    if server.pid().is_some() && kind != ServerKind::Ceiling {
        print_store_metrics(&server).await;
    }
    Ok(())
}

/// Samples a process's memory in the background and remembers the peak.
struct MemorySampler {
    before: ProcessMemory,
    peak_rss_kib: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl MemorySampler {
    fn start(pid: u32) -> anyhow::Result<Self> {
        let before = ProcessMemory::read(pid)?;
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(before.rss_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak_task, stop_task) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop_task.load(Ordering::Relaxed) {
                if let Ok(now) = ProcessMemory::read(pid) {
                    peak_task.fetch_max(now.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Ok(Self {
            before,
            peak_rss_kib: peak,
            stop,
        })
    }

    fn report(self, pid: u32) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let after = ProcessMemory::read(pid)?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "  server memory (MiB): before rss {:.1} (anon {:.1}); after rss {:.1} (anon {:.1}, file {:.1}); peak sampled rss {:.1}; VmHWM {:.1}",
            mib(self.before.rss_kib),
            mib(self.before.anon_kib),
            mib(after.rss_kib),
            mib(after.anon_kib),
            mib(after.file_kib),
            mib(self.peak_rss_kib.load(Ordering::Relaxed)),
            mib(after.hwm_kib)
        );
        Ok(())
    }
}

/// Prints the idempotency memory-store gauges from `/metrics`, if the server
/// shows them.
pub async fn print_store_metrics(server: &RunningServer) {
    if let Some((records, bytes)) = store_metrics(server).await {
        println!(
            "  memory store (its own estimate): {records} records, {bytes} bytes, {} bytes/record",
            bytes.checked_div(records).unwrap_or(0)
        );
    }
}

/// `idempotency_memory_records` and `idempotency_memory_bytes` from `/metrics`.
pub async fn store_metrics(server: &RunningServer) -> Option<(u64, u64)> {
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, server.host.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let response = Connection::new(server.addr).send(request).await.ok()?;
    let text = String::from_utf8_lossy(&response.body);
    let gauge = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().last())
            .and_then(|value| value.parse::<f64>().ok())
            .map(|value| value as u64)
    };
    Some((
        gauge("idempotency_memory_records")?,
        gauge("idempotency_memory_bytes")?,
    ))
}
