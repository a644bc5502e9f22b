//! `attestix-bench compare`: two sides measured in alternating rounds in one
//! invocation, so that drift on a shared machine hits both alike.

use std::time::Duration;

use crate::cli::{CompareArgs, Metric, SideSpec};
use crate::load::{run_load, LoadSettings};
use crate::prepare::{plan_for, prefill};
use crate::report::{median, meets, ms, ratio, Summary};
use crate::servers::{Executables, RunningServer};

/// The order of the sides in round `round` (0-based): AB, BA, AB, … so that a
/// steady drift favours neither.
pub fn round_order(round: u32) -> [usize; 2] {
    if round % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// A comparison's figure for one measured phase.
pub fn figure(summary: &Summary, metric: Metric) -> f64 {
    match metric {
        Metric::Throughput => summary.success_throughput(),
        Metric::P50 => summary.percentiles.p50_us as f64,
        Metric::P99 => summary.percentiles.p99_us as f64,
    }
}

/// Runs the command.
pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    let sides = [SideSpec::parse(&args.a)?, SideSpec::parse(&args.b)?];
    let executables = Executables::locate(args.load.server_bin.clone())?;
    let api_key = args.load.api_key.as_deref();
    let duration = args.load.duration.unwrap_or(Duration::from_secs(5));

    // Sides with the same setup share one server.
    let first =
        RunningServer::start(&sides[0].setup.kind, &executables, &sides[0].setup.args).await?;
    prefill(
        &first,
        api_key,
        sides[0].setup.prefill,
        args.load.connections,
    )
    .await?;
    let second = if sides[1].setup == sides[0].setup {
        None
    } else {
        let server =
            RunningServer::start(&sides[1].setup.kind, &executables, &sides[1].setup.args).await?;
        prefill(
            &server,
            api_key,
            sides[1].setup.prefill,
            args.load.connections,
        )
        .await?;
        Some(server)
    };
    let servers = [&first, second.as_ref().unwrap_or(&first)];
    let mut plans = Vec::new();
    for (side, server) in sides.iter().zip(servers) {
        plans.push(plan_for(server, side.scenario, api_key, side.page, side.page_size).await?);
    }
    println!("A: {} at {}", sides[0].label(), servers[0].host);
    println!("B: {} at {}", sides[1].label(), servers[1].host);
    println!(
        "{} rounds, order flipping each round; each phase {:.1} s warm-up + {:.1} s measured ({} requests max); {} connections unless a side says otherwise",
        args.rounds,
        args.load.warmup.as_secs_f64(),
        duration.as_secs_f64(),
        args.load.requests.map_or("no".to_owned(), |n| n.to_string()),
        args.load.connections
    );

    let mut summaries: [Vec<Summary>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for index in round_order(round) {
            let side = &sides[index];
            let settings = LoadSettings {
                connections: side.connections.unwrap_or(args.load.connections),
                duration: Some(duration),
                requests: args.load.requests,
                warmup: args.load.warmup,
            };
            let measured = run_load(servers[index].addr, plans[index].clone(), settings).await?;
            let summary = measured.tally.summary(measured.elapsed);
            let p = summary.percentiles;
            println!(
                "round {} {}: {:>9.0} 2xx/s  ({} responses, {} replayed, {} errors, non-2xx {})  p50 {} ms  p99 {} ms",
                round + 1,
                ["A", "B"][index],
                summary.success_throughput(),
                summary.responses,
                summary.replayed,
                summary.transport_errors,
                summary.responses - summary.successes,
                ms(p.p50_us),
                ms(p.p99_us)
            );
            summaries[index].push(summary);
        }
    }

    for metric in [Metric::Throughput, Metric::P50, Metric::P99] {
        let values = |index: usize| -> Vec<f64> {
            summaries[index].iter().map(|s| figure(s, metric)).collect()
        };
        let (a, b) = (values(0), values(1));
        let per_round: Vec<f64> = a
            .iter()
            .zip(&b)
            .filter_map(|(a, b)| ratio(*b, *a))
            .collect();
        let (Some(median_a), Some(median_b), Some(median_ratio)) =
            (median(&a), median(&b), median(&per_round))
        else {
            continue;
        };
        let unit = match metric {
            Metric::Throughput => format!("throughput: A {median_a:.0}/s  B {median_b:.0}/s"),
            Metric::P50 => format!(
                "p50: A {:.2} ms  B {:.2} ms",
                median_a / 1000.0,
                median_b / 1000.0
            ),
            Metric::P99 => format!(
                "p99: A {:.2} ms  B {:.2} ms",
                median_a / 1000.0,
                median_b / 1000.0
            ),
        };
        let per_round_text: Vec<String> = per_round.iter().map(|r| format!("{r:.3}")).collect();
        let mut line = format!(
            "median {unit}  B/A: {:.3} (median of per-round ratios; ratio of medians {:.3}; rounds: {})",
            median_ratio,
            ratio(median_b, median_a).unwrap_or(f64::NAN),
            per_round_text.join(" ")
        );
        if metric == args.metric {
            if let Some(target) = args.expect {
                let lower_is_better = metric != Metric::Throughput;
                let verdict = if meets(median_ratio, target, lower_is_better) {
                    "PASS"
                } else {
                    "MISS"
                };
                let bound = if lower_is_better { "<=" } else { ">=" };
                line.push_str(&format!("  target {bound} {target}: {verdict}"));
            }
        }
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_flips_every_round() {
        let orders: Vec<[usize; 2]> = (0..4).map(round_order).collect();
        assert_eq!(orders, [[0, 1], [1, 0], [0, 1], [1, 0]]);
    }
}
