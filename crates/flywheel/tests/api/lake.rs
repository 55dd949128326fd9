//! The lake: layout, exactly-once archiving, verification, an outside reader (DuckDB), S3
//! (moto), and backpressure when the store is slow.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use flywheel_config::SecretRef;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{sample_interaction, spawn_app, spawn_app_with};

/// Outside tools (DuckDB, moto) are installed by CI; a developer machine without them skips
/// those checks with a notice, but CI fails loudly.
pub(crate) fn require_tool(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is required in CI (see .ci/run)"
    );
    eprintln!("skipping: {what} is not installed (pip install duckdb 'moto[server]')");
    false
}

#[tokio::test]
async fn archived_files_follow_the_hive_layout_and_verify() {
    let app = spawn_app().await;
    let mut batch = Vec::new();
    for seq in 0..30 {
        let mut body = sample_interaction("c-1", seq);
        body["timestamp"] = json!(format!("2026-09-{:02}T10:00:00Z", 1 + seq % 3));
        batch.push(body);
    }
    assert_eq!(
        app.post_interactions(&app.admin_key, &json!(batch))
            .await
            .status,
        200
    );
    let report = app.flush_lake().await;
    assert_eq!(report.rows, 30);
    let lake = app.components.archiver.lake();
    let files: Vec<String> = lake
        .list("raw")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        files,
        vec![
            "raw/year=2026/month=09/day=01/part-0000000000000001.parquet",
            "raw/year=2026/month=09/day=02/part-0000000000000001.parquet",
            "raw/year=2026/month=09/day=03/part-0000000000000001.parquet",
        ]
    );
    assert_eq!(app.flush_lake().await.rows, 0, "nothing is archived twice");

    let verify = app.verify_lake().await;
    assert!(verify.is_consistent(), "{verify:?}");
    assert_eq!(verify.days["2026-09-01"].lake_rows, 10);
    assert_eq!(verify.days["2026-09-01"].store_archived, 10);

    // Newer data goes into a new batch; pending rows are reported as pending, not missing.
    app.post_interactions(&app.admin_key, &sample_interaction("c-2", 99))
        .await;
    let verify = app.verify_lake().await;
    assert!(verify.is_consistent());
    let today = Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(verify.days[&today].store_pending, 1);
}

#[tokio::test]
async fn a_batch_interrupted_after_upload_is_rewritten_not_duplicated() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..12).map(|i| sample_interaction("c", i)).collect();
    app.post_interactions(&app.admin_key, &json!(batch)).await;
    let store = app.components.store.interactions();
    let lake = app.components.archiver.lake();
    // Claim and upload, then "crash" before recording completion.
    let batch_id = store
        .claim_archive_batch(1000, Utc::now())
        .await
        .unwrap()
        .unwrap();
    let rows = store.archive_batch_rows(batch_id).await.unwrap();
    let first_files = lake.write_raw_batch(batch_id, rows).await.unwrap();
    // More data arrives after the claim; it must land in a later batch.
    app.post_interactions(&app.admin_key, &sample_interaction("late", 1))
        .await;

    let report = app.flush_lake().await;
    assert_eq!(
        report.rows, 13,
        "the pending batch is shipped again, plus the new row"
    );
    let index = lake.read_raw_index().await.unwrap();
    assert_eq!(index.len(), 13);
    let unique: std::collections::HashSet<_> = index.iter().map(|e| &e.interaction_id).collect();
    assert_eq!(unique.len(), 13, "no row is in the lake twice");
    for file in &first_files {
        assert!(index.iter().any(|e| &e.file == file));
    }
    let verify = flywheel_services::archive::verify(store.as_ref(), lake, |_| {})
        .await
        .unwrap();
    assert!(verify.is_consistent(), "{verify:?}");
}

