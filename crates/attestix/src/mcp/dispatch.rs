//! One dispatcher for every tool: arguments → the REST request of its table row →
//! the server's document, or a tool error a model can read.

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::table::{Arg, Kind, Method, Place, Shape, Tool, IDEMPOTENCY_KEY_ARG};
use crate::cli::parse_idempotency_key;
use crate::client::{ApiClient, ClientError};

/// The HTTP request a tool call comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path's segments, filled in (percent-encoded when sent).
    pub segments: Vec<String>,
    /// The query parameters.
    pub query: Vec<(&'static str, String)>,
    /// The JSON body, if the method takes one.
    pub body: Option<Value>,
    /// The Idempotency-Key, for a write.
    pub idempotency_key: Option<String>,
}

/// How a tool call came out: the text of the result and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The document (pretty JSON) or the error's text.
    pub text: String,
    /// Whether this is a tool error (`isError`).
    pub is_error: bool,
}

impl Outcome {
    fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: true,
        }
    }
}

/// Runs one tool call against the server.
pub async fn call(client: &ApiClient, tool: &Tool, args: &Map<String, Value>) -> Outcome {
    let request = match build(tool, args) {
        Ok(request) => request,
        Err(message) => return Outcome::error(message),
    };
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let query: Vec<(&str, String)> = request
        .query
        .iter()
        .map(|(name, value)| (*name, value.clone()))
        .collect();
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    };
    let key = request.idempotency_key.as_deref();
    match client
        .request(method, &segments, &query, request.body.as_ref(), key)
        .await
    {
        Ok(response) => match response.json() {
            // The reference's tools answer the document as indented JSON text.
            Ok(document) => Outcome {
                text: serde_json::to_string_pretty(&document).unwrap_or_else(|_| response.text()),
                is_error: false,
            },
            Err(error) => Outcome::error(error.to_string()),
        },
        Err(error) => Outcome::error(error_text(tool, &error, key)),
    }
}

/// The request a call makes, or the error text for arguments that cannot make one.
pub fn build(tool: &Tool, args: &Map<String, Value>) -> Result<Request, String> {
    let mut body = Map::new();
    let mut query = Vec::new();
    for arg in tool.args {
        let Some(value) = value_to_send(arg, args)? else {
            continue;
        };
        match arg.place {
            Place::Body(field) => {
                body.insert(field.to_owned(), value);
            }
            Place::Query(param) => query.push((param, query_text(&value))),
            Place::Path => {}
        }
    }
    if let Some(prepare) = tool.prepare {
        prepare(args, &mut body)?;
    }
    let segments = path_segments(tool, args)?;
    let idempotency_key = if tool.method.is_write() {
        Some(match args.get(IDEMPOTENCY_KEY_ARG) {
            None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
            Some(Value::String(key)) => {
                parse_idempotency_key(key).map_err(|why| format!("{IDEMPOTENCY_KEY_ARG}: {why}"))?
            }
            Some(other) => {
                return Err(format!(
                    "{IDEMPOTENCY_KEY_ARG}: expected a string, got {other}"
                ))
            }
        })
    } else {
        None
    };
    let body = match tool.method {
        Method::Get => None,
        // A revocation's body is optional (the reason); an empty one is left out.
        Method::Delete if body.is_empty() => None,
        _ => Some(Value::Object(body)),
    };
    Ok(Request {
        method: tool.method,
        segments,
        query,
        body,
        idempotency_key,
    })
}

/// An argument's value (given, or its default), checked against its type.
fn argument(arg: &Arg, args: &Map<String, Value>) -> Result<Value, String> {
    let given = args.get(arg.name).filter(|value| !value.is_null());
    let Some(value) = given.cloned().or_else(|| arg.default.value()) else {
        return Err(format!("missing required argument `{}`", arg.name));
    };
    match coerce(arg.kind, &value) {
        Some(value) => Ok(value),
        None => Err(format!(
            "{}: expected {}, got {value}",
            arg.name,
            match arg.kind {
                Kind::Str => "a string",
                Kind::Int => "an integer",
                Kind::Bool => "a boolean",
                Kind::Float => "a number",
            }
        )),
    }
}

