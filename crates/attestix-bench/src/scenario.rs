//! What each scenario sends: the request line, headers, body and idempotency key.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

/// The header a client sends to make a POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header a server adds to a response it replayed from its store.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";
/// The header carrying the API key.
pub const API_KEY: &str = "x-api-key";
/// The response header with the cursor of the next page of a list.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// The body of every identity the bench creates (a small, valid UAIT request).
pub const CREATE_IDENTITY_BODY: &str = r#"{"display_name":"bench agent","source_protocol":"api_key","capabilities":["read","write"],"description":"created by attestix-bench"}"#;

/// A load pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `POST /v1/identities` without an `Idempotency-Key`.
    CreateNokey,
    /// `POST /v1/identities` with a fresh key on every request.
    CreateKey,
    /// `POST /v1/identities` repeating one key, primed by one request first.
    Replay,
    /// Every connection sends the same fresh key at the same moment, round after round.
    Storm,
    /// `POST /v1/credentials` with a fresh key per request, about one subject.
    IssueKey,
    /// `GET /v1/identities?limit=…&cursor=…`, one page over and over.
    List,
    /// `POST /v1/delegations` between two identities, without a key.
    DelegateNokey,
    /// `POST /v1/delegations` between two identities, a fresh key per request.
    DelegateKey,
    /// `POST /v1/delegations/verify` of one three-deep chain, without a key.
    VerifyChain,
    /// `POST /v1/identities/{agent_id}/translate` to a DID document, fresh keys.
    Translate,
    /// `POST /v1/agent-cards/generate`, fresh keys.
    CardGenerate,
    /// `POST /v1/agent-cards/parse` of one generated card, fresh keys.
    CardParse,
    /// `POST /v1/dids/key`, fresh keys.
    DidKey,
    /// `POST /v1/dids/web`, a new path and a fresh key per request.
    DidWeb,
    /// `POST /v1/provenance/actions`, every request on one agent's chain, no key.
    ActionNokey,
    /// As `action-nokey`, a fresh key per request.
    ActionKey,
    /// `POST /v1/reputation/interactions` about one agent, no key.
    InteractionNokey,
    /// As `interaction-nokey`, a fresh key per request.
    InteractionKey,
    /// `POST /v1/provenance/training-data` for one agent, no key.
    TrainingNokey,
    /// As `training-nokey`, a fresh key per request.
    TrainingKey,
    /// `POST /v1/compliance/assessments` (a passed self-assessment) for one agent
    /// with a minimal-risk profile, no key.
    AssessmentNokey,
    /// As `assessment-nokey`, a fresh key per request.
    AssessmentKey,
    /// `GET /v1/compliance/profiles/{agent_id}/status` of a high-risk agent with
    /// 10 provenance entries.
    StatusSmall,
    /// As `status-small`, with 10,000 provenance entries (half training data without
    /// governance measures, half model lineage without metrics: the entries a
    /// checklist would have to search to find none).
    StatusLarge,
    /// `POST /v1/provenance/model-lineage` for one agent, no key.
    LineageNokey,
    /// As `lineage-nokey`, a fresh key per request.
    LineageKey,
    /// `POST /v1/compliance/profiles`, each request for another identity of a pool
    /// the set-up creates (an agent has one profile), no key.
    ProfileNokey,
    /// As `profile-nokey`, a fresh key per request.
    ProfileKey,
    /// `PATCH /v1/compliance/profiles/{agent_id}` of one minimal-risk profile (the
    /// profile is re-signed each time), no key.
    PatchNokey,
    /// As `patch-nokey`, a fresh key per request.
    PatchKey,
    /// `POST /v1/compliance/declarations` for one agent with a passed assessment
    /// (a declaration and its credential each time), no key.
    DeclarationNokey,
    /// As `declaration-nokey`, a fresh key per request.
    DeclarationKey,
    /// `DELETE /v1/identities/{agent_id}/purge`, each request purging another
    /// identity of a pool the set-up creates, no key.
    PurgeNokey,
    /// As `purge-nokey`, a fresh key per request.
    PurgeKey,
}

