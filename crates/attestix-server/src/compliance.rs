//! EU AI Act compliance records, as the reference's `ComplianceService` (0.4.3) shapes
//! them: profiles with their obligations, the Article 43 rule on who may assess, the
//! recorded-evidence checklist behind `status`, and the Annex V declaration.
//!
//! Pure functions over JSON documents, plus [`evidence`], the provenance facts the
//! checklist reads, gathered with indexed lookups so that the status of an agent
//! with ten thousand provenance records costs what it costs with ten.

use attestix_core::SigningKey;
use serde_json::{json, Map, Value};

use crate::storage::records::{self, kind, Col, Stmt, Tx};
use crate::storage::StorageError;

/// The risk categories, sorted as the reference lists them in its messages.
pub const RISK_CATEGORIES: [&str; 4] = ["high", "limited", "minimal", "unacceptable"];
/// The assessment types, sorted.
pub const ASSESSMENT_TYPES: [&str; 2] = ["self", "third_party"];
/// The assessment results, sorted.
pub const ASSESSMENT_RESULTS: [&str; 3] = ["conditional", "fail", "pass"];
/// The Annex III carve-outs (within points 2 to 8) that still need a notified body,
/// sorted.
pub const ANNEX_III_EXCEPTIONS: [&str; 3] = [
    "biometric_identification_law_enforcement",
    "financial_fraud_detection",
    "political_campaign_organization",
];

/// The Annex III point's description (Regulation (EU) 2024/1689), for points 1 to 8.
pub fn annex_iii_description(point: i64) -> Option<&'static str> {
    Some(match point {
        1 => "Biometrics (remote identification, categorisation, emotion recognition)",
        2 => "Critical infrastructure (management and operation)",
        3 => "Education and vocational training (access, evaluation, assessment)",
        4 => "Employment, workers management, access to self-employment",
        5 => "Access to essential private and public services and benefits",
        6 => "Law enforcement",
        7 => "Migration, asylum and border control management",
        8 => "Administration of justice and democratic processes",
        _ => return None,
    })
}

/// The reference's message for a risk category it refuses, or `None` for one a
/// profile may have.
pub fn risk_category_error(risk_category: &str) -> Option<String> {
    if !RISK_CATEGORIES.contains(&risk_category) {
        return Some(format!(
            "Invalid risk_category '{risk_category}'. Must be one of: {}",
            RISK_CATEGORIES.join(", ")
        ));
    }
    (risk_category == "unacceptable").then(|| {
        "Unacceptable-risk AI systems are prohibited under the EU AI Act (Article 5). \
         Cannot create a compliance profile for prohibited systems."
            .to_owned()
    })
}

/// The reference's message for an Annex III point outside 1 to 8.
pub fn annex_iii_category_error(point: i64) -> Option<String> {
    annex_iii_description(point).is_none().then(|| {
        format!(
            "Invalid annex_iii_category '{point}'. Must be one of: [1, 2, 3, 4, 5, 6, 7, 8] \
             (see EU AI Act Annex III)."
        )
    })
}

/// The reference's message for an unknown Annex III exception flag.
pub fn annex_iii_exception_error(exception: &str) -> Option<String> {
    (!ANNEX_III_EXCEPTIONS.contains(&exception)).then(|| {
        format!(
            "Invalid annex_iii_exception '{exception}'. Must be one of: ['{}'].",
            ANNEX_III_EXCEPTIONS.join("', '")
        )
    })
}

/// The obligations a profile of `risk_category` lists.
pub fn required_obligations(risk_category: &str) -> Vec<&'static str> {
    let base = "registration_in_eu_database";
    match risk_category {
        "minimal" => vec![base, "voluntary_code_of_conduct"],
        "limited" => vec![
            base,
            "transparency_disclosure",
            "inform_users_of_ai_interaction",
        ],
        "high" => vec![
            base,
            "conformity_assessment",
            "quality_management_system",
            "risk_management_system",
            "data_governance",
            "technical_documentation",
            "record_keeping",
            "transparency_to_users",
            "human_oversight",
            "accuracy_robustness_cybersecurity",
            "post_market_monitoring",
            "serious_incident_reporting",
        ],
        "unacceptable" => vec!["PROHIBITED_SYSTEM"],
        _ => vec![base],
    }
}

