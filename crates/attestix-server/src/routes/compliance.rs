//! `/v1/compliance`: EU AI Act compliance profiles, Article 43 conformity
//! assessments and Annex V declarations of conformity (with their
//! `EUAIActComplianceCredential`).
//!
//! A profile changes after it is made (a PATCH, an assessment, a declaration); each
//! change re-signs it and is written as a compare-and-swap of its stored document
//! ([`records::update_document`]), retried from a fresh read when a concurrent change
//! won, so no change is lost and the signature always covers what is stored.

use std::sync::Arc;

use attestix_core::{
    Claims, ExpiryDays, NewCredential as CredentialParams, SigningKey, VerifiableCredential,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    audit_draft, check_chars, may_be_stored, no_errors, unix_ms, ApiJson, ApiPath, ApiQuery,
    JsonText, Paging,
};
use crate::audit::AuditDraft;
use crate::auth::Caller;
use crate::compliance::{
    self, Evidence, NewProfile, Patch, ProfilePatch, ASSESSMENT_RESULTS, ASSESSMENT_TYPES,
};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::storage::records::{self, kind, NewRecord, Stmt, Tx};
use crate::storage::{NewCredential, StorageError};

/// The longest agent id accepted.
const MAX_ID_CHARS: usize = 256;
/// The longest name (provider, assessor) accepted.
const MAX_NAME_CHARS: usize = 1024;
/// The longest free text (purpose, obligations, findings, ...) accepted.
const MAX_TEXT_CHARS: usize = 4096;
/// A profile change lost to concurrent ones this many times in a row is answered 503.
const MAX_PROFILE_RACES: usize = 16;
/// The credential type issued with a declaration.
pub const DECLARATION_CREDENTIAL_TYPE: &str = "EUAIActComplianceCredential";

/// The body of `POST /v1/compliance/profiles`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProfileRequest {
    /// The agent, an identity of the caller's (1 to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// `minimal`, `limited` or `high` (`unacceptable` systems are prohibited, 422).
    #[schema(example = "high", pattern = "^(minimal|limited|high)$")]
    pub risk_category: String,
    /// The provider's name (1 to 1024 characters).
    #[schema(min_length = 1, max_length = 1024)]
    pub provider_name: String,
    /// What the system is for (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub intended_purpose: String,
    /// How transparency obligations are met (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub transparency_obligations: String,
    /// Human oversight measures, needed for high risk (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub human_oversight_measures: String,
    /// The provider's address (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub provider_address: String,
    /// The EU authorised representative (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub authorised_representative: String,
    /// The Annex III point, 1 to 8 (high risk). Point 1 needs a third-party
    /// assessment; points 2 to 8 may self-assess unless an exception applies.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 8)]
    pub annex_iii_category: Option<i64>,
    /// A carve-out of points 2 to 8 that still needs a notified body:
    /// `biometric_identification_law_enforcement`, `financial_fraud_detection` or
    /// `political_campaign_organization`.
    #[serde(default)]
    #[schema(
        pattern = "^(biometric_identification_law_enforcement|financial_fraud_detection|political_campaign_organization)$"
    )]
    pub annex_iii_exception: Option<String>,
}

/// The body of `PATCH /v1/compliance/profiles/{agent_id}`: a JSON merge patch
/// (RFC 7396). Text fields set to `null` become empty; a documentation flag set to
/// `null` is removed. Any other field is refused (422).
///
/// The handler reads the body as a map (to tell `null` from absent and to refuse
/// unknown fields); this type is its schema.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// `ai_system.intended_purpose` (at most 4096 characters).
    #[schema(max_length = 4096)]
    pub intended_purpose: Option<String>,
    /// `transparency.obligations` (at most 4096 characters).
    #[schema(max_length = 4096)]
    pub transparency_obligations: Option<String>,
    /// `transparency.human_oversight_measures` (at most 4096 characters).
    #[schema(max_length = 4096)]
    pub human_oversight_measures: Option<String>,
    /// `provider.name` (1 to 1024 characters).
    #[schema(min_length = 1, max_length = 1024)]
    pub provider_name: Option<String>,
    /// `provider.address` (at most 4096 characters).
    #[schema(max_length = 4096)]
    pub provider_address: Option<String>,
    /// `provider.authorised_representative` (at most 4096 characters).
    #[schema(max_length = 4096)]
    pub authorised_representative: Option<String>,
    /// `{"documented": bool}`: the risk management system (Article 9).
    #[schema(value_type = Option<Object>, example = json!({"documented": true}))]
    pub risk_management: Option<Value>,
    /// `{"plan_documented": bool}`: post-market monitoring (Article 72).
    #[schema(value_type = Option<Object>, example = json!({"plan_documented": true}))]
    pub post_market_monitoring: Option<Value>,
    /// `{"process_documented": bool}`: serious incident reporting (Article 73).
    #[schema(value_type = Option<Object>, example = json!({"process_documented": true}))]
    pub incident_reporting: Option<Value>,
}

