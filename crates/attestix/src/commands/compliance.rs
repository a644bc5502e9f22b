//! `attestix compliance profile create|update|show|list`, `attestix compliance
//! status|assess|declare`.

use serde_json::{json, Map, Value};

use super::{emit, idempotency_key, note_replay, text, Outcome, Session};
use crate::cli::{
    AssessmentResultArg, AssessmentTypeArg, ComplianceArgs, ComplianceCommand, ProfileCommand,
    ProfileTextArgs,
};

/// Runs a `compliance` subcommand.
pub async fn run(args: ComplianceArgs) -> anyhow::Result<Outcome> {
    let session = Session::new(&args.client)?;
    match args.command {
        ComplianceCommand::Profile(command) => return run_profile(&session, command).await,
        ComplianceCommand::Status { agent_id } => {
            let response = session
                .client
                .get(&["v1", "compliance", "profiles", &agent_id, "status"], &[])
                .await?;
            let status = response.json()?;
            let complete = status.get("workflow_complete").and_then(Value::as_bool) == Some(true);
            if session.json {
                emit(&response.text())?;
            } else {
                emit(&render_status(&status))?;
            }
            note_replay(&response);
            return Ok(if complete {
                Outcome::Success
            } else {
                Outcome::Negative
            });
        }
        ComplianceCommand::Assess {
            agent_id,
            assessment_type,
            assessor,
            result,
            findings,
            ce_marking_eligible,
            idempotency,
        } => {
            let mut body = json!({
                "agent_id": agent_id,
                "assessment_type": match assessment_type {
                    AssessmentTypeArg::SelfAssessment => "self",
                    AssessmentTypeArg::ThirdParty => "third_party",
                },
                "assessor_name": assessor,
                "result": match result {
                    AssessmentResultArg::Pass => "pass",
                    AssessmentResultArg::Conditional => "conditional",
                    AssessmentResultArg::Fail => "fail",
                },
                "ce_marking_eligible": ce_marking_eligible,
            });
            if let Some(findings) = findings {
                body["findings"] = json!(findings);
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(&["v1", "compliance", "assessments"], &body, &key)
                .await?;
            session.print(&response, |assessment| {
                format!(
                    "Recorded assessment {} of {}: {} ({}).",
                    text(assessment, "assessment_id"),
                    text(assessment, "agent_id"),
                    text(assessment, "result"),
                    text(assessment, "assessment_type"),
                )
            })?;
        }
        ComplianceCommand::Declare {
            agent_id,
            idempotency,
        } => {
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "compliance", "declarations"],
                    &json!({"agent_id": agent_id}),
                    &key,
                )
                .await?;
            session.print(&response, |declaration| {
                format!(
                    "Declaration {} of {} (a draft for the provider's review), credential {}.",
                    text(declaration, "declaration_id"),
                    text(declaration, "agent_id"),
                    text(declaration, "credential_id"),
                )
            })?;
        }
    }
    Ok(Outcome::Success)
}

/// Adds the given text options to `body`.
fn add_text(body: &mut Map<String, Value>, text: ProfileTextArgs) {
    for (field, value) in [
        ("intended_purpose", text.intended_purpose),
        ("transparency_obligations", text.transparency_obligations),
        ("human_oversight_measures", text.human_oversight_measures),
        ("provider_address", text.provider_address),
        ("authorised_representative", text.authorised_representative),
    ] {
        if let Some(value) = value {
            body.insert(field.into(), value.into());
        }
    }
}

/// The merge patch of `profile update`'s options.
fn update_body(
    provider_name: Option<String>,
    text: ProfileTextArgs,
    flags: [Option<bool>; 3],
) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(name) = provider_name {
        body.insert("provider_name".into(), name.into());
    }
    add_text(&mut body, text);
    let [risk, monitoring, incidents] = flags;
    for (object, flag, value) in [
        ("risk_management", "documented", risk),
        ("post_market_monitoring", "plan_documented", monitoring),
        ("incident_reporting", "process_documented", incidents),
    ] {
        if let Some(value) = value {
            body.insert(object.into(), json!({ flag: value }));
        }
    }
    body
}