/// Whether Article 43 requires a third-party (notified body, Annex VII) assessment
/// of a high-risk system with this Annex III point and exception, and why, in the
/// reference's words. Unknown or missing classifications fail safe: required.
pub fn third_party_required(point: Option<i64>, exception: Option<&str>) -> (bool, String) {
    if let Some(exception) = exception {
        if !ANNEX_III_EXCEPTIONS.contains(&exception) {
            return (
                true,
                "Unknown Annex III exception flag; defaulting to third-party assessment \
                 (Article 43, fail-safe)."
                    .into(),
            );
        }
        return (
            true,
            format!(
                "Annex III exception '{exception}' requires third-party conformity assessment \
                 per Article 43 (Annex VII procedure)."
            ),
        );
    }
    match point {
        None => (
            true,
            "Annex III category not specified for high-risk system; defaulting to third-party \
             assessment per Article 43 (fail-safe)."
                .into(),
        ),
        Some(1) => (
            true,
            "Annex III Point 1 (biometrics) requires third-party conformity assessment via \
             notified body per Article 43 (Annex VII procedure)."
                .into(),
        ),
        Some(point) => match annex_iii_description(point) {
            Some(description) => (
                false,
                format!(
                    "Annex III Point {point} ({description}) permits self-assessment via \
                     internal control per Article 43 (Annex VI procedure)."
                ),
            ),
            None => (
                true,
                format!(
                    "Invalid Annex III category {point}; defaulting to third-party assessment \
                     per Article 43 (fail-safe)."
                ),
            ),
        },
    }
}

/// The fields of a new profile, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    /// The agent (an identity of the caller's).
    pub agent_id: String,
    /// `minimal`, `limited` or `high`.
    pub risk_category: String,
    /// The provider's name.
    pub provider_name: String,
    /// What the system is for.
    pub intended_purpose: String,
    /// How transparency obligations are met.
    pub transparency_obligations: String,
    /// Human oversight measures (Article 14).
    pub human_oversight_measures: String,
    /// The provider's address.
    pub provider_address: String,
    /// The EU authorised representative.
    pub authorised_representative: String,
    /// The Annex III point, 1 to 8.
    pub annex_iii_category: Option<i64>,
    /// An Annex III carve-out.
    pub annex_iii_exception: Option<String>,
}

