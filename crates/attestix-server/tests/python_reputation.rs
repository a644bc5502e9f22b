//! Reputation scores, audit chains and provenance action chains against the Python reference itself (attestix
//! 0.4.3), run where it is installed: the interpreter named by
//! `ATTESTIX_REFERENCE_PYTHON`, else `python3`, must import `attestix` 0.4.3. Without
//! it the test prints `SKIPPED: …` and passes.
//!
//! The same interactions at the same instant must give the same rounded score as the
//! reference's `ReputationService._compute_score` and `round(x, 4)`, and an audit
//! chain written here must pass the reference's `verify_chain` (and a changed event
//! must fail it at the same event). Provenance action chains (the `json.dumps` form)
//! verify in both directions.

use std::io::Write as _;
use std::process::{Command, Stdio};

use attestix_server::audit::AuditDraft;
use attestix_server::provenance::{chain_hash, verify_trail, TrailReport};
use attestix_server::reputation::{round4, score, Interaction};
use attestix_server::storage::records::GENESIS_HASH;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Reads `{"now", "interactions", "events"}` on stdin; prints the reference's score of
/// each agent and its verdict on the chain.
const SCRIPT: &str = r#"
import json, sys
from attestix.services.reputation_service import ReputationService
from attestix.audit import verify_chain
data = json.load(sys.stdin)
import attestix.services.reputation_service as rs
rs.time.time = lambda: data["now"]
scores = {}
for agent in sorted({i["agent_id"] for i in data["interactions"]}):
    scores[agent] = round(ReputationService._compute_score(None, data["interactions"], agent), 4)
result = verify_chain(data["events"])
tampered = verify_chain(data["tampered"])
from attestix.services.provenance_service import ProvenanceService
actions_ok = True
prev = "0" * 64
for entry in data["actions"]:
    body = {k: v for k, v in entry.items() if k not in ("chain_hash", "signature")}
    actions_ok = actions_ok and entry["prev_hash"] == prev and ProvenanceService._chain_hash(prev, body) == entry["chain_hash"]
    prev = entry["chain_hash"]
theirs = []
prev = "0" * 64
for n, text in enumerate(["caf\u00e9 \U0001f600", "tab\tquote\"", "\u212b"]):
    entry = {"log_id": f"audit:{n:012x}", "agent_id": "agent-p", "action_type": "inference",
             "input_summary": text, "output_summary": "", "decision_rationale": "",
             "human_override": n == 1, "timestamp": "2026-12-03T00:00:00+00:00",
             "logged_by": "did:key:zRef", "score": 0.1 + n, "prev_hash": prev}
    entry["chain_hash"] = ProvenanceService._chain_hash(prev, entry)
    prev = entry["chain_hash"]
    theirs.append(entry)
print(json.dumps({"scores": scores, "valid": bool(result.valid),
                  "tampered_valid": bool(tampered.valid),
                  "tampered_at": tampered.broken_event_id,
                  "actions_ok": actions_ok, "their_actions": theirs}))
"#;

fn reference_python() -> Option<String> {
    let python = std::env::var("ATTESTIX_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args([
            "-c",
            "import attestix, sys; sys.exit(0 if attestix.__version__ == '0.4.3' else 1)",
        ])
        .output()
        .ok()?;
    probe.status.success().then_some(python)
}

fn interaction(agent: &str, outcome: &str, epoch: i64) -> Interaction {
    Interaction {
        agent_id: agent.into(),
        counterparty_id: "peer".into(),
        outcome: outcome.into(),
        category: "general".into(),
        details: String::new(),
        timestamp: String::new(),
        epoch,
    }
}

#[test]
fn scores_and_chains_agree_with_the_reference() {
    let Some(python) = reference_python() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the reference attestix 0.4.3 is not importable (set ATTESTIX_REFERENCE_PYTHON)"
        );
        return;
    };
    let now = 1_800_000_000.123_456_f64;
    let day = 86_400;
    let base = 1_800_000_000_i64;
    let outcomes = ["success", "partial", "timeout", "failure"];
    let mut interactions = Vec::new();
    for agent in 0..6_i64 {
        for n in 0..(agent * 3 + 1) {
            let outcome = outcomes[((agent + n * 7) % 4) as usize];
            // Ages from seconds to a year, one in the future (age clamped to 0).
            let epoch = base - (n * n * 13 + agent) * day / 7 + i64::from(n == 2) * 30;
            interactions.push(interaction(&format!("agent-{agent}"), outcome, epoch));
        }
    }
    let ours: serde_json::Map<String, Value> = (0..6)
        .map(|agent| {
            let id = format!("agent-{agent}");
            let history = interactions.iter().filter(|i| i.agent_id == id);
            let value = json!(round4(score(history, now)));
            (id, value)
        })
        .collect();

    let mut prev = GENESIS_HASH.to_owned();
    let mut events = Vec::new();
    for n in 0..5 {
        let draft = AuditDraft::new(
            "alice/default".into(),
            "default",
            "did:key:zTest",
            "identity.create",
            &format!("attestix:{n:016x}"),
            "identities",
            json!({"agent_id": format!("attestix:{n:016x}"), "source_protocol": "api_key",
                   "note": "naïve ✓"}),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let event = draft.link(&prev).unwrap();
        prev = event.chain_hash.clone();
        events.push(serde_json::to_value(&event).unwrap());
    }
    // An action chain written as `append_action` writes it (non-ASCII, a float).
    let mut actions = Vec::new();
    let mut prev_action = GENESIS_HASH.to_owned();
    for (n, text) in ["naïve — 😀", "\"quoted\"\n", "Å"].iter().enumerate() {
        let mut entry = json!({
            "log_id": format!("audit:{n:012x}"), "agent_id": "agent-p",
            "action_type": "data_access", "input_summary": text, "output_summary": "",
            "decision_rationale": "", "human_override": false,
            "timestamp": "2026-12-03T00:00:00+00:00", "logged_by": "did:key:zTest",
            "weight": 0.25 + n as f64, "prev_hash": prev_action,
        });
        let hash = chain_hash(&prev_action, &entry);
        entry["chain_hash"] = json!(hash);
        entry["signature"] = json!("unused");
        prev_action = hash;
        actions.push(entry);
    }
    let mut tampered = events.clone();
    tampered[3]["target_collection"] = json!("credentials");

    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .env("ATTESTIX_DATA_DIR", data_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the reference runs");
    let input = json!({"now": now, "interactions": interactions, "events": events,
                       "tampered": tampered, "actions": actions});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(theirs["scores"], Value::Object(ours));
    assert_eq!(theirs["valid"], true);
    assert_eq!(theirs["tampered_valid"], false);
    assert_eq!(theirs["tampered_at"], events[3]["event_id"]);
    // Our action chain verifies in the reference's code, and the reference's here.
    assert_eq!(theirs["actions_ok"], true);
    let their_actions: Vec<String> = theirs["their_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(
        verify_trail(&their_actions),
        TrailReport {
            valid: true,
            entries: 3,
            broken_at: None
        }
    );
}
