//! Counting what came back, and the arithmetic of the report: percentiles,
//! throughput, medians and ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency the histogram records exactly (60 s, in microseconds);
/// longer ones are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one or more connections observed during a measured phase.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of every completed response, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// 2xx responses that carried `Idempotency-Replayed`.
    pub replayed: u64,
    /// Requests that got no response (connect, I/O or protocol errors).
    pub transport_errors: u64,
    /// The first few transport error messages, for the report.
    pub error_samples: Vec<String>,
    /// Response body bytes received.
    pub body_bytes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
            statuses: BTreeMap::new(),
            replayed: 0,
            transport_errors: 0,
            error_samples: Vec::new(),
            body_bytes: 0,
        }
    }
}

impl Tally {
    /// Records one response.
    pub fn record_response(
        &mut self,
        status: u16,
        replayed: bool,
        latency: Duration,
        bytes: usize,
    ) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(micros);
        *self.statuses.entry(status).or_default() += 1;
        if replayed && (200..300).contains(&status) {
            self.replayed += 1;
        }
        self.body_bytes += bytes as u64;
    }

    /// Records a request that got no response.
    pub fn record_error(&mut self, error: impl std::fmt::Display) {
        self.transport_errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(error.to_string());
        }
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds merge");
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.replayed += other.replayed;
        self.transport_errors += other.transport_errors;
        for sample in &other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(sample.clone());
            }
        }
        self.body_bytes += other.body_bytes;
    }

    /// Responses received, whatever their status.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// 2xx responses.
    pub fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    /// 2xx responses that ran the handler (not replays).
    pub fn executed(&self) -> u64 {
        self.successes() - self.replayed
    }

    /// 409 responses.
    pub fn conflicts(&self) -> u64 {
        self.statuses.get(&409).copied().unwrap_or(0)
    }

    /// The latency percentiles of the report.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.latency_us;
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }

    /// Summarises a tally measured over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        Summary {
            elapsed,
            responses: self.responses(),
            successes: self.successes(),
            replayed: self.replayed,
            transport_errors: self.transport_errors,
            percentiles: self.percentiles(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest response.
    pub max_us: u64,
}

/// The headline numbers of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Length of the measured phase.
    pub elapsed: Duration,
    /// Responses of any status.
    pub responses: u64,
    /// 2xx responses.
    pub successes: u64,
    /// 2xx responses that were replays.
    pub replayed: u64,
    /// Requests without a response.
    pub transport_errors: u64,
    /// Latency percentiles.
    pub percentiles: Percentiles,
}

impl Summary {
    /// Responses of any status per second.
    pub fn throughput(&self) -> f64 {
        per_second(self.responses, self.elapsed)
    }

    /// 2xx responses per second: what comparisons use, so that a server answering
    /// errors fast does not win.
    pub fn success_throughput(&self) -> f64 {
        per_second(self.successes, self.elapsed)
    }
}

/// `count` events over `elapsed`, per second (0 for an empty interval).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// `b / a`, or `None` when `a` is zero.
pub fn ratio(b: f64, a: f64) -> Option<f64> {
    (a != 0.0).then(|| b / a)
}

/// Whether a measured ratio meets its target. Lower-is-better targets (latency
/// growth) pass at or below the bound; the others at or above.
pub fn meets(ratio: f64, target: f64, lower_is_better: bool) -> bool {
    if lower_is_better {
        ratio <= target
    } else {
        ratio >= target
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// The multi-line report of one run.
pub fn render(title: &str, tally: &Tally, elapsed: Duration) -> String {
    let summary = tally.summary(elapsed);
    let p = summary.percentiles;
    let mut out = String::new();
    let _ = writeln!(out, "== {title}");
    let _ = writeln!(
        out,
        "  {} responses in {:.2} s: {:.0} req/s ({:.0} 2xx/s)",
        summary.responses,
        elapsed.as_secs_f64(),
        summary.throughput(),
        summary.success_throughput()
    );
    let _ = writeln!(
        out,
        "  latency ms: p50 {}  p90 {}  p99 {}  max {}",
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us),
        ms(p.max_us)
    );
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    let _ = writeln!(out, "  statuses: {{{}}}", statuses.join(", "));
    let _ = writeln!(
        out,
        "  executed (2xx, not replayed): {}  replayed: {}  409: {}  transport errors: {}",
        tally.executed(),
        tally.replayed,
        tally.conflicts(),
        tally.transport_errors
    );
    if tally.responses() > 0 {
        let _ = writeln!(
            out,
            "  mean body: {} bytes",
            tally.body_bytes / tally.responses()
        );
    }
    for sample in &tally.error_samples {
        let _ = writeln!(out, "  error: {sample}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut tally = Tally::default();
        for millis in 1..=100u64 {
            tally.record_response(201, false, Duration::from_millis(millis), 10);
        }
        let p = tally.percentiles();
        // Three significant figures: within 0.1 % of the exact rank.
        assert!((49_950..=50_050).contains(&p.p50_us), "{p:?}");
        assert!((89_900..=90_100).contains(&p.p90_us), "{p:?}");
        assert!((98_900..=99_100).contains(&p.p99_us), "{p:?}");
        assert!((99_900..=100_100).contains(&p.max_us), "{p:?}");
    }

    #[test]
    fn replays_conflicts_and_errors_are_counted_apart() {
        let mut a = Tally::default();
        a.record_response(201, false, Duration::from_micros(100), 600);
        a.record_response(201, true, Duration::from_micros(50), 600);
        a.record_response(409, true, Duration::from_micros(50), 200);
        let mut b = Tally::default();
        b.record_response(409, false, Duration::from_micros(70), 200);
        b.record_error("connection reset");
        a.merge(&b);
        assert_eq!(a.responses(), 4);
        assert_eq!(a.successes(), 2);
        assert_eq!(a.executed(), 1);
        assert_eq!(a.replayed, 1, "a replay header on a 409 is not a replay");
        assert_eq!(a.conflicts(), 2);
        assert_eq!(a.transport_errors, 1);
        assert_eq!(a.error_samples, ["connection reset"]);
        assert_eq!(a.latency_us.len(), 4);
    }

    #[test]
    fn throughput_counts_only_successes_when_asked() {
        let mut tally = Tally::default();
        for _ in 0..300 {
            tally.record_response(201, false, Duration::from_micros(10), 0);
        }
        for _ in 0..100 {
            tally.record_response(429, false, Duration::from_micros(10), 0);
        }
        let summary = tally.summary(Duration::from_secs(2));
        assert_eq!(summary.throughput(), 200.0);
        assert_eq!(summary.success_throughput(), 150.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn median_and_ratio_arithmetic() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert!(meets(0.98, 0.97, false));
        assert!(!meets(0.96, 0.97, false));
        assert!(meets(1.2, 1.25, true));
        assert!(!meets(1.3, 1.25, true));
    }
}