/// The body of `POST /v1/compliance/assessments`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecordAssessmentRequest {
    /// The agent assessed (1 to 256 characters); it must have a profile.
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
    /// `self` or `third_party`.
    #[schema(example = "third_party", pattern = "^(self|third_party)$")]
    pub assessment_type: String,
    /// The assessor or notified body (1 to 1024 characters).
    #[schema(min_length = 1, max_length = 1024)]
    pub assessor_name: String,
    /// `pass`, `conditional` or `fail`.
    #[schema(example = "pass", pattern = "^(pass|conditional|fail)$")]
    pub result: String,
    /// Findings and notes (at most 4096 characters).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub findings: String,
    /// Whether CE marking is eligible (kept only with a `pass`).
    #[serde(default)]
    pub ce_marking_eligible: bool,
}

/// The body of `POST /v1/compliance/declarations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateDeclarationRequest {
    /// The agent (1 to 256 characters); it must have a profile with a completed
    /// assessment.
    #[schema(min_length = 1, max_length = 256)]
    pub agent_id: String,
}

/// Query of `GET /v1/compliance/profiles`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProfilesQuery {
    /// Only profiles of this risk category (`minimal`, `limited`, `high`).
    #[param(pattern = "^(minimal|limited|high|unacceptable)$")]
    pub risk_category: Option<String>,
    /// Only profiles with a recorded declaration of conformity (the reference's
    /// deprecated filter: not legal conformity). Default false.
    #[serde(default)]
    pub compliant_only: bool,
}

/// What a profile job ended with.
enum Step {
    /// The document stored (and answered).
    Done(String),
    /// Refused; nothing was written.
    Refused(ApiError),
    /// A concurrent change of the profile won; start again from a fresh read.
    Raced,
}

fn not_found_profile(agent_id: &str) -> ApiError {
    ApiError::NotFound {
        kind: "compliance profile",
        id: agent_id.to_owned(),
    }
}

fn parse_object(document: &str) -> Result<Map<String, Value>, StorageError> {
    serde_json::from_str(document).map_err(StorageError::database)
}

fn to_text(document: &Map<String, Value>) -> Result<String, StorageError> {
    serde_json::to_string(document).map_err(StorageError::database)
}

/// Re-signs `profile` and swaps it for `expected` (its stored form); whether it won.
async fn store_profile(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
    expected: &str,
    profile: &mut Map<String, Value>,
    signer: &SigningKey,
) -> Result<Option<String>, StorageError> {
    compliance::sign(profile, signer)?;
    let document = to_text(profile)?;
    let label = profile
        .get("risk_category")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let swapped = records::update_document(
        tx,
        (scope, kind::COMPLIANCE_PROFILE, agent_id),
        expected,
        &document,
        label.as_deref(),
    )
    .await?;
    Ok(swapped.then_some(document))
}

/// One attempt at a profile read-modify-write, in one transaction.
type ProfileJob =
    Box<dyn for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<Step, StorageError>> + Send>;

/// Boxes `work` as a [`ProfileJob`] (the bound gives the closure its higher-ranked
/// signature).
fn profile_job<F>(work: F) -> ProfileJob
where
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<Step, StorageError>> + Send + 'static,
{
    Box::new(work)
}

/// Runs the attempts `job` makes (a profile read-modify-write each) until one does
/// not race.
async fn until_settled<F>(state: &AppState, job: F) -> Result<String, ApiError>
where
    F: Fn() -> ProfileJob + Send,
{
    for _ in 0..MAX_PROFILE_RACES {
        match records::write_with(&*state.storage, job()).await? {
            Step::Done(document) => return Ok(document),
            Step::Refused(error) => return Err(error),
            Step::Raced => continue,
        }
    }
    Err(ApiError::Unavailable(
        "the compliance profile kept changing under this request".into(),
    ))
}

