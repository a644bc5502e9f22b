//! The `attestix` command: `attestix serve` runs the server; `attestix keys`
//! manages its API keys; the other commands are the API's client.
//!
//! Exit codes: 0 when the command did what was asked; 1 when it ran and the
//! answer is no (a verification found the document invalid, an import had lines
//! that failed); 2 for every error (bad usage, an unreachable server, an error
//! answer, an unreadable file).

mod cli;
mod client;
mod commands;
mod mcp;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the replay path spent about 17% of its CPU in
/// malloc/free (docs/BENCHMARKS.md), and glibc's per-thread arenas fragmented under
/// the memory store's insert/evict churn. Built with `no_thp`: mimalloc otherwise
/// asks for transparent huge pages, and each new 2 MiB page is zeroed (and, on a
/// virtual machine, backed by the host) at once, which cost a keyed request on the
/// memory store about 6 µs of page faults as the store grew (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::commands::Outcome;

/// The exit code of an error (clap uses the same for bad usage).
const EXIT_ERROR: u8 = 2;
/// The exit code of a negative answer (an invalid document, failed import lines).
const EXIT_NEGATIVE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "attestix",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // Failpoints are compiled in only for tests; FAILPOINTS configures them there.
    let _failpoints = fail::FailScenario::setup();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(*args).await.map(|()| Outcome::Success),
            Command::Keys(command) => commands::keys::run(command)
                .await
                .map(|()| Outcome::Success),
            Command::Identity(args) => commands::identity::run(args).await,
            Command::Credential(args) => commands::credential::run(args).await,
            Command::Presentation(args) => commands::presentation::run(args).await,
            Command::Delegation(args) => commands::delegation::run(args).await,
            Command::Reputation(args) => commands::reputation::run(args).await,
            Command::Anchor(args) => commands::anchor::run(args).await,
            Command::Audit(args) => commands::reputation::run_audit(args).await,
            Command::Provenance(args) => commands::provenance::run(args).await,
            Command::Compliance(args) => commands::compliance::run(args).await,
            Command::Did(args) => commands::did::run(args).await,
            Command::AgentCard(args) => commands::agent_card::run(args).await,
            Command::Health(args) => commands::health::run(args).await,
            Command::Mcp(args) => commands::mcp::run(args).await.map(|()| Outcome::Success),
            Command::Completions { .. } => Ok(Outcome::Success),
        }
    });
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(EXIT_NEGATIVE),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
