//! The load loops: one task per keep-alive connection, each sending its next
//! request as soon as the previous response is read (a closed loop).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::report::Tally;
use crate::scenario::{RequestPlan, IDEMPOTENCY_REPLAYED};

/// How long and how hard to drive a server.
#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    /// Keep-alive connections, one task each.
    pub connections: usize,
    /// Length of the measured phase (with `requests`, whichever ends first).
    pub duration: Option<Duration>,
    /// Requests in the measured phase.
    pub requests: Option<u64>,
    /// Unmeasured load before the measured phase.
    pub warmup: Duration,
}

/// A measured phase: what came back and how long it took.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Everything observed.
    pub tally: Tally,
    /// From the start of the measured phase to its last response.
    pub elapsed: Duration,
}

/// One HTTP/1.1 keep-alive connection.
pub struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response, read to its end.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Whether `Idempotency-Replayed` was present.
    pub replayed: bool,
    /// The next-page cursor header, if any.
    pub next_cursor: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// A connection to `addr`, opened on first use.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // The error, if any, surfaces on the next send.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("set just above"))
    }

    /// Sends `request` and reads the whole response. On an error the connection
    /// is dropped and the next call opens a new one.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Response> {
        let result = async {
            let sender = self.sender().await?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key(IDEMPOTENCY_REPLAYED);
            let next_cursor = response
                .headers()
                .get(crate::scenario::NEXT_CURSOR)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(Response {
                status,
                replayed,
                next_cursor,
                body,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// Drives `plan` against `addr` with `settings`: warm-up, then the measured phase.
pub async fn run_load(
    addr: SocketAddr,
    plan: Arc<RequestPlan>,
    settings: LoadSettings,
) -> anyhow::Result<Measured> {
    anyhow::ensure!(settings.connections > 0, "at least one connection");
    anyhow::ensure!(
        settings.duration.is_some() || settings.requests.is_some(),
        "a run needs a duration or a request count"
    );
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    // Without a duration a count-bounded run still stops, at one hour at most.
    let measure_until = measure_from + settings.duration.unwrap_or(Duration::from_secs(3600));
    let budget = Arc::new(AtomicU64::new(settings.requests.unwrap_or(u64::MAX)));
    // Each phase numbers its requests from a fresh base, so a plan reused for
    // several phases (compare rounds) never repeats a "fresh" key.
    let first_sequence = PHASE.fetch_add(1, Ordering::Relaxed) << PHASE_SHIFT;
    let mut tasks = Vec::with_capacity(settings.connections);
    for connection in 0..settings.connections {
        let plan = plan.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let mut link = Connection::new(addr);
            let mut tally = Tally::default();
            let mut sequence = first_sequence;
            let mut last = measure_from;
            loop {
                let sent_at = Instant::now();
                let measured = sent_at >= measure_from;
                if sent_at >= measure_until {
                    break;
                }
                if measured && !take_one(&budget) {
                    break;
                }
                let result = link.send(plan.request(connection, sequence)).await;
                sequence += 1;
                if !measured {
                    if result.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                let done = Instant::now();
                last = last.max(done);
                match result {
                    Ok(response) => tally.record_response(
                        response.status,
                        response.replayed,
                        done - sent_at,
                        response.body.len(),
                    ),
                    Err(error) => {
                        tally.record_error(format!("{error:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (tally, last)
        }));
    }
    let mut tally = Tally::default();
    let mut last = measure_from;
    for task in tasks {
        let (part, part_last) = task.await?;
        tally.merge(&part);
        last = last.max(part_last);
    }
    let budget_spent = settings.requests.is_some() && budget.load(Ordering::Relaxed) == 0;
    let elapsed = measured_elapsed(settings.duration, budget_spent, last - measure_from);
    Ok(Measured { tally, elapsed })
}

/// Phases started by this process; the high bits of every request's sequence.
static PHASE: AtomicU64 = AtomicU64::new(0);
/// Room for 2^40 requests per connection per phase.
const PHASE_SHIFT: u32 = 40;

/// The length of a measured phase: the whole window of a timed run (even if the
/// load was light), or up to the last response when the request count ended it.
pub fn measured_elapsed(
    duration: Option<Duration>,
    budget_spent: bool,
    until_last_response: Duration,
) -> Duration {
    match duration {
        Some(duration) if !budget_spent => duration.max(until_last_response),
        _ => until_last_response,
    }
}

/// Takes one request from the shared budget; false once it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// What one storm round produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StormRound {
    /// 2xx responses that ran the handler.
    pub executed: u64,
    /// 2xx replays.
    pub replayed: u64,
    /// 409 answers (a duplicate of a request still running).
    pub conflicts: u64,
    /// Any other status, or no response.
    pub other: u64,
}

impl StormRound {
    /// Adds a response to the round.
    pub fn count(&mut self, status: u16, replayed: bool) {
        match status {
            200..=299 if replayed => self.replayed += 1,
            200..=299 => self.executed += 1,
            409 => self.conflicts += 1,
            _ => self.other += 1,
        }
    }
}

/// Storm: every connection sends the same fresh key at the same moment, once per
/// round, for `rounds` rounds or until `until` passes.
pub async fn run_storm(
    addr: SocketAddr,
    plan: Arc<RequestPlan>,
    connections: usize,
    rounds: u64,
    limit: Duration,
) -> anyhow::Result<(Vec<StormRound>, Measured)> {
    anyhow::ensure!(connections > 0, "at least one connection");
    let start = Instant::now();
    let until = start + limit;
    let gate = Arc::new(tokio::sync::Barrier::new(connections));
    let decided = Arc::new(tokio::sync::Barrier::new(connections));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (plan, gate, decided, stop) =
            (plan.clone(), gate.clone(), decided.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut link = Connection::new(addr);
            let mut tally = Tally::default();
            let mut outcomes = Vec::new();
            for round in 0..rounds {
                // The leader decides whether to go on; everyone learns it after the
                // second barrier, so no task waits for a round the others skip.
                if gate.wait().await.is_leader() && Instant::now() >= until {
                    stop.store(true, Ordering::SeqCst);
                }
                decided.wait().await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let sent_at = Instant::now();
                match link.send(plan.request(connection, round)).await {
                    Ok(response) => {
                        tally.record_response(
                            response.status,
                            response.replayed,
                            sent_at.elapsed(),
                            response.body.len(),
                        );
                        outcomes.push((round, Some((response.status, response.replayed))));
                    }
                    Err(error) => {
                        tally.record_error(format!("{error:#}"));
                        outcomes.push((round, None));
                    }
                }
            }
            (tally, outcomes)
        }));
    }
    let mut tally = Tally::default();
    let mut by_round: Vec<StormRound> = Vec::new();
    for task in tasks {
        let (part, outcomes) = task.await?;
        tally.merge(&part);
        for (round, outcome) in outcomes {
            let index = round as usize;
            if by_round.len() <= index {
                by_round.resize(index + 1, StormRound::default());
            }
            match outcome {
                Some((status, replayed)) => by_round[index].count(status, replayed),
                None => by_round[index].other += 1,
            }
        }
    }
    Ok((
        by_round,
        Measured {
            tally,
            elapsed: start.elapsed(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_budget_runs_out_exactly() {
        let budget = AtomicU64::new(3);
        let taken = (0..10).filter(|_| take_one(&budget)).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_run_ended_by_its_request_count_is_timed_to_its_last_response() {
        let (window, last) = (Duration::from_secs(5), Duration::from_secs(2));
        assert_eq!(measured_elapsed(Some(window), true, last), last);
        assert_eq!(measured_elapsed(Some(window), false, last), window);
        assert_eq!(measured_elapsed(None, true, last), last);
    }

    #[test]
    fn a_storm_round_sorts_its_answers() {
        let mut round = StormRound::default();
        round.count(201, false);
        round.count(201, true);
        round.count(201, true);
        round.count(409, false);
        round.count(500, false);
        assert_eq!(
            round,
            StormRound {
                executed: 1,
                replayed: 2,
                conflicts: 1,
                other: 1
            }
        );
    }
}
