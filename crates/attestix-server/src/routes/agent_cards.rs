//! `/v1/agent-cards`: A2A agent cards generated, parsed and discovered (the last
//! through the outbound fetcher).

use std::sync::Arc;
use std::time::Duration;

use attestix_core::agent_card::{generate, parse, Skill};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{no_errors, refuse_nul, ApiJson, JsonText};
use crate::error::{ApiError, FieldError};
use crate::fetch::FetchError;
use crate::state::AppState;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 500;
/// The longest URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
/// The most skills.
pub const MAX_SKILLS: usize = 256;
/// The longest skill id or name, in characters.
pub const MAX_SKILL_FIELD_CHARS: usize = 256;
/// The longest version, in characters.
pub const MAX_VERSION_CHARS: usize = 64;
/// The largest card discovery reads, in bytes.
pub const AGENT_CARD_MAX_BYTES: usize = 1024 * 1024;
/// How long discovery may take.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One skill of `POST /v1/agent-cards/generate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SkillDefinition {
    /// A unique identifier, 1 to 256 characters.
    pub id: String,
    /// A name, 1 to 256 characters.
    pub name: String,
    /// What it does, at most 5000 characters.
    #[serde(default)]
    pub description: String,
}

/// The body of `POST /v1/agent-cards/generate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateAgentCardRequest {
    /// The agent's name, 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub name: String,
    /// Its absolute http(s) base URL, at most 2048 characters.
    #[schema(max_length = 2048, example = "https://agent.example")]
    pub url: String,
    /// What it does, at most 5000 characters.
    #[serde(default)]
    pub description: String,
    /// Its skills, at most 256.
    #[serde(default)]
    #[schema(max_items = 256)]
    pub skills: Option<Vec<SkillDefinition>>,
    /// Its version (default `1.0.0`), 1 to 64 characters.
    #[serde(default)]
    pub version: Option<String>,
}

/// The body of `POST /v1/agent-cards/parse`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ParseAgentCardRequest {
    /// The card.
    #[schema(value_type = Object)]
    pub card: serde_json::Map<String, serde_json::Value>,
}

/// The body of `POST /v1/agent-cards/discover`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DiscoverAgentRequest {
    /// The agent's https base URL, at most 2048 characters.
    #[schema(example = "https://agent.example")]
    pub base_url: String,
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
    let chars = value.chars().count();
    if chars < min || chars > max {
        errors.push(FieldError {
            field: field.to_owned(),
            message: format!("must be {min} to {max} characters (got {chars})"),
        });
    }
    refuse_nul(errors, field, value);
}

/// An absolute URL with one of `schemes` and a host.
fn check_url(errors: &mut Vec<FieldError>, field: &str, value: &str, schemes: &[&str]) {
    check_text(errors, field, value, 1, MAX_URL_CHARS);
    match url::Url::parse(value) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host_str().is_some() => {}
        _ => errors.push(FieldError {
            field: field.to_owned(),
            message: format!("must be an absolute {} URL", schemes.join(" or ")),
        }),
    }
}