/// The agent every provenance and reputation scenario writes about.
pub const BENCH_AGENT: &str = "attestix:bench0000agent00";

/// Every scenario, in the order the command line lists them.
const ALL: [Scenario; 34] = [
    Scenario::CreateNokey,
    Scenario::CreateKey,
    Scenario::Replay,
    Scenario::Storm,
    Scenario::IssueKey,
    Scenario::List,
    Scenario::DelegateNokey,
    Scenario::DelegateKey,
    Scenario::VerifyChain,
    Scenario::Translate,
    Scenario::CardGenerate,
    Scenario::CardParse,
    Scenario::DidKey,
    Scenario::DidWeb,
    Scenario::ActionNokey,
    Scenario::ActionKey,
    Scenario::InteractionNokey,
    Scenario::InteractionKey,
    Scenario::TrainingNokey,
    Scenario::TrainingKey,
    Scenario::AssessmentNokey,
    Scenario::AssessmentKey,
    Scenario::StatusSmall,
    Scenario::StatusLarge,
    Scenario::LineageNokey,
    Scenario::LineageKey,
    Scenario::ProfileNokey,
    Scenario::ProfileKey,
    Scenario::PatchNokey,
    Scenario::PatchKey,
    Scenario::DeclarationNokey,
    Scenario::DeclarationKey,
    Scenario::PurgeNokey,
    Scenario::PurgeKey,
];

/// Which idempotency key a scenario sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// None.
    None,
    /// A fresh one per connection and request.
    Fresh,
    /// One key for every request.
    Repeated,
    /// One key per round, shared by every connection.
    PerRound,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateNokey => "create-nokey",
            Self::CreateKey => "create-key",
            Self::Replay => "replay",
            Self::Storm => "storm",
            Self::IssueKey => "issue-key",
            Self::List => "list",
            Self::DelegateNokey => "delegate-nokey",
            Self::DelegateKey => "delegate-key",
            Self::VerifyChain => "verify-chain",
            Self::Translate => "translate",
            Self::CardGenerate => "card-generate",
            Self::CardParse => "card-parse",
            Self::DidKey => "did-key",
            Self::DidWeb => "did-web",
            Self::ActionNokey => "action-nokey",
            Self::ActionKey => "action-key",
            Self::InteractionNokey => "interaction-nokey",
            Self::InteractionKey => "interaction-key",
            Self::TrainingNokey => "training-nokey",
            Self::TrainingKey => "training-key",
            Self::AssessmentNokey => "assessment-nokey",
            Self::AssessmentKey => "assessment-key",
            Self::StatusSmall => "status-small",
            Self::StatusLarge => "status-large",
            Self::LineageNokey => "lineage-nokey",
            Self::LineageKey => "lineage-key",
            Self::ProfileNokey => "profile-nokey",
            Self::ProfileKey => "profile-key",
            Self::PatchNokey => "patch-nokey",
            Self::PatchKey => "patch-key",
            Self::DeclarationNokey => "declaration-nokey",
            Self::DeclarationKey => "declaration-key",
            Self::PurgeNokey => "purge-nokey",
            Self::PurgeKey => "purge-key",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Self> {
        ALL.into_iter().find(|scenario| scenario.name() == name)
    }

    fn key_use(self) -> KeyUse {
        match self {
            Self::CreateNokey
            | Self::List
            | Self::DelegateNokey
            | Self::VerifyChain
            | Self::ActionNokey
            | Self::InteractionNokey
            | Self::TrainingNokey
            | Self::AssessmentNokey
            | Self::StatusSmall
            | Self::StatusLarge
            | Self::LineageNokey
            | Self::ProfileNokey
            | Self::PatchNokey
            | Self::DeclarationNokey
            | Self::PurgeNokey => KeyUse::None,
            Self::Replay => KeyUse::Repeated,
            Self::Storm => KeyUse::PerRound,
            Self::CreateKey
            | Self::IssueKey
            | Self::DelegateKey
            | Self::Translate
            | Self::CardGenerate
            | Self::CardParse
            | Self::DidKey
            | Self::DidWeb
            | Self::ActionKey
            | Self::InteractionKey
            | Self::TrainingKey
            | Self::AssessmentKey
            | Self::LineageKey
            | Self::ProfileKey
            | Self::PatchKey
            | Self::DeclarationKey
            | Self::PurgeKey => KeyUse::Fresh,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds the requests of one scenario against one server. Cheap to share: the
/// body is reference-counted and each request clones it.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    scenario: Scenario,
    host: HeaderValue,
    api_key: Option<HeaderValue>,
    path: String,
    body: Bytes,
    key_prefix: String,
    pool: Option<Arc<AgentPool>>,
}

/// Identities a scenario uses up, one per request (a profile exists once per agent,
/// a purged agent is gone), handed out in order across every connection.
#[derive(Debug)]
pub struct AgentPool {
    agents: Vec<String>,
    next: AtomicUsize,
}

impl AgentPool {
    /// A pool of `agents`, none used yet.
    pub fn new(agents: Vec<String>) -> Self {
        Self {
            agents,
            next: AtomicUsize::new(0),
        }
    }

    /// The next unused agent, or `None` once every one is used.
    fn take(&self) -> Option<&str> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        self.agents.get(index).map(String::as_str)
    }
}