fn check_profile_fields(errors: &mut Vec<FieldError>, body: &CreateProfileRequest) {
    check_chars(errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_chars(
        errors,
        "provider_name",
        &body.provider_name,
        1,
        MAX_NAME_CHARS,
    );
    for (field, value) in [
        ("intended_purpose", &body.intended_purpose),
        ("transparency_obligations", &body.transparency_obligations),
        ("human_oversight_measures", &body.human_oversight_measures),
        ("provider_address", &body.provider_address),
        ("authorised_representative", &body.authorised_representative),
    ] {
        check_chars(errors, field, value, 0, MAX_TEXT_CHARS);
    }
    if let Some(message) = compliance::risk_category_error(&body.risk_category) {
        errors.push(FieldError {
            field: "risk_category".into(),
            message,
        });
    }
    if let Some(message) = body
        .annex_iii_category
        .and_then(compliance::annex_iii_category_error)
    {
        errors.push(FieldError {
            field: "annex_iii_category".into(),
            message,
        });
    }
    if let Some(exception) = &body.annex_iii_exception {
        if let Some(message) = compliance::annex_iii_exception_error(exception) {
            errors.push(FieldError {
                field: "annex_iii_exception".into(),
                message,
            });
        }
    }
}

/// Create the EU AI Act compliance profile of an agent.
#[utoipa::path(
    post,
    path = "/v1/compliance/profiles",
    tag = "compliance",
    request_body = CreateProfileRequest,
    responses(
        (status = 201, description = "The signed profile; the identity's `eu_compliance` now names it", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent is not an identity of the caller's", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The agent already has a profile", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (an unknown or prohibited risk category, an Annex III point outside 1-8, ...)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_profile(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateProfileRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_profile_fields(&mut errors, &body);
    no_errors(errors)?;
    let now = OffsetDateTime::now_utc();
    let stamp = attestix_core::format_isoformat(now);
    let profile_id = format!("comp:{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let new = NewProfile {
        agent_id: body.agent_id.clone(),
        risk_category: body.risk_category.clone(),
        provider_name: body.provider_name,
        intended_purpose: body.intended_purpose,
        transparency_obligations: body.transparency_obligations,
        human_oversight_measures: body.human_oversight_measures,
        provider_address: body.provider_address,
        authorised_representative: body.authorised_representative,
        annex_iii_category: body.annex_iii_category,
        annex_iii_exception: body.annex_iii_exception,
    };
    let agent = body.agent_id;
    let identity_event = audit_draft(
        &state,
        &caller,
        "identity.update",
        (&agent, "identities"),
        json!({"agent_id": agent, "eu_compliance": profile_id}),
        now,
    )?;
    let profile_event = audit_draft(
        &state,
        &caller,
        "compliance.create_profile",
        (&profile_id, "compliance"),
        json!({"profile_id": profile_id, "agent_id": agent,
               "risk_category": body.risk_category}),
        now,
    )?
    .mentioning([agent.clone()]);
    let scope = caller.scope();
    let signer = state.signer.clone();
    let step = records::write_with(&*state.storage, move |tx| {
        Box::pin(async move {
            let Some(mut identity) = identity_of(tx, &scope, &agent).await? else {
                return Ok(Step::Refused(ApiError::NotFound {
                    kind: "identity",
                    id: agent,
                }));
            };
            if records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent)
                .await?
                .is_some()
            {
                return Ok(Step::Refused(profile_exists(&agent)));
            }
            let display_name = identity
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut profile =
                compliance::new_profile(&new, &profile_id, &display_name, signer.did(), &stamp);
            compliance::sign(&mut profile, &signer)?;
            let document = to_text(&profile)?;
            let record = NewRecord {
                scope: scope.clone(),
                kind: kind::COMPLIANCE_PROFILE,
                id: agent.clone(),
                subject: Some(agent.clone()),
                label: Some(new.risk_category.clone()),
                created_at_ms: unix_ms(now),
                document: document.clone(),
                refs: vec![agent.clone()],
            };
            match records::insert(tx, &record).await {
                Err(StorageError::Duplicate) => return Ok(Step::Refused(profile_exists(&agent))),
                other => other?,
            };
            // The reference links the profile first, then records its creation.
            identity.insert("eu_compliance".into(), profile_id.clone().into());
            tx.execute(
                Stmt::new("UPDATE identities SET document = ")
                    .bind(to_text(&identity)?)
                    .sql(" WHERE agent_id = ")
                    .bind(agent.as_str())
                    .sql(" AND owner = ")
                    .bind(scope.as_str()),
            )
            .await?;
            tx.audit(&identity_event).await?;
            tx.audit(&profile_event).await?;
            Ok(Step::Done(document))
        })
    })
    .await?;
    match step {
        Step::Done(document) => Ok(JsonText::new(StatusCode::CREATED, document)),
        Step::Refused(error) => Err(error),
        Step::Raced => Err(ApiError::internal("a profile create cannot race")),
    }
}

fn profile_exists(agent_id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Compliance profile already exists for {agent_id}. Use GET /v1/compliance/profiles/{agent_id} to view it."
    ))
}

/// `scope`'s identity `agent_id` as a JSON object, if there is one.
async fn identity_of(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
) -> Result<Option<Map<String, Value>>, StorageError> {
    records::identity_document(tx, scope, agent_id)
        .await?
        .map(|text| parse_object(&text))
        .transpose()
}

