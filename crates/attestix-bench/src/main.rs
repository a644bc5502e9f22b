//! The `attestix-bench` command.

use std::process::ExitCode;

use attestix_bench::{ceiling, compare, footprint, postgres, run, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match &cli.command {
        // The ceiling is a server: the same default runtime as `attestix serve`.
        Command::Ceiling(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        _ if cli.threads <= 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Compare(args) => compare::run(args).await,
            Command::Footprint(args) => footprint::run(args).await,
            Command::Ceiling(args) => ceiling::serve(args.bind, args.body_bytes).await,
            Command::Postgres(args) => postgres::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