/// Where a pooled scenario sends its requests once the pool is used up: an unknown
/// path, so they count as failures instead of repeating an agent (a second purge of
/// one agent would succeed and cost less).
const POOL_EXHAUSTED_PATH: &str = "/v1/attestix-bench/agent-pool-exhausted";

impl RequestPlan {
    /// A plan for `scenario` against the server at `host` (`127.0.0.1:8000`).
    /// `key_prefix` keeps the keys of separate runs on one server apart.
    pub fn new(
        scenario: Scenario,
        host: &str,
        api_key: Option<&str>,
        key_prefix: &str,
    ) -> anyhow::Result<Self> {
        // Bodies naming resources the server makes are set by `with_target`.
        let (path, body) = match scenario {
            Scenario::CreateNokey | Scenario::CreateKey | Scenario::Replay | Scenario::Storm => (
                "/v1/identities".to_owned(),
                Bytes::from_static(CREATE_IDENTITY_BODY.as_bytes()),
            ),
            Scenario::IssueKey => ("/v1/credentials".to_owned(), Bytes::new()),
            Scenario::StatusSmall
            | Scenario::StatusLarge
            | Scenario::PatchNokey
            | Scenario::PatchKey
            | Scenario::DeclarationNokey
            | Scenario::DeclarationKey
            | Scenario::PurgeNokey
            | Scenario::PurgeKey => (String::new(), Bytes::new()),
            Scenario::ProfileNokey | Scenario::ProfileKey => {
                ("/v1/compliance/profiles".to_owned(), Bytes::new())
            }
            Scenario::LineageNokey | Scenario::LineageKey => (
                "/v1/provenance/model-lineage".to_owned(),
                Bytes::from(
                    serde_json::json!({"agent_id": BENCH_AGENT, "base_model": "bench-base",
                                       "base_model_provider": "Bench AI",
                                       "fine_tuning_method": "lora"})
                    .to_string(),
                ),
            ),
            Scenario::AssessmentNokey | Scenario::AssessmentKey => {
                ("/v1/compliance/assessments".to_owned(), Bytes::new())
            }
            Scenario::List => ("/v1/identities?limit=50".to_owned(), Bytes::new()),
            Scenario::DelegateNokey | Scenario::DelegateKey => {
                ("/v1/delegations".to_owned(), Bytes::new())
            }
            Scenario::VerifyChain => ("/v1/delegations/verify".to_owned(), Bytes::new()),
            Scenario::Translate => (String::new(), Bytes::new()),
            Scenario::CardGenerate => (
                "/v1/agent-cards/generate".to_owned(),
                Bytes::from_static(CARD_BODY.as_bytes()),
            ),
            Scenario::CardParse => ("/v1/agent-cards/parse".to_owned(), Bytes::new()),
            Scenario::DidKey => ("/v1/dids/key".to_owned(), Bytes::new()),
            // Each request names a path of its own: a did:web exists once per scope.
            Scenario::DidWeb => ("/v1/dids/web".to_owned(), Bytes::new()),
            Scenario::ActionNokey | Scenario::ActionKey => (
                "/v1/provenance/actions".to_owned(),
                Bytes::from(
                    serde_json::json!({"agent_id": BENCH_AGENT, "action_type": "inference",
                                       "input_summary": "bench question",
                                       "output_summary": "bench answer"})
                    .to_string(),
                ),
            ),
            Scenario::InteractionNokey | Scenario::InteractionKey => (
                "/v1/reputation/interactions".to_owned(),
                Bytes::from(
                    serde_json::json!({"agent_id": BENCH_AGENT,
                                       "counterparty_id": "attestix:bench0000peer0000",
                                       "outcome": "success", "category": "task"})
                    .to_string(),
                ),
            ),
            Scenario::TrainingNokey | Scenario::TrainingKey => (
                "/v1/provenance/training-data".to_owned(),
                Bytes::from(
                    serde_json::json!({"agent_id": BENCH_AGENT, "dataset_name": "bench corpus",
                                       "source": "https://bench.example/corpus",
                                       "data_categories": ["text"]})
                    .to_string(),
                ),
            ),
        };
        Ok(Self {
            scenario,
            host: HeaderValue::from_str(host)?,
            api_key: api_key.map(HeaderValue::from_str).transpose()?,
            path,
            body,
            key_prefix: key_prefix.to_owned(),
            pool: None,
        })
    }

