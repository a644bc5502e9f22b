//! Metrics (Prometheus) and tracing setup.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};
use metrics::SharedString;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder. Installed once, on first use, so that
/// several servers in one process (tests) share it instead of failing.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ])
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Histogram samples pile up in the recorder until they are folded into
            // their buckets; without a scrape that would be a slow leak, so fold
            // them every few seconds regardless.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            if let Err(error) = metrics::set_global_recorder(recorder) {
                // Another recorder was installed by the host; ours then stays empty.
                tracing::warn!(%error, "a global metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Axum middleware: counts requests by method, route template and status, and
/// records their latency.
pub async fn record_http_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // The route template, not the raw path, so ids do not explode the label set. One
    // shared string serves both series (labels are built on every request).
    let route = SharedString::from_shared(Arc::<str>::from(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    ));
    let response = next.run(request).await;
    let status = status_label(response.status());
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label, without allocating: the standard methods by name, any
/// other as `other`. Methods are chosen by the client and counted before
/// authentication, so each invented name would otherwise be a new series for good
/// (issue 16: 20,000 requests made `/metrics` 392 MB).
fn method_label(method: &Method) -> SharedString {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(standard, _)| standard == method) {
        Some((_, name)) => SharedString::const_str(name),
        None => SharedString::const_str("other"),
    }
}

/// The status code as a label, without allocating for the codes this API answers.
/// (The server chooses the status, so the set stays small.)
fn status_label(status: StatusCode) -> SharedString {
    let name = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        503 => "503",
        other => return SharedString::from_owned(other.to_string()),
    };
    SharedString::const_str(name)
}

/// Installs a tracing subscriber writing to stderr, filtered by `RUST_LOG`
/// (default `info`). Safe to call more than once.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal; log files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::DELETE).as_ref(), "DELETE");
        for invented in ["BREW", "get", "X-1"] {
            let method = Method::from_bytes(invented.as_bytes()).expect("a token");
            assert_eq!(method_label(&method).as_ref(), "other", "{invented}");
        }
    }
}