/// The unsigned profile `profile_id` of `new`, for the agent shown as `display_name`,
/// provided through the server `server_did`, at `now` (Python `isoformat()`), in the
/// reference's key order.
pub fn new_profile(
    new: &NewProfile,
    profile_id: &str,
    display_name: &str,
    server_did: &str,
    now: &str,
) -> Map<String, Value> {
    let profile = json!({
        "profile_id": profile_id,
        "agent_id": new.agent_id,
        "risk_category": new.risk_category,
        "annex_iii_category": new.annex_iii_category,
        "annex_iii_exception": new.annex_iii_exception,
        "provider": {
            "name": new.provider_name,
            "did": server_did,
            "address": new.provider_address,
            "authorised_representative": new.authorised_representative,
        },
        "ai_system": {
            "intended_purpose": new.intended_purpose,
            "display_name": display_name,
        },
        "transparency": {
            "obligations": new.transparency_obligations,
            "human_oversight_measures": new.human_oversight_measures,
        },
        "required_obligations": required_obligations(&new.risk_category),
        "conformity": {
            "assessment_completed": false,
            "assessment_id": null,
            "declaration_id": null,
            "ce_marking_eligible": false,
        },
        "created_at": now,
        "updated_at": now,
    });
    match profile {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// Sets `document`'s `signature`: the server's Ed25519 signature (base64url, padded)
/// over the canonical bytes of the document without it.
pub fn sign(document: &mut Map<String, Value>, signer: &SigningKey) -> Result<(), StorageError> {
    document.remove("signature");
    let bytes = attestix_core::canonical_bytes(&Value::Object(document.clone()))
        .map_err(StorageError::database)?;
    document.insert("signature".into(), signer.sign_base64url(&bytes).into());
    Ok(())
}

/// Whether `document`'s `signature` verifies with `key` over the rest of it.
pub fn signature_valid(document: &Value, key: &attestix_core::VerifyingKey) -> bool {
    let Some(signature) = document.get("signature").and_then(Value::as_str) else {
        return false;
    };
    attestix_core::canonical_bytes_without(document, &["signature"])
        .is_ok_and(|bytes| attestix_core::verify_base64url_signature(key, &bytes, signature))
}

/// One field of a JSON merge patch (RFC 7396): left alone, set to null, or set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Absent from the patch.
    #[default]
    Keep,
    /// `null`: removed (a text field becomes empty).
    Clear,
    /// A new value.
    Set(T),
}

impl<T> Patch<T> {
    /// Whether the patch leaves the field alone.
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }
}

/// The changes of `PATCH /v1/compliance/profiles/{agent_id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    /// `ai_system.intended_purpose`.
    pub intended_purpose: Patch<String>,
    /// `transparency.obligations`.
    pub transparency_obligations: Patch<String>,
    /// `transparency.human_oversight_measures`.
    pub human_oversight_measures: Patch<String>,
    /// `provider.name`.
    pub provider_name: Patch<String>,
    /// `provider.address`.
    pub provider_address: Patch<String>,
    /// `provider.authorised_representative`.
    pub authorised_representative: Patch<String>,
    /// `risk_management.documented` (Article 9).
    pub risk_management_documented: Patch<bool>,
    /// `post_market_monitoring.plan_documented` (Article 72).
    pub post_market_monitoring_plan_documented: Patch<bool>,
    /// `incident_reporting.process_documented` (Article 73).
    pub incident_reporting_process_documented: Patch<bool>,
}

fn set_text(profile: &mut Map<String, Value>, object: &str, key: &str, patch: &Patch<String>) {
    let value = match patch {
        Patch::Keep => return,
        Patch::Clear => String::new(),
        Patch::Set(text) => text.clone(),
    };
    if let Some(Value::Object(inner)) = profile.get_mut(object) {
        inner.insert(key.to_owned(), value.into());
    }
}

fn set_flag(profile: &mut Map<String, Value>, object: &str, key: &str, patch: &Patch<bool>) {
    match patch {
        Patch::Keep => {}
        Patch::Clear => {
            let emptied = match profile.get_mut(object) {
                Some(Value::Object(inner)) => {
                    inner.remove(key);
                    inner.is_empty()
                }
                _ => false,
            };
            if emptied {
                profile.remove(object);
            }
        }
        Patch::Set(flag) => {
            // A new documentation object goes before the signature's place at the end.
            let entry = profile
                .entry(object.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                inner.insert(key.to_owned(), Value::Bool(*flag));
            }
        }
    }
}

