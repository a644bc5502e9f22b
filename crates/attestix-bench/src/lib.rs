//! attestix-bench: an HTTP load generator that knows `Idempotency-Key`, and the
//! harness that measures the Attestix server against its baseline, a ceiling
//! server and the Python reference.
//!
//! ```
//! use attestix_bench::report::{median, ratio};
//!
//! // A comparison reports the median of its per-round B/A ratios.
//! let per_round = [ratio(980.0, 1000.0), ratio(1010.0, 1000.0), ratio(990.0, 1000.0)];
//! let per_round: Vec<f64> = per_round.into_iter().flatten().collect();
//! assert_eq!(median(&per_round), Some(0.99));
//! ```
//!
//! The modules, in the order a run uses them: [`cli`] (the command line),
//! [`servers`] (starting the servers under test, `/proc` memory), [`scenario`]
//! (the requests), [`prepare`] (set-up before measuring), [`load`] (the
//! connection loops), [`report`] (histograms, percentiles, ratios), and the
//! commands [`run`], [`compare`], [`footprint`], [`ceiling`] and [`postgres`].

pub mod ceiling;
pub mod cli;
pub mod compare;
pub mod footprint;
pub mod load;
pub mod postgres;
pub mod prepare;
pub mod report;
pub mod run;
pub mod scenario;
pub mod servers;

pub use cli::{Cli, Command};
