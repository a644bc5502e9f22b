//! Reputation: interactions and the recency-weighted trust score, as the reference's
//! `ReputationService` computes them (30-day half-life, Python's `round(x, 4)`).
//!
//! Interactions are records of kind [`kind::INTERACTION`] (subject: the agent, label:
//! the category); the score is computed from them when asked, because it decays with
//! the time of asking.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::AuditDraft;
use crate::storage::records::{self, kind, NewRecord, Stmt, Tx};
use crate::storage::StorageError;

/// λ = ln 2 / (30 days in seconds): a weight halves every 30 days.
pub fn decay_lambda() -> f64 {
    std::f64::consts::LN_2 / (30.0 * 86_400.0)
}

/// The outcomes, in the reference's order, with their weights.
pub const OUTCOMES: [(&str, f64); 4] = [
    ("success", 1.0),
    ("partial", 0.5),
    ("failure", 0.0),
    ("timeout", 0.2),
];

/// The weight of `outcome` (0 for an unknown one, as the reference's default).
pub fn outcome_weight(outcome: &str) -> f64 {
    OUTCOMES
        .iter()
        .find(|(name, _)| *name == outcome)
        .map_or(0.0, |(_, weight)| *weight)
}

/// One recorded interaction, its keys in the reference's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interaction {
    /// The agent being evaluated.
    pub agent_id: String,
    /// The other party.
    pub counterparty_id: String,
    /// `success`, `failure`, `partial` or `timeout`.
    pub outcome: String,
    /// The category (`general` by default).
    pub category: String,
    /// Free text.
    pub details: String,
    /// When, as Python's `isoformat()`.
    pub timestamp: String,
    /// The same instant, whole unix seconds (what the score's ages use).
    pub epoch: i64,
}

/// The recency-weighted mean of the outcome weights of `interactions` at `now`
/// (unix seconds, fractional as Python's `time.time()`): each weighs
/// `exp(-λ · max(now - epoch, 0))`. 0 without interactions.
pub fn score<'a>(interactions: impl IntoIterator<Item = &'a Interaction>, now: f64) -> f64 {
    let lambda = decay_lambda();
    let (mut weighted, mut total) = (0.0_f64, 0.0_f64);
    for interaction in interactions {
        let age = (now - interaction.epoch as f64).max(0.0);
        let decay = (-lambda * age).exp();
        weighted += outcome_weight(&interaction.outcome) * decay;
        total += decay;
    }
    if total == 0.0 {
        0.0
    } else {
        weighted / total
    }
}

/// Python's `round(x, 4)`: the decimal nearest to the binary value of `x` with four
/// places (ties, which only exactly representable halves are, to even), read back as
/// the nearest double.
pub fn round4(x: f64) -> f64 {
    // Rust's fixed-precision formatting rounds the exact binary value, ties to even,
    // as CPython's `round` does through its correctly rounded dtoa.
    format!("{x:.4}").parse().unwrap_or(x)
}

/// The score summary returned after an interaction is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScoreSummary {
    /// The score, rounded to 4 places.
    pub trust_score: f64,
    /// When it was computed (`isoformat()`).
    pub last_updated: String,
    /// How many interactions the agent has.
    pub total_interactions: u64,
}

/// The answer of `POST /v1/reputation/interactions`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recorded {
    /// Always true.
    pub recorded: bool,
    /// The interaction as stored.
    pub interaction: Interaction,
    /// The agent's score after it.
    pub updated_score: ScoreSummary,
}

/// Every interaction of `agent_id` in `scope`, oldest first.
pub async fn interactions_of(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
) -> Result<Vec<Interaction>, StorageError> {
    parse_all(records::all(tx, scope, kind::INTERACTION, Some(agent_id)).await?)
}

/// Every interaction in `scope`, oldest first.
pub async fn all_interactions(
    tx: &mut dyn Tx,
    scope: &str,
) -> Result<Vec<Interaction>, StorageError> {
    parse_all(records::all(tx, scope, kind::INTERACTION, None).await?)
}