/// The value as its kind, converted as the reference's (pydantic's lax) validation
/// does: `"10"` or `10.0` for an integer, `"0.5"` for a number, `"true"`/`1` for a
/// boolean; `None` when it is not one.
fn coerce(kind: Kind, value: &Value) -> Option<Value> {
    match (kind, value) {
        (Kind::Str, Value::String(_)) | (Kind::Bool, Value::Bool(_)) => Some(value.clone()),
        (Kind::Int, Value::Number(number)) => {
            if number.is_i64() || number.is_u64() {
                Some(value.clone())
            } else {
                let float = number.as_f64()?;
                // Integral and within i64 (2^63 is exactly representable as f64).
                (float.fract() == 0.0 && float.abs() < 9.223_372_036_854_776e18)
                    .then(|| Value::from(float as i64))
            }
        }
        (Kind::Int, Value::String(text)) => text.trim().parse::<i64>().ok().map(Value::from),
        (Kind::Float, Value::Number(_)) => Some(value.clone()),
        (Kind::Float, Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|float| float.is_finite())
            .map(Value::from),
        (Kind::Bool, Value::Number(number)) => match number.as_i64() {
            Some(0) => Some(Value::Bool(false)),
            Some(1) => Some(Value::Bool(true)),
            _ => None,
        },
        (Kind::Bool, Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Some(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "off" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

/// What is sent for an argument that goes in the body or query; `None` to leave it out.
fn value_to_send(arg: &Arg, args: &Map<String, Value>) -> Result<Option<Value>, String> {
    let value = argument(arg, args)?;
    if arg.place == Place::Path {
        return Ok(None);
    }
    Ok(match arg.shape {
        Shape::Plain => Some(value),
        Shape::OmitEmpty => (!is_empty(&value)).then_some(value),
        Shape::CommaList => {
            let text = value.as_str().unwrap_or_default();
            Some(Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_owned()))
                    .collect(),
            ))
        }
        Shape::Json => {
            let text = value.as_str().unwrap_or_default();
            if text.trim().is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str(text)
                        .map_err(|error| format!("Invalid JSON in {}: {error}", arg.name))?,
                )
            }
        }
    })
}

/// `""` and `0`: the values the reference turns into "not given".
fn is_empty(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A query parameter's text: strings as they are, other values as JSON (`true`, `50`).
fn query_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The path template filled in from the arguments.
fn path_segments(tool: &Tool, args: &Map<String, Value>) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    for segment in tool.path.split('/').filter(|segment| !segment.is_empty()) {
        let Some(names) = segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        else {
            segments.push(segment.to_owned());
            continue;
        };
        let mut filled = None;
        for name in names.split('|') {
            let arg = tool
                .args
                .iter()
                .find(|arg| arg.name == name)
                .ok_or_else(|| format!("internal: {} has no argument {name}", tool.name))?;
            let value = argument(arg, args)?;
            let text = query_text(&value);
            if !text.trim().is_empty() {
                filled = Some(text);
                break;
            }
        }
        match filled {
            Some(text) => segments.push(text),
            None => {
                return Err(format!(
                    "{} cannot be empty",
                    names.split('|').collect::<Vec<_>>().join(" or ")
                ))
            }
        }
    }
    Ok(segments)
}

/// A failed call in words for the model: the problem's title and detail, what
/// the server lacks, or how to retry safely.
fn error_text(tool: &Tool, error: &ClientError, key: Option<&str>) -> String {
    let retry = |text: String| match key {
        Some(key) => format!(
            "{text}\nThe server may or may not have done it. To retry safely (it will not be \
             done twice), call {} again with the same arguments and idempotency_key \"{key}\".",
            tool.name
        ),
        None => text,
    };
    match error {
        ClientError::Status {
            status, problem, ..
        } if is_unserved(*status, problem.as_deref()) => format!(
            "{} is not served by this Attestix server yet (it answered HTTP {}); \
             this tool works once the server has that endpoint.",
            tool.endpoint(),
            status.as_u16()
        ),
        ClientError::Status {
            status,
            problem: Some(problem),
            ..
        } => {
            let mut text = format!(
                "{} (HTTP {}): {}",
                if problem.title.is_empty() {
                    status.canonical_reason().unwrap_or("Error")
                } else {
                    problem.title.as_str()
                },
                status.as_u16(),
                problem.detail
            );
            // A validation detail already lists its fields; others are added.
            for field in &problem.errors {
                let line = format!("{}: {}", field.field, field.message);
                if !problem.detail.contains(&line) {
                    text.push_str(&format!("\n  - {line}"));
                }
            }
            if status.is_server_error()
                || *status == StatusCode::TOO_MANY_REQUESTS
                || problem.is_in_flight()
            {
                retry(text)
            } else {
                text
            }
        }
        ClientError::Status { .. } => error.summary(),
        ClientError::Interrupted { .. } => retry(error.summary()),
        other => other.to_string(),
    }
}