/// Applies `patch` to `profile` (unsigned) and stamps `updated_at` with `now`.
pub fn apply_patch(profile: &mut Map<String, Value>, patch: &ProfilePatch, now: &str) {
    set_text(
        profile,
        "ai_system",
        "intended_purpose",
        &patch.intended_purpose,
    );
    set_text(
        profile,
        "transparency",
        "obligations",
        &patch.transparency_obligations,
    );
    set_text(
        profile,
        "transparency",
        "human_oversight_measures",
        &patch.human_oversight_measures,
    );
    set_text(profile, "provider", "name", &patch.provider_name);
    set_text(profile, "provider", "address", &patch.provider_address);
    set_text(
        profile,
        "provider",
        "authorised_representative",
        &patch.authorised_representative,
    );
    set_flag(
        profile,
        "risk_management",
        "documented",
        &patch.risk_management_documented,
    );
    set_flag(
        profile,
        "post_market_monitoring",
        "plan_documented",
        &patch.post_market_monitoring_plan_documented,
    );
    set_flag(
        profile,
        "incident_reporting",
        "process_documented",
        &patch.incident_reporting_process_documented,
    );
    profile.insert("updated_at".into(), now.into());
}

/// The provenance facts the checklist reads about one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// A training data entry exists.
    pub training_data: bool,
    /// A training data entry records governance measures (Article 10).
    pub data_governance: bool,
    /// A model lineage entry exists.
    pub model_lineage: bool,
    /// A model lineage entry records evaluation metrics (Article 15).
    pub evaluation_metrics: bool,
    /// The agent's action log has an entry (Article 12).
    pub action_log: bool,
}

/// Python's truthiness of a JSON value.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Object(map)) => !map.is_empty(),
    }
}

/// The checklist facts a provenance entry establishes for its agent, by the names
/// [`record_evidence`] stores them under: the entry's type, and whether it records
/// governance measures (training data) or evaluation metrics (model lineage), by
/// Python's truthiness as the reference reads them.
pub fn facts_of_entry(entry: &Map<String, Value>) -> Vec<&'static str> {
    match entry.get("entry_type").and_then(Value::as_str) {
        Some("training_data") => {
            let mut facts = vec![fact::TRAINING_DATA];
            if truthy(entry.get("data_governance_measures")) {
                facts.push(fact::DATA_GOVERNANCE);
            }
            facts
        }
        Some("model_lineage") => {
            let mut facts = vec![fact::MODEL_LINEAGE];
            if truthy(entry.get("evaluation_metrics")) {
                facts.push(fact::EVALUATION_METRICS);
            }
            facts
        }
        _ => Vec::new(),
    }
}

/// The names of the checklist facts kept per agent.
pub mod fact {
    /// A training data entry exists.
    pub const TRAINING_DATA: &str = "training_data";
    /// A training data entry records governance measures.
    pub const DATA_GOVERNANCE: &str = "data_governance";
    /// A model lineage entry exists.
    pub const MODEL_LINEAGE: &str = "model_lineage";
    /// A model lineage entry records evaluation metrics.
    pub const EVALUATION_METRICS: &str = "evaluation_metrics";
}

