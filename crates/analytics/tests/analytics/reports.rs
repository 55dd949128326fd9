//! Each report against numbers computed by hand from the fixture (see `fixture.rs`).

use flywheel_analytics::Window;
use serde_json::{json, Value};

use crate::fixture::{fixture, late_deal, write, JAN};

const WINDOW: Window = Window {
    from_ms: JAN.0,
    to_ms: JAN.1,
};

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("report failed: {err}"),
    }
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-3)
}

#[tokio::test]
async fn ai_usage_counts_answers_per_day() {
    let f = fixture().await;
    let report = ok(f
        .analytics
        .ai_usage("acme", WINDOW, "ai_concierge_response")
        .await);
    let days = report["days"].as_array().cloned().unwrap_or_default();
    let got: Vec<(String, u64, u64)> = days
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap_or_default().to_owned(),
                d["interactions"].as_u64().unwrap_or(0),
                d["total_tokens"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-01-10".to_owned(), 1, 100),
            ("2026-01-11".to_owned(), 1, 300),
            ("2026-01-15".to_owned(), 1, 200),
        ]
    );
    assert!(close(&days[1]["total_cost"], 0.03), "{report}");
    assert!(close(&days[1]["avg_tokens"], 300.0), "{report}");
}

fn steps(report: &Value) -> Vec<u64> {
    report["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| s["users"].as_u64().unwrap_or(99))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_funnel_merges_late_outcomes_into_the_window_of_the_match() {
    let f = fixture().await;
    // c2's demo was withdrawn: only c1 booked. No deal yet.
    let before = ok(f.analytics.funnel("acme", WINDOW).await);
    assert_eq!(steps(&before), vec![4, 3, 1, 0], "{before}");
    assert!(
        close(&before["steps"][1]["rate_from_previous"], 0.75),
        "{before}"
    );
    assert!(
        close(&before["steps"][2]["rate_from_previous"], 1.0 / 3.0),
        "{before}"
    );
    assert_eq!(before["steps"][3]["rate_from_previous"], json!(0.0));

    // The deal closes in February, linked to c1's January match: January's funnel changes.
    write(&f.lake, 2, late_deal()).await;
    let after = ok(f.analytics.funnel("acme", WINDOW).await);
    assert_eq!(steps(&after), vec![4, 3, 1, 1], "{after}");
    assert!(
        close(&after["steps"][3]["rate_from_total"], 0.25),
        "{after}"
    );
}

#[tokio::test]
async fn partner_performance_per_partner() {
    let f = fixture().await;
    write(&f.lake, 2, late_deal()).await;
    let report = ok(f.analytics.partners("acme", WINDOW).await);
    let partners = report["partners"].as_array().cloned().unwrap_or_default();
    assert_eq!(partners.len(), 2, "{report}");
    let p1 = &partners[0];
    assert_eq!(p1["partner_id"], json!("p1"));
    assert_eq!(p1["matches"], json!(2));
    assert!(close(&p1["avg_match_score"], 0.7), "{report}");
    assert_eq!(p1["avg_satisfaction"], Value::Null);
    assert_eq!(p1["demos_booked"], json!(1));
    assert_eq!(p1["deals"], json!(1));
    assert!(close(&p1["deal_value"], 5000.0), "{report}");
    let p2 = &partners[1];
    assert_eq!(p2["partner_id"], json!("p2"));
    assert_eq!(p2["matches"], json!(1));
    assert!(close(&p2["avg_satisfaction"], 9.0), "{report}");
    assert_eq!(p2["deals"], json!(0));
    assert!(close(&p2["deal_value"], 0.0), "{report}");
}

#[tokio::test]
async fn models_report_cost_and_latency_percentiles() {
    let f = fixture().await;
    let report = ok(f.analytics.models("acme", WINDOW, None).await);
    let models = report["models"].as_array().cloned().unwrap_or_default();
    assert_eq!(models.len(), 2, "{report}");
    let openai = &models[0];
    assert_eq!(openai["provider"], json!("openai"));
    assert_eq!(openai["model"], json!("gpt-4o-mini"));
    assert_eq!(openai["calls"], json!(4));
    assert!(close(&openai["total_cost"], 0.004), "{report}");
    assert!(close(&openai["p50_duration_ms"], 250.0), "{report}");
    assert!(close(&openai["p95_duration_ms"], 385.0), "{report}");
    let local = &models[1];
    assert_eq!(local["provider"], json!("local"));
    assert_eq!(
        local["total_cost"],
        Value::Null,
        "an unpriced call has no cost: {report}"
    );
    assert_eq!(local["priced_calls"], json!(0));
}
