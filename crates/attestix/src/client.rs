//! The HTTP client of the client commands: authentication headers, the
//! Idempotency-Key, and safe retries.
//!
//! A request is resent, with the same Idempotency-Key, after a connection error,
//! a timeout, a 5xx, a 429, or a 409 whose problem type ends with `/in-flight`
//! (the first request with the key is still running). The wait grows
//! exponentially with jitter, or is the server's `Retry-After`. A 409 whose type
//! ends with `/key-reused` (the key was used for another request), any other
//! 4xx, and every replayed response are final.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::ClientArgs;

/// The response header that marks a replayed response.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// The response header carrying the next page's cursor.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";
/// The request header naming the tenant.
const TENANT_HEADER: &str = "x-attestix-tenant";
/// The request header carrying the API key.
const API_KEY_HEADER: &str = "x-api-key";
/// The request header carrying the idempotency key.
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The first wait before a retry; it doubles with each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest computed wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client of one Attestix server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    api_key: Option<String>,
    tenant: Option<String>,
    retries: u32,
    timeout: Duration,
    announce_retries: bool,
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// The server replayed a stored response: the operation had already been
    /// done by an earlier request with the same key.
    pub replayed: bool,
    /// The `X-Next-Cursor` header of a list page.
    pub next_cursor: Option<String>,
}

impl ApiResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|error| ClientError::NotJson {
            status: self.status,
            cause: error.to_string(),
        })
    }

    /// The body as text, for printing unchanged.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An RFC 9457 problem document, as far as the client reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProblemDocument {
    /// The URI naming the kind of problem.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A short summary of the kind.
    #[serde(default)]
    pub title: String,
    /// What went wrong with this request.
    #[serde(default)]
    pub detail: String,
    /// Each offending field of a validation error.
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
}

/// One offending field of a validation error.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ProblemDocument {
    /// The first request with this key is still running (retry later).
    pub fn is_in_flight(&self) -> bool {
        self.kind.ends_with("/in-flight")
    }

    /// The key was already used for a different request (final).
    pub fn is_key_reused(&self) -> bool {
        self.kind.ends_with("/key-reused")
    }
}

/// Why a request failed, in words a person can act on.
#[derive(Debug)]
pub enum ClientError {
    /// The server URL cannot be used.
    BadServerUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made.
    Unreachable {
        /// The server's base URL.
        server: String,
        /// The innermost cause (e.g. "Connection refused (os error 111)").
        cause: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The server's TLS certificate is not trusted (or not for its name): not
    /// retried, as a retry cannot cure it.
    Untrusted {
        /// The server's base URL.
        server: String,
        /// The TLS library's reason (e.g. "invalid peer certificate: UnknownIssuer").
        cause: String,
    },
    /// The connection broke, or the server did not answer in time; the request may
    /// or may not have been carried out.
    Interrupted {
        /// The server's base URL.
        server: String,
        /// The innermost cause.
        cause: String,
        /// The request timed out (rather than the connection breaking).
        timed_out: bool,
        /// The per-request timeout.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The Idempotency-Key sent, to retry with.
        idempotency_key: Option<String>,
    },
    /// The server answered with an error status.
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The problem document, when the body is one.
        problem: Option<Box<ProblemDocument>>,
        /// The start of the body, when it is not a problem document.
        body_excerpt: String,
        /// How many attempts were made.
        attempts: u32,
        /// The Idempotency-Key sent, to retry with.
        idempotency_key: Option<String>,
    },
    /// A 2xx answer whose body is not the JSON it should be.
    NotJson {
        /// The HTTP status.
        status: StatusCode,
        /// The parser's message.
        cause: String,
    },
}

