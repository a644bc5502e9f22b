//! `attestix-bench postgres`: the PostgreSQL targets in one invocation.
//!
//! On a fresh database of the local PostgreSQL it starts one `attestix serve
//! --database-url …` (layer on, idempotency records in PostgreSQL), then runs, in
//! rounds whose order rotates (ABC, BCA, CAB, …):
//!
//! - **pgbench**: pgbench itself, one prepared `INSERT` of one 700-byte row per
//!   transaction, the same number of clients as the bench has connections;
//! - **no-key**: `POST /v1/identities` without a key;
//! - **keyed**: `POST /v1/identities` with a fresh `Idempotency-Key` each time.
//!
//! Each round gives two ratios, keyed / no-key and no-key / pgbench; the verdicts
//! judge the median of the per-round ratios. Beside the rates it reports what each
//! phase cost the database: write transactions (each one a commit that waits for
//! its WAL flush) and WAL bytes per request, read from the cluster's counters, which
//! do not lag (`pg_current_snapshot()`'s xmax, `pg_current_wal_lsn()`); other work
//! on the same cluster during a phase counts too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;

use crate::cli::PostgresArgs;
use crate::load::{run_load, LoadSettings};
use crate::prepare::plan_for;
use crate::report::{median, meets, ms, ratio};
use crate::scenario::Scenario;
use crate::servers::{Executables, RunningServer, ServerKind};

/// The table pgbench inserts into.
const PGBENCH_TABLE: &str = "bench_single_row";

/// One kind of measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pgbench,
    Nokey,
    Keyed,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Pgbench, Phase::Nokey, Phase::Keyed];

    fn name(self) -> &'static str {
        match self {
            Self::Pgbench => "pgbench",
            Self::Nokey => "no-key create",
            Self::Keyed => "keyed create",
        }
    }
}

/// The order of the phases in round `round` (0-based): rotated by one each round.
fn round_order(round: u32) -> [Phase; 3] {
    let mut order = Phase::ALL;
    order.rotate_left(round as usize % 3);
    order
}

/// A database made for this run, dropped (with its connections) at the end.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "attestix_bench_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        psql(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name)?,
            name,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
        .map(drop)
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let scheme_end = url
        .find("://")
        .context("a PostgreSQL URL starts with postgres://")?
        + 3;
    let (base, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |at| scheme_end + at);
    Ok(format!("{}/{database}{query}", &base[..authority_end]))
}

/// Runs one statement with `psql` and returns its unaligned output.
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, url])
        .output()
        .await
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The cluster's write-transaction and WAL counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Counters {
    /// The next transaction id to be assigned (every write transaction takes one).
    next_xid: u64,
    /// WAL bytes written so far.
    wal_bytes: u64,
}