fn parse_all(documents: Vec<String>) -> Result<Vec<Interaction>, StorageError> {
    documents
        .iter()
        .map(|document| serde_json::from_str(document).map_err(StorageError::database))
        .collect()
}

/// Stores `interaction` in `scope`, appends its audit event, recomputes the agent's
/// score at `now` and writes it into the agent's identity (when `scope` has one, with
/// an `identity.update` event), all in the caller's transaction.
pub async fn record(
    tx: &mut dyn Tx,
    scope: &str,
    interaction: &Interaction,
    event: &AuditDraft,
    identity_event: impl FnOnce(f64) -> Result<AuditDraft, StorageError> + Send,
    now: f64,
) -> Result<ScoreSummary, StorageError> {
    let document = serde_json::to_string(interaction).map_err(StorageError::database)?;
    records::insert(
        tx,
        &NewRecord {
            scope: scope.to_owned(),
            kind: kind::INTERACTION,
            id: format!("rep:{}", uuid::Uuid::new_v4().simple()),
            subject: Some(interaction.agent_id.clone()),
            label: Some(interaction.category.clone()),
            created_at_ms: interaction.epoch * 1000,
            document,
            refs: vec![
                interaction.agent_id.clone(),
                interaction.counterparty_id.clone(),
            ],
        },
    )
    .await?;
    tx.audit(event).await?;
    let history = interactions_of(tx, scope, &interaction.agent_id).await?;
    let trust_score = round4(score(&history, now));
    update_identity_score(
        tx,
        scope,
        &interaction.agent_id,
        trust_score,
        identity_event,
    )
    .await?;
    Ok(ScoreSummary {
        trust_score,
        last_updated: interaction.timestamp.clone(),
        total_interactions: history.len() as u64,
    })
}

/// Writes `score` as the `reputation_score` of `scope`'s identity `agent_id`, if there
/// is one (a field outside the identity's signature, so the signature still holds).
async fn update_identity_score(
    tx: &mut dyn Tx,
    scope: &str,
    agent_id: &str,
    score: f64,
    identity_event: impl FnOnce(f64) -> Result<AuditDraft, StorageError> + Send,
) -> Result<(), StorageError> {
    let Some(document) = records::identity_document(tx, scope, agent_id).await? else {
        return Ok(());
    };
    let mut identity: serde_json::Map<String, Value> =
        serde_json::from_str(&document).map_err(StorageError::database)?;
    identity.insert("reputation_score".into(), Value::from(score));
    let document = serde_json::to_string(&identity).map_err(StorageError::database)?;
    tx.execute(
        Stmt::new("UPDATE identities SET document = ")
            .bind(document)
            .sql(" WHERE agent_id = ")
            .bind(agent_id)
            .sql(" AND owner = ")
            .bind(scope),
    )
    .await?;
    tx.audit(&identity_event(score)?).await?;
    Ok(())
}

/// The counts of one category of `GET /v1/reputation/{agent_id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CategoryCounts {
    /// Successes.
    pub success: u64,
    /// Failures.
    pub failure: u64,
    /// Partial successes.
    pub partial: u64,
    /// Timeouts.
    pub timeout: u64,
    /// All of them.
    pub total: u64,
}

