//! The command line, all of it: clap types and the small parsers they use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::Scenario;
use crate::servers::ServerKind;

/// attestix-bench: an HTTP load generator that knows `Idempotency-Key`.
#[derive(Debug, Parser)]
#[command(name = "attestix-bench", version, about)]
pub struct Cli {
    /// Worker threads of the load generator's runtime (1 = current-thread). The
    /// servers it starts keep their own runtimes.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one server with one scenario and report throughput and latency.
    Run(RunArgs),
    /// Compare two sides (server + scenario) in alternating rounds and report the
    /// ratio B/A of their medians.
    Compare(CompareArgs),
    /// Measure the memory store's bytes per stored response from process RSS.
    Footprint(FootprintArgs),
    /// Serve the ceiling: a minimal axum server answering a fixed body.
    Ceiling(CeilingArgs),
    /// The PostgreSQL targets: pgbench's single-row inserts, and a PostgreSQL-backed
    /// server's no-key and keyed creates, in rotating rounds on a fresh database.
    Postgres(PostgresArgs),
}

/// Options shared by every command that drives load.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Keep-alive connections, one task each.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Length of each measured phase (e.g. 5s, 500ms, 2m).
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Requests in each measured phase (with --duration, whichever ends first).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Unmeasured load before each measured phase.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Sent as `X-API-Key` on every request.
    #[arg(long, env = "ATTESTIX_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The `attestix` binary to start (default: the one next to this executable).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

/// `attestix-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to send.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// A running server's base URL (http://HOST:PORT).
    #[arg(long, conflicts_with = "server")]
    pub target: Option<String>,
    /// Start this server instead: sqlite, memory, off or ceiling.
    #[arg(long)]
    pub server: Option<String>,
    /// An extra argument for `attestix serve` (repeatable), e.g.
    /// `--server-arg=--idempotency-memory-max-bytes=1000000`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Create this many identities (no key) before the scenario.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// `list`: the page to fetch, walking the cursors to it first.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// `list`: the page size.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// `storm`: rounds, each a fresh key sent by every connection at once.
    #[arg(long, default_value_t = 50)]
    pub rounds: u64,
    /// Sample the started server's memory (VmRSS, VmHWM) every 250 ms and report it;
    /// `--pid` names the process of a `--target` server.
    #[arg(long)]
    pub rss: bool,
    /// The process id of the `--target` server, for `--rss`.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Which figure a comparison judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    /// 2xx responses per second (higher is better).
    Throughput,
    /// Median latency (lower is better).
    P50,
    /// 99th percentile latency (lower is better).
    P99,
}

/// `attestix-bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Side A, the baseline: `server=KIND,scenario=NAME[,prefill=N][,page=N]
    /// [,page-size=N][,connections=N][,arg=SERVE-ARG]...`; KIND is sqlite, memory,
    /// off, ceiling or an http:// URL.
    #[arg(long)]
    pub a: String,
    /// Side B, measured against A (same syntax).
    #[arg(long)]
    pub b: String,
    /// Rounds; each runs A and B once, the order flipping every round (ABBA…).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// The figure the verdict judges.
    #[arg(long, value_enum, default_value_t = Metric::Throughput)]
    pub metric: Metric,
    /// The target for B/A on `--metric`: prints PASS or MISS.
    #[arg(long)]
    pub expect: Option<f64>,
    /// Load options (each measured phase).
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `attestix-bench footprint`.
#[derive(Debug, Args)]
pub struct FootprintArgs {
    /// Keyed creates sent to the memory-store server (and no-key creates to the
    /// layer-off baseline).
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// The `attestix` binary to start.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

/// `attestix-bench postgres`.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// A database URL of the PostgreSQL to use; the bench creates (and drops) a fresh
    /// database beside the one named.
    #[arg(
        long,
        env = "ATTESTIX_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
    /// Rounds; each runs pgbench, no-key and keyed creates once, in rotating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The pgbench executable (default: on the PATH, else PostgreSQL's bin directory).
    #[arg(long)]
    pub pgbench: Option<PathBuf>,
    /// pgbench clients (default: --connections).
    #[arg(long)]
    pub pgbench_clients: Option<usize>,
    /// pgbench threads.
    #[arg(long, default_value_t = 2)]
    pub pgbench_threads: usize,
    /// Bytes of the row pgbench inserts per transaction.
    #[arg(long, default_value_t = 700)]
    pub row_bytes: usize,
    /// Target for keyed / no-key create throughput.
    #[arg(long, default_value_t = 0.85)]
    pub expect_keyed: f64,
    /// Target for no-key create throughput / pgbench's tps.
    #[arg(long, default_value_t = 0.6)]
    pub expect_pgbench: f64,
    /// An extra argument for `attestix serve` (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Load options (each measured phase).
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `attestix-bench ceiling`.
#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Size of the fixed response body.
    #[arg(long, default_value_t = crate::ceiling::UAIT_BODY_BYTES)]
    pub body_bytes: usize,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideSpec {
    /// The server and how it is set up before measuring.
    pub setup: ServerSetup,
    /// What is sent.
    pub scenario: Scenario,
    /// `list`: the page fetched.
    pub page: u32,
    /// `list`: the page size.
    pub page_size: u32,
    /// Connections, if not the command's.
    pub connections: Option<usize>,
}

/// A server and what it holds before measuring; sides with equal setups share
/// one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSetup {
    /// Which server.
    pub kind: ServerKind,
    /// Extra arguments for `attestix serve`.
    pub args: Vec<String>,
    /// Identities created (no key) before measuring.
    pub prefill: u64,
}