#[tokio::test]
async fn duckdb_reads_the_lake_and_agrees() {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !require_tool(has_duckdb, "the duckdb Python package") {
        return;
    }
    let app = spawn_app().await;
    let mut expected_value = 0.0;
    let mut expected_tokens = 0i64;
    let mut batch = Vec::new();
    for seq in 0..40 {
        let mut body = sample_interaction(&format!("c-{}", seq % 4), seq);
        body["outcomes"]["deal_value"] = json!(1000.5 * seq as f64);
        body["timestamp"] = json!(format!("2026-08-{:02}T08:30:00Z", 10 + seq % 2));
        expected_value += 1000.5 * seq as f64;
        expected_tokens += body["ai_conversation"]["total_tokens"].as_i64().unwrap();
        batch.push(body);
    }
    assert_eq!(
        app.post_interactions(&app.admin_key, &json!(batch))
            .await
            .status,
        200
    );
    app.flush_lake().await;
    let lake_dir = app.config.lake_url();
    let script = format!(
        "import duckdb, json\n\
         rows = duckdb.sql(\"SELECT count(*), count(DISTINCT interaction_id), sum(outcomes_deal_value), \
         sum(ai_total_tokens), count(DISTINCT day), min(CAST(month AS INTEGER)), any_value(tenant_id), \
         sum(CASE WHEN json_extract_string(document, '$.metadata.location.city') = 'Austin' THEN 1 ELSE 0 END) \
         FROM read_parquet('{lake_dir}/raw/**/*.parquet', hive_partitioning = true)\").fetchall()[0]\n\
         print(json.dumps([float(v) if isinstance(v, (int, float)) else v for v in rows]))"
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result[0], 40.0);
    assert_eq!(result[1], 40.0);
    assert!((result[2].as_f64().unwrap() - expected_value).abs() < 1e-6);
    assert_eq!(result[3].as_f64().unwrap() as i64, expected_tokens);
    assert_eq!(result[4], 2.0, "two day partitions");
    assert_eq!(result[5], 8.0, "month read from the partition path");
    assert_eq!(result[6], "default");
    assert_eq!(result[7], 40.0, "the document column is valid JSON");
}

