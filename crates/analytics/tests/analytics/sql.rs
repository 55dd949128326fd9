//! Ad-hoc SQL: the derived tables, limits, and tenant confinement whatever the SQL says.

use flywheel_analytics::{AnalyticsError, QueryResult};
use serde_json::{json, Value};

use crate::fixture::{fixture, late_deal, write};

fn rows(result: &QueryResult) -> Vec<Value> {
    match flywheel_analytics::output::json_rows(result) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(err) => panic!("cannot encode: {err}"),
    }
}

async fn query(f: &crate::fixture::Fixture, tenant: &str, sql: &str) -> Vec<Value> {
    match f.analytics.query(tenant, sql, Vec::new(), None).await {
        Ok(result) => rows(&result),
        Err(err) => panic!("{sql}: {err}"),
    }
}

#[tokio::test]
async fn outcomes_latest_merges_linked_outcomes_in_time_order() {
    let f = fixture().await;
    write(&f.lake, 2, late_deal()).await;
    let got = query(
        &f,
        "acme",
        "SELECT interaction_id, user_id, partner_matched, demo_booked, deal_closed, deal_value, \
         linked_outcomes FROM outcomes_latest WHERE interaction_id IN ('m1', 'm2') ORDER BY 1",
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"interaction_id": "m1", "user_id": "c1", "partner_matched": true,
                   "demo_booked": true, "deal_closed": true, "deal_value": 5000.0, "linked_outcomes": 2}),
            json!({"interaction_id": "m2", "user_id": "c2", "partner_matched": true,
                   "demo_booked": false, "deal_closed": null, "deal_value": null, "linked_outcomes": 2}),
        ]
    );
}

#[tokio::test]
async fn conversations_sum_turns_tokens_outcome_and_feedback() {
    let f = fixture().await;
    write(&f.lake, 2, late_deal()).await;
    let got = query(
        &f,
        "acme",
        "SELECT conversation_id, user_id, turns, total_tokens, partner_matched, deal_closed, \
         deal_value, feedback_count, feedback_helpful FROM conversations",
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"conversation_id": "conv1", "user_id": "c1", "turns": 2, "total_tokens": 400,
            "partner_matched": true, "deal_closed": true, "deal_value": 5000.0,
            "feedback_count": 1, "feedback_helpful": true})
        ]
    );
}

#[tokio::test]
async fn queries_see_only_their_tenant() {
    let f = fixture().await;
    let tenants = query(&f, "acme", "SELECT DISTINCT tenant_id FROM interactions").await;
    assert_eq!(tenants, vec![json!({"tenant_id": "acme"})]);
    let other = query(&f, "other", "SELECT count(*) AS n FROM interactions").await;
    assert_eq!(other, vec![json!({"n": 2})]);
    for sql in [
        "SELECT count(*) AS n FROM interactions WHERE tenant_id = 'other'",
        "SELECT count(*) AS n FROM interactions WHERE tenant_id = 'other' OR 1 = 1 AND tenant_id <> 'acme'",
        "SELECT count(*) AS n FROM outcomes_latest WHERE deal_value > 50000",
        "SELECT count(*) AS n FROM conversations WHERE total_tokens >= 5000",
    ] {
        assert_eq!(query(&f, "acme", sql).await, vec![json!({"n": 0})], "{sql}");
    }
}

#[tokio::test]
async fn files_ddl_dml_and_settings_are_refused() {
    let f = fixture().await;
    let file = f.lake.current_raw_files().await.unwrap_or_default();
    let path = f.lake.object_path(&file[0].path).to_string();
    let attempts = [
        format!("SELECT * FROM '{path}'"),
        format!("SELECT * FROM 'flywheel-lake://lake/{path}'"),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{path}'"),
        "CREATE VIEW everything AS SELECT 1".to_owned(),
        "COPY (SELECT 1) TO '/tmp/flywheel-escape.csv'".to_owned(),
        "SET datafusion.execution.target_partitions = 1".to_owned(),
        "INSERT INTO interactions SELECT * FROM interactions".to_owned(),
        "DROP VIEW interactions".to_owned(),
        "SELECT * FROM read_parquet('raw')".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
    ];
    for sql in attempts {
        match f.analytics.query("acme", &sql, Vec::new(), None).await {
            Err(AnalyticsError::Query(message)) => assert!(!message.is_empty()),
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    let tables = query(
        &f,
        "acme",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(
        tables,
        vec![
            json!({"table_name": "conversations"}),
            json!({"table_name": "interactions"}),
            json!({"table_name": "outcomes_latest"}),
        ]
    );
}

#[tokio::test]
async fn row_limits_cut_and_say_so() {
    let f = fixture().await;
    let result = match f
        .analytics
        .query(
            "acme",
            "SELECT interaction_id FROM interactions",
            Vec::new(),
            Some(3),
        )
        .await
    {
        Ok(result) => result,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(result.rows, 3);
    assert!(result.truncated);
    let exact = match f
        .analytics
        .query(
            "other",
            "SELECT interaction_id FROM interactions",
            Vec::new(),
            Some(2),
        )
        .await
    {
        Ok(result) => result,
        Err(err) => panic!("{err}"),
    };
    assert_eq!((exact.rows, exact.truncated), (2, false));
}

#[tokio::test]
async fn sql_errors_carry_the_engine_message() {
    let f = fixture().await;
    match f
        .analytics
        .query("acme", "SELECT nope FROM interactions", Vec::new(), None)
        .await
    {
        Err(AnalyticsError::Query(message)) => assert!(message.contains("nope"), "{message}"),
        other => panic!("expected a query error, got {other:?}"),
    }
}

#[tokio::test]
async fn timestamp_predicates_prune_days_and_json_fields_are_queryable() {
    let f = fixture().await;
    let got = query(
        &f,
        "acme",
        "SELECT count(*) AS n, min(json_extract_string(document, '$.outcomes.partner_id')) AS p \
         FROM interactions WHERE \"timestamp\" >= '2026-01-15T00:00:00Z' \
         AND \"timestamp\" < '2026-01-16T00:00:00Z' AND interaction_type = 'partner_match'",
    )
    .await;
    assert_eq!(got, vec![json!({"n": 1, "p": "p2"})]);
    let explain = query(
        &f,
        "acme",
        "EXPLAIN SELECT count(*) FROM interactions WHERE \"timestamp\" >= '2026-01-15T00:00:00Z' \
         AND \"timestamp\" < '2026-01-16T00:00:00Z'",
    )
    .await;
    let plan = explain
        .iter()
        .map(|row| row["plan"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("day=15"), "{plan}");
    assert!(
        !plan.contains("day=14") && !plan.contains("day=16"),
        "{plan}"
    );
}