impl SideSpec {
    /// Parses `server=…,scenario=…[,…]`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut kind = None;
        let mut scenario = None;
        let mut spec = SideSpec {
            setup: ServerSetup {
                kind: ServerKind::Sqlite,
                args: Vec::new(),
                prefill: 0,
            },
            scenario: Scenario::CreateNokey,
            page: 1,
            page_size: 50,
            connections: None,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("`{part}` is not NAME=VALUE"))?;
            match name {
                "server" => kind = Some(ServerKind::parse(value)?),
                "scenario" => {
                    scenario = Some(
                        Scenario::parse(value)
                            .ok_or_else(|| anyhow::anyhow!("unknown scenario `{value}`"))?,
                    )
                }
                "prefill" => spec.setup.prefill = value.parse()?,
                "page" => spec.page = value.parse()?,
                "page-size" => spec.page_size = value.parse()?,
                "connections" => spec.connections = Some(value.parse()?),
                "arg" => spec.setup.args.push(value.to_owned()),
                other => anyhow::bail!("unknown side option `{other}`"),
            }
        }
        spec.setup.kind = kind.ok_or_else(|| anyhow::anyhow!("a side needs server=…"))?;
        spec.scenario = scenario.ok_or_else(|| anyhow::anyhow!("a side needs scenario=…"))?;
        anyhow::ensure!(
            spec.scenario != Scenario::Storm,
            "storm reports outcomes, not a rate: use `run --scenario storm`"
        );
        Ok(spec)
    }

    /// A one-line description for reports.
    pub fn label(&self) -> String {
        let mut label = format!("{} on {}", self.scenario, self.setup.kind.label());
        if self.setup.prefill > 0 {
            label.push_str(&format!(", {} identities prefilled", self.setup.prefill));
        }
        if self.scenario == crate::scenario::Scenario::List {
            label.push_str(&format!(", page {} of {}", self.page, self.page_size));
        }
        for arg in &self.setup.args {
            label.push_str(&format!(" {arg}"));
        }
        label
    }
}

/// Parses `5s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 5s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn a_side_names_its_server_scenario_and_setup() {
        let side = SideSpec::parse(
            "server=sqlite,scenario=list,prefill=60000,page=1000,page-size=50,arg=--log=warn",
        )
        .expect("valid side");
        assert_eq!(side.setup.kind, ServerKind::Sqlite);
        assert_eq!(side.scenario, Scenario::List);
        assert_eq!(side.setup.prefill, 60_000);
        assert_eq!(side.page, 1000);
        assert_eq!(side.setup.args, ["--log=warn"]);
        let url = SideSpec::parse("server=http://127.0.0.1:8001,scenario=replay").expect("valid");
        assert_eq!(
            url.setup.kind,
            ServerKind::External("http://127.0.0.1:8001".into())
        );
    }

    #[test]
    fn a_side_without_server_or_scenario_is_refused() {
        assert!(SideSpec::parse("scenario=replay").is_err());
        assert!(SideSpec::parse("server=off").is_err());
        assert!(SideSpec::parse("server=off,scenario=storm").is_err());
        assert!(SideSpec::parse("server=off,scenario=replay,colour=blue").is_err());
    }
}
