//! A2A agent cards (`/.well-known/agent.json`), generated and parsed as the
//! reference's `AgentCardService` does.
//!
//! ```
//! use attestix_core::agent_card::{generate, parse, Skill};
//!
//! let generated = generate("Bot", "https://bot.example/", "", &[Skill {
//!     id: "s1".into(), name: "search".into(), description: String::new(),
//! }], "1.0.0");
//! assert_eq!(generated["hosting_path"], "/.well-known/agent.json");
//! let parsed = parse(generated["agent_card"].as_object().unwrap()).unwrap();
//! assert_eq!(parsed["capabilities"], serde_json::json!(["search"]));
//! ```

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// One skill of a generated card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// Its identifier.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
}

/// The reference's answer to a generate request: `{agent_card, hosting_path,
/// instructions}`. The card's id is `attestix-` + the first 16 hex digits of
/// sha256(url). **Fix**: the instructions (and the endpoint) join the URL and the
/// path without doubling a trailing `/`.
pub fn generate(
    name: &str,
    url: &str,
    description: &str,
    skills: &[Skill],
    version: &str,
) -> Value {
    let digest: String = Sha256::digest(url.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = url.trim_end_matches('/');
    let skills: Vec<Value> = skills
        .iter()
        .map(|skill| json!({"id": skill.id, "name": skill.name, "description": skill.description}))
        .collect();
    json!({
        "agent_card": {
            "id": format!("attestix-{}", &digest[..16]),
            "name": name,
            "description": description,
            "url": url,
            "version": version,
            "capabilities": {
                "streaming": false,
                "pushNotifications": false,
                "stateTransitionHistory": false,
            },
            "skills": skills,
            "endpoints": [{"url": format!("{base}/tasks"), "protocol": "https", "method": "POST"}],
            "provider": {"organization": "Attestix"},
            "authentication": {"schemes": ["bearer"]},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
        },
        "hosting_path": "/.well-known/agent.json",
        "instructions": format!(
            "Host this JSON at {base}/.well-known/agent.json to make the agent discoverable via A2A protocol."
        ),
    })
}

/// Why a card cannot be parsed: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CardError {
    /// The offending field, e.g. `card.skills[2]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn card_error(field: impl Into<String>, message: impl Into<String>) -> CardError {
    CardError {
        field: field.into(),
        message: message.into(),
    }
}

/// The reference's normalised fields of `card`. Where the reference would fail or
/// read nonsense (skills that are not a list, `capabilities` that is not an object,
/// a skill that is neither an object nor a string), this is an error naming the
/// field.
pub fn parse(card: &Map<String, Value>) -> Result<Value, CardError> {
    let empty = Vec::new();
    let skills = match card.get("skills") {
        None => &empty,
        Some(Value::Array(skills)) => skills,
        Some(_) => return Err(card_error("card.skills", "must be a list")),
    };
    let mut capabilities = Vec::with_capacity(skills.len());
    for (index, skill) in skills.iter().enumerate() {
        match skill {
            Value::Object(skill) => capabilities.push(
                skill
                    .get("name")
                    .or_else(|| skill.get("id"))
                    .cloned()
                    .unwrap_or(json!("")),
            ),
            Value::String(_) => capabilities.push(skill.clone()),
            _ => {
                return Err(card_error(
                    format!("card.skills[{index}]"),
                    "must be an object or a string",
                ))
            }
        }
    }
    let schemes = match card.get("authentication") {
        None => json!([]),
        Some(Value::Object(auth)) => auth.get("schemes").cloned().unwrap_or(json!([])),
        Some(Value::Array(schemes)) => Value::Array(schemes.clone()),
        Some(_) => {
            return Err(card_error(
                "card.authentication",
                "must be an object or a list",
            ))
        }
    };
    let provider = match card.get("provider") {
        None => json!({}),
        Some(Value::String(organization)) => json!({"organization": organization}),
        Some(provider @ Value::Object(_)) => provider.clone(),
        Some(_) => return Err(card_error("card.provider", "must be an object or a string")),
    };
    let features = match card.get("capabilities") {
        None => Map::new(),
        Some(Value::Object(features)) => features.clone(),
        Some(_) => return Err(card_error("card.capabilities", "must be an object")),
    };
    let or = |name: &str, default: Value| card.get(name).cloned().unwrap_or(default);
    Ok(json!({
        "name": or("name", json!("Unknown Agent")),
        "description": or("description", json!("")),
        "url": or("url", json!("")),
        "version": or("version", json!("")),
        "capabilities": capabilities,
        "skills_count": skills.len(),
        "skills_raw": skills,
        "authentication_schemes": schemes,
        "provider": provider,
        "streaming": features.get("streaming").cloned().unwrap_or(json!(false)),
        "push_notifications": features.get("pushNotifications").cloned().unwrap_or(json!(false)),
    }))
}