/// Whether an error answer means the server has no such endpoint: a 405, or the
/// 404 of its route fallback (`route … not found`), not a 404 of a resource.
fn is_unserved(status: StatusCode, problem: Option<&crate::client::ProblemDocument>) -> bool {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => true,
        StatusCode::NOT_FOUND => problem.is_none_or(|problem| problem.detail.starts_with("route ")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mcp::tools;

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn defaults_fill_the_body_and_lists_are_split() {
        let tool = tools::find("create_agent_identity").expect("a tool");
        let request = build(
            tool,
            &args(json!({"display_name": "bot", "capabilities": "read, write,,"})),
        )
        .expect("valid arguments");
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.segments, ["v1", "identities"]);
        assert_eq!(
            request.body,
            Some(json!({
                "display_name": "bot",
                "source_protocol": "manual",
                "capabilities": ["read", "write"],
                "expiry_days": 365,
            }))
        );
        assert!(request.idempotency_key.is_some());
    }

    #[test]
    fn a_given_idempotency_key_is_sent_and_checked() {
        let tool = tools::find("create_did_key").expect("a tool");
        let request = build(tool, &args(json!({"idempotency_key": "k-1"}))).expect("valid");
        assert_eq!(request.idempotency_key.as_deref(), Some("k-1"));
        let bad = build(tool, &args(json!({"idempotency_key": "has space"})));
        assert!(bad.expect_err("refused").starts_with("idempotency_key: "));
    }

    #[test]
    fn paths_queries_and_renamed_fields_follow_the_table() {
        let list = tools::find("list_credentials").expect("a tool");
        let request = build(list, &args(json!({"valid_only": true}))).expect("valid");
        assert_eq!(
            request.query,
            [
                ("valid_only", "true".to_owned()),
                ("limit", "50".to_owned())
            ]
        );
        assert_eq!(request.body, None);
        assert_eq!(request.idempotency_key, None);

        let issue = tools::find("issue_credential").expect("a tool");
        let request = build(
            issue,
            &args(json!({"agent_id": "attestix:1", "credential_type": "T",
                         "issuer_name": "I", "claims_json": "{\"a\": 1}"})),
        )
        .expect("valid");
        let body = request.body.expect("a body");
        assert_eq!(body["subject_id"], json!("attestix:1"));
        assert_eq!(body["claims"], json!({"a": 1}));

        let revoke = tools::find("revoke_credential").expect("a tool");
        let request = build(revoke, &args(json!({"credential_id": "urn:uuid:x"}))).expect("valid");
        assert_eq!(request.segments, ["v1", "credentials", "urn:uuid:x"]);
        assert_eq!(request.body, Some(json!({"reason": ""})));
    }

    #[test]
    fn bad_arguments_are_tool_errors() {
        let issue = tools::find("issue_credential").expect("a tool");
        let error = build(
            issue,
            &args(json!({"agent_id": "a", "credential_type": "T",
                         "issuer_name": "I", "claims_json": "{nope"})),
        )
        .expect_err("bad JSON");
        assert!(error.starts_with("Invalid JSON in claims_json"), "{error}");
        let create = tools::find("create_agent_identity").expect("a tool");
        let error = build(
            create,
            &args(json!({"display_name": "x", "expiry_days": "ten"})),
        )
        .expect_err("bad type");
        assert!(
            error.starts_with("expiry_days: expected an integer"),
            "{error}"
        );
        let error = build(create, &args(json!({}))).expect_err("missing");
        assert!(error.contains("display_name"), "{error}");
        let get = tools::find("get_identity").expect("a tool");
        let error = build(get, &args(json!({"agent_id": ""}))).expect_err("empty path");
        assert_eq!(error, "agent_id cannot be empty");
    }

    #[test]
    fn values_are_converted_as_pydantic_does() {
        assert_eq!(coerce(Kind::Int, &json!("10")), Some(json!(10)));
        assert_eq!(coerce(Kind::Int, &json!(10.0)), Some(json!(10)));
        assert_eq!(coerce(Kind::Int, &json!(10.5)), None);
        assert_eq!(coerce(Kind::Int, &json!(true)), None);
        assert_eq!(coerce(Kind::Float, &json!("0.5")), Some(json!(0.5)));
        assert_eq!(coerce(Kind::Float, &json!(1)), Some(json!(1)));
        assert_eq!(coerce(Kind::Bool, &json!("Yes")), Some(json!(true)));
        assert_eq!(coerce(Kind::Bool, &json!(0)), Some(json!(false)));
        assert_eq!(coerce(Kind::Bool, &json!("maybe")), None);
        assert_eq!(coerce(Kind::Str, &json!(5)), None);
    }

    #[test]
    fn only_route_misses_are_unserved() {
        let route = crate::client::ProblemDocument {
            detail: "route /v1/compliance/profiles not found".into(),
            ..Default::default()
        };
        let resource = crate::client::ProblemDocument {
            detail: "identity attestix:x not found".into(),
            ..Default::default()
        };
        assert!(is_unserved(StatusCode::NOT_FOUND, Some(&route)));
        assert!(!is_unserved(StatusCode::NOT_FOUND, Some(&resource)));
        assert!(is_unserved(StatusCode::METHOD_NOT_ALLOWED, Some(&resource)));
    }
}
