//! `attestix-harness`: fault harnesses for the Attestix server.
//!
//! - `crash`: clients send keyed creates, each retried with the same key until it
//!   gets a 2xx, while the server is SIGKILLed at random moments and restarted.
//!   Checks that every key maps to exactly one identity and that every client's
//!   final answer names it. SQLite by default; `--postgres` uses a fresh database
//!   on the local PostgreSQL.
//! - `soak`: mixed load at a fraction of the probed maximum for a fixed time;
//!   resident memory and open descriptors sampled every second (CSV).
//!
//! Build the server first: `cargo build --release -p attestix -p attestix-harness`.

mod crash;
mod server;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use idempotency_sql::pg_test::TestDatabase;

use crate::server::{free_port, sibling_binary, ServerSpec};

/// Fault harnesses for the Attestix server.
#[derive(Debug, Parser)]
#[command(name = "attestix-harness", version, about)]
struct Cli {
    /// The `attestix` binary to run (default: the one next to this harness).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SIGKILL the server at random moments while clients retry keyed creates.
    Crash {
        /// Use a fresh database on the local PostgreSQL instead of SQLite.
        #[arg(long)]
        postgres: bool,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Keys per client, created one after another (enough to outlast the kills).
        #[arg(long, default_value_t = 300)]
        keys_per_client: usize,
        /// How many times to kill the server.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Lease of the server under test (how long a killed worker's key stays held).
        #[arg(long, default_value = "1s")]
        lease: String,
    },
    /// Steady mixed load; samples RSS and descriptors every second.
    Soak {
        /// Measured duration in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Fraction of the probed maximum to hold.
        #[arg(long, default_value_t = 0.8)]
        load: f64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Byte cap of the server's memory idempotency store.
        #[arg(long, default_value_t = 32 * 1024 * 1024)]
        memory_cap: usize,
        /// Where to write the per-second samples.
        #[arg(long, default_value = "soak.csv")]
        csv: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let binary = match cli.server_bin {
        Some(path) => path,
        None => sibling_binary("attestix")?,
    };
    let data = tempfile::tempdir()?;
    match cli.command {
        Command::Crash {
            postgres,
            clients,
            keys_per_client,
            kills,
            lease,
        } => {
            let database = if postgres {
                Some(
                    TestDatabase::create()
                        .await
                        .context("PostgreSQL is unreachable")?,
                )
            } else {
                None
            };
            let spec = ServerSpec {
                binary,
                data_dir: data.path().to_path_buf(),
                database_url: database.as_ref().map(|db| db.url().to_owned()),
                port: free_port()?,
                extra_args: vec!["--idempotency-lease".into(), lease],
            };
            let plan = crash::CrashPlan {
                clients,
                keys_per_client,
                kills,
                kill_after_ms: (50, 600),
            };
            let started = std::time::Instant::now();
            let report = crash::run(&spec, &plan).await?;
            let backend = if postgres { "PostgreSQL" } else { "SQLite" };
            println!(
                "crash harness ({backend}), {:.1} s",
                started.elapsed().as_secs_f64()
            );
            println!("  kills (SIGKILL + restart): {}", report.kills);
            println!("  distinct keys: {}", report.keys);
            println!("  identities stored: {}", report.identities);
            println!(
                "  attempts: {} (connection errors {}, 5xx {}, 409 in flight {}, final replays {})",
                report.attempts,
                report.connection_errors,
                report.server_errors,
                report.in_flight,
                report.replayed
            );
            if let Some(database) = database {
                let _ = database.drop_database().await;
            }
            if report.violations.is_empty() {
                println!("  PASS: every key maps to exactly one identity, and every client holds its agent_id");
                Ok(true)
            } else {
                for violation in &report.violations {
                    println!("  VIOLATION: {violation}");
                }
                Ok(false)
            }
        }
        Command::Soak {
            seconds,
            load,
            connections,
            memory_cap,
            csv,
        } => {
            let spec = ServerSpec {
                binary,
                data_dir: data.path().to_path_buf(),
                database_url: None,
                port: free_port()?,
                extra_args: vec![
                    "--idempotency-store".into(),
                    "memory".into(),
                    "--idempotency-memory-max-bytes".into(),
                    memory_cap.to_string(),
                ],
            };
            let plan = soak::SoakPlan {
                duration: Duration::from_secs(seconds),
                probe: Duration::from_secs(10),
                load_fraction: load,
                connections,
            };
            let report = soak::run(&spec, &plan).await?;
            let mut text = String::from("second,rss_bytes,fds,requests,errors\n");
            for s in &report.samples {
                text.push_str(&format!(
                    "{},{},{},{},{}\n",
                    s.second, s.rss, s.fds, s.requests, s.errors
                ));
            }
            std::fs::write(&csv, text)
                .with_context(|| format!("cannot write {}", csv.display()))?;
            summarize(&report, memory_cap, &csv)
        }
    }
}

fn summarize(
    report: &soak::SoakReport,
    memory_cap: usize,
    csv: &std::path::Path,
) -> anyhow::Result<bool> {
    let samples = &report.samples;
    let warm = samples.len().min(60);
    let tail_start = samples.len().saturating_sub(60);
    let window = |range: std::ops::Range<usize>, f: fn(&soak::Sample) -> u64| {
        let mut values: Vec<u64> = samples[range].iter().map(f).collect();
        soak::median(&mut values)
    };
    let rss_after_warmup = window(warm.min(tail_start)..(warm + 60).min(samples.len()), |s| {
        s.rss
    });
    let rss_end = window(tail_start..samples.len(), |s| s.rss);
    let fds_after_warmup = window(warm.min(tail_start)..(warm + 60).min(samples.len()), |s| {
        s.fds as u64
    });
    let fds_end = window(tail_start..samples.len(), |s| s.fds as u64);
    let rss_max = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let achieved: u64 = samples.iter().map(|s| s.requests).sum();
    println!(
        "soak: {} s, probed maximum {:.0} req/s, held target {:.0} req/s, achieved {:.0} req/s",
        samples.len(),
        report.max_rate,
        report.target_rate,
        achieved as f64 / samples.len().max(1) as f64
    );
    println!("  RSS median minute 2: {:.1} MiB, last minute: {:.1} MiB, max {:.1} MiB (memory store cap {:.0} MiB)",
        rss_after_warmup as f64 / 1048576.0, rss_end as f64 / 1048576.0, rss_max as f64 / 1048576.0, memory_cap as f64 / 1048576.0);
    println!("  open descriptors median minute 2: {fds_after_warmup}, last minute: {fds_end}");
    println!(
        "  deliberate 409s: {}, unexpected answers: {}",
        report.deliberate_conflicts, report.unexpected
    );
    for example in &report.unexpected_examples {
        println!("    e.g. {example}");
    }
    println!("  samples: {}", csv.display());
    // Flat: the end within 10% (and 8 MiB) of minute 2; descriptors within 16.
    let rss_flat = rss_end <= rss_after_warmup + (rss_after_warmup / 10).max(8 << 20);
    let fds_flat = fds_end <= fds_after_warmup + 16;
    let ok = rss_flat && fds_flat && report.unexpected == 0;
    println!("  {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