/// A text field of a merge patch: absent, `null`, or a string within bounds.
fn text_patch(
    errors: &mut Vec<FieldError>,
    patch: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Patch<String> {
    match patch.get(field) {
        None => Patch::Keep,
        Some(Value::Null) if min == 0 => Patch::Clear,
        Some(Value::String(text)) => {
            check_chars(errors, field, text, min, max);
            Patch::Set(text.clone())
        }
        Some(_) => {
            errors.push(FieldError {
                field: field.into(),
                message: if min == 0 {
                    format!("{field} must be a string or null")
                } else {
                    format!("{field} must be a string")
                },
            });
            Patch::Keep
        }
    }
}

/// A documentation object of a merge patch (`{"documented": true}`): absent,
/// `null` (removed), or an object with its one flag, a boolean or `null`.
fn flag_patch(
    errors: &mut Vec<FieldError>,
    patch: &Map<String, Value>,
    object: &str,
    flag: &str,
) -> Patch<bool> {
    let value = match patch.get(object) {
        None => return Patch::Keep,
        Some(Value::Null) => return Patch::Clear,
        Some(Value::Object(inner)) => inner,
        Some(_) => {
            errors.push(FieldError {
                field: object.into(),
                message: format!("{object} must be an object like {{\"{flag}\": true}} or null"),
            });
            return Patch::Keep;
        }
    };
    for key in value.keys().filter(|key| *key != flag) {
        errors.push(FieldError {
            field: format!("{object}.{key}"),
            message: format!("unknown field; {object} has only {flag}"),
        });
    }
    match value.get(flag) {
        None => Patch::Keep,
        Some(Value::Null) => Patch::Clear,
        Some(Value::Bool(set)) => Patch::Set(*set),
        Some(_) => {
            errors.push(FieldError {
                field: format!("{object}.{flag}"),
                message: format!("{object}.{flag} must be a boolean or null"),
            });
            Patch::Keep
        }
    }
}

/// The fields a PATCH may change.
const PATCH_FIELDS: [&str; 9] = [
    "intended_purpose",
    "transparency_obligations",
    "human_oversight_measures",
    "provider_name",
    "provider_address",
    "authorised_representative",
    "risk_management",
    "post_market_monitoring",
    "incident_reporting",
];

/// `body` as a profile patch, or a 422 naming every bad or unknown field.
pub fn parse_patch(body: &Map<String, Value>) -> Result<ProfilePatch, ApiError> {
    let mut errors = Vec::new();
    for key in body
        .keys()
        .filter(|key| !PATCH_FIELDS.contains(&key.as_str()))
    {
        errors.push(FieldError {
            field: key.clone(),
            message: format!(
                "unknown field; a profile patch may change only {}",
                PATCH_FIELDS.join(", ")
            ),
        });
    }
    let patch = ProfilePatch {
        intended_purpose: text_patch(&mut errors, body, "intended_purpose", 0, MAX_TEXT_CHARS),
        transparency_obligations: text_patch(
            &mut errors,
            body,
            "transparency_obligations",
            0,
            MAX_TEXT_CHARS,
        ),
        human_oversight_measures: text_patch(
            &mut errors,
            body,
            "human_oversight_measures",
            0,
            MAX_TEXT_CHARS,
        ),
        provider_name: text_patch(&mut errors, body, "provider_name", 1, MAX_NAME_CHARS),
        provider_address: text_patch(&mut errors, body, "provider_address", 0, MAX_TEXT_CHARS),
        authorised_representative: text_patch(
            &mut errors,
            body,
            "authorised_representative",
            0,
            MAX_TEXT_CHARS,
        ),
        risk_management_documented: flag_patch(&mut errors, body, "risk_management", "documented"),
        post_market_monitoring_plan_documented: flag_patch(
            &mut errors,
            body,
            "post_market_monitoring",
            "plan_documented",
        ),
        incident_reporting_process_documented: flag_patch(
            &mut errors,
            body,
            "incident_reporting",
            "process_documented",
        ),
    };
    no_errors(errors)?;
    Ok(patch)
}

/// Change an agent's compliance profile with a JSON merge patch (RFC 7396); the
/// profile is re-signed.
#[utoipa::path(
    patch,
    path = "/v1/compliance/profiles/{agent_id}",
    tag = "compliance",
    request_body(content = UpdateProfileRequest, content_type = "application/merge-patch+json",
        description = "Also accepted as application/json"),
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The changed, re-signed profile", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no profile in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown field, or a field that breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_profile(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<JsonText, ApiError> {
    let patch = parse_patch(&body)?;
    if !may_be_stored(&agent_id) {
        return Err(not_found_profile(&agent_id));
    }
    let now = OffsetDateTime::now_utc();
    let stamp = attestix_core::format_isoformat(now);
    let scope = caller.scope();
    let draft = audit_draft(
        &state,
        &caller,
        "compliance.update_profile",
        ("", "compliance"),
        Value::Null,
        now,
    )?
    .mentioning([agent_id.clone()]);
    let document = until_settled(&state, || {
        let (scope, agent, patch, stamp) = (
            scope.clone(),
            agent_id.clone(),
            patch.clone(),
            stamp.clone(),
        );
        let (signer, draft) = (state.signer.clone(), draft.clone());
        profile_job(move |tx| {
            Box::pin(async move {
                let Some(stored) =
                    records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent).await?
                else {
                    return Ok(Step::Refused(not_found_profile(&agent)));
                };
                let mut profile = parse_object(&stored)?;
                compliance::apply_patch(&mut profile, &patch, &stamp);
                let profile_id = profile["profile_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let Some(document) =
                    store_profile(tx, &scope, &agent, &stored, &mut profile, &signer).await?
                else {
                    return Ok(Step::Raced);
                };
                let event = retarget(
                    draft,
                    &profile_id,
                    &json!({"profile_id": profile_id, "agent_id": agent}),
                )?;
                tx.audit(&event).await?;
                Ok(Step::Done(document))
            })
        })
    })
    .await?;
    Ok(JsonText::new(StatusCode::OK, document))
}