pub(crate) struct MotoServer {
    child: std::process::Child,
    pub(crate) endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_moto() -> Option<MotoServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn the_lake_works_on_s3() {
    let Some(moto) = start_moto().await else {
        require_tool(false, "moto_server (Python package moto[server])");
        return;
    };
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{}/flywheel-lake", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("id"), "test-access-key").unwrap();
    std::fs::write(secrets.path().join("secret"), "test-secret-key").unwrap();
    let endpoint = moto.endpoint.clone();
    let secret_dir = secrets.path().to_owned();
    let app = spawn_app_with(move |config| {
        config.lake.url = Some("s3://flywheel-lake/production/events".to_owned());
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
    let batch: Vec<Value> = (0..25).map(|i| sample_interaction("s3-user", i)).collect();
    assert_eq!(
        app.post_interactions(&app.admin_key, &json!(batch))
            .await
            .status,
        200
    );
    let report = app.flush_lake().await;
    assert_eq!(report.rows, 25);
    let lake = app.components.archiver.lake();
    let files = lake.list("raw").await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].path.starts_with("raw/year="), "{files:?}");
    assert!(files[0].size > 0);
    // The object sits under the configured prefix in the bucket.
    let listing = client
        .get(format!(
            "{}/flywheel-lake?list-type=2&prefix=production/events/raw/",
            moto.endpoint
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains("part-0000000000000001.parquet"),
        "{listing}"
    );
    let verify = app.verify_lake().await;
    assert!(verify.is_consistent(), "{verify:?}");
    assert_eq!(verify.days.values().map(|d| d.lake_rows).sum::<u64>(), 25);

    // Compaction and derived datasets work on S3 too.
    let more: Vec<Value> = (25..40).map(|i| sample_interaction("s3-user", i)).collect();
    app.post_interactions(&app.admin_key, &json!(more)).await;
    assert_eq!(app.flush_lake().await.rows, 15);
    let report = app.components.archiver.compact(|_| {}).await.unwrap();
    assert_eq!(
        (report.files_in, report.files_out, report.rows),
        (2, 1, 40),
        "{report:?}"
    );
    let files = lake.list("raw").await.unwrap();
    assert_eq!(files.len(), 1, "inputs deleted from the bucket: {files:?}");
    assert!(files[0]
        .path
        .ends_with("part-0000000000000001-0000000000000002.parquet"));
    assert_eq!(lake.read_raw_index().await.unwrap().len(), 40);
    let derived = app.components.archiver.derive().await.unwrap();
    assert_eq!(
        derived.outcomes_written, 40,
        "every sample carries outcomes"
    );
    assert!(!lake.list("processed/outcomes").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_store_gets_503_with_retry_after_not_unbounded_queues() {
    let app = spawn_app_with(|config| {
        config.ingest.max_queued_rows = 2;
        config.ingest.max_batch_items = 2;
        config.ingest.max_commit_rows = 1;
    })
    .await;
    let url = app.config.database_url();
    // Hold a write lock on the interactions table so that the writer blocks.
    let mut blocker: Box<dyn std::any::Any> = if url.starts_with("sqlite") {
        let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut connection)
            .await
            .unwrap();
        Box::new(connection)
    } else {
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
        sqlx::query("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
            .execute(&mut connection)
            .await
            .unwrap();
        Box::new(connection)
    };
    let post = |seq: usize| {
        let client = app.client.clone();
        let url = app.url("/v1/interactions");
        let key = app.admin_key.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&sample_interaction("slow", seq))
                .send()
                .await
                .unwrap()
        })
    };
    let first = post(1);
    tokio::time::sleep(Duration::from_millis(300)).await; // the writer takes it and blocks
    let second = post(2);
    tokio::time::sleep(Duration::from_millis(300)).await; // it waits in the queue
    let third = post(3).await.unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers().get("retry-after").unwrap(), "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    // Release the lock: the accepted requests complete.
    if let Some(connection) = blocker.downcast_mut::<sqlx::SqliteConnection>() {
        sqlx::query("COMMIT").execute(connection).await.unwrap();
    } else if let Some(connection) = blocker.downcast_mut::<sqlx::PgConnection>() {
        sqlx::query("COMMIT").execute(connection).await.unwrap();
    }
    assert_eq!(first.await.unwrap().status(), 201);
    assert_eq!(second.await.unwrap().status(), 201);
    let metrics = app.get("/metrics", Some(&app.admin_key)).await.text;
    assert!(
        metrics.contains("flywheel_ingest_queue_full_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn expired_operational_copies_stay_in_the_lake() {
    let app = spawn_app_with(|config| config.retention.operational_days = 30).await;
    let mut old = sample_interaction("c", 0);
    old["timestamp"] = json!("2020-01-01T00:00:00Z");
    let old_id = app.post_interactions(&app.admin_key, &old).await.json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let recent_id = app
        .post_interactions(&app.admin_key, &sample_interaction("c", 1))
        .await
        .json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not archived yet: nothing may be expired.
    assert_eq!(app.components.archiver.expire().await.unwrap(), 0);
    app.flush_lake().await;
    assert_eq!(app.components.archiver.expire().await.unwrap(), 1);
    assert_eq!(
        app.get(&format!("/v1/interactions/{old_id}"), Some(&app.admin_key))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(
            &format!("/v1/interactions/{recent_id}"),
            Some(&app.admin_key)
        )
        .await
        .status,
        200
    );
    let verify = app.verify_lake().await;
    assert!(verify.is_consistent());
    assert_eq!(
        verify.only_in_lake.len(),
        1,
        "the expired copy lives on in the lake"
    );
}

#[tokio::test]
async fn compaction_merges_files_and_readers_never_see_rows_twice() {
    let app = spawn_app().await;
    let lake = app.components.archiver.lake();
    let mut expected = 0;
    for round in 0..3 {
        let batch: Vec<Value> = (0..10)
            .map(|i| {
                let mut body = sample_interaction("c", round * 10 + i);
                body["timestamp"] = json!("2026-07-04T12:00:00Z");
                body
            })
            .collect();
        app.post_interactions(&app.admin_key, &json!(batch)).await;
        expected += 10;
        app.flush_lake().await;
    }
    let before: Vec<String> = lake
        .list("raw")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(before.len(), 3, "{before:?}");
    let first_input = lake.get(&before[0]).await.unwrap();

    let report = app.components.archiver.compact(|_| {}).await.unwrap();
    assert_eq!((report.files_in, report.files_out, report.rows), (3, 1, 30));
    let after: Vec<String> = lake
        .list("raw")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        after,
        vec!["raw/year=2026/month=07/day=04/part-0000000000000001-0000000000000003.parquet"]
    );
    assert_eq!(lake.read_raw_index().await.unwrap().len(), expected);

    // A run that died between writing the merged file and deleting its inputs leaves the
    // inputs behind: readers ignore them, and the next compaction removes them.
    lake.put(&before[0], first_input).await.unwrap();
    assert_eq!(
        lake.read_raw_index().await.unwrap().len(),
        expected,
        "covered inputs are not read"
    );
    let verify = app.verify_lake().await;
    assert!(verify.is_consistent(), "{verify:?}");
    let report = app.components.archiver.compact(|_| {}).await.unwrap();
    assert_eq!(report.leftovers_deleted, 1);
    assert_eq!(lake.list("raw").await.unwrap().len(), 1);

    // Pending batches (claimed, not recorded as complete) are never merged.
    app.post_interactions(&app.admin_key, &json!([sample_interaction("c", 99)]))
        .await;
    let store = app.components.store.interactions();
    let pending = store
        .claim_archive_batch(100, Utc::now())
        .await
        .unwrap()
        .unwrap();
    let rows = store.archive_batch_rows(pending).await.unwrap();
    lake.write_raw_batch(pending, rows).await.unwrap();
    let report = app.components.archiver.compact(|_| {}).await.unwrap();
    assert_eq!(report.files_in, 0, "{report:?}");
}

#[tokio::test]
async fn processed_outcomes_hold_the_latest_outcome_per_interaction() {
    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};

    let app = spawn_app().await;
    let mut turn = sample_interaction("c-1", 0);
    turn["outcomes"] = json!({"partner_matched": true, "partner_id": "p-1", "match_score": 0.8});
    let id = app.post_interactions(&app.admin_key, &turn).await.json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut plain = sample_interaction("c-2", 1);
    plain.as_object_mut().unwrap().remove("outcomes");
    app.post_interactions(&app.admin_key, &plain).await;
    for body in [
        json!({"demo_booked": true}),
        json!({"deal_closed": true, "deal_value": 48000}),
    ] {
        let response = app
            .post_json(
                &format!("/v1/interactions/{id}/outcomes"),
                Some(&app.admin_key),
                &body,
            )
            .await;
        assert_eq!(response.status, 201);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.flush_lake().await;
    let report = app.components.archiver.derive().await.unwrap();
    assert_eq!(report.outcomes_written, 1, "{report:?}");

    let bytes = app
        .components
        .archiver
        .lake()
        .get(flywheel_lake::OUTCOMES_PATH)
        .await
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let batch = &batches[0];
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(
        column("interaction_id")
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0),
        id
    );
    assert!(column("partner_matched")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .value(0));
    assert!(column("demo_booked")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .value(0));
    assert!(column("deal_closed")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .value(0));
    assert_eq!(
        column("deal_value")
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0),
        48000.0
    );
    assert_eq!(
        column("match_score")
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0),
        0.8
    );
    assert_eq!(
        column("partner_id")
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0),
        "p-1"
    );
    assert_eq!(
        column("linked_outcomes")
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0),
        2
    );
    assert!(column("satisfaction_score").is_null(0));
}