/// Records, in the caller's transaction, that `agent_id` has each of `facts`
/// (established by provenance entry `entry_id`). One record per (agent, fact),
/// inserted only if absent: concurrent writers need no read-modify-write, and the
/// checklist reads at most four rows however many entries the agent has.
pub async fn record_evidence(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
    facts: &[&'static str],
    (entry_id, created_at_ms): (&str, i64),
) -> Result<(), StorageError> {
    for fact in facts {
        let record = records::NewRecord {
            scope: scope.to_owned(),
            kind: kind::COMPLIANCE_EVIDENCE,
            id: format!("{agent_id}:{fact}"),
            subject: Some(agent_id.to_owned()),
            label: Some((*fact).to_owned()),
            created_at_ms,
            document: serde_json::json!({"fact": fact, "entry_id": entry_id}).to_string(),
            refs: vec![agent_id.to_owned()],
        };
        match records::insert(tx, &record).await {
            Ok(_) | Err(StorageError::Duplicate) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The provenance facts about `agent_id` in `scope`: the facts its provenance
/// writes recorded, and whether its action log has an entry. Two indexed reads,
/// whatever the size of the agent's logs.
pub async fn evidence(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
) -> Result<Evidence, StorageError> {
    let rows = tx
        .fetch(
            Stmt::new("SELECT label FROM records WHERE scope = ")
                .bind(scope)
                .sql(" AND kind = ")
                .bind(kind::COMPLIANCE_EVIDENCE)
                .sql(" AND subject = ")
                .bind(agent_id),
            &[Col::Text],
        )
        .await?;
    let mut known = Vec::with_capacity(rows.len());
    for row in rows {
        known.push(row.text(0)?);
    }
    let has = |fact: &str| known.iter().any(|name| name == fact);
    Ok(Evidence {
        training_data: has(fact::TRAINING_DATA),
        data_governance: has(fact::DATA_GOVERNANCE),
        model_lineage: has(fact::MODEL_LINEAGE),
        evaluation_metrics: has(fact::EVALUATION_METRICS),
        action_log: records::exists(tx, scope, kind::ACTION, agent_id).await?,
    })
}

/// `x` rounded to one decimal as Python's `round(x, 1)` does: on the exact binary
/// value, ties to even (so 81.25 becomes 81.2).
pub fn python_round1(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // 60 fractional digits hold the exact expansion of any f64 below 2^53 with
    // room to spare, so the digits read here are the value's own.
    let exact = format!("{:.60}", x.abs());
    let (whole, fraction) = exact.split_once('.').unwrap_or((&exact, ""));
    let digits = fraction.as_bytes();
    let first = digits.first().map_or(0, |d| d - b'0');
    let next = digits.get(1).map_or(0, |d| d - b'0');
    let rest_nonzero = digits.iter().skip(2).any(|d| *d != b'0');
    let mut tenths: u64 = whole.parse::<u64>().unwrap_or(0) * 10 + u64::from(first);
    let round_up = next > 5 || (next == 5 && (rest_nonzero || tenths % 2 == 1));
    if round_up {
        tenths += 1;
    }
    let rounded = tenths as f64 / 10.0;
    if x < 0.0 {
        -rounded
    } else {
        rounded
    }
}

fn flag(profile: &Value, object: &str, key: &str) -> bool {
    truthy(profile.get(object).and_then(|inner| inner.get(key)))
}

/// The recorded-evidence checklist of `profile` with `evidence`, in the reference's
/// shape and order (`completed`, `missing`, `completion_pct` and the disclaimers).
pub fn status(profile: &Value, evidence: &Evidence) -> Value {
    let risk = profile["risk_category"].as_str().unwrap_or_default();
    let high = risk == "high";
    let mut completed: Vec<&str> = vec!["compliance_profile_created"];
    let mut missing: Vec<&str> = Vec::new();
    let mut check = |name: &'static str, met: bool| {
        if met {
            completed.push(name);
        } else {
            missing.push(name);
        }
    };
    let purpose = flag(profile, "ai_system", "intended_purpose");
    let obligations = flag(profile, "transparency", "obligations");
    check("intended_purpose_documented", purpose);
    if risk == "limited" || high {
        check("transparency_obligations_declared", obligations);
    }
    if high {
        check(
            "human_oversight_measures",
            flag(profile, "transparency", "human_oversight_measures"),
        );
    }
    check(
        "conformity_assessment_passed",
        flag(profile, "conformity", "assessment_completed"),
    );
    check(
        "declaration_of_conformity_issued",
        flag(profile, "conformity", "declaration_id"),
    );
    check("training_data_provenance", evidence.training_data);
    check("model_lineage_recorded", evidence.model_lineage);
    if high {
        check(
            "risk_management_system",
            flag(profile, "risk_management", "documented"),
        );
        check("data_governance", evidence.data_governance);
        check("technical_documentation", purpose && evidence.model_lineage);
        check("record_keeping", evidence.action_log);
        check("transparency_to_users", obligations);
        check(
            "accuracy_robustness_cybersecurity",
            evidence.evaluation_metrics,
        );
        check(
            "post_market_monitoring",
            flag(profile, "post_market_monitoring", "plan_documented"),
        );
        check(
            "serious_incident_reporting",
            flag(profile, "incident_reporting", "process_documented"),
        );
    }
    let complete = missing.is_empty();
    let total = completed.len() + missing.len();
    let pct = python_round1(completed.len() as f64 / total as f64 * 100.0);
    json!({
        "agent_id": profile["agent_id"],
        "risk_category": risk,
        "compliant": complete,
        "workflow_complete": complete,
        "assessment_scope": "recorded_evidence_checklist",
        "legal_conformity": "not_assessed",
        "deprecated_fields": {
            "compliant": "Deprecated alias for workflow_complete; not a legal conformity determination"
        },
        "completed": completed,
        "missing": missing,
        "completion_pct": pct,
    })
}

/// The fields an Annex V declaration needs that `profile` lacks, by the names the
/// reference reports.
pub fn missing_annex_v_fields(profile: &Value) -> Vec<&'static str> {
    let blank = |object: &str, key: &str| {
        profile
            .get(object)
            .and_then(|inner| inner.get(key))
            .and_then(Value::as_str)
            .is_none_or(|text| text.trim().is_empty())
    };
    let mut missing = Vec::new();
    if blank("ai_system", "intended_purpose") {
        missing.push("intended_purpose");
    }
    if blank("transparency", "obligations") {
        missing.push("transparency_obligations");
    }
    if profile["risk_category"] == "high" && blank("transparency", "human_oversight_measures") {
        missing.push("human_oversight_measures");
    }
    missing
}

/// The unsigned Annex V declaration `declaration_id` of `profile`, with the recorded
/// `assessment` (if found), issued by `server_did` at `now`, in the reference's order.
pub fn declaration(
    profile: &Value,
    assessment: Option<&Value>,
    declaration_id: &str,
    server_did: &str,
    now: &str,
) -> Map<String, Value> {
    let text = |object: &str, key: &str| {
        profile
            .get(object)
            .and_then(|inner| inner.get(key))
            .cloned()
            .unwrap_or_else(|| Value::String(String::new()))
    };
    let assessed = |key: &str| {
        assessment
            .and_then(|record| record.get(key))
            .cloned()
            .unwrap_or_else(|| Value::String(String::new()))
    };
    let provider_name = profile["provider"]["name"].as_str().unwrap_or_default();
    let declaration = json!({
        "declaration_id": declaration_id,
        "agent_id": profile["agent_id"],
        "regulation_reference": "Regulation (EU) 2024/1689 (EU AI Act) Annex V",
        "document_status": "draft_for_provider_review",
        "assessment_scope": "recorded_evidence_checklist",
        "legal_conformity": "not_assessed",
        "provider_assertion_verified": false,
        "ce_marking_eligibility_source": "provider_recorded_unverified",
        "reference_standards": [
            "ISO/IEC 42001:2023 (AI Management System)",
            "ISO/IEC 23894:2023 (AI Risk Management)",
        ],
        "annex_v_fields": {
            "1_provider_name": profile["provider"]["name"],
            "1a_provider_address": text("provider", "address"),
            "2_authorised_representative": text("provider", "authorised_representative"),
            "3_ai_system_name": profile["ai_system"]["display_name"],
            "3a_ai_system_id": profile["agent_id"],
            "3b_ai_system_version": "0.1.0",
            "4_intended_purpose": profile["ai_system"]["intended_purpose"],
            "5_risk_category": profile["risk_category"],
            "5a_annex_iii_category": profile.get("annex_iii_category").cloned().unwrap_or(Value::Null),
            "5b_annex_iii_exception": profile.get("annex_iii_exception").cloned().unwrap_or(Value::Null),
            "6_conformity_assessment_id": profile["conformity"]["assessment_id"],
            "6a_assessment_type": assessed("assessment_type"),
            "6b_assessor_name": assessed("assessor_name"),
            "7_harmonized_standards": [],
            "8_transparency_obligations": profile["transparency"]["obligations"],
            "9_human_oversight": profile["transparency"]["human_oversight_measures"],
            "10_ce_marking_eligible": profile["conformity"]["ce_marking_eligible"],
            "11_sole_responsibility": format!(
                "Draft for review by {provider_name}: the provider would declare under sole \
                 responsibility that the AI system identified above is in conformity with the \
                 provisions of Regulation (EU) 2024/1689."
            ),
            "12_declaration_date": now,
            "12a_signatory_did": profile["provider"]["did"],
        },
        "issued_at": now,
        "issuer_did": server_did,
    });
    match declaration {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// The claims of the `EUAIActComplianceCredential` issued with a declaration.
pub fn credential_claims(profile: &Value, declaration_id: &str, workflow_complete: bool) -> Value {
    json!({
        "declaration_id": declaration_id,
        "risk_category": profile["risk_category"],
        "conformity_assessment_id": profile["conformity"]["assessment_id"],
        "ce_marking_eligible": profile["conformity"]["ce_marking_eligible"],
        "compliance_claims_version": 2,
        "declaration_generated": true,
        "document_status": "draft_for_provider_review",
        "workflow_complete": workflow_complete,
        "assessment_scope": "recorded_evidence_checklist",
        "legal_conformity": "not_assessed",
        "ce_marking_eligibility_source": "provider_recorded_unverified",
        "eu_ai_act_compliant": null,
        "deprecated_fields": {
            "eu_ai_act_compliant": "Deprecated: legal conformity is not assessed; use legal_conformity"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_follows_python_on_the_binary_value() {
        assert_eq!(python_round1(81.25), 81.2);
        assert_eq!(python_round1(13.0 / 16.0 * 100.0), 81.2);
        assert_eq!(python_round1(2.0 / 3.0 * 100.0), 66.7);
        assert_eq!(python_round1(0.35 * 100.0), 35.0);
        assert_eq!(python_round1(100.0), 100.0);
        assert_eq!(python_round1(0.05), 0.1);
        assert_eq!(python_round1(0.15), 0.1);
        assert_eq!(python_round1(0.25), 0.2);
        assert_eq!(python_round1(0.75), 0.8);
    }

    #[test]
    fn article_43_lets_points_2_to_8_self_assess_unless_an_exception_applies() {
        assert!(third_party_required(None, None).0);
        assert!(third_party_required(Some(1), None).0);
        assert!(!third_party_required(Some(4), None).0);
        assert!(third_party_required(Some(5), Some("financial_fraud_detection")).0);
        assert!(third_party_required(Some(9), None).0);
        assert_eq!(
            third_party_required(Some(2), None).1,
            "Annex III Point 2 (Critical infrastructure (management and operation)) permits \
             self-assessment via internal control per Article 43 (Annex VI procedure)."
        );
    }

    #[test]
    fn a_high_risk_profile_starts_with_most_of_the_checklist_missing() {
        let new = NewProfile {
            agent_id: "attestix:1".into(),
            risk_category: "high".into(),
            provider_name: "Acme".into(),
            intended_purpose: "triage".into(),
            transparency_obligations: String::new(),
            human_oversight_measures: String::new(),
            provider_address: String::new(),
            authorised_representative: String::new(),
            annex_iii_category: Some(4),
            annex_iii_exception: None,
        };
        let profile = Value::Object(new_profile(&new, "comp:1", "Bot", "did:key:z", "now"));
        let status = status(&profile, &Evidence::default());
        assert_eq!(
            status["completed"],
            json!(["compliance_profile_created", "intended_purpose_documented"])
        );
        assert_eq!(status["missing"].as_array().unwrap().len(), 14);
        assert_eq!(status["completion_pct"], 12.5);
        assert_eq!(status["workflow_complete"], false);
    }
}