/// `draft` about `target_id` with the `after` payload, known only once the stored
/// record is read.
fn retarget(draft: AuditDraft, target_id: &str, after: &Value) -> Result<AuditDraft, StorageError> {
    Ok(AuditDraft {
        target_id: target_id.to_owned(),
        change_digest: crate::audit::change_digest(after)?,
        ..draft
    })
}

/// The compliance profile of an agent.
#[utoipa::path(
    get,
    path = "/v1/compliance/profiles/{agent_id}",
    tag = "compliance",
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The signed profile", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no profile in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_profile(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    match read_profile(&state, &caller, &agent_id).await? {
        Some(document) => Ok(JsonText::new(StatusCode::OK, document)),
        None => Err(not_found_profile(&agent_id)),
    }
}

async fn read_profile(
    state: &AppState,
    caller: &Caller,
    agent_id: &str,
) -> Result<Option<String>, ApiError> {
    if !may_be_stored(agent_id) {
        return Ok(None);
    }
    let (scope, agent) = (caller.scope(), agent_id.to_owned());
    Ok(records::read_with(&*state.storage, move |tx| {
        Box::pin(async move { records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent).await })
    })
    .await?)
}

/// The recorded-evidence checklist of an agent's profile: what is done, what is
/// missing, and `completion_pct` (not a legal conformity determination).
#[utoipa::path(
    get,
    path = "/v1/compliance/profiles/{agent_id}/status",
    tag = "compliance",
    params(("agent_id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The checklist", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no profile in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn profile_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(agent_id): ApiPath<String>,
) -> Result<JsonText, ApiError> {
    if !may_be_stored(&agent_id) {
        return Err(not_found_profile(&agent_id));
    }
    let (scope, agent) = (caller.scope(), agent_id.clone());
    let found = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            let Some(profile) = records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent).await?
            else {
                return Ok(None);
            };
            let evidence = compliance::evidence(tx, &scope, &agent).await?;
            Ok(Some((profile, evidence)))
        })
    })
    .await?;
    let Some((profile, evidence)) = found else {
        return Err(not_found_profile(&agent_id));
    };
    let profile: Value = serde_json::from_str(&profile).map_err(ApiError::internal)?;
    JsonText::ok(&compliance::status(&profile, &evidence))
}

