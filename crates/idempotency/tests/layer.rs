//! Behaviour of the layer as a client sees it, through an axum router.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use idempotency::{
    ExistingRecord, FencingToken, IdempotencyConfig, IdempotencyContext, IdempotencyLayer,
    InFlightBehavior, ManualClock, MemoryStore, MismatchStatus, RecordId, ReserveOutcome,
    ReserveRequest, Store, StoreError, StoredResponse,
};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

#[derive(Clone)]
struct Counters {
    executions: Arc<AtomicUsize>,
    /// Handlers on `/slow` wait here until the test lets them go.
    gate: Arc<Semaphore>,
    /// Signalled when a `/slow` handler has started.
    started: Arc<Notify>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            executions: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            started: Arc::default(),
        }
    }
}

async fn create(State(counters): State<Counters>, body: Bytes) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    let mut headers = HeaderMap::new();
    headers.append("x-multi", "one".parse().unwrap());
    headers.append("location", format!("/things/{n}").parse().unwrap());
    headers.append("x-multi", "two".parse().unwrap());
    headers.append("date", "Sat, 28 Nov 2026 07:00:00 GMT".parse().unwrap());
    (
        StatusCode::CREATED,
        headers,
        format!("{{\"execution\":{n},\"echo_len\":{}}}", body.len()),
    )
}

async fn slow(State(counters): State<Counters>) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    counters.started.notify_one();
    let _permit = counters.gate.acquire().await.expect("gate stays open");
    (StatusCode::CREATED, format!("slow execution {n}"))
}

async fn fails(State(counters): State<Counters>) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1 {
        (StatusCode::UNPROCESSABLE_ENTITY, "bad input".to_owned())
    } else {
        (StatusCode::CREATED, format!("created on attempt {n}"))
    }
}

async fn panics(State(counters): State<Counters>) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1 {
        panic!("handler blew up on its first run");
    }
    (StatusCode::CREATED, format!("created on attempt {n}"))
}

async fn sets_cookie(State(counters): State<Counters>) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        [("set-cookie", "session=abc")],
        format!("run {n}"),
    )
}

async fn streams(State(counters): State<Counters>) -> Response<Body> {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    let chunks = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from("part one, ")),
        Ok(Bytes::from(format!("run {n}"))),
    ]);
    Response::builder()
        .status(StatusCode::CREATED)
        .body(Body::from_stream(chunks))
        .unwrap()
}

async fn big(State(counters): State<Counters>) -> impl IntoResponse {
    let n = counters.executions.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::CREATED, format!("{n}:{}", "x".repeat(4096)))
}

async fn context(Extension(context): Extension<IdempotencyContext>) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        format!(
            "{}|{}|{}",
            context.record.scope, context.record.key, context.took_over
        ),
    )
}

fn routes(counters: Counters) -> Router {
    Router::new()
        .route("/things", post(create).get(create).patch(create))
        .route("/slow", post(slow))
        .route("/fails", post(fails))
        .route("/panics", post(panics))
        .route("/cookie", post(sets_cookie))
        .route("/stream", post(streams))
        .route("/big", post(big))
        .route("/context", post(context))
        .route("/read", get(create))
        .with_state(counters)
}

