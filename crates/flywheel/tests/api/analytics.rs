//! SQL over the lake and the reports through the API, on a local lake and on S3 (moto), and
//! the generated DuckDB definitions run by DuckDB itself on the same files.

use std::process::Command;
use std::time::Duration;

use flywheel_config::SecretRef;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::lake::{require_tool, start_moto};

/// Three contractors in March 2026: c1 matched with p1 (then a demo, then a late deal of
/// 4,000 linked from April), c2 matched with p2, c3 only asks the concierge.
async fn seed(app: &TestApp) {
    let turn = |id: &str, user: &str, day: u32, tokens: u64| {
        json!({"interaction_id": id, "interaction_type": "ai_concierge_response", "user_id": user,
            "user_type": "contractor", "conversation_id": format!("conv-{user}"),
            "timestamp": format!("2026-03-{day:02}T10:00:00Z"),
            "ai_conversation": {"messages": [{"role": "assistant", "content": "hello", "model": "local/smollm2-135m-instruct"}],
                "total_tokens": tokens, "cost": 0.5, "duration_ms": 700}})
    };
    let matched = |id: &str, user: &str, partner: &str, score: f64, day: u32| {
        json!({"interaction_id": id, "interaction_type": "partner_match", "user_id": user,
            "user_type": "contractor", "conversation_id": format!("conv-{user}"),
            "timestamp": format!("2026-03-{day:02}T11:00:00Z"),
            "outcomes": {"partner_matched": true, "partner_id": partner, "match_score": score}})
    };
    let batch = json!([
        turn("0195a000-0000-7000-8000-000000000001", "c1", 2, 100),
        turn("0195a000-0000-7000-8000-000000000002", "c1", 3, 300),
        turn("0195a000-0000-7000-8000-000000000003", "c3", 3, 50),
        matched("0195a000-0000-7000-8000-000000000011", "c1", "p1", 0.9, 2),
        matched("0195a000-0000-7000-8000-000000000012", "c2", "p2", 0.5, 4),
    ]);
    let response = app.post_interactions(&app.admin_key, &batch).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let demo = app
        .post_json(
            "/v1/interactions/0195a000-0000-7000-8000-000000000011/outcomes",
            Some(&app.admin_key),
            &json!({"demo_booked": true, "timestamp": "2026-03-05T09:00:00Z"}),
        )
        .await;
    assert_eq!(demo.status, 201, "{}", demo.text);
    app.flush_lake().await;
}

/// The deal closes in April, linked to c1's March match.
async fn late_deal(app: &TestApp) {
    let deal = app
        .post_json(
            "/v1/interactions/0195a000-0000-7000-8000-000000000011/outcomes",
            Some(&app.admin_key),
            &json!({"deal_closed": true, "deal_value": 4000.0, "timestamp": "2026-04-20T09:00:00Z"}),
        )
        .await;
    assert_eq!(deal.status, 201, "{}", deal.text);
    app.flush_lake().await;
}

fn users(report: &Value) -> Vec<u64> {
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

const MARCH: &str = "from=2026-03-01&to=2026-04-01";

/// The same checks on whatever lake the app has.
async fn reports_and_sql_agree_with_the_seed(app: &TestApp) {
    seed(app).await;
    let funnel = app
        .get(&format!("/v1/reports/funnel?{MARCH}"), Some(&app.admin_key))
        .await;
    assert_eq!(funnel.status, 200, "{}", funnel.text);
    assert_eq!(users(&funnel.json()), vec![3, 2, 1, 0], "{}", funnel.text);

    late_deal(app).await;
    let funnel = app
        .get(&format!("/v1/reports/funnel?{MARCH}"), Some(&app.admin_key))
        .await;
    assert_eq!(
        users(&funnel.json()),
        vec![3, 2, 1, 1],
        "late deal: {}",
        funnel.text
    );

    let partners = app
        .get(
            &format!("/v1/reports/partners?{MARCH}"),
            Some(&app.admin_key),
        )
        .await
        .json();
    assert_eq!(
        partners["partners"][0]["partner_id"],
        json!("p1"),
        "{partners}"
    );
    assert_eq!(partners["partners"][0]["deals"], json!(1), "{partners}");
    assert_eq!(
        partners["partners"][0]["deal_value"],
        json!(4000.0),
        "{partners}"
    );
    assert_eq!(partners["partners"][1]["deals"], json!(0), "{partners}");

    let usage = app
        .get(
            &format!("/v1/reports/ai-usage?{MARCH}"),
            Some(&app.admin_key),
        )
        .await
        .json();
    let days: Vec<(String, u64, u64)> = usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["interactions"].as_u64().unwrap(),
                d["total_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-03-02".to_owned(), 1, 100),
            ("2026-03-03".to_owned(), 2, 350)
        ]
    );

    let sql = app
        .post_json(
            "/v1/analytics/sql",
            Some(&app.admin_key),
            &json!({"sql": "SELECT user_id, count(*) AS n FROM interactions GROUP BY user_id ORDER BY user_id"}),
        )
        .await;
    assert_eq!(sql.status, 200, "{}", sql.text);
    let body = sql.json();
    assert_eq!(
        body["rows"],
        json!([{"user_id": "c1", "n": 5}, {"user_id": "c2", "n": 1}, {"user_id": "c3", "n": 1}])
    );
    assert_eq!(body["columns"][0]["name"], json!("user_id"));
    assert_eq!(body["truncated"], json!(false));
}