/// The caller's compliance profiles, oldest first, filtered, with cursor paging.
#[utoipa::path(
    get,
    path = "/v1/compliance/profiles",
    tag = "compliance",
    params(ListProfilesQuery, Paging),
    responses(
        (status = 200, description = "A page of profiles; the next page's cursor is in X-Next-Cursor", body = Vec<Object>, content_type = "application/json",
         headers(("x-next-cursor" = String, description = "Cursor of the next page, absent on the last page"))),
        (status = 422, description = "A query parameter breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_profiles(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListProfilesQuery>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<JsonText, ApiError> {
    if let Some(risk) = &query.risk_category {
        if !compliance::RISK_CATEGORIES.contains(&risk.as_str()) {
            return Err(ApiError::invalid(
                "risk_category",
                format!("must be one of: {}", compliance::RISK_CATEGORIES.join(", ")),
            ));
        }
    }
    let page = paging.page()?;
    let filter = records::RecordFilter {
        label: query.risk_category,
        ..records::RecordFilter::default()
    };
    let compliant_only = query.compliant_only;
    let scope = caller.scope();
    let (documents, next) = records::read_with(&*state.storage, move |tx| {
        Box::pin(async move {
            let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
            let mut documents = Vec::new();
            let mut after = page.after;
            loop {
                let request = crate::storage::PageRequest {
                    after,
                    limit: page.limit,
                };
                let (rows, more) =
                    records::list_rows(tx, &scope, kind::COMPLIANCE_PROFILE, &filter, request)
                        .await?;
                let mut rows = rows.into_iter().peekable();
                while let Some((seq, document)) = rows.next() {
                    after = Some(seq);
                    if compliant_only && !has_declaration(&document)? {
                        continue;
                    }
                    documents.push(document);
                    if documents.len() == limit {
                        // More rows may hold more matches: the next page says.
                        let further = more || rows.peek().is_some();
                        return Ok((documents, further.then_some(seq)));
                    }
                }
                if !more {
                    return Ok((documents, None));
                }
            }
        })
    })
    .await?;
    let next = next.map(|seq| format!("c{seq}"));
    let mut body = String::from("[");
    body.push_str(&documents.join(","));
    body.push(']');
    Ok(JsonText::new(StatusCode::OK, body).with_cursor(next))
}

fn has_declaration(document: &str) -> Result<bool, StorageError> {
    let profile: Value = serde_json::from_str(document).map_err(StorageError::database)?;
    Ok(profile["conformity"]["declaration_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()))
}

/// Record a conformity assessment of an agent (Article 43).
#[utoipa::path(
    post,
    path = "/v1/compliance/assessments",
    tag = "compliance",
    request_body = RecordAssessmentRequest,
    responses(
        (status = 201, description = "The signed assessment; the profile's `conformity` now names it", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no profile in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule, or a self-assessment where Article 43 requires a third party", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_assessment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<RecordAssessmentRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    check_chars(
        &mut errors,
        "assessor_name",
        &body.assessor_name,
        1,
        MAX_NAME_CHARS,
    );
    check_chars(&mut errors, "findings", &body.findings, 0, MAX_TEXT_CHARS);
    if !ASSESSMENT_TYPES.contains(&body.assessment_type.as_str()) {
        errors.push(FieldError {
            field: "assessment_type".into(),
            message: format!(
                "Invalid assessment_type '{}'. Must be one of: {}",
                body.assessment_type,
                ASSESSMENT_TYPES.join(", ")
            ),
        });
    }
    if !ASSESSMENT_RESULTS.contains(&body.result.as_str()) {
        errors.push(FieldError {
            field: "result".into(),
            message: format!(
                "Invalid result '{}'. Must be one of: {}",
                body.result,
                ASSESSMENT_RESULTS.join(", ")
            ),
        });
    }
    no_errors(errors)?;
    let now = OffsetDateTime::now_utc();
    let stamp = attestix_core::format_isoformat(now);
    let assessment_id = format!(
        "assess:{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let agent = body.agent_id.clone();
    let event = audit_draft(
        &state,
        &caller,
        "compliance.record_assessment",
        (&assessment_id, "compliance"),
        json!({"assessment_id": assessment_id, "agent_id": agent,
               "assessment_type": body.assessment_type, "result": body.result}),
        now,
    )?
    .mentioning([agent.clone()]);
    let passed = body.result == "pass";
    let completed = passed || body.result == "conditional";
    let assessment = json!({
        "assessment_id": assessment_id,
        "agent_id": agent,
        "assessment_type": body.assessment_type,
        "assessment_scope": "provider_recorded_assessment",
        "legal_conformity": "not_assessed",
        "assessor_authority_verified": false,
        "assessor_name": body.assessor_name,
        "result": body.result,
        "findings": body.findings,
        "ce_marking_eligible": body.ce_marking_eligible && passed,
        "assessed_at": stamp,
        "assessed_by": state.signer.did(),
    });
    let Value::Object(mut assessment) = assessment else {
        return Err(ApiError::internal("an assessment is an object"));
    };
    compliance::sign(&mut assessment, &state.signer).map_err(ApiError::internal)?;
    let assessment = to_text(&assessment).map_err(ApiError::internal)?;
    let self_assessed = body.assessment_type == "self";
    let ce_marking = body.ce_marking_eligible && passed;
    let scope = caller.scope();
    let document = until_settled(&state, || {
        let (scope, agent, stamp, assessment_id) = (
            scope.clone(),
            agent.clone(),
            stamp.clone(),
            assessment_id.clone(),
        );
        let (signer, event, assessment) = (state.signer.clone(), event.clone(), assessment.clone());
        profile_job(move |tx| {
            Box::pin(async move {
                let Some(stored) =
                    records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent).await?
                else {
                    return Ok(Step::Refused(not_found_profile(&agent)));
                };
                let mut profile = parse_object(&stored)?;
                if profile.get("risk_category").and_then(Value::as_str) == Some("high")
                    && self_assessed
                {
                    let (required, reason) = compliance::third_party_required(
                        profile.get("annex_iii_category").and_then(Value::as_i64),
                        profile.get("annex_iii_exception").and_then(Value::as_str),
                    );
                    if required {
                        return Ok(Step::Refused(ApiError::invalid(
                            "assessment_type",
                            format!(
                                "Self-assessment not permitted: {reason} Use \
                                 assessment_type='third_party' with a notified body."
                            ),
                        )));
                    }
                }
                if let Some(Value::Object(conformity)) = profile.get_mut("conformity") {
                    conformity.insert("assessment_completed".into(), completed.into());
                    conformity.insert("assessment_id".into(), assessment_id.clone().into());
                    conformity.insert("ce_marking_eligible".into(), ce_marking.into());
                }
                profile.insert("updated_at".into(), stamp.into());
                if store_profile(tx, &scope, &agent, &stored, &mut profile, &signer)
                    .await?
                    .is_none()
                {
                    return Ok(Step::Raced);
                }
                let record = NewRecord {
                    scope: scope.clone(),
                    kind: kind::COMPLIANCE_ASSESSMENT,
                    id: assessment_id,
                    subject: Some(agent.clone()),
                    label: None,
                    created_at_ms: unix_ms(now),
                    document: assessment.clone(),
                    refs: vec![agent],
                };
                records::insert(tx, &record).await?;
                tx.audit(&event).await?;
                Ok(Step::Done(assessment))
            })
        })
    })
    .await?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

/// Generate the Annex V declaration of conformity of an agent (a draft for the
/// provider's review), and issue its `EUAIActComplianceCredential`.
#[utoipa::path(
    post,
    path = "/v1/compliance/declarations",
    tag = "compliance",
    request_body = GenerateDeclarationRequest,
    responses(
        (status = 201, description = "The signed declaration; its `credential_id` (signed with it) names the credential issued with it", body = Object, content_type = "application/json"),
        (status = 404, description = "The agent has no profile in the caller's scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The agent's identity is revoked or expired, so no credential is issued about it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "No completed assessment, a self-assessment where a third party is required, or Annex V fields missing: `missing_fields` names them, as the reference's `detail` does", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn generate_declaration(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<GenerateDeclarationRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_chars(&mut errors, "agent_id", &body.agent_id, 1, MAX_ID_CHARS);
    no_errors(errors)?;
    let agent = body.agent_id;
    let now = OffsetDateTime::now_utc();
    super::credentials::refuse_inactive_subject(&state, &caller.scope(), &agent, now).await?;
    let stamp = attestix_core::format_isoformat(now);
    let declaration_id = format!("decl:{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let credential_uuid = uuid::Uuid::new_v4();
    let credential_id = format!("urn:uuid:{}", credential_uuid.hyphenated());
    let credential_event = audit_draft(
        &state,
        &caller,
        "credential.issue",
        (&credential_id, "credentials"),
        json!({"id": credential_id,
               "type": ["VerifiableCredential", DECLARATION_CREDENTIAL_TYPE],
               "subject": agent}),
        now,
    )?;
    let declaration_event = audit_draft(
        &state,
        &caller,
        "compliance.generate_declaration",
        (&declaration_id, "compliance"),
        json!({"declaration_id": declaration_id, "agent_id": agent}),
        now,
    )?
    .mentioning([agent.clone()]);
    let scope = caller.scope();
    let document = until_settled(&state, || {
        let job = DeclarationJob {
            scope: scope.clone(),
            agent: agent.clone(),
            stamp: stamp.clone(),
            now,
            declaration_id: declaration_id.clone(),
            credential_uuid,
            signer: state.signer.clone(),
            credential_event: credential_event.clone(),
            declaration_event: declaration_event.clone(),
        };
        profile_job(move |tx| Box::pin(job.run(tx)))
    })
    .await?;
    Ok(JsonText::new(StatusCode::CREATED, document))
}

/// One attempt at a declaration, in one transaction.
struct DeclarationJob {
    scope: String,
    agent: String,
    stamp: String,
    now: OffsetDateTime,
    declaration_id: String,
    credential_uuid: uuid::Uuid,
    signer: SigningKey,
    credential_event: AuditDraft,
    declaration_event: AuditDraft,
}

impl DeclarationJob {
    async fn run(self, tx: &mut dyn Tx) -> Result<Step, StorageError> {
        let Self {
            scope,
            agent,
            stamp,
            now,
            declaration_id,
            credential_uuid,
            signer,
            credential_event,
            declaration_event,
        } = self;
        let Some(stored) = records::get(tx, &scope, kind::COMPLIANCE_PROFILE, &agent).await? else {
            return Ok(Step::Refused(not_found_profile(&agent)));
        };
        let mut profile = parse_object(&stored)?;
        let view = Value::Object(profile.clone());
        if view["conformity"]["assessment_completed"] != Value::Bool(true) {
            return Ok(Step::Refused(ApiError::InvalidComplianceProfile {
                message: format!(
                    "Cannot generate declaration: no completed conformity assessment for agent \
                     {agent}; record one with POST /v1/compliance/assessments (result 'pass' or \
                     'conditional') before generating a declaration."
                ),
                missing_fields: Vec::new(),
            }));
        }
        let assessment = match view["conformity"]["assessment_id"].as_str() {
            Some(id) => records::get(tx, &scope, kind::COMPLIANCE_ASSESSMENT, id)
                .await?
                .map(|text| serde_json::from_str::<Value>(&text))
                .transpose()
                .map_err(StorageError::database)?,
            None => None,
        };
        if view["risk_category"] == "high" {
            if let Some(record) = &assessment {
                if record["assessment_type"] != "third_party" {
                    let (required, reason) = compliance::third_party_required(
                        view["annex_iii_category"].as_i64(),
                        view["annex_iii_exception"].as_str(),
                    );
                    if required {
                        return Ok(Step::Refused(ApiError::InvalidComplianceProfile {
                            message: format!(
                                "Cannot issue declaration: {reason} Current assessment for agent \
                                 {agent} is a self-assessment; record a third_party conformity \
                                 assessment with a notified body via POST \
                                 /v1/compliance/assessments before generating a declaration."
                            ),
                            missing_fields: Vec::new(),
                        }));
                    }
                }
            }
        }
        let missing = compliance::missing_annex_v_fields(&view);
        if !missing.is_empty() {
            return Ok(Step::Refused(ApiError::InvalidComplianceProfile {
                message: format!(
                    "Cannot generate declaration: missing required fields: {}. Update the \
                     compliance profile first via PATCH /v1/compliance/profiles/{agent}.",
                    missing.join(", ")
                ),
                missing_fields: missing.into_iter().map(str::to_owned).collect(),
            }));
        }
        let mut declaration = compliance::declaration(
            &view,
            assessment.as_ref(),
            &declaration_id,
            signer.did(),
            &stamp,
        );
        // The profile names its declaration before the checklist is read for the
        // credential, as in the reference.
        if let Some(Value::Object(conformity)) = profile.get_mut("conformity") {
            conformity.insert("declaration_id".into(), declaration_id.clone().into());
        }
        profile.insert("updated_at".into(), stamp.into());
        if store_profile(tx, &scope, &agent, &stored, &mut profile, &signer)
            .await?
            .is_none()
        {
            return Ok(Step::Raced);
        }
        let profile = Value::Object(profile);
        let evidence: Evidence = compliance::evidence(tx, &scope, &agent).await?;
        let workflow_complete = compliance::status(&profile, &evidence)["workflow_complete"]
            .as_bool()
            .unwrap_or(false);
        let claims = Claims::parse(compliance::credential_claims(
            &profile,
            &declaration_id,
            workflow_complete,
        ))
        .map_err(StorageError::database)?;
        let params = CredentialParams {
            subject_id: agent.clone(),
            credential_type: DECLARATION_CREDENTIAL_TYPE.into(),
            issuer_name: profile["provider"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            claims,
            expiry_days: ExpiryDays::DEFAULT,
        };
        let credential = VerifiableCredential::issue(params, &signer, now, credential_uuid)
            .map_err(StorageError::database)?;
        let credential_text = serde_json::to_string(&credential).map_err(StorageError::database)?;
        records::insert_credential(
            tx,
            &NewCredential {
                credential_id: credential.id.clone(),
                owner: scope.clone(),
                subject_id: credential.credential_subject.id.clone(),
                credential_type: DECLARATION_CREDENTIAL_TYPE.into(),
                issued_at_ms: unix_ms(now),
                expires_at_ms: unix_ms(credential.expiration_date.datetime()),
                document: credential_text,
                recovery: None,
                audit: Some(credential_event),
            },
        )
        .await?;
        // Signed with the declaration (the reference adds it after signing).
        declaration.insert("credential_id".into(), credential.id.clone().into());
        compliance::sign(&mut declaration, &signer)?;
        let document = to_text(&declaration)?;
        records::insert(
            tx,
            &NewRecord {
                scope: scope.clone(),
                kind: kind::COMPLIANCE_DECLARATION,
                id: declaration_id,
                subject: Some(agent.clone()),
                label: None,
                created_at_ms: unix_ms(now),
                document: document.clone(),
                refs: vec![agent],
            },
        )
        .await?;
        tx.audit(&declaration_event).await?;
        Ok(Step::Done(document))
    }
}