/// `GET /v1/reputation/{agent_id}` as the reference's `get_reputation` answers.
pub fn breakdown(agent_id: &str, history: &[Interaction], now: f64) -> Value {
    let Some(last) = history.last() else {
        return serde_json::json!({
            "agent_id": agent_id,
            "trust_score": null,
            "total_interactions": 0,
            "message": "No interactions recorded for this agent.",
        });
    };
    // Categories in order of first appearance, as the reference's dict keeps them.
    let mut categories: Vec<(String, CategoryCounts)> = Vec::new();
    for interaction in history {
        let index = match categories
            .iter()
            .position(|(name, _)| *name == interaction.category)
        {
            Some(index) => index,
            None => {
                categories.push((interaction.category.clone(), CategoryCounts::default()));
                categories.len() - 1
            }
        };
        let counts = &mut categories[index].1;
        match interaction.outcome.as_str() {
            "success" => counts.success += 1,
            "failure" => counts.failure += 1,
            "partial" => counts.partial += 1,
            _ => counts.timeout += 1,
        }
        counts.total += 1;
    }
    let mut breakdown = serde_json::Map::new();
    for (name, counts) in categories {
        breakdown.insert(name, serde_json::to_value(counts).unwrap_or(Value::Null));
    }
    serde_json::json!({
        "agent_id": agent_id,
        "trust_score": round4(score(history, now)),
        "total_interactions": history.len(),
        "category_breakdown": breakdown,
        "last_interaction": last.timestamp,
    })
}

/// One agent of `GET /v1/reputation`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ranked {
    /// The agent.
    pub agent_id: String,
    /// Its score, rounded to 4 places.
    pub trust_score: f64,
    /// How many interactions counted (of the category, when one was asked for).
    pub interaction_count: u64,
}

/// Filters of `GET /v1/reputation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Lowest score (unrounded, inclusive).
    pub min_score: f64,
    /// Highest score (unrounded, inclusive).
    pub max_score: f64,
    /// Fewest interactions.
    pub min_interactions: u64,
    /// Only this category's interactions count.
    pub category: Option<String>,
}

/// Every agent passing `query`, by score (highest first), then agent id: the order
/// is total, so pages of it are stable (the reference's follows set iteration).
pub fn rank(all: &[Interaction], query: &Query, now: f64) -> Vec<Ranked> {
    let mut by_agent: std::collections::BTreeMap<&str, Vec<&Interaction>> = Default::default();
    for interaction in all {
        if query
            .category
            .as_deref()
            .is_none_or(|category| interaction.category == category)
        {
            by_agent
                .entry(interaction.agent_id.as_str())
                .or_default()
                .push(interaction);
        }
    }
    let mut ranked: Vec<Ranked> = by_agent
        .into_iter()
        .filter(|(_, history)| {
            history.len() as u64 >= query.min_interactions && !history.is_empty()
        })
        .filter_map(|(agent_id, history)| {
            let value = score(history.iter().copied(), now);
            (query.min_score <= value && value <= query.max_score).then(|| Ranked {
                agent_id: agent_id.to_owned(),
                trust_score: round4(value),
                interaction_count: history.len() as u64,
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.trust_score
            .total_cmp(&a.trust_score)
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round4_rounds_the_binary_value_as_python_does() {
        // 0.00005 is stored a little above the half, 0.00015 a little below.
        assert_eq!(round4(0.00005), 0.0001);
        assert_eq!(round4(0.00015), 0.0001);
        assert_eq!(round4(2.675), 2.675);
        assert_eq!(round4(0.123_45), 0.1235);
        assert_eq!(round4(1.0), 1.0);
        assert_eq!(round4(2.0 / 3.0), 0.6667);
        // Exact halves go to the even digit.
        assert_eq!(round4(0.031_25), 0.0312);
        assert_eq!(round4(0.093_75), 0.0938);
    }

    fn at(epoch: i64, outcome: &str) -> Interaction {
        Interaction {
            agent_id: "a".into(),
            counterparty_id: "b".into(),
            outcome: outcome.into(),
            category: "general".into(),
            details: String::new(),
            timestamp: String::new(),
            epoch,
        }
    }

    #[test]
    fn a_thirty_day_old_interaction_weighs_half() {
        let now = 100.0 * 86_400.0;
        let old = at((70 * 86_400) as i64, "success");
        let new = at((100 * 86_400) as i64, "failure");
        // (1 * 0.5 + 0 * 1) / (0.5 + 1) = 1/3.
        assert!((score([&old, &new], now) - 1.0 / 3.0).abs() < 1e-12);
    }
}