impl Counters {
    async fn read(url: &str) -> anyhow::Result<Self> {
        let text = psql(
            url,
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text || ' ' || \
             (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .await?;
        let mut parts = text.split_whitespace();
        let mut next = || -> anyhow::Result<u64> {
            parts
                .next()
                .context("psql printed too little")?
                .parse()
                .with_context(|| format!("unexpected counters `{text}`"))
        };
        Ok(Self {
            next_xid: next()?,
            wal_bytes: next()?,
        })
    }
}

/// One measured phase.
#[derive(Debug, Clone, Copy)]
struct PhaseResult {
    /// Successful operations (2xx responses, or pgbench transactions) per second.
    rate: f64,
    /// Write transactions per operation.
    commits: f64,
    /// WAL bytes per operation.
    wal_bytes: f64,
    /// Median latency in microseconds (pgbench: its average).
    latency_us: u64,
    /// Failed operations.
    failures: u64,
}

/// The text pgbench runs per transaction: one row of `row_bytes` characters.
fn pgbench_script(row_bytes: usize) -> String {
    format!(
        "INSERT INTO {PGBENCH_TABLE} (doc) VALUES ('{}');\n",
        "x".repeat(row_bytes)
    )
}

/// `tps` and the average latency (µs) from pgbench's report.
pub fn parse_pgbench(output: &str) -> Option<(f64, u64, u64)> {
    let tps = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let latency_ms: f64 = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("latency average = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    let failed = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    Some((tps, (latency_ms * 1000.0) as u64, failed))
}

struct Pgbench {
    program: PathBuf,
    script: PathBuf,
    clients: usize,
    threads: usize,
    url: String,
}

impl Pgbench {
    async fn run(&self, seconds: u64) -> anyhow::Result<(f64, u64, u64)> {
        let output = Command::new(&self.program)
            .args(["-n", "-M", "prepared"])
            .arg(format!("-c{}", self.clients))
            .arg(format!("-j{}", self.threads))
            .arg(format!("-T{seconds}"))
            .arg("-f")
            .arg(&self.script)
            .arg(&self.url)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "pgbench failed: {}{}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        parse_pgbench(&text).with_context(|| format!("no tps in pgbench's report: {text}"))
    }
}

/// Whole seconds for pgbench's `-T` (at least one).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().round().max(1.0) as u64
}

/// Finds pgbench: the given path, `pgbench` on the PATH, or PostgreSQL's own
/// directory.
fn locate_pgbench(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_owned();
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("pgbench").is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from("pgbench");
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/pgbench"))
        .filter(|path| path.is_file())
        .collect();
    installed.sort();
    installed.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// Runs the command.
pub async fn run(args: PostgresArgs) -> anyhow::Result<()> {
    let database = FreshDatabase::create(&args.admin_url).await?;
    let result = measure(&args, &database).await;
    if let Err(error) = database.drop_database().await {
        eprintln!("warning: the bench database was not dropped: {error:#}");
    }
    result
}

async fn measure(args: &PostgresArgs, database: &FreshDatabase) -> anyhow::Result<()> {
    let connections = args.load.connections;
    let duration = args.load.duration.unwrap_or(Duration::from_secs(5));
    let warmup = args.load.warmup;
    psql(
        &database.url,
        &format!(
            "CREATE TABLE {PGBENCH_TABLE} (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             doc TEXT NOT NULL)"
        ),
    )
    .await?;
    let scripts = tempfile::tempdir().context("cannot create a directory for the script")?;
    let script = scripts.path().join("single_row.sql");
    std::fs::write(&script, pgbench_script(args.row_bytes))?;
    let pgbench = Pgbench {
        program: locate_pgbench(args.pgbench.as_deref()),
        script,
        clients: args.pgbench_clients.unwrap_or(connections),
        threads: args.pgbench_threads,
        url: database.url.clone(),
    };

    let executables = Executables::locate(args.load.server_bin.clone())?;
    let kind = ServerKind::Postgres(database.url.clone());
    let server = RunningServer::start(&kind, &executables, &args.server_args).await?;
    let api_key = args.load.api_key.as_deref();
    let nokey = plan_for(&server, Scenario::CreateNokey, api_key, 1, 50).await?;
    let keyed = plan_for(&server, Scenario::CreateKey, api_key, 1, 50).await?;
    println!(
        "database {} (fresh); server {} at {}; {} connections, pgbench {} clients {} threads ({}, one {}-byte row per transaction, -M prepared)",
        database.name,
        kind.label(),
        server.host,
        connections,
        pgbench.clients,
        pgbench.threads,
        pgbench.program.display(),
        args.row_bytes
    );
    println!(
        "{} rounds, order rotating each round; each phase {:.1} s warm-up + {:.1} s measured",
        args.rounds,
        warmup.as_secs_f64(),
        duration.as_secs_f64()
    );

    let mut results: Vec<[Option<PhaseResult>; 3]> = Vec::new();
    for round in 0..args.rounds {
        let mut row = [None; 3];
        for phase in round_order(round) {
            let result = match phase {
                Phase::Pgbench => {
                    if !warmup.is_zero() {
                        pgbench.run(whole_seconds(warmup)).await?;
                    }
                    let before = Counters::read(&database.url).await?;
                    let (tps, latency_us, failures) = pgbench.run(whole_seconds(duration)).await?;
                    let after = Counters::read(&database.url).await?;
                    let operations = tps * whole_seconds(duration) as f64;
                    per_operation(before, after, operations, tps, latency_us, failures)
                }
                Phase::Nokey | Phase::Keyed => {
                    let plan = if phase == Phase::Nokey {
                        &nokey
                    } else {
                        &keyed
                    };
                    let settings = LoadSettings {
                        connections,
                        duration: Some(duration),
                        requests: None,
                        warmup: Duration::ZERO,
                    };
                    if !warmup.is_zero() {
                        let warm = LoadSettings {
                            duration: Some(warmup),
                            ..settings
                        };
                        run_load(server.addr, plan.clone(), warm).await?;
                    }
                    let before = Counters::read(&database.url).await?;
                    let measured = run_load(server.addr, plan.clone(), settings).await?;
                    let after = Counters::read(&database.url).await?;
                    let summary = measured.tally.summary(measured.elapsed);
                    let failures = summary.responses - summary.successes + summary.transport_errors;
                    per_operation(
                        before,
                        after,
                        summary.successes as f64,
                        summary.success_throughput(),
                        summary.percentiles.p50_us,
                        failures,
                    )
                }
            };
            println!(
                "round {} {:<14} {:>8.0}/s  latency {} ms{}  {:.2} write transactions and {:.0} WAL bytes per operation{}",
                round + 1,
                phase.name(),
                result.rate,
                ms(result.latency_us),
                if phase == Phase::Pgbench { " (average)" } else { " (p50)" },
                result.commits,
                result.wal_bytes,
                if result.failures > 0 {
                    format!("  FAILURES {}", result.failures)
                } else {
                    String::new()
                }
            );
            row[Phase::ALL
                .iter()
                .position(|p| *p == phase)
                .expect("a phase")] = Some(result);
        }
        results.push(row);
    }
    drop(server);

    let rates = |index: usize| -> Vec<f64> {
        results
            .iter()
            .filter_map(|row| row[index].map(|r| r.rate))
            .collect()
    };
    let (pg, nokey_rates, keyed_rates) = (rates(0), rates(1), rates(2));
    println!(
        "median: pgbench {:.0} tps, no-key {:.0}/s, keyed {:.0}/s",
        median(&pg).unwrap_or(f64::NAN),
        median(&nokey_rates).unwrap_or(f64::NAN),
        median(&keyed_rates).unwrap_or(f64::NAN)
    );
    let failures: u64 = results.iter().flatten().flatten().map(|r| r.failures).sum();
    let verdicts = [
        (
            "keyed / no-key",
            per_round(&keyed_rates, &nokey_rates),
            args.expect_keyed,
        ),
        (
            "no-key / pgbench",
            per_round(&nokey_rates, &pg),
            args.expect_pgbench,
        ),
    ];
    for (name, ratios, target) in verdicts {
        let Some(value) = median(&ratios) else {
            continue;
        };
        let verdict = if meets(value, target, false) {
            "PASS"
        } else {
            "MISS"
        };
        let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "{name}: {value:.3} (median of per-round ratios; rounds: {})  target >= {target}: {verdict}",
            rounds.join(" ")
        );
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} operations failed (non-2xx, transport errors or failed pgbench transactions)"
    );
    Ok(())
}

fn per_round(b: &[f64], a: &[f64]) -> Vec<f64> {
    b.iter().zip(a).filter_map(|(b, a)| ratio(*b, *a)).collect()
}

fn per_operation(
    before: Counters,
    after: Counters,
    operations: f64,
    rate: f64,
    latency_us: u64,
    failures: u64,
) -> PhaseResult {
    let operations = operations.max(1.0);
    PhaseResult {
        rate,
        commits: after.next_xid.saturating_sub(before.next_xid) as f64 / operations,
        wal_bytes: after.wal_bytes.saturating_sub(before.wal_bytes) as f64 / operations,
        latency_us,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_takes_every_position() {
        let orders: Vec<[Phase; 3]> = (0..3).map(round_order).collect();
        for position in 0..3 {
            let mut seen: Vec<Phase> = orders.iter().map(|order| order[position]).collect();
            seen.dedup();
            assert_eq!(seen.len(), 3);
        }
        assert_eq!(round_order(3), round_order(0));
    }

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b2").unwrap(),
            "postgres://u:p@h/b2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h:5432", "b3").unwrap(),
            "postgresql://h:5432/b3"
        );
        assert!(with_database("h:5432/db", "b4").is_err());
    }

    #[test]
    fn pgbench_reports_are_read() {
        let report = "transaction type: single_row.sql\nnumber of clients: 16\n\
                      number of transactions actually processed: 40000\n\
                      number of failed transactions: 0 (0.000%)\n\
                      latency average = 1.987 ms\n\
                      initial connection time = 12.3 ms\n\
                      tps = 8052.123456 (without initial connection time)\n";
        assert_eq!(parse_pgbench(report), Some((8052.123456, 1987, 0)));
        assert_eq!(parse_pgbench("nothing"), None);
    }

    #[test]
    fn the_script_inserts_one_row_of_the_given_size() {
        let script = pgbench_script(700);
        assert_eq!(script.matches('x').count(), 700);
        assert!(script.starts_with("INSERT INTO bench_single_row"));
    }
}