fn principal_scope(config: IdempotencyConfig) -> IdempotencyConfig {
    config
        .with_problem_type_base("https://example.test/problems/idempotency/")
        .with_scope(|parts| {
            parts
                .headers
                .get("x-principal")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

struct TestApp {
    router: Router,
    counters: Counters,
    store: Arc<MemoryStore>,
}

impl TestApp {
    fn new(configure: impl FnOnce(IdempotencyConfig) -> IdempotencyConfig) -> Self {
        let store = Arc::new(MemoryStore::default());
        Self::with_store(store.clone(), store, configure)
    }

    fn with_store(
        store: Arc<dyn Store>,
        memory: Arc<MemoryStore>,
        configure: impl FnOnce(IdempotencyConfig) -> IdempotencyConfig,
    ) -> Self {
        let counters = Counters::default();
        let config = configure(principal_scope(IdempotencyConfig::default()));
        let router = routes(counters.clone()).layer(IdempotencyLayer::with_config(store, config));
        Self {
            router,
            counters,
            store: memory,
        }
    }

    fn executions(&self) -> usize {
        self.counters.executions.load(Ordering::SeqCst)
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        Reply::read(response).await
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    async fn read(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    fn replayed(&self) -> bool {
        self.headers
            .get("idempotency-replayed")
            .is_some_and(|v| v == "true")
    }

    fn problem(&self) -> serde_json::Value {
        assert_eq!(self.headers["content-type"], "application/problem+json");
        serde_json::from_slice(&self.body).expect("problem body is JSON")
    }

    /// Headers as (name, value) pairs in order, without the replay marker.
    fn header_list(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .filter(|(name, _)| *name != "idempotency-replayed")
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }
}

fn keyed(method: &str, path: &str, key: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("x-principal", "alice")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn unkeyed(path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("x-principal", "alice")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

// ---- the seed's four cases ------------------------------------------------------

#[tokio::test]
async fn same_key_and_body_returns_the_original_response_byte_identical() {
    let app = TestApp::new(|c| c);
    let first = app.send(keyed("POST", "/things", "k1", r#"{"a":1}"#)).await;
    let retry = app.send(keyed("POST", "/things", "k1", r#"{"a":1}"#)).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert!(
        !first.replayed(),
        "the first response carries no replay marker"
    );
    assert!(retry.replayed());
    assert_eq!(retry.status, first.status);
    assert_eq!(retry.body, first.body);
    // Every header in order, repeated values kept, Date dropped.
    let without_date: Vec<_> = first
        .header_list()
        .into_iter()
        .filter(|(name, _)| name != "date")
        .collect();
    assert_eq!(retry.header_list(), without_date);
    assert_eq!(
        retry.headers.get_all("x-multi").iter().collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(retry.headers.get("date").is_none());
    assert_eq!(app.executions(), 1, "the handler ran once");
}

#[tokio::test]
async fn same_key_with_a_different_body_is_a_409_and_runs_nothing() {
    let app = TestApp::new(|c| c);
    app.send(keyed("POST", "/things", "k2", r#"{"a":1}"#)).await;
    let other = app.send(keyed("POST", "/things", "k2", r#"{"a":2}"#)).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    let problem = other.problem();
    assert_eq!(problem["status"], 409);
    assert!(problem["type"].as_str().unwrap().ends_with("/key-reused"));
    assert_eq!(app.executions(), 1);
    // The original is still what a correct retry gets.
    let retry = app.send(keyed("POST", "/things", "k2", r#"{"a":1}"#)).await;
    assert!(retry.replayed());
}

#[tokio::test]
async fn without_a_key_nothing_is_cached_and_the_handler_runs_every_time() {
    let app = TestApp::new(|c| c);
    for expected in 1..=3 {
        let reply = app.send(unkeyed("/things", r#"{"a":1}"#)).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!reply.replayed());
        assert_eq!(app.executions(), expected);
    }
    assert!(app.store.is_empty(), "no record was stored");
}

#[tokio::test]
async fn after_the_retention_the_key_can_be_reused() {
    let clock = ManualClock::new(SystemTime::now());
    let app = TestApp::new(|c| c.with_clock(clock.clone()));
    app.send(keyed("POST", "/things", "k3", r#"{"a":1}"#)).await;
    clock.advance(Duration::from_secs(23 * 3600));
    let replay = app.send(keyed("POST", "/things", "k3", r#"{"a":1}"#)).await;
    assert!(replay.replayed(), "still replayed inside the 24 h window");

    clock.advance(Duration::from_secs(3600 + 1));
    let reused = app.send(keyed("POST", "/things", "k3", r#"{"a":2}"#)).await;
    assert_eq!(reused.status, StatusCode::CREATED);
    assert!(!reused.replayed());
    assert_eq!(app.executions(), 2);
}

// ---- fingerprint -----------------------------------------------------------------

#[tokio::test]
async fn reordered_json_with_the_same_meaning_is_replayed() {
    let app = TestApp::new(|c| c);
    let first = app
        .send(keyed(
            "POST",
            "/things",
            "k4",
            r#"{"name":"x","tags":["a","b"],"n":1}"#,
        ))
        .await;
    let retry = app
        .send(keyed(
            "POST",
            "/things",
            "k4",
            "{ \"n\": 1,\n  \"tags\": [\"a\", \"b\"], \"name\": \"x\" }",
        ))
        .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(app.executions(), 1);
}

/// Byte-identical retries take a shortcut past canonical JSON after the first replay
/// (the layer's replay hints); the shortcut must never turn a different request into
/// a replay, nor stop a reordered one from replaying, nor outlive the record.
#[tokio::test]
async fn repeated_byte_identical_replays_keep_the_fingerprint_rules() {
    let clock = ManualClock::new(SystemTime::now());
    let app = TestApp::new(|c| c.with_clock(clock.clone()));
    let body = r#"{"name":"x","n":1}"#;
    let first = app.send(keyed("POST", "/things", "k-hint", body)).await;
    for _ in 0..3 {
        let retry = app.send(keyed("POST", "/things", "k-hint", body)).await;
        assert!(retry.replayed());
        assert_eq!(retry.body, first.body);
    }
    let reordered = app
        .send(keyed("POST", "/things", "k-hint", r#"{"n":1,"name":"x"}"#))
        .await;
    assert!(reordered.replayed(), "a reordered body still matches");
    let different = app
        .send(keyed("POST", "/things", "k-hint", r#"{"name":"y","n":1}"#))
        .await;
    assert_eq!(
        different.status,
        StatusCode::CONFLICT,
        "another body is a mismatch"
    );
    assert_eq!(app.executions(), 1);

    // After the retention the key is reused by another request; the old bytes are
    // now a mismatch against the new record, hint or not.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let reused = app
        .send(keyed("POST", "/things", "k-hint", r#"{"name":"z","n":2}"#))
        .await;
    assert_eq!(reused.status, StatusCode::CREATED);
    let old_bytes = app.send(keyed("POST", "/things", "k-hint", body)).await;
    assert_eq!(old_bytes.status, StatusCode::CONFLICT);
    assert_eq!(app.executions(), 2);
}

#[tokio::test]
async fn same_key_on_another_path_or_query_is_a_mismatch() {
    let app = TestApp::new(|c| c);
    app.send(keyed("POST", "/things", "k5", "{}")).await;
    let other_query = app.send(keyed("POST", "/things?x=1", "k5", "{}")).await;
    assert_eq!(other_query.status, StatusCode::CONFLICT);
    let other_method = app.send(keyed("PATCH", "/things", "k5", "{}")).await;
    assert_eq!(other_method.status, StatusCode::CONFLICT);
    assert_eq!(app.executions(), 1);
}

#[tokio::test]
async fn ietf_mode_answers_a_mismatch_with_422() {
    let app = TestApp::new(|c| c.with_mismatch_status(MismatchStatus::UnprocessableContent));
    app.send(keyed("POST", "/things", "k6", r#"{"a":1}"#)).await;
    let other = app.send(keyed("POST", "/things", "k6", r#"{"a":2}"#)).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.problem()["status"], 422);
}

// ---- which requests ----------------------------------------------------------------

#[tokio::test]
async fn get_is_never_intercepted_even_with_a_key() {
    let app = TestApp::new(|c| c);
    for expected in 1..=2 {
        let reply = app.send(keyed("GET", "/read", "k7", "")).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!reply.replayed());
        assert_eq!(app.executions(), expected);
    }
    assert!(app.store.is_empty());
}

#[tokio::test]
async fn get_stays_exempt_even_if_configured() {
    let app = TestApp::new(|c| c.with_methods([http::Method::GET, http::Method::POST]));
    app.send(keyed("GET", "/read", "k7b", "")).await;
    app.send(keyed("GET", "/read", "k7b", "")).await;
    assert_eq!(app.executions(), 2);
}

#[tokio::test]
async fn patch_is_intercepted_by_default() {
    let app = TestApp::new(|c| c);
    app.send(keyed("PATCH", "/things", "k8", "{}")).await;
    let retry = app.send(keyed("PATCH", "/things", "k8", "{}")).await;
    assert!(retry.replayed());
    assert_eq!(app.executions(), 1);
}

/// A store that fails every call and counts them.
#[derive(Default)]
struct BrokenStore {
    calls: AtomicUsize,
}

#[async_trait]
impl Store for BrokenStore {
    async fn reserve(&self, _: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn complete(
        &self,
        _: &RecordId,
        _: FencingToken,
        _: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn release(&self, _: &RecordId, _: FencingToken) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn lookup(
        &self,
        _: &RecordId,
        _: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn purge_expired(&self, _: SystemTime) -> Result<u64, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn erase_mentioning(&self, _: &str, _: &[u8]) -> Result<u64, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn a_request_without_a_key_never_touches_the_store() {
    let broken = Arc::new(BrokenStore::default());
    let app = TestApp::with_store(broken.clone(), Arc::new(MemoryStore::default()), |c| c);
    let reply = app.send(unkeyed("/things", r#"{"a":1}"#)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(broken.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_store_answers_503_and_never_runs_the_handler() {
    let broken = Arc::new(BrokenStore::default());
    let app = TestApp::with_store(broken.clone(), Arc::new(MemoryStore::default()), |c| c);
    let reply = app.send(keyed("POST", "/things", "k9", "{}")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.problem()["type"]
        .as_str()
        .unwrap()
        .ends_with("/store-unavailable"));
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(app.executions(), 0);
}

/// The layer's span is at DEBUG, so at the usual INFO level its errors must name the
/// key themselves: by its short hash, never in full.
#[tokio::test]
async fn a_store_error_is_logged_at_info_with_the_key_hash_not_the_key() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let broken = Arc::new(BrokenStore::default());
    let app = TestApp::with_store(broken, Arc::new(MemoryStore::default()), |c| c);
    let key = "secret-key-of-alice-0001";
    let reply = app.send(keyed("POST", "/things", key, "{}")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let tag = RecordId::new("alice".to_owned(), key.to_owned()).log_tag();
    assert!(logs.contains("idempotency store failed"), "{logs}");
    assert!(logs.contains(&format!("key_hash={tag}")), "{logs}");
    assert!(
        !logs.contains(key),
        "the key itself is never logged: {logs}"
    );
}

// ---- the key -----------------------------------------------------------------------

#[tokio::test]
async fn invalid_keys_are_400_problems_naming_the_rule() {
    let app = TestApp::new(|c| c);
    let cases: [(&[u8], &str); 5] = [
        (b"", "1 to 255"),
        (&[b'k'; 256], "1 to 255"),
        (b"has space", "visible ASCII"),
        (b"\"unterminated", "Structured Field string"),
        ("caf\u{e9}".as_bytes(), "visible ASCII"),
    ];
    for (raw, rule) in cases {
        let request = Request::post("/things")
            .header("x-principal", "alice")
            .header(
                "idempotency-key",
                http::HeaderValue::from_bytes(raw).unwrap(),
            )
            .body(Body::from("{}"))
            .unwrap();
        let reply = app.send(request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "key {raw:?}");
        let problem = reply.problem();
        assert!(problem["type"].as_str().unwrap().ends_with("/invalid-key"));
        assert!(
            problem["detail"].as_str().unwrap().contains(rule),
            "detail for {raw:?} names the rule: {problem}"
        );
    }
    assert_eq!(app.executions(), 0);
}

#[tokio::test]
async fn a_255_character_key_is_accepted_and_a_quoted_key_matches_its_bare_form() {
    let app = TestApp::new(|c| c);
    let long = "k".repeat(255);
    assert_eq!(
        app.send(keyed("POST", "/things", &long, "{}")).await.status,
        StatusCode::CREATED
    );
    app.send(keyed("POST", "/things", "\"quoted-key\"", "{}"))
        .await;
    let bare = app.send(keyed("POST", "/things", "quoted-key", "{}")).await;
    assert!(
        bare.replayed(),
        "the sf-string and bare forms name the same key"
    );
}

#[tokio::test]
async fn a_repeated_key_header_is_rejected() {
    let app = TestApp::new(|c| c);
    let request = Request::post("/things")
        .header("x-principal", "alice")
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .body(Body::from("{}"))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("at most once"));
    assert_eq!(app.executions(), 0);
}

#[tokio::test]
async fn key_required_mode_rejects_a_missing_key_with_the_policy_link() {
    let app =
        TestApp::new(|c| c.with_key_required(Some("https://docs.example/idempotency".into())));
    let reply = app.send(unkeyed("/things", "{}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let problem = reply.problem();
    assert!(problem["type"].as_str().unwrap().ends_with("/key-required"));
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("https://docs.example/idempotency"));
    assert_eq!(app.executions(), 0);
    // GETs need no key even then.
    assert_eq!(
        app.send(keyed("GET", "/read", "x", "")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_oversize_body_is_413_and_stores_nothing() {
    let app = TestApp::new(|c| c.with_max_request_body(64));
    let reply = app
        .send(keyed("POST", "/things", "k10", &"x".repeat(65)))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.problem()["status"], 413);
    // Also when the body arrives without a Content-Length (chunked).
    let chunks = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from("x".repeat(40))),
        Ok(Bytes::from("x".repeat(40))),
    ]);
    let request = Request::post("/things")
        .header("x-principal", "alice")
        .header("idempotency-key", "k10b")
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(
        app.send(request).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(app.executions(), 0);
    assert!(app.store.is_empty());
}

// ---- scope -------------------------------------------------------------------------

#[tokio::test]
async fn the_same_key_from_two_principals_is_two_records() {
    let app = TestApp::new(|c| c);
    let alice = app.send(keyed("POST", "/things", "shared", "{}")).await;
    let mut for_bob = keyed("POST", "/things", "shared", "{}");
    for_bob
        .headers_mut()
        .insert("x-principal", "bob".parse().unwrap());
    let bob = app.send(for_bob).await;
    assert!(!bob.replayed(), "bob never sees alice's response");
    assert_ne!(alice.body, bob.body);
    assert_eq!(app.executions(), 2);
}

#[tokio::test]
async fn a_keyed_request_without_a_scope_is_refused() {
    let app = TestApp::new(|c| c);
    let request = Request::post("/things")
        .header("idempotency-key", "k11")
        .body(Body::from("{}"))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.executions(), 0);
}

#[tokio::test]
async fn handlers_see_the_scope_and_key_as_an_extension() {
    let app = TestApp::new(|c| c);
    let reply = app.send(keyed("POST", "/context", "ctx-key", "")).await;
    assert_eq!(reply.body, "alice|ctx-key|false");
}

// ---- what is stored ------------------------------------------------------------------

#[tokio::test]
async fn a_non_2xx_response_is_not_stored_and_a_corrected_retry_executes() {
    let app = TestApp::new(|c| c);
    let first = app.send(keyed("POST", "/fails", "k12", "{}")).await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    let retry = app.send(keyed("POST", "/fails", "k12", "{}")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(!retry.replayed());
    assert_eq!(app.executions(), 2);
}

#[tokio::test]
async fn a_store_policy_can_widen_what_is_stored() {
    let app = TestApp::new(|c| c.with_store_policy(|status| status.as_u16() < 500));
    app.send(keyed("POST", "/fails", "k13", "{}")).await;
    let retry = app.send(keyed("POST", "/fails", "k13", "{}")).await;
    assert_eq!(retry.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(retry.replayed());
    assert_eq!(app.executions(), 1);
}

#[tokio::test]
async fn a_panicking_handler_releases_the_key() {
    let app = TestApp::new(|c| c);
    let first = app.send(keyed("POST", "/panics", "k14", "{}")).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.headers["content-type"], "application/problem+json");
    let retry = app.send(keyed("POST", "/panics", "k14", "{}")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, "created on attempt 2");
}

#[tokio::test]
async fn responses_with_cookies_streams_or_over_the_limit_are_passed_through_not_stored() {
    let app = TestApp::new(|c| c.with_max_response_body(1024));
    for path in ["/cookie", "/stream", "/big"] {
        let before = app.executions();
        let first = app
            .send(keyed("POST", path, &format!("k15{path}"), "{}"))
            .await;
        assert_eq!(first.status, StatusCode::CREATED, "{path}");
        assert!(!first.body.is_empty());
        let retry = app
            .send(keyed("POST", path, &format!("k15{path}"), "{}"))
            .await;
        assert!(!retry.replayed(), "{path} must not be replayed");
        assert_eq!(app.executions(), before + 2, "{path} executes again");
    }
    assert!(app.store.is_empty(), "every reservation was released");
}

// ---- concurrency, leases, disconnects --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_requests_with_one_key_execute_once() {
    let app = Arc::new(TestApp::new(|c| {
        c.with_in_flight(InFlightBehavior::Wait(Duration::from_secs(30)))
    }));
    app.counters.gate.add_permits(1000);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.send(keyed("POST", "/things", "storm", r#"{"a":1}"#))
                .await
        }));
    }
    let mut bodies = Vec::new();
    let mut replays = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED);
        replays += usize::from(reply.replayed());
        bodies.push(reply.body);
    }
    assert_eq!(app.executions(), 1, "the handler ran exactly once");
    assert_eq!(replays, 63);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_while_in_flight_gets_409_with_retry_after() {
    let app = Arc::new(TestApp::new(|c| c));
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k16", "{}")).await })
    };
    app.counters.started.notified().await;
    let duplicate = app.send(keyed("POST", "/slow", "k16", "{}")).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert!(duplicate.problem()["type"]
        .as_str()
        .unwrap()
        .ends_with("/in-flight"));
    assert_eq!(duplicate.headers["retry-after"], "1");
    app.counters.gate.add_permits(1);
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    assert_eq!(app.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_wait_mode_a_duplicate_waits_and_replays() {
    let app = Arc::new(TestApp::new(|c| {
        c.with_in_flight(InFlightBehavior::Wait(Duration::from_secs(30)))
    }));
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k17", "{}")).await })
    };
    app.counters.started.notified().await;
    let duplicate = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k17", "{}")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.counters.gate.add_permits(1);
    let first = first.await.unwrap();
    let duplicate = duplicate.await.unwrap();
    assert!(duplicate.replayed());
    assert_eq!(duplicate.body, first.body);
    assert_eq!(app.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_disconnects_mid_request_still_gets_its_response_stored() {
    let app = Arc::new(TestApp::new(|c| c));
    let in_progress = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k18", "{}")).await })
    };
    app.counters.started.notified().await;
    // The client goes away: hyper drops the response future, as abort does here.
    in_progress.abort();
    assert!(in_progress.await.unwrap_err().is_cancelled());
    app.counters.gate.add_permits(1);

    // The handler finishes on its own and stores; the retry replays it.
    let mut retry = app.send(keyed("POST", "/slow", "k18", "{}")).await;
    for _ in 0..200 {
        if retry.status != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        retry = app.send(keyed("POST", "/slow", "k18", "{}")).await;
    }
    assert!(retry.replayed());
    assert_eq!(retry.body, "slow execution 1");
    assert_eq!(app.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_workers_key_is_taken_over_after_its_lease_and_its_late_completion_is_rejected() {
    let clock = ManualClock::new(SystemTime::now());
    let app = Arc::new(TestApp::new(|c| {
        c.with_clock(clock.clone())
            .with_lease(Duration::from_secs(60))
    }));
    // Worker 1 starts and hangs.
    let stale = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k19", "{}")).await })
    };
    app.counters.started.notified().await;
    // Inside the lease: the duplicate is turned away.
    assert_eq!(
        app.send(keyed("POST", "/slow", "k19", "{}")).await.status,
        StatusCode::CONFLICT
    );

    // The lease ends; worker 2 takes the key over and runs the handler.
    clock.advance(Duration::from_secs(61));
    let takeover = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/slow", "k19", "{}")).await })
    };
    app.counters.started.notified().await;
    assert_eq!(app.executions(), 2);
    // Let worker 2 finish first, then the stale worker 1.
    app.counters.gate.add_permits(1);
    let takeover = takeover.await.unwrap();
    app.counters.gate.add_permits(1);
    let stale = stale.await.unwrap();
    let (stale_body, takeover_body) = (stale.body.clone(), takeover.body.clone());
    assert_ne!(stale_body, takeover_body);

    // What is stored is the new owner's response, not the stale worker's.
    let replay = app.send(keyed("POST", "/slow", "k19", "{}")).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, takeover_body);
}

// ---- metrics -------------------------------------------------------------------------

#[test]
fn outcomes_are_counted_in_prometheus_metrics() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let app = TestApp::new(|c| c);
            app.send(keyed("POST", "/things", "m1", r#"{"a":1}"#)).await;
            app.send(keyed("POST", "/things", "m1", r#"{"a":1}"#)).await;
            app.send(keyed("POST", "/things", "m1", r#"{"a":2}"#)).await;
            app.send(keyed("POST", "/things", "bad key", "{}")).await;
        })
    });
    let text = handle.render();
    for expected in [
        r#"idempotency_requests_total{outcome="executed"} 1"#,
        r#"idempotency_requests_total{outcome="replayed"} 1"#,
        r#"idempotency_requests_total{outcome="mismatch"} 1"#,
        r#"idempotency_requests_total{outcome="invalid_key"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(text.contains("idempotency_store_duration_seconds"));
    assert!(text.contains("idempotency_memory_records"));
}

/// A store whose reservations take a while to be acknowledged, like a remote
/// database: the record is written at once, the answer arrives later.
struct SlowToAnswer {
    inner: MemoryStore,
}

#[async_trait]
impl Store for SlowToAnswer {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        let outcome = self.inner.reserve(request).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        outcome
    }
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.inner.complete(id, token, response).await
    }
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        self.inner.release(id, token).await
    }
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        self.inner.lookup(id, now).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        self.inner.erase_mentioning(scope, needle).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_disconnects_while_its_key_is_being_reserved_leaves_no_stuck_key() {
    let app = Arc::new(TestApp::with_store(
        Arc::new(SlowToAnswer {
            inner: MemoryStore::default(),
        }),
        Arc::new(MemoryStore::default()),
        |c| c,
    ));
    let in_progress = {
        let app = app.clone();
        tokio::spawn(async move { app.send(keyed("POST", "/things", "k20", "{}")).await })
    };
    // Gone while the reservation is on its way back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    in_progress.abort();
    let _ = in_progress.await;

    // The reservation is carried through: the handler runs once and its response is
    // stored, so a retry replays (after at most a short in-flight window).
    let mut retry = app.send(keyed("POST", "/things", "k20", "{}")).await;
    for _ in 0..100 {
        if retry.status != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        retry = app.send(keyed("POST", "/things", "k20", "{}")).await;
    }
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(
        retry.replayed(),
        "the first request was carried through and stored"
    );
    assert_eq!(app.executions(), 1);
}

/// A memory store whose `release` fails while `down` is set: the database behind it
/// went away between the reservation and the end of the request.
#[derive(Default)]
struct ReleaseOutageStore {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for ReleaseOutageStore {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        self.inner.reserve(request).await
    }
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.inner.complete(id, token, response).await
    }
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        self.inner.release(id, token).await
    }
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        self.inner.lookup(id, now).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
    async fn erase_mentioning(&self, scope: &str, needle: &[u8]) -> Result<u64, StoreError> {
        self.inner.erase_mentioning(scope, needle).await
    }
}

#[tokio::test]
async fn a_release_refused_by_a_store_outage_happens_once_the_store_is_back() {
    let store = Arc::new(ReleaseOutageStore::default());
    store.down.store(true, Ordering::SeqCst);
    let app = TestApp::with_store(store.clone(), Arc::new(MemoryStore::default()), |c| {
        c.with_lease(Duration::from_secs(60))
    });
    // The handler answers 422, which is not stored, and the release fails.
    let first = app.send(keyed("POST", "/fails", "k-outage", "{}")).await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    let during = app.send(keyed("POST", "/fails", "k-outage", "{}")).await;
    assert_eq!(
        during.status,
        StatusCode::CONFLICT,
        "held while the store is down"
    );

    store.down.store(false, Ordering::SeqCst);
    // Well inside the 60 s lease: the key is freed by the layer, not by the lease.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let retry = loop {
        let retry = app.send(keyed("POST", "/fails", "k-outage", "{}")).await;
        if retry.status != StatusCode::CONFLICT {
            break retry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key stayed held after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, "created on attempt 2");
    assert_eq!(app.executions(), 2);
}

/// A host that configures no scope gets its keyed requests refused, not run under one
/// scope shared by every caller; and without a problem base, types are about:blank.
#[tokio::test]
async fn without_a_scope_keyed_requests_are_refused_and_never_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new()
        .route(
            "/orders",
            axum::routing::post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    "created"
                }
            }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::default()));
    let request = |key: Option<&str>| {
        let mut builder = http::Request::post("/orders");
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    };
    let refused = app.clone().oneshot(request(Some("k1"))).await.unwrap();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(refused.into_body(), usize::MAX)
        .await
        .unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["title"], "Idempotency scope unavailable");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler ran without a scope"
    );
    // Unkeyed requests are not the layer's business.
    let unkeyed = app.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(unkeyed.status(), StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