impl ClientError {
    /// A one-line summary (for lists of failures, e.g. an import's summary).
    pub fn summary(&self) -> String {
        match self {
            Self::Status {
                status,
                problem,
                body_excerpt,
                ..
            } => match problem {
                Some(problem) => format!(
                    "{} (HTTP {}): {}",
                    title(problem, *status),
                    status.as_u16(),
                    problem.detail
                ),
                None => format!("HTTP {status}: {body_excerpt}"),
            },
            other => other
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// The problem's title, or the status's reason phrase when it has none.
fn title(problem: &ProblemDocument, status: StatusCode) -> String {
    if problem.title.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        problem.title.clone()
    }
}

/// " (after N attempts)" when there was more than one.
fn attempts_text(attempts: u32) -> String {
    match attempts {
        1 => String::new(),
        n => format!(" (after {n} attempts)"),
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadServerUrl { url, reason } => {
                write!(f, "the server URL `{url}` cannot be used: {reason}")
            }
            Self::Unreachable {
                server,
                cause,
                attempts,
            } => write!(
                f,
                "cannot connect to the Attestix server at {server}: {cause}{}.\n\
                 hint: is the server running at {server}? Start it with `attestix serve`, \
                 or point --server (ATTESTIX_URL) at it.",
                attempts_text(*attempts)
            ),
            Self::Untrusted { server, cause } => write!(
                f,
                "the TLS certificate of the Attestix server at {server} is not trusted: {cause}.\n\
                 hint: if the server's certificate comes from a private CA, pass that CA's \
                 certificate with --ca-file FILE (ATTESTIX_CA_FILE); check that --server names \
                 the host the certificate was issued for."
            ),
            Self::Interrupted {
                server,
                cause,
                timed_out,
                timeout,
                attempts,
                idempotency_key,
            } => {
                if *timed_out {
                    write!(
                        f,
                        "the server at {server} did not answer within {}{}.",
                        humanize(*timeout),
                        attempts_text(*attempts)
                    )?;
                } else {
                    write!(
                        f,
                        "the connection to {server} broke before the answer arrived: {cause}{}.",
                        attempts_text(*attempts)
                    )?;
                }
                match idempotency_key {
                    Some(key) => write!(
                        f,
                        "\nThe server may or may not have done it. To retry safely (it will not be \
                         done twice), run the same command with --idempotency-key {key}"
                    ),
                    None if *timed_out => write!(f, "\nhint: a longer --timeout may help."),
                    None => Ok(()),
                }
            }
            Self::Status {
                status,
                problem,
                body_excerpt,
                attempts,
                idempotency_key,
            } => {
                match problem {
                    Some(problem) => {
                        write!(
                            f,
                            "{} (HTTP {}{})",
                            title(problem, *status),
                            status.as_u16(),
                            status
                                .canonical_reason()
                                .map(|reason| format!(" {reason}"))
                                .unwrap_or_default()
                        )?;
                        if problem.errors.is_empty() {
                            if !problem.detail.is_empty() {
                                write!(f, ": {}", problem.detail)?;
                            }
                        } else {
                            for error in &problem.errors {
                                write!(f, "\n  - {}: {}", error.field, error.message)?;
                            }
                        }
                    }
                    None => write!(f, "the server answered HTTP {status}: {body_excerpt}")?,
                }
                if *attempts > 1 {
                    write!(f, "\n(gave up after {attempts} attempts)")?;
                }
                if let Some(hint) = hint(*status, problem.as_deref(), idempotency_key.as_deref()) {
                    write!(f, "\nhint: {hint}")?;
                }
                Ok(())
            }
            Self::NotJson { status, cause } => write!(
                f,
                "the server answered HTTP {status} with a body that is not the expected JSON \
                 ({cause}); is --server pointing at an Attestix server?"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// What a person can do about an error status, where there is something to say.
fn hint(
    status: StatusCode,
    problem: Option<&ProblemDocument>,
    key: Option<&str>,
) -> Option<String> {
    let in_flight = problem.is_some_and(ProblemDocument::is_in_flight);
    let key_reused = problem.is_some_and(ProblemDocument::is_key_reused);
    match status {
        StatusCode::UNAUTHORIZED => Some(
            "this server needs an API key: pass --api-key or set ATTESTIX_API_KEY \
             (`attestix serve` prints the first admin key once; `attestix keys create` makes more)."
                .into(),
        ),
        StatusCode::FORBIDDEN => Some(
            "the API key was not accepted: check --api-key / ATTESTIX_API_KEY \
             (`attestix keys list` on the server shows the active keys)."
                .into(),
        ),
        StatusCode::NOT_FOUND
            if problem.is_none() || problem.is_some_and(|p| p.detail.starts_with("route ")) =>
        {
            Some("is --server (ATTESTIX_URL) the base URL of an Attestix server?".into())
        }
        StatusCode::CONFLICT if key_reused => Some(
            "leave out --idempotency-key to do this as a new operation; only the exact \
             request first sent with this key can be retried with it."
                .into(),
        ),
        _ if in_flight => key.map(|key| {
            format!(
                "the first request with this key is still running; run the same command again \
                 later with --idempotency-key {key}"
            )
        }),
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            key.map(|key| {
                format!("retry later with the same key (it will not be done twice): --idempotency-key {key}")
            })
        }
        _ => None,
    }
}

/// A duration as the --timeout flag writes it.
fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// What one attempt came to.
enum Attempt {
    /// A final answer, good or bad.
    Done(Result<ApiResponse, ClientError>),
    /// Worth another try after the wait (or the computed backoff).
    Retry {
        error: ClientError,
        retry_after: Option<Duration>,
    },
}

impl ApiClient {
    /// A client for the options of a client command.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let base = parse_server_url(&args.server)?;
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        if let Some(path) = &args.ca_file {
            let bad_ca = |reason: String| ClientError::BadServerUrl {
                url: args.server.clone(),
                reason: format!("the CA file {}: {reason}", path.display()),
            };
            let pem = std::fs::read(path).map_err(|error| bad_ca(error.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| bad_ca(innermost(&error)))?;
            if certificates.is_empty() {
                return Err(bad_ca("it holds no PEM certificate".into()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .timeout(args.timeout)
            .connect_timeout(args.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("attestix-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::BadServerUrl {
                url: args.server.clone(),
                reason: format!("cannot build an HTTP client: {}", innermost(&error)),
            })?;
        Ok(Self {
            http,
            base,
            api_key: args.api_key.clone().filter(|key| !key.is_empty()),
            tenant: args.tenant.clone().filter(|tenant| !tenant.is_empty()),
            retries: args.retries,
            timeout: args.timeout,
            announce_retries: true,
        })
    }

    /// Whether to say on stderr that an attempt failed and will be retried.
    pub fn with_retry_messages(mut self, announce: bool) -> Self {
        self.announce_retries = announce;
        self
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of a path under the base, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        url
    }

    /// `GET` a path.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<ApiResponse, ClientError> {
        self.send(Method::GET, self.url(segments, query), None, None)
            .await
    }

    /// `POST` a JSON body with an Idempotency-Key.
    pub async fn post(
        &self,
        segments: &[&str],
        body: &Value,
        idempotency_key: &str,
    ) -> Result<ApiResponse, ClientError> {
        let body = serde_json::to_vec(body).expect("a serde_json::Value always serialises");
        self.send(
            Method::POST,
            self.url(segments, &[]),
            Some(body),
            Some(idempotency_key),
        )
        .await
    }

    /// `DELETE` a path, with an optional JSON body.
    pub async fn delete(
        &self,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        let body = body
            .map(|body| serde_json::to_vec(body).expect("a serde_json::Value always serialises"));
        self.send(Method::DELETE, self.url(segments, &[]), body, None)
            .await
    }

    /// `DELETE` a path, with an optional JSON body and an Idempotency-Key, so that
    /// a retry replays the first answer instead of meeting the first's effect.
    pub async fn delete_keyed(
        &self,
        segments: &[&str],
        body: Option<&Value>,
        idempotency_key: &str,
    ) -> Result<ApiResponse, ClientError> {
        let body = body
            .map(|body| serde_json::to_vec(body).expect("a serde_json::Value always serialises"));
        self.send(
            Method::DELETE,
            self.url(segments, &[]),
            body,
            Some(idempotency_key),
        )
        .await
    }

    /// Any method on a path, with a query, an optional JSON body and an optional
    /// Idempotency-Key (for callers that take the request's shape as data, like
    /// the MCP tools).
    pub async fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<ApiResponse, ClientError> {
        let body = body
            .map(|body| serde_json::to_vec(body).expect("a serde_json::Value always serialises"));
        self.send(method, self.url(segments, query), body, idempotency_key)
            .await
    }

    /// Sends the request, and resends the same request (same key, same bytes)
    /// while the failure is one a retry can cure and attempts are left.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<ApiResponse, ClientError> {
        let attempts = self.retries.saturating_add(1);
        let mut attempt = 1;
        loop {
            let outcome = self
                .attempt(
                    method.clone(),
                    url.clone(),
                    body.clone(),
                    idempotency_key,
                    attempt,
                )
                .await;
            match outcome {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, .. } if attempt >= attempts => return Err(error),
                Attempt::Retry { error, retry_after } => {
                    let wait = backoff(attempt, retry_after);
                    if self.announce_retries {
                        eprintln!(
                            "attempt {attempt} of {attempts} failed ({}); retrying in {:.1}s{}",
                            error.summary(),
                            wait.as_secs_f64(),
                            if idempotency_key.is_some() {
                                " with the same Idempotency-Key"
                            } else {
                                ""
                            }
                        );
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Sends the request once and classifies the answer.
    async fn attempt(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
        attempt: u32,
    ) -> Attempt {
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.api_key {
            request = request.header(API_KEY_HEADER, key);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header(TENANT_HEADER, tenant);
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.transport_failure(&error, attempt, idempotency_key),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(error) => return self.transport_failure(&error, attempt, idempotency_key),
        };
        let replayed = headers
            .get(REPLAYED_HEADER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
        if status.is_success() {
            return Attempt::Done(Ok(ApiResponse {
                status,
                next_cursor: headers
                    .get(NEXT_CURSOR_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned),
                body,
                replayed,
            }));
        }
        let problem = serde_json::from_slice::<ProblemDocument>(&body)
            .ok()
            .filter(|problem| !problem.title.is_empty() || !problem.kind.is_empty());
        let retryable = !replayed
            && (status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::CONFLICT
                    && problem.as_ref().is_some_and(ProblemDocument::is_in_flight)));
        let error = ClientError::Status {
            status,
            body_excerpt: excerpt(&body),
            problem: problem.map(Box::new),
            attempts: attempt,
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        if retryable {
            Attempt::Retry {
                error,
                retry_after: retry_after(&headers),
            }
        } else {
            Attempt::Done(Err(error))
        }
    }

    /// Classifies a request that got no answer; all but a malformed request are retried.
    fn transport_failure(
        &self,
        error: &reqwest::Error,
        attempt: u32,
        idempotency_key: Option<&str>,
    ) -> Attempt {
        let server = self.server().to_owned();
        let cause = innermost(error);
        if error.is_connect() && is_certificate_failure(error) {
            return Attempt::Done(Err(ClientError::Untrusted { server, cause }));
        }
        let error = if error.is_connect() && !error.is_timeout() {
            ClientError::Unreachable {
                server,
                cause,
                attempts: attempt,
            }
        } else if error.is_builder() {
            return Attempt::Done(Err(ClientError::BadServerUrl {
                url: server,
                reason: cause,
            }));
        } else {
            ClientError::Interrupted {
                server,
                cause,
                timed_out: error.is_timeout(),
                timeout: self.timeout,
                attempts: attempt,
                idempotency_key: idempotency_key.map(str::to_owned),
            }
        };
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }
}

/// Whether a connection failed on the server's certificate (rustls's
/// `invalid peer certificate`), somewhere in the error's chain.
fn is_certificate_failure(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if cause.to_string().contains("certificate") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Checks the `--server` URL: http or https, with a host.
fn parse_server_url(text: &str) -> Result<Url, ClientError> {
    let bad = |reason: String| ClientError::BadServerUrl {
        url: text.to_owned(),
        reason,
    };
    let url = Url::parse(text).map_err(|error| {
        bad(format!(
            "{error} (expected something like http://127.0.0.1:8000)"
        ))
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(format!("the scheme `{other}` is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment".into()));
    }
    Ok(url)
}

/// The wait before attempt `attempt + 1`: the server's `Retry-After` when it gave
/// one, otherwise an exponential backoff with jitter (between half and all of
/// 250 ms × 2^(attempt − 1), at most 8 s).
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after.filter(|wait| !wait.is_zero()) {
        return wait.min(MAX_RETRY_AFTER);
    }
    let exponent = attempt.saturating_sub(1).min(16);
    let ceiling = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let half = ceiling / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by this server).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather
/// than "error sending request for url (…)".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The start of a body that is not a problem document, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        for attempt in 1..=6 {
            let ceiling = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            let wait = backoff(attempt, None);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "attempt {attempt}: {wait:?}"
            );
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
        assert!(backoff(40, None) <= MAX_BACKOFF);
    }

    #[test]
    fn only_plain_http_server_urls_are_accepted() {
        assert!(parse_server_url("http://127.0.0.1:8000").is_ok());
        assert!(parse_server_url("http://host/prefix/").is_ok());
        assert!(parse_server_url("https://example.com").is_ok());
        let ftp = parse_server_url("ftp://example.com").expect_err("ftp is refused");
        assert!(ftp.to_string().contains("not http or https"), "{ftp}");
        assert!(parse_server_url("127.0.0.1:8000").is_err());
        assert!(parse_server_url("ftp://host").is_err());
    }

    #[test]
    fn paths_are_percent_encoded_under_the_base() {
        let client = ApiClient::new(&ClientArgs {
            server: "http://h:1/base/".into(),
            ca_file: None,
            api_key: None,
            tenant: None,
            json: false,
            timeout: Duration::from_secs(1),
            retries: 0,
        })
        .expect("a valid URL");
        let url = client.url(&["v1", "identities", "a/b?c"], &[("limit", "5".into())]);
        assert_eq!(
            url.as_str(),
            "http://h:1/base/v1/identities/a%2Fb%3Fc?limit=5"
        );
    }

    #[test]
    fn problem_errors_read_like_sentences_with_hints() {
        let error = ClientError::Status {
            status: StatusCode::FORBIDDEN,
            problem: Some(Box::new(ProblemDocument {
                kind: "https://attestix.dev/problems/forbidden".into(),
                title: "Invalid credentials".into(),
                detail: "the API key is not valid".into(),
                errors: Vec::new(),
            })),
            body_excerpt: String::new(),
            attempts: 1,
            idempotency_key: None,
        };
        let text = error.to_string();
        assert!(
            text.starts_with("Invalid credentials (HTTP 403 Forbidden): the API key is not valid"),
            "{text}"
        );
        assert!(text.contains("--api-key"), "{text}");
    }
}
