//! A lake with two tenants, written through the archiver's own writer.
//!
//! Tenant `acme`, January 2026 (all times UTC):
//! - contractors c1–c4 are active; c1's and c4's concierge answers carry tokens and cost;
//! - c1 is matched with p1 (score 0.8, Jan 10), books a demo (Jan 12) and closes a deal of
//!   5,000 on Feb 5 — a late outcome, written in a second batch ([`late_deal`]);
//! - c2 is matched with p1 (0.6, Jan 11), books a demo (Jan 13) that is withdrawn (Jan 20);
//! - c3 is matched with p2 (0.9, Jan 15) and rates it 9 (Jan 16);
//! - the gateway logged four `openai/gpt-4o-mini` calls (100–400 ms) and one local call.
//!
//! Tenant `other` has a partner match with p1 and a huge deal that acme must never see.

use flywheel_analytics::{Analytics, AnalyticsSettings};
use flywheel_core::interaction::InteractionRecord;
use flywheel_lake::{Lake, LakeSettings, S3Settings};
use serde_json::{json, Value};

pub const JAN: (i64, i64) = (1_767_225_600_000, 1_769_904_000_000);

/// Unix ms of 2026-01-`day` at `hour`:00 UTC (days past 31 run into February).
pub fn at(day: i64, hour: i64) -> i64 {
    JAN.0 + (day - 1) * 86_400_000 + hour * 3_600_000
}

pub fn record(
    tenant: &str,
    id: &str,
    ms: i64,
    kind: &str,
    user: &str,
    extra: Value,
) -> InteractionRecord {
    let user_type = if user.starts_with('c') {
        "contractor"
    } else {
        "service"
    };
    let mut document = json!({
        "interaction_id": id,
        "tenant_id": tenant,
        "timestamp": chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()),
        "received_at": chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()),
        "interaction_type": kind,
        "user_id": user,
        "user_type": user_type,
        "schema_version": 1,
    });
    if let (Value::Object(doc), Value::Object(extra)) = (&mut document, extra) {
        doc.extend(extra);
    }
    InteractionRecord {
        tenant_id: tenant.to_owned(),
        interaction_id: id.to_owned(),
        timestamp_ms: ms,
        received_at_ms: ms,
        interaction_type: kind.to_owned(),
        user_id: user.to_owned(),
        user_type: user_type.to_owned(),
        document_json: document.to_string(),
    }
}

fn answer(tokens: u64, cost: f64) -> Value {
    json!({"ai_conversation": {"messages": [{"role": "assistant", "content": "an answer",
        "model": "local/smollm2-135m-instruct"}], "total_tokens": tokens, "cost": cost,
        "duration_ms": 900}})
}

