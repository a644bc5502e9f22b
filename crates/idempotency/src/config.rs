//! Settings of the layer, and the hooks a host application supplies.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{Method, StatusCode};

/// A source of the current time. The layer reads it once per request; tests inject
/// a [`ManualClock`] to move past a 24-hour retention without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis_since_epoch: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock set to `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            millis_since_epoch: Arc::new(AtomicI64::new(crate::store::unix_millis(start))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis_since_epoch.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        crate::store::from_unix_millis(self.millis_since_epoch.load(Ordering::SeqCst))
    }
}

/// The status answered when a key is reused with a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MismatchStatus {
    /// `409 Conflict`: this project's documented default.
    #[default]
    Conflict,
    /// `422 Unprocessable Content`: the IETF draft's code.
    UnprocessableContent,
}

impl MismatchStatus {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Conflict => StatusCode::CONFLICT,
            Self::UnprocessableContent => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// What a duplicate does while the first request with its key is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InFlightBehavior {
    /// Answer `409` at once, with `Retry-After`.
    Reject,
    /// Wait up to the bound for the first request to finish, then replay its
    /// response; answer `409` if it has not finished by then.
    Wait(Duration),
}

/// Decides which response statuses are stored for replay.
pub type StorePolicy = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// Supplies the scope of a request (its authenticated principal, plus tenant).
/// `None` means the host could not identify the caller; the layer then refuses
/// the keyed request rather than share a scope between strangers.
pub type ScopeResolver = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The layer's settings. Build one with [`IdempotencyConfig::default`] and the
/// `with_*` methods.
#[derive(Clone)]
pub struct IdempotencyConfig {
    pub(crate) methods: Vec<Method>,
    pub(crate) key_required: bool,
    pub(crate) key_policy_uri: Option<String>,
    pub(crate) retention: Duration,
    pub(crate) lease: Duration,
    pub(crate) mismatch_status: MismatchStatus,
    pub(crate) in_flight: InFlightBehavior,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) store_policy: StorePolicy,
    pub(crate) scope: ScopeResolver,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) problem_type_base: Option<Arc<str>>,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            methods: vec![Method::POST, Method::PATCH],
            key_required: false,
            key_policy_uri: None,
            retention: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_secs(60),
            mismatch_status: MismatchStatus::Conflict,
            in_flight: InFlightBehavior::Reject,
            max_request_body: 1024 * 1024,
            max_response_body: 1024 * 1024,
            store_policy: Arc::new(|status: StatusCode| status.is_success()),
            // Without a host hook there is no scope, and keyed requests are refused:
            // sharing one scope between all callers must be asked for.
            scope: Arc::new(|_: &Parts| None),
            clock: Arc::new(SystemClock),
            problem_type_base: None,
        }
    }
}

impl fmt::Debug for IdempotencyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyConfig")
            .field("methods", &self.methods)
            .field("key_required", &self.key_required)
            .field("retention", &self.retention)
            .field("lease", &self.lease)
            .field("mismatch_status", &self.mismatch_status)
            .field("in_flight", &self.in_flight)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("problem_type_base", &self.problem_type_base)
            .finish_non_exhaustive()
    }
}

impl IdempotencyConfig {
    /// The methods the layer intercepts (POST and PATCH by default). GET, HEAD,
    /// OPTIONS and TRACE are ignored even if listed: they are safe by definition.
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods
            .into_iter()
            .filter(|m| ![Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(m))
            .collect();
        self
    }

    /// Requires a key on every intercepted request; a missing key is `400`. The
    /// problem body points at `policy_uri` when given.
    pub fn with_key_required(mut self, policy_uri: Option<String>) -> Self {
        self.key_required = true;
        self.key_policy_uri = policy_uri;
        self
    }

    /// How long records are kept, counted from reservation (24 h by default).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long an in-flight reservation is exclusive (60 s by default). After it,
    /// the worker is presumed dead and another request may take the key over.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The status for a key reused with a different request.
    pub fn with_mismatch_status(mut self, status: MismatchStatus) -> Self {
        self.mismatch_status = status;
        self
    }

    /// What duplicates do while the first request runs.
    pub fn with_in_flight(mut self, behavior: InFlightBehavior) -> Self {
        self.in_flight = behavior;
        self
    }

    /// The largest request body buffered for fingerprinting (1 MiB by default);
    /// larger keyed requests get `413`.
    pub fn with_max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = bytes;
        self
    }

    /// The largest response body stored (1 MiB by default); larger responses are
    /// passed through, not stored, and the key is released.
    pub fn with_max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Which statuses are stored (2xx by default). Any other status releases the
    /// key so that a corrected retry executes.
    pub fn with_store_policy(
        mut self,
        policy: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.store_policy = Arc::new(policy);
        self
    }

    /// The hook that names the scope (authenticated principal) of a request. A
    /// keyed request for which it answers `None` is refused (500), never run under a
    /// scope shared with other callers. Without this hook every keyed request is
    /// refused; a service without authentication that wants one scope for all says
    /// so: `with_scope(|_| Some(String::new()))`.
    pub fn with_scope(
        mut self,
        resolver: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.scope = Arc::new(resolver);
        self
    }

    /// The base of the `type` URIs of the layer's problems: each is `base` followed
    /// by the [`ProblemKind::slug`](crate::ProblemKind::slug), for example
    /// `https://example.com/problems/idempotency/` gives
    /// `https://example.com/problems/idempotency/key-reused`. Unset, every problem's
    /// type is `about:blank` and only its title and status tell them apart.
    pub fn with_problem_type_base(mut self, base: impl Into<String>) -> Self {
        self.problem_type_base = Some(Arc::from(base.into()));
        self
    }

    /// The clock the layer reads; tests inject a [`ManualClock`].
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The retention setting.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The lease setting.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub(crate) fn intercepts(&self, method: &Method) -> bool {
        self.methods.iter().any(|m| m == method)
    }
}