async fn run_profile(session: &Session, command: ProfileCommand) -> anyhow::Result<Outcome> {
    match command {
        ProfileCommand::Create {
            agent_id,
            risk_category,
            provider_name,
            text: fields,
            annex_iii_category,
            annex_iii_exception,
            idempotency,
        } => {
            let mut body = Map::new();
            body.insert("agent_id".into(), agent_id.into());
            body.insert("risk_category".into(), risk_category.into());
            body.insert("provider_name".into(), provider_name.into());
            add_text(&mut body, fields);
            if let Some(point) = annex_iii_category {
                body.insert("annex_iii_category".into(), point.into());
            }
            if let Some(exception) = annex_iii_exception {
                body.insert("annex_iii_exception".into(), exception.into());
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .post(
                    &["v1", "compliance", "profiles"],
                    &Value::Object(body),
                    &key,
                )
                .await?;
            session.print(&response, render_profile)?;
        }
        ProfileCommand::Update {
            agent_id,
            provider_name,
            text: fields,
            risk_management_documented,
            post_market_monitoring_documented,
            incident_reporting_documented,
            idempotency,
        } => {
            let body = update_body(
                provider_name,
                fields,
                [
                    risk_management_documented,
                    post_market_monitoring_documented,
                    incident_reporting_documented,
                ],
            );
            if body.is_empty() {
                anyhow::bail!("nothing to change: give at least one option (see --help)");
            }
            let key = idempotency_key(&idempotency);
            let response = session
                .client
                .request(
                    reqwest::Method::PATCH,
                    &["v1", "compliance", "profiles", &agent_id],
                    &[],
                    Some(&Value::Object(body)),
                    Some(&key),
                )
                .await?;
            session.print(&response, render_profile)?;
        }
        ProfileCommand::Show { agent_id } => {
            let response = session
                .client
                .get(&["v1", "compliance", "profiles", &agent_id], &[])
                .await?;
            session.print(&response, render_profile)?;
        }
        ProfileCommand::List {
            risk_category,
            compliant_only,
            page,
        } => {
            let mut query = Vec::new();
            if let Some(risk) = risk_category {
                query.push(("risk_category", risk));
            }
            if compliant_only {
                query.push(("compliant_only", "true".to_owned()));
            }
            session
                .list(
                    &["v1", "compliance", "profiles"],
                    query,
                    &page,
                    "profiles",
                    &format!(
                        "{:<28} {:<18} {:<8} DECLARATION",
                        "AGENT", "PROFILE", "RISK"
                    ),
                    |profile| {
                        format!(
                            "{:<28} {:<18} {:<8} {}",
                            text(profile, "agent_id"),
                            text(profile, "profile_id"),
                            text(profile, "risk_category"),
                            profile["conformity"]["declaration_id"]
                                .as_str()
                                .unwrap_or("-"),
                        )
                    },
                )
                .await?;
        }
    }
    Ok(Outcome::Success)
}

/// A profile for a person.
fn render_profile(profile: &Value) -> String {
    let conformity = &profile["conformity"];
    format!(
        "Profile {} of {}: {} risk, provider {}; assessment {}, declaration {}.",
        text(profile, "profile_id"),
        text(profile, "agent_id"),
        text(profile, "risk_category"),
        profile["provider"]["name"].as_str().unwrap_or_default(),
        conformity["assessment_id"].as_str().unwrap_or("none"),
        conformity["declaration_id"].as_str().unwrap_or("none"),
    )
}

/// A checklist for a person.
fn render_status(status: &Value) -> String {
    let list = |key: &str| {
        status[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "{}: {}% of the recorded-evidence checklist ({} risk; not a legal conformity assessment)",
        text(status, "agent_id"),
        status["completion_pct"],
        text(status, "risk_category"),
    );
    out.push_str(&format!("\n  done: {}", list("completed")));
    let missing = list("missing");
    if !missing.is_empty() {
        out.push_str(&format!("\n  missing: {missing}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_sends_only_the_options_given_in_the_profiles_nesting() {
        let body = update_body(
            None,
            ProfileTextArgs {
                intended_purpose: Some("triage".into()),
                transparency_obligations: None,
                human_oversight_measures: None,
                provider_address: None,
                authorised_representative: None,
            },
            [Some(true), None, Some(false)],
        );
        assert_eq!(
            Value::Object(body),
            json!({"intended_purpose": "triage", "risk_management": {"documented": true},
                   "incident_reporting": {"process_documented": false}})
        );
    }

    #[test]
    fn a_status_lists_what_is_missing() {
        let text = render_status(&json!({
            "agent_id": "a", "risk_category": "minimal", "completion_pct": 33.3,
            "completed": ["compliance_profile_created"], "missing": ["model_lineage_recorded"]
        }));
        assert!(text.starts_with("a: 33.3% of the"), "{text}");
        assert!(text.ends_with("missing: model_lineage_recorded"), "{text}");
    }
}