fn call(model: &str, duration: u64, cost: Option<f64>) -> Value {
    json!({"ai_conversation": {"messages": [{"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "model": model}],
        "total_tokens": 10, "cost": cost, "duration_ms": duration}})
}

fn linked(parent: &str, conversation: Option<&str>, field: &str, value: Value) -> Value {
    let mut extra = json!({"parent_interaction_id": parent});
    extra[field] = value;
    if let Some(conversation) = conversation {
        extra["conversation_id"] = json!(conversation);
    }
    extra
}

pub fn first_batch() -> Vec<InteractionRecord> {
    let a = "acme";
    let mut rows = vec![
        record(
            a,
            "q1",
            at(10, 9),
            "ai_concierge",
            "c1",
            json!({"conversation_id": "conv1",
            "ai_conversation": {"messages": [{"role": "user", "content": "who can help?"}]}}),
        ),
        record(a, "r1", at(10, 9) + 1000, "ai_concierge_response", "c1", {
            let mut extra = answer(100, 0.01);
            extra["conversation_id"] = json!("conv1");
            extra
        }),
        record(a, "r2", at(11, 9), "ai_concierge_response", "c1", {
            let mut extra = answer(300, 0.03);
            extra["conversation_id"] = json!("conv1");
            extra
        }),
        record(
            a,
            "r4",
            at(15, 9),
            "ai_concierge_response",
            "c4",
            answer(200, 0.02),
        ),
        record(
            a,
            "m1",
            at(10, 10),
            "partner_match",
            "c1",
            json!({"conversation_id": "conv1",
            "outcomes": {"partner_matched": true, "partner_id": "p1", "match_score": 0.8}}),
        ),
        record(
            a,
            "o1",
            at(12, 10),
            "demo_booking",
            "c1",
            linked(
                "m1",
                Some("conv1"),
                "outcomes",
                json!({"demo_booked": true, "partner_id": "p1"}),
            ),
        ),
        record(
            a,
            "m2",
            at(11, 10),
            "partner_match",
            "c2",
            json!({"outcomes": {"partner_matched": true, "partner_id": "p1", "match_score": 0.6}}),
        ),
        record(
            a,
            "o2",
            at(13, 10),
            "demo_booking",
            "c2",
            linked(
                "m2",
                None,
                "outcomes",
                json!({"demo_booked": true, "partner_id": "p1"}),
            ),
        ),
        record(
            a,
            "o3",
            at(20, 10),
            "demo_booking",
            "c2",
            linked(
                "m2",
                None,
                "outcomes",
                json!({"demo_booked": false, "partner_id": "p1"}),
            ),
        ),
        record(
            a,
            "m3",
            at(15, 10),
            "partner_match",
            "c3",
            json!({"outcomes": {"partner_matched": true, "partner_id": "p2", "match_score": 0.9}}),
        ),
        record(
            a,
            "o4",
            at(16, 10),
            "outcome",
            "c3",
            linked(
                "m3",
                None,
                "outcomes",
                json!({"satisfaction_score": 9.0, "partner_id": "p2"}),
            ),
        ),
        record(
            a,
            "f1",
            at(11, 12),
            "feedback",
            "c1",
            linked(
                "r1",
                Some("conv1"),
                "feedback",
                json!({"helpful": true, "accuracy": 8.0}),
            ),
        ),
        // Outside January: counted by nothing below.
        record(
            a,
            "m0",
            at(-5, 10),
            "partner_match",
            "c5",
            json!({"outcomes": {"partner_matched": true, "partner_id": "p1", "match_score": 0.1}}),
        ),
    ];
    for (idx, duration) in [100u64, 200, 300, 400].into_iter().enumerate() {
        rows.push(record(
            a,
            &format!("g{idx}"),
            at(14, 8 + idx as i64),
            "ai_completion",
            "svc",
            call("openai/gpt-4o-mini", duration, Some(0.001)),
        ));
    }
    rows.push(record(
        a,
        "g9",
        at(14, 20),
        "ai_completion",
        "svc",
        call("local/smollm2-135m-instruct", 50, None),
    ));
    let o = "other";
    rows.push(record(
        o,
        "x1",
        at(10, 10),
        "partner_match",
        "c1",
        json!({"conversation_id": "conv1",
        "outcomes": {"partner_matched": true, "partner_id": "p1", "match_score": 0.1,
        "deal_closed": true, "deal_value": 99_999.0}}),
    ));
    rows.push(record(
        o,
        "x2",
        at(10, 11),
        "ai_concierge_response",
        "c9",
        answer(5_000, 5.0),
    ));
    rows
}

/// The late outcome: c1's deal with p1, closed in February, linked to the January match.
pub fn late_deal() -> Vec<InteractionRecord> {
    vec![record(
        "acme",
        "o9",
        at(36, 10),
        "deal_closed",
        "c1",
        linked(
            "m1",
            Some("conv1"),
            "outcomes",
            json!({"deal_closed": true, "deal_value": 5000.0,
            "partner_id": "p1"}),
        ),
    )]
}

pub struct Fixture {
    pub analytics: Analytics,
    pub lake: Lake,
    _dir: tempfile::TempDir,
}

pub async fn lake_at(url: String, s3: S3Settings) -> Lake {
    match Lake::open(&LakeSettings { url, s3 }) {
        Ok(lake) => lake,
        Err(err) => panic!("cannot open the lake: {err}"),
    }
}

pub async fn fixture() -> Fixture {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("no temporary directory: {err}"),
    };
    let lake = lake_at(dir.path().display().to_string(), S3Settings::default()).await;
    write(&lake, 1, first_batch()).await;
    let analytics = match Analytics::new(lake.clone(), AnalyticsSettings::default()) {
        Ok(analytics) => analytics,
        Err(err) => panic!("cannot start the engine: {err}"),
    };
    Fixture {
        analytics,
        lake,
        _dir: dir,
    }
}

pub async fn write(lake: &Lake, batch: i64, rows: Vec<InteractionRecord>) {
    if let Err(err) = lake.write_raw_batch(batch, rows).await {
        panic!("cannot write the fixture: {err}");
    }
}