/// Generate an A2A agent card to host at `/.well-known/agent.json`.
#[utoipa::path(
    post,
    path = "/v1/agent-cards/generate",
    tag = "agent-cards",
    request_body = GenerateAgentCardRequest,
    responses(
        (status = 201, description = "`{agent_card, hosting_path, instructions}`", body = Object, content_type = "application/json"),
        (status = 422, description = "A field breaks its rule", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn generate_agent_card(
    ApiJson(body): ApiJson<GenerateAgentCardRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_text(&mut errors, "name", &body.name, 1, MAX_NAME_CHARS);
    check_url(&mut errors, "url", &body.url, &["http", "https"]);
    check_text(
        &mut errors,
        "description",
        &body.description,
        0,
        MAX_DESCRIPTION_CHARS,
    );
    let version = body.version.unwrap_or_else(|| "1.0.0".to_owned());
    check_text(&mut errors, "version", &version, 1, MAX_VERSION_CHARS);
    let skills = body.skills.unwrap_or_default();
    if skills.len() > MAX_SKILLS {
        errors.push(FieldError {
            field: "skills".into(),
            message: format!("at most {MAX_SKILLS} skills (got {})", skills.len()),
        });
    } else {
        for (index, skill) in skills.iter().enumerate() {
            let at = |name: &str| format!("skills[{index}].{name}");
            check_text(&mut errors, &at("id"), &skill.id, 1, MAX_SKILL_FIELD_CHARS);
            check_text(
                &mut errors,
                &at("name"),
                &skill.name,
                1,
                MAX_SKILL_FIELD_CHARS,
            );
            check_text(
                &mut errors,
                &at("description"),
                &skill.description,
                0,
                MAX_DESCRIPTION_CHARS,
            );
        }
    }
    no_errors(errors)?;
    let skills: Vec<Skill> = skills
        .into_iter()
        .map(|skill| Skill {
            id: skill.id,
            name: skill.name,
            description: skill.description,
        })
        .collect();
    let answer = generate(&body.name, &body.url, &body.description, &skills, &version);
    let text = serde_json::to_string(&answer).map_err(ApiError::internal)?;
    Ok(JsonText::new(StatusCode::CREATED, text))
}

/// Parse an A2A agent card into the reference's normalised fields.
#[utoipa::path(
    post,
    path = "/v1/agent-cards/parse",
    tag = "agent-cards",
    request_body = ParseAgentCardRequest,
    responses(
        (status = 200, description = "The normalised fields", body = Object, content_type = "application/json"),
        (status = 422, description = "The card is malformed (the problem names the field)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn parse_agent_card(
    ApiJson(body): ApiJson<ParseAgentCardRequest>,
) -> Result<JsonText, ApiError> {
    let parsed =
        parse(&body.card).map_err(|error| ApiError::invalid(error.field, error.message))?;
    JsonText::ok(&parsed)
}

/// Discover an agent: fetch `<base_url>/.well-known/agent.json` (or, where that is
/// 404, the current A2A path `/.well-known/agent-card.json`) through the outbound
/// fetcher, and parse it.
#[utoipa::path(
    post,
    path = "/v1/agent-cards/discover",
    tag = "agent-cards",
    request_body = DiscoverAgentRequest,
    responses(
        (status = 200, description = "`{source_url, agent_card, parsed}`", body = Object, content_type = "application/json"),
        (status = 422, description = "Not an https URL, or a blocked host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The host failed, or served no parseable card", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The host did not answer in time", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn discover_agent(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<DiscoverAgentRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    check_url(&mut errors, "base_url", &body.base_url, &["https"]);
    no_errors(errors)?;
    let base = body.base_url.trim_end_matches('/');
    let upstream = |error: FetchError, url: &str| {
        if error.is_refusal() {
            ApiError::invalid("base_url", error.to_string())
        } else if error.is_timeout() {
            ApiError::GatewayTimeout(format!("discovering {url}: {error}"))
        } else {
            ApiError::BadGateway(format!("discovering {url}: {error}"))
        }
    };
    let mut source_url = format!("{base}/.well-known/agent.json");
    let fetched = match state
        .fetcher
        .get_json(&source_url, AGENT_CARD_MAX_BYTES, DISCOVERY_TIMEOUT)
        .await
    {
        Err(FetchError::Status(404)) => {
            source_url = format!("{base}/.well-known/agent-card.json");
            state
                .fetcher
                .get_json(&source_url, AGENT_CARD_MAX_BYTES, DISCOVERY_TIMEOUT)
                .await
        }
        other => other,
    };
    let card = fetched.map_err(|error| upstream(error, &source_url))?;
    let serde_json::Value::Object(card_object) = &card else {
        return Err(ApiError::BadGateway(format!(
            "the card at {source_url} is not a JSON object"
        )));
    };
    // **Fix**: the reference answers 200 with an error inside.
    let parsed = parse(card_object).map_err(|error| {
        ApiError::BadGateway(format!("the card at {source_url} does not parse: {error}"))
    })?;
    JsonText::ok(&serde_json::json!({
        "source_url": source_url,
        "agent_card": card,
        "parsed": parsed,
    }))
}