    /// The scenario.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// Sets the credential subject (`issue-key`).
    pub fn with_subject(mut self, agent_id: &str) -> Self {
        self.body = Bytes::from(credential_body(agent_id));
        self
    }

    /// Sets what the requests of a scenario name: the two agents of a delegation,
    /// the token of a chain, the identity to translate, the card to parse.
    pub fn with_target(mut self, target: Target) -> Self {
        match target {
            Target::Delegation { issuer, audience } => {
                self.body = Bytes::from(
                    serde_json::json!({
                        "issuer_agent_id": issuer,
                        "audience_agent_id": audience,
                        "capabilities": ["read", "write"],
                        "expiry_hours": 24,
                    })
                    .to_string(),
                );
            }
            Target::Token(token) => {
                self.body = Bytes::from(serde_json::json!({ "token": token }).to_string());
            }
            Target::Identity(agent_id) => {
                self.path = format!("/v1/identities/{agent_id}/translate");
                self.body = Bytes::from_static(br#"{"target_format":"did_document"}"#);
            }
            Target::Card(card) => {
                self.body = Bytes::from(serde_json::json!({ "card": card }).to_string());
            }
            Target::ComplianceStatus(agent_id) => {
                self.path = format!("/v1/compliance/profiles/{agent_id}/status");
            }
            Target::Post { path, body } => {
                self.path = path;
                self.body = Bytes::from(body.to_string());
            }
            Target::Patch { agent_id, body } => {
                self.path = format!("/v1/compliance/profiles/{agent_id}");
                self.body = Bytes::from(body.to_string());
            }
            Target::Pool(agents) => {
                self.pool = Some(Arc::new(AgentPool::new(agents)));
            }
        }
        self
    }

    /// Sets the page a `list` run fetches: its size and the cursor that starts it.
    pub fn with_page(mut self, page_size: u32, cursor: Option<&str>) -> Self {
        self.path = list_path(page_size, cursor);
        self
    }

    /// The idempotency key of the `sequence`-th request on `connection`, if the
    /// scenario sends one. Storm rounds pass the round number as the sequence.
    pub fn idempotency_key(&self, connection: usize, sequence: u64) -> Option<String> {
        let prefix = &self.key_prefix;
        match self.scenario.key_use() {
            KeyUse::None => None,
            KeyUse::Fresh => Some(format!("{prefix}-{connection}-{sequence}")),
            KeyUse::Repeated => Some(format!("{prefix}-replay")),
            KeyUse::PerRound => Some(format!("{prefix}-storm-{sequence}")),
        }
    }

    /// The body of the `sequence`-th request on `connection`.
    fn body(&self, connection: usize, sequence: u64) -> Bytes {
        if self.scenario == Scenario::DidWeb {
            let prefix = &self.key_prefix;
            return Bytes::from(format!(
                r#"{{"domain":"bench.example","path":"{prefix}/c{connection}/r{sequence}"}}"#
            ));
        }
        self.body.clone()
    }

    /// The `sequence`-th request on `connection`.
    pub fn request(&self, connection: usize, sequence: u64) -> Request<Full<Bytes>> {
        let method = match self.scenario {
            Scenario::List | Scenario::StatusSmall | Scenario::StatusLarge => Method::GET,
            Scenario::PatchNokey | Scenario::PatchKey => Method::PATCH,
            Scenario::PurgeNokey | Scenario::PurgeKey => Method::DELETE,
            _ => Method::POST,
        };
        let (path, body) = match self.pool.as_deref().map(AgentPool::take) {
            None => (self.path.clone(), self.body(connection, sequence)),
            Some(None) => (POOL_EXHAUSTED_PATH.to_owned(), Bytes::new()),
            Some(Some(agent_id)) => self.pooled(agent_id),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(api_key) = &self.api_key {
            builder = builder.header(API_KEY, api_key.clone());
        }
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(key) = self.idempotency_key(connection, sequence) {
            builder = builder.header(IDEMPOTENCY_KEY, key);
        }
        builder
            .body(Full::new(body))
            .expect("the path, host and key of a plan are valid header and URI text")
    }

    /// The path and body of a pooled scenario's request about `agent_id`.
    fn pooled(&self, agent_id: &str) -> (String, Bytes) {
        match self.scenario {
            Scenario::PurgeNokey | Scenario::PurgeKey => {
                (format!("/v1/identities/{agent_id}/purge"), Bytes::new())
            }
            _ => (
                self.path.clone(),
                Bytes::from(profile_body(agent_id, "minimal").to_string()),
            ),
        }
    }

    /// A request creating one identity without a key (setup: prefill, subjects).
    pub fn setup_create(&self) -> Request<Full<Bytes>> {
        let mut builder = Request::post("/v1/identities")
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(api_key) = &self.api_key {
            builder = builder.header(API_KEY, api_key.clone());
        }
        builder
            .body(Full::new(Bytes::from_static(
                CREATE_IDENTITY_BODY.as_bytes(),
            )))
            .expect("a fixed request is valid")
    }

    /// A POST of `body` to `path` without a key (setup: delegations, a card).
    pub fn setup_post(&self, path: &str, body: &serde_json::Value) -> Request<Full<Bytes>> {
        let mut builder = Request::post(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(api_key) = &self.api_key {
            builder = builder.header(API_KEY, api_key.clone());
        }
        builder
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a setup path is a valid URI")
    }

    /// A `GET` of one list page (setup: walking to a deep page).
    pub fn setup_list(&self, page_size: u32, cursor: Option<&str>) -> Request<Full<Bytes>> {
        let mut builder =
            Request::get(list_path(page_size, cursor)).header(HOST, self.host.clone());
        if let Some(api_key) = &self.api_key {
            builder = builder.header(API_KEY, api_key.clone());
        }
        builder
            .body(Full::new(Bytes::new()))
            .expect("a list path built from a server's cursor is a valid URI")
    }
}

fn list_path(page_size: u32, cursor: Option<&str>) -> String {
    match cursor {
        Some(cursor) => format!("/v1/identities?limit={page_size}&cursor={cursor}"),
        None => format!("/v1/identities?limit={page_size}"),
    }
}

/// What the requests of a scenario name, made by its set-up.
#[derive(Debug, Clone)]
pub enum Target {
    /// The issuer and audience of each delegation.
    Delegation {
        /// The delegating agent.
        issuer: String,
        /// The receiving agent.
        audience: String,
    },
    /// The delegation token each request verifies.
    Token(String),
    /// The identity each request translates.
    Identity(String),
    /// The agent card each request parses.
    Card(serde_json::Value),
    /// The agent whose compliance status each request reads.
    ComplianceStatus(String),
    /// The path and body of every request (set-up loads).
    Post {
        /// The path.
        path: String,
        /// The JSON body.
        body: serde_json::Value,
    },
    /// The profile every request patches, and the patch.
    Patch {
        /// The agent whose profile is patched.
        agent_id: String,
        /// The merge patch.
        body: serde_json::Value,
    },
    /// The identities a pooled scenario uses up, one per request.
    Pool(Vec<String>),
}

/// The body of a compliance profile of `agent_id` at `risk_category`.
pub fn profile_body(agent_id: &str, risk_category: &str) -> serde_json::Value {
    serde_json::json!({"agent_id": agent_id, "risk_category": risk_category,
                       "provider_name": "Bench AI", "intended_purpose": "attestix-bench",
                       "provider_address": "1 Bench Street"})
}

/// The body of every generated agent card.
pub const CARD_BODY: &str = r#"{"name":"bench agent","url":"https://bench.example/","description":"created by attestix-bench","skills":[{"id":"search","name":"Search","description":"finds things"}]}"#;

fn credential_body(subject_id: &str) -> String {
    serde_json::json!({
        "subject_id": subject_id,
        "credential_type": "AgentIdentityCredential",
        "issuer_name": "attestix-bench",
        "claims": {"role": "load-test", "level": 3},
    })
    .to_string()
}

/// A random prefix for the keys of one run.
pub fn random_key_prefix() -> String {
    use rand::Rng;
    format!("bench-{:016x}", rand::thread_rng().gen::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(scenario: Scenario) -> RequestPlan {
        RequestPlan::new(scenario, "127.0.0.1:9", Some("secret"), "p").expect("valid plan")
    }

    #[test]
    fn create_without_a_key_sends_no_idempotency_header() {
        let request = plan(Scenario::CreateNokey).request(3, 7);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/v1/identities");
        assert!(request.headers().get(IDEMPOTENCY_KEY).is_none());
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers()[API_KEY], "secret");
        assert_eq!(request.headers()[HOST], "127.0.0.1:9");
    }

    #[test]
    fn keyed_create_uses_a_fresh_key_per_connection_and_request() {
        let plan = plan(Scenario::CreateKey);
        let keys: std::collections::HashSet<_> = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .into_iter()
            .map(|(c, s)| plan.idempotency_key(c, s).expect("keyed"))
            .collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn replay_repeats_one_key_and_storm_shares_a_key_per_round() {
        let replay = plan(Scenario::Replay);
        assert_eq!(replay.idempotency_key(0, 0), replay.idempotency_key(5, 99));
        let storm = plan(Scenario::Storm);
        assert_eq!(storm.idempotency_key(0, 4), storm.idempotency_key(7, 4));
        assert_ne!(storm.idempotency_key(0, 4), storm.idempotency_key(0, 5));
    }

    #[test]
    fn issue_names_the_subject_and_list_carries_the_cursor() {
        let issue = plan(Scenario::IssueKey).with_subject("attestix:00112233");
        let request = issue.request(0, 0);
        assert_eq!(request.uri(), "/v1/credentials");
        assert!(request.headers().get(IDEMPOTENCY_KEY).is_some());
        let list = plan(Scenario::List).with_page(50, Some("c4950"));
        let request = list.request(0, 0);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/v1/identities?limit=50&cursor=c4950");
        assert!(request.headers().get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn delegation_scenarios_key_only_the_keyed_variant_and_did_web_varies_its_path() {
        let target = Target::Delegation {
            issuer: "attestix:a".into(),
            audience: "attestix:b".into(),
        };
        let nokey = plan(Scenario::DelegateNokey).with_target(target.clone());
        let keyed = plan(Scenario::DelegateKey).with_target(target);
        assert!(nokey.request(0, 0).headers().get(IDEMPOTENCY_KEY).is_none());
        assert!(keyed.request(0, 0).headers().get(IDEMPOTENCY_KEY).is_some());
        assert_eq!(nokey.body(0, 0), keyed.body(0, 0));
        let translate =
            plan(Scenario::Translate).with_target(Target::Identity("attestix:a".into()));
        assert_eq!(
            translate.request(0, 0).uri(),
            "/v1/identities/attestix:a/translate"
        );
        let web = plan(Scenario::DidWeb);
        assert_ne!(web.body(0, 1), web.body(0, 2));
        assert_ne!(web.body(0, 1), web.body(1, 1));
        assert!(plan(Scenario::DidKey)
            .request(0, 0)
            .headers()
            .get(CONTENT_TYPE)
            .is_none());
    }

    #[test]
    fn pooled_scenarios_use_each_agent_once_then_fail_visibly() {
        let purge = plan(Scenario::PurgeKey)
            .with_target(Target::Pool(vec!["attestix:a".into(), "attestix:b".into()]));
        let first = purge.request(0, 0);
        assert_eq!(first.method(), Method::DELETE);
        assert_eq!(first.uri(), "/v1/identities/attestix:a/purge");
        assert!(first.headers().get(IDEMPOTENCY_KEY).is_some());
        assert_eq!(purge.request(1, 0).uri(), "/v1/identities/attestix:b/purge");
        assert_eq!(purge.request(0, 1).uri(), POOL_EXHAUSTED_PATH);

        let profiles = plan(Scenario::ProfileNokey)
            .with_target(Target::Pool(vec!["attestix:a".into(), "attestix:b".into()]));
        let bodies: Vec<serde_json::Value> = (0..2)
            .map(|n| {
                let request = profiles.request(0, n);
                assert_eq!(request.uri(), "/v1/compliance/profiles");
                assert!(request.headers().get(IDEMPOTENCY_KEY).is_none());
                serde_json::from_slice(&body_bytes(request.into_body())).expect("a JSON body")
            })
            .collect();
        assert_eq!(bodies[0]["agent_id"], "attestix:a");
        assert_eq!(bodies[1]["agent_id"], "attestix:b");

        let patch = plan(Scenario::PatchKey).with_target(Target::Patch {
            agent_id: "attestix:a".into(),
            body: serde_json::json!({"intended_purpose": "x"}),
        });
        let request = patch.request(0, 0);
        assert_eq!(request.method(), Method::PATCH);
        assert_eq!(request.uri(), "/v1/compliance/profiles/attestix:a");
    }

    /// The bytes of a full body.
    fn body_bytes(body: Full<Bytes>) -> Bytes {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let collected = runtime.block_on(http_body_util::BodyExt::collect(body));
        collected.expect("a full body never fails").to_bytes()
    }

    #[test]
    fn scenario_names_round_trip() {
        for scenario in ALL {
            assert_eq!(Scenario::parse(scenario.name()), Some(scenario));
            assert_eq!(
                <Scenario as clap::ValueEnum>::from_str(scenario.name(), false),
                Ok(scenario),
                "the command line and the compare syntax name {scenario} alike"
            );
        }
        assert!(Scenario::parse("nope").is_none());
    }
}