#[tokio::test]
async fn reports_and_sql_over_a_local_lake() {
    let app = spawn_app().await;
    reports_and_sql_agree_with_the_seed(&app).await;
}

#[tokio::test]
async fn reports_and_sql_over_an_s3_lake() {
    let Some(moto) = start_moto().await else {
        require_tool(false, "moto_server (Python package moto[server])");
        return;
    };
    let created = reqwest::Client::new()
        .put(format!("{}/analytics-lake", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("id"), "test-access-key").unwrap();
    std::fs::write(secrets.path().join("secret"), "test-secret-key").unwrap();
    let endpoint = moto.endpoint.clone();
    let secret_dir = secrets.path().to_owned();
    let app = spawn_app_with(move |config| {
        config.lake.url = Some("s3://analytics-lake/tenants".to_owned());
        config.lake.s3.endpoint = Some(endpoint);
        config.lake.s3.region = Some("us-east-1".to_owned());
        config.lake.s3.allow_http = true;
        config.lake.s3.access_key_id = Some(SecretRef::File {
            file: secret_dir.join("id"),
        });
        config.lake.s3.secret_access_key = Some(SecretRef::File {
            file: secret_dir.join("secret"),
        });
    })
    .await;
    reports_and_sql_agree_with_the_seed(&app).await;
}

#[tokio::test]
async fn downloads_errors_roles_and_tenants() {
    let app = spawn_app().await;
    seed(&app).await;
    let query = json!({"sql": "SELECT interaction_id, \"timestamp\" FROM interactions ORDER BY 1"});
    let csv = app
        .post_json("/v1/analytics/sql?format=csv", Some(&app.admin_key), &query)
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(csv.header("x-row-count").as_deref(), Some("6"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "interaction_id,timestamp");
    assert_eq!(lines.len(), 7);
    let parquet = app
        .post_json(
            "/v1/analytics/sql",
            Some(&app.admin_key),
            &json!({"sql": "SELECT 1 AS one", "format": "parquet"}),
        )
        .await;
    assert_eq!(parquet.status, 200);
    assert!(parquet.text.as_bytes().starts_with(b"PAR1"));

    let bad = app
        .post_json(
            "/v1/analytics/sql",
            Some(&app.admin_key),
            &json!({"sql": "SELECT missing_column FROM interactions"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.error_code(), "invalid_query");
    assert!(bad.text.contains("missing_column"), "{}", bad.text);
    let ddl = app
        .post_json(
            "/v1/analytics/sql",
            Some(&app.admin_key),
            &json!({"sql": "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'"}),
        )
        .await;
    assert_eq!(ddl.status, 422, "{}", ddl.text);
    let format = app
        .post_json("/v1/analytics/sql?format=xml", Some(&app.admin_key), &query)
        .await;
    assert_eq!(format.status, 422);
    let window = app
        .get("/v1/reports/funnel?from=yesterday", Some(&app.admin_key))
        .await;
    assert_eq!(window.status, 422, "{}", window.text);
    assert!(window.text.contains("RFC 3339"), "{}", window.text);

    let contractor = app
        .issue_token("default", "c1", "contractor", Duration::from_secs(600))
        .await;
    let refused = app
        .post_json("/v1/analytics/sql", Some(&contractor), &query)
        .await;
    assert_eq!(refused.status, 403);
    let refused = app
        .get(&format!("/v1/reports/funnel?{MARCH}"), Some(&contractor))
        .await;
    assert_eq!(refused.status, 403);

    // Another tenant's admin sees nothing of this tenant, whatever it asks.
    app.create_tenant("beta").await;
    let (beta, _) = app.create_key("beta", "admin", None).await;
    let theirs = app
        .post_json(
            "/v1/analytics/sql",
            Some(&beta),
            &json!({"sql": "SELECT count(*) AS n FROM interactions WHERE tenant_id = 'default' OR true"}),
        )
        .await;
    assert_eq!(theirs.json()["rows"], json!([{"n": 0}]), "{}", theirs.text);
    let funnel = app
        .get(&format!("/v1/reports/funnel?{MARCH}"), Some(&beta))
        .await;
    assert_eq!(users(&funnel.json()), vec![0, 0, 0, 0]);
}

#[tokio::test]
async fn the_generated_duckdb_definitions_work_on_the_lake() {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|status| status.success());
    if !require_tool(has_duckdb, "the duckdb Python package") {
        return;
    }
    let app = spawn_app().await;
    seed(&app).await;
    late_deal(&app).await;
    let root = app.components.archiver.lake().url().to_owned();
    let ddl = flywheel_analytics::ddl::generate(&flywheel_analytics::ddl::DdlOptions {
        engine: flywheel_analytics::ddl::Engine::DuckDb,
        location: root,
        tenant: Some("default".to_owned()),
        database: "flywheel".to_owned(),
    })
    .unwrap();
    let queries = [
        "SELECT count(*) FROM interactions",
        "SELECT count(*) FROM outcomes_latest WHERE deal_closed",
        "SELECT sum(total_tokens) FROM conversations",
        "SELECT count(*) FROM conversations WHERE deal_closed",
    ];
    let script = format!(
        "import duckdb, json, sys\ncon = duckdb.connect()\ncon.execute({ddl:?})\n\
         print(json.dumps([con.execute(q).fetchone()[0] for q in {queries:?}]))\n",
        ddl = ddl,
        queries = queries
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut ours = Vec::new();
    for sql in queries {
        let answer = app
            .post_json(
                "/v1/analytics/sql",
                Some(&app.admin_key),
                &json!({"sql": sql.replace("SELECT ", "SELECT CAST(").replace(" FROM", " AS BIGINT) AS v FROM")}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        ours.push(answer.json()["rows"][0]["v"].clone());
    }
    assert_eq!(duck, ours, "DuckDB and Flywheel disagree");
    assert_eq!(ours, vec![json!(7), json!(1), json!(450), json!(1)]);
}

#[tokio::test]
async fn derived_datasets_are_listed_with_their_manifests() {
    let app = spawn_app().await;
    seed(&app).await;
    late_deal(&app).await;
    let actor =
        flywheel_services::local_cli_principal(flywheel_core::TenantId::parse("default").unwrap());
    let options = app.components.analytics.derive_options().clone();
    let manifests = app
        .components
        .analytics
        .derive(&actor, &options)
        .await
        .unwrap();
    assert_eq!(manifests.len(), 5);
    let listed = app.get("/v1/datasets", Some(&app.admin_key)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let datasets = listed.json()["datasets"].as_array().cloned().unwrap();
    let kinds: Vec<(String, u64)> = datasets
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["row_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("conversations".to_owned(), 3)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("outcomes".to_owned(), 2)), "{kinds:?}");
    assert!(datasets
        .iter()
        .all(|d| d["path"].as_str().unwrap().contains("tenant_id=default/")));
    // Another tenant has none, and a contractor may not look.
    app.create_tenant("gamma").await;
    let (gamma, _) = app.create_key("gamma", "admin", None).await;
    let theirs = app.get("/v1/datasets", Some(&gamma)).await;
    assert_eq!(theirs.json()["datasets"], json!([]));
    let contractor = app
        .issue_token("default", "c1", "contractor", Duration::from_secs(600))
        .await;
    assert_eq!(app.get("/v1/datasets", Some(&contractor)).await.status, 403);
}
