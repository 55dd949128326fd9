//! Derived datasets and training data written to the lake: per-tenant Parquet datasets with
//! manifests, and the training export (labels, filters, deduplication, scrubbing, format).

// Helpers outside `#[test]` functions panic too (the suite's `main.rs` does not allow it yet).
#![allow(clippy::panic)]

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use flywheel_analytics::{
    Analytics, AnalyticsError, DatasetKind, DatasetManifest, DeriveOptions, OutcomeFilter,
    ScrubRules, TrainingFilters,
};
use flywheel_core::interaction::InteractionRecord;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fixture::{at, fixture, record, write, Fixture};

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}

fn messages(pairs: &[(&str, &str)]) -> Value {
    let messages: Vec<Value> = pairs
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!(messages)
}

/// A turn record of `conversation` carrying `pairs` as its messages.
fn turn(
    id: &str,
    ms: i64,
    kind: &str,
    user: &str,
    conversation: &str,
    pairs: &[(&str, &str)],
) -> InteractionRecord {
    record(
        "acme",
        id,
        ms,
        kind,
        user,
        json!({"conversation_id": conversation,
        "ai_conversation": {"messages": messages(pairs), "total_tokens": 10}}),
    )
}

fn feedback(
    id: &str,
    ms: i64,
    user: &str,
    parent: &str,
    conversation: &str,
    accuracy: f64,
) -> InteractionRecord {
    record(
        "acme",
        id,
        ms,
        "feedback",
        user,
        json!({"conversation_id": conversation,
        "parent_interaction_id": parent, "feedback": {"helpful": true, "accuracy": accuracy}}),
    )
}

const CONV3_QUESTION: &str =
    "Reach me at bob@example.org or 020 7946 0958; invoice 2026-01-15 for $1,250.00, ref 550e8400-e29b-41d4-a716-446655440000";

/// Conversations added to the fixture's acme (which already has `conv1`: a question, two
/// answers, feedback 8 and a matched, booked outcome):
/// - `conv2` (c6): an e-mail address and a phone number, no feedback → unlabeled;
/// - `conv3` (c7): PII, a tool message, feedback 9 → labeled;
/// - `conv4` (c8): the same words as conv3 in upper case and padded, feedback 9, later →
///   a duplicate;
/// - `conv5` (s1): only gateway calls, each repeating the prompt → unlabeled, no repeats;
/// - `conv6` (c9): a question without an answer → skipped.
fn more_conversations() -> Vec<InteractionRecord> {
    vec![
        turn(
            "q2",
            at(12, 9),
            "ai_concierge",
            "c6",
            "conv2",
            &[(
                "user",
                "my email is jane.doe@example.com, call me on +1 555 123 4567",
            )],
        ),
        turn(
            "r2a",
            at(12, 9) + 1000,
            "ai_concierge_response",
            "c6",
            "conv2",
            &[("assistant", "Thanks, noted.")],
        ),
        turn(
            "q3",
            at(13, 9),
            "ai_concierge",
            "c7",
            "conv3",
            &[("user", CONV3_QUESTION)],
        ),
        turn(
            "r3",
            at(13, 9) + 1000,
            "ai_concierge_response",
            "c7",
            "conv3",
            &[
                ("tool", "{\"profile\": \"bob@example.org\"}"),
                ("assistant", "I will call (555) 123-4567."),
            ],
        ),
        feedback("f3", at(13, 10), "c7", "r3", "conv3", 9.0),
        turn(
            "q4",
            at(17, 9),
            "ai_concierge",
            "c8",
            "conv4",
            &[("user", &format!("  {} \n", CONV3_QUESTION.to_uppercase()))],
        ),
        turn(
            "r4a",
            at(17, 9) + 1000,
            "ai_concierge_response",
            "c8",
            "conv4",
            &[("assistant", "I will call (555) 123-4567.")],
        ),
        feedback("f4", at(17, 10), "c8", "r4a", "conv4", 9.0),
        turn(
            "g5a",
            at(18, 9),
            "ai_completion",
            "s1",
            "conv5",
            &[
                ("system", "Be brief."),
                ("user", "What is a flywheel?"),
                ("assistant", "A wheel."),
            ],
        ),
        turn(
            "g5b",
            at(18, 10),
            "ai_completion",
            "s1",
            "conv5",
            &[
                ("system", "Be brief."),
                ("user", "What is a flywheel?"),
                ("assistant", "A wheel."),
                ("user", "And here?"),
                ("assistant", "A platform."),
            ],
        ),
        turn(
            "q6",
            at(19, 9),
            "ai_concierge",
            "c9",
            "conv6",
            &[("user", "hello?")],
        ),
    ]
}

async fn with_conversations() -> Fixture {
    let f = fixture().await;
    write(&f.lake, 2, more_conversations()).await;
    f
}

async fn lines(f: &Fixture, manifest: &DatasetManifest) -> Vec<Value> {
    let bytes = ok(f.lake.get(&manifest.path).await);
    assert_eq!(manifest.bytes, bytes.len() as u64);
    assert_eq!(manifest.sha256, hex(&Sha256::digest(&bytes)));
    let text = ok(std::str::from_utf8(&bytes));
    text.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(value) => value,
            Err(err) => panic!("not JSON: {err}: {line}"),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn by_kind(manifests: &[DatasetManifest], kind: DatasetKind) -> DatasetManifest {
    match manifests.iter().find(|m| m.kind == kind) {
        Some(manifest) => manifest.clone(),
        None => panic!("no {kind:?} manifest in {manifests:?}"),
    }
}

/// The OpenAI chat fine-tuning format: `messages` with only `role` and `content`, roles
/// system/user/assistant, non-empty text, at least one user message and ending on an answer.
fn assert_fine_tuning_line(line: &Value) {
    let Some(messages) = line["messages"].as_array() else {
        panic!("no messages: {line}");
    };
    for message in messages {
        let Some(object) = message.as_object() else {
            panic!("not an object: {message}");
        };
        let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["content", "role"]), "{line}");
        assert!(
            matches!(
                message["role"].as_str(),
                Some("system" | "user" | "assistant")
            ),
            "{line}"
        );
        assert!(
            message["content"]
                .as_str()
                .is_some_and(|c| !c.trim().is_empty()),
            "{line}"
        );
    }
    assert!(messages.iter().any(|m| m["role"] == "user"), "{line}");
    assert_eq!(
        messages.last().map(|m| &m["role"]),
        Some(&json!("assistant")),
        "{line}"
    );
}

fn conversation_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            line["metadata"]["conversation_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn contents(line: &Value) -> Vec<(String, String)> {
    line["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or_default().to_owned(),
                        m["content"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn line_of<'a>(lines: &'a [Value], conversation: &str) -> &'a Value {
    match lines
        .iter()
        .find(|l| l["metadata"]["conversation_id"] == json!(conversation))
    {
        Some(line) => line,
        None => panic!("{conversation} not in {lines:?}"),
    }
}

#[tokio::test]
async fn training_export_labels_scrubs_deduplicates_and_speaks_the_fine_tuning_format() {
    let f = with_conversations().await;
    let manifests = ok(f
        .analytics
        .export_training("acme", &DeriveOptions::default())
        .await);
    assert_eq!(manifests.len(), 2);
    let labeled_manifest = by_kind(&manifests, DatasetKind::TrainingLabeled);
    let unlabeled_manifest = by_kind(&manifests, DatasetKind::TrainingUnlabeled);
    assert_eq!(
        labeled_manifest.path,
        "training-data/labeled/tenant_id=acme/latest.jsonl"
    );
    assert_eq!(
        unlabeled_manifest.manifest_path,
        "training-data/unlabeled/tenant_id=acme/latest.manifest.json"
    );

    let labeled = lines(&f, &labeled_manifest).await;
    let unlabeled = lines(&f, &unlabeled_manifest).await;
    for line in labeled.iter().chain(&unlabeled) {
        assert_fine_tuning_line(line);
    }
    // Each conversation with feedback exactly once, in start order; conv4 repeats conv3.
    assert_eq!(conversation_ids(&labeled), vec!["conv1", "conv3"]);
    assert_eq!(conversation_ids(&unlabeled), vec!["conv2", "conv5"]);

    let conv1 = line_of(&labeled, "conv1");
    assert_eq!(
        contents(conv1),
        vec![
            ("user".to_owned(), "who can help?".to_owned()),
            ("assistant".to_owned(), "an answer".to_owned()),
            ("assistant".to_owned(), "an answer".to_owned()),
        ]
    );
    assert_eq!(conv1["metadata"]["label_source"], json!("feedback+outcome"));
    assert_eq!(
        conv1["metadata"]["label"]["feedback"]["accuracy"],
        json!(8.0)
    );
    assert_eq!(conv1["metadata"]["label"]["feedback"]["count"], json!(1));
    assert_eq!(
        conv1["metadata"]["label"]["outcome"]["partner_matched"],
        json!(true)
    );
    assert_eq!(
        conv1["metadata"]["label"]["outcome"]["demo_booked"],
        json!(true)
    );
    assert_eq!(
        conv1["metadata"]["started_at"],
        json!("2026-01-10T09:00:00.000Z")
    );

    // Scrubbed: addresses and numbers gone, the date, the price and the id kept; the tool
    // message dropped.
    let conv3 = line_of(&labeled, "conv3");
    assert_eq!(conv3["metadata"]["label_source"], json!("feedback"));
    assert_eq!(conv3["metadata"]["label"]["outcome"], Value::Null);
    assert_eq!(
        contents(conv3),
        vec![
            (
                "user".to_owned(),
                "Reach me at [EMAIL] or [PHONE]; invoice 2026-01-15 for $1,250.00, ref \
                 550e8400-e29b-41d4-a716-446655440000"
                    .to_owned()
            ),
            ("assistant".to_owned(), "I will call [PHONE].".to_owned()),
        ]
    );
    let conv2 = line_of(&unlabeled, "conv2");
    assert_eq!(
        contents(conv2)[0].1,
        "my email is [EMAIL], call me on [PHONE]"
    );
    assert!(conv2["metadata"].get("label").is_none(), "{conv2}");
    assert!(conv2["metadata"].get("label_source").is_none(), "{conv2}");
    for line in labeled.iter().chain(&unlabeled) {
        let text = line.to_string();
        for secret in ["@example", "7946", "555 123", "123-4567"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
    }

    // The gateway's calls repeat the prompt: each message once.
    let conv5 = line_of(&unlabeled, "conv5");
    let roles: Vec<String> = contents(conv5).into_iter().map(|(role, _)| role).collect();
    assert_eq!(
        roles,
        vec!["system", "user", "assistant", "user", "assistant"]
    );

    let report = match &labeled_manifest.training {
        Some(report) => report.clone(),
        None => panic!("no training report"),
    };
    assert_eq!(labeled_manifest.row_count, 2);
    assert_eq!(report.conversations, 3);
    assert_eq!(report.duplicates_dropped, 1);
    assert_eq!((report.scrubbed.emails, report.scrubbed.phones), (1, 2));
    assert_eq!(
        labeled_manifest
            .time_range
            .map(|r| (r.min.timestamp_millis(), r.max.timestamp_millis())),
        Some((at(10, 9), at(13, 9)))
    );
    let unlabeled_report = match &unlabeled_manifest.training {
        Some(report) => report.clone(),
        None => panic!("no training report"),
    };
    assert_eq!(unlabeled_manifest.row_count, 2);
    assert_eq!(
        unlabeled_report.skipped.get("no_assistant_message"),
        Some(&1)
    );
    assert_eq!(unlabeled_report.duplicates_dropped, 0);
    assert_eq!(labeled_manifest.filters, Some(TrainingFilters::default()));
    let raw: Vec<String> = ok(f.lake.current_raw_files().await)
        .into_iter()
        .map(|f| f.path)
        .collect();
    let recorded: Vec<String> = labeled_manifest
        .source
        .raw_files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(recorded, raw);
    assert!(labeled_manifest.source.consistent);
    assert_eq!(labeled_manifest.source.sql.len(), 2);

    // The manifest on the lake is the one returned.
    let stored: DatasetManifest = ok(serde_json::from_slice(&ok(f
        .lake
        .get(&labeled_manifest.manifest_path)
        .await)));
    assert_eq!(stored, labeled_manifest);
}

async fn ids(f: &Fixture, manifests: Vec<DatasetManifest>) -> Vec<(DatasetKind, Vec<String>)> {
    let mut out = Vec::new();
    for manifest in manifests {
        out.push((manifest.kind, conversation_ids(&lines(f, &manifest).await)));
    }
    out
}

#[tokio::test]
async fn training_filters_select_conversations_and_are_recorded() {
    let f = with_conversations().await;
    let options = |filters: TrainingFilters| DeriveOptions {
        dataset: "filtered".to_owned(),
        filters,
        ..DeriveOptions::default()
    };

    // conv1 is rated 8, conv3 9.
    let min_rating = options(TrainingFilters {
        min_rating: Some(8.5),
        ..TrainingFilters::default()
    });
    let manifests = ok(f.analytics.export_training("acme", &min_rating).await);
    let report = manifests[0].training.clone().unwrap_or_default();
    assert_eq!(report.filtered.get("min_rating"), Some(&1));
    assert_eq!(manifests[0].filters, Some(min_rating.filters.clone()));
    assert_eq!(
        manifests[0].path,
        "training-data/labeled/tenant_id=acme/filtered.jsonl"
    );
    assert_eq!(
        ids(&f, manifests).await,
        vec![
            (DatasetKind::TrainingLabeled, vec!["conv3".to_owned()]),
            (
                DatasetKind::TrainingUnlabeled,
                vec!["conv2".to_owned(), "conv5".to_owned()]
            ),
        ]
    );

    // Only conv1 has an outcome (matched, demo booked; no deal yet).
    let booked = options(TrainingFilters {
        outcome: Some(OutcomeFilter::DemoBooked),
        ..TrainingFilters::default()
    });
    let manifests = ok(f.analytics.export_training("acme", &booked).await);
    assert_eq!(ids(&f, manifests).await[0].1, vec!["conv1".to_owned()]);
    let closed = options(TrainingFilters {
        outcome: Some(OutcomeFilter::DealClosed),
        ..TrainingFilters::default()
    });
    let manifests = ok(f.analytics.export_training("acme", &closed).await);
    assert_eq!(manifests[0].row_count, 0);
    assert_eq!(manifests[0].time_range, None);

    // Conversations started from Jan 12 (inclusive) to Jan 18 (exclusive).
    let window = options(TrainingFilters {
        from: chrono::DateTime::from_timestamp_millis(at(12, 9)),
        to: chrono::DateTime::from_timestamp_millis(at(18, 9)),
        ..TrainingFilters::default()
    });
    let manifests = ok(f.analytics.export_training("acme", &window).await);
    assert!(
        manifests[0].source.sql[1].contains("\"timestamp\" >= $1"),
        "{:?}",
        manifests[0].source.sql
    );
    assert_eq!(
        ids(&f, manifests).await,
        vec![
            (DatasetKind::TrainingLabeled, vec!["conv3".to_owned()]),
            (DatasetKind::TrainingUnlabeled, vec!["conv2".to_owned()]),
        ]
    );
}

#[tokio::test]
async fn configured_fields_terms_and_patterns_are_redacted() {
    let f = fixture().await;
    write(&f.lake, 2, vec![
        turn("q7", at(20, 9), "ai_concierge", "c7", "conv7",
            &[("user", "{\"account_number\": \"DE89 3704 0044 0532 0130 00\", \"note\": \"from Globex Corp\"}")]),
        turn("r7", at(20, 9) + 1000, "ai_concierge_response", "c7", "conv7",
            &[("assistant", "Globex ticket TCK-42 is open.")]),
    ]).await;
    let options = DeriveOptions {
        scrub: ScrubRules {
            fields: vec!["account_number".to_owned()],
            terms: vec!["Globex Corp".to_owned(), "Globex".to_owned()],
            patterns: vec![r"TCK-\d+".to_owned()],
            ..ScrubRules::default()
        },
        ..DeriveOptions::default()
    };
    let manifests = ok(f.analytics.export_training("acme", &options).await);
    let unlabeled = by_kind(&manifests, DatasetKind::TrainingUnlabeled);
    let lines = lines(&f, &unlabeled).await;
    assert_eq!(
        contents(line_of(&lines, "conv7")),
        vec![
            (
                "user".to_owned(),
                r#"{"account_number":"[REDACTED]","note":"from [REDACTED]"}"#.to_owned()
            ),
            (
                "assistant".to_owned(),
                "[REDACTED] ticket [REDACTED] is open.".to_owned()
            ),
        ]
    );
    let report = unlabeled.training.unwrap_or_default();
    assert_eq!((report.scrubbed.fields, report.scrubbed.terms), (1, 3));
    // The manifest names the fields but never the terms or patterns.
    assert_eq!(report.scrub.fields, vec!["account_number".to_owned()]);
    assert_eq!((report.scrub.terms, report.scrub.patterns), (2, 1));
    let manifest_text =
        String::from_utf8_lossy(&ok(f.lake.get(&unlabeled.manifest_path).await)).into_owned();
    assert!(
        !manifest_text.contains("Globex") && !manifest_text.contains("TCK"),
        "{manifest_text}"
    );
}

fn parquet_rows(bytes: bytes::Bytes) -> (Vec<String>, usize) {
    let builder = ok(ParquetRecordBatchReaderBuilder::try_new(bytes));
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let rows = ok(builder.build()).map(|batch| ok(batch).num_rows()).sum();
    (columns, rows)
}

#[tokio::test]
async fn processed_datasets_are_per_tenant_parquet_with_manifests() {
    let f = fixture().await;
    let acme = ok(f
        .analytics
        .derive_processed("acme", &DeriveOptions::default())
        .await);
    let other = ok(f
        .analytics
        .derive_processed("other", &DeriveOptions::default())
        .await);

    let expected = [
        (
            DatasetKind::Conversations,
            "processed/conversations/tenant_id=acme/conversations.parquet",
            1,
        ),
        (
            DatasetKind::Outcomes,
            "processed/outcomes/tenant_id=acme/outcomes.parquet",
            4,
        ),
        (
            DatasetKind::Feedback,
            "processed/feedback/tenant_id=acme/feedback.parquet",
            1,
        ),
    ];
    assert_eq!(acme.len(), 3);
    for (kind, path, rows) in expected {
        let manifest = by_kind(&acme, kind);
        assert_eq!(manifest.path, path);
        assert_eq!(manifest.row_count, rows, "{kind:?}");
        assert_eq!(manifest.tenant_id, "acme");
        assert_eq!(manifest.format, "parquet");
        assert!(manifest.manifest_path.ends_with("/_manifest.json"));
        let bytes = ok(f.lake.get(&manifest.path).await);
        assert_eq!(manifest.sha256, hex(&Sha256::digest(&bytes)));
        let (columns, n_rows) = parquet_rows(bytes);
        assert_eq!(n_rows as u64, rows);
        assert!(
            !columns.iter().any(|c| c == "tenant_id"),
            "{kind:?}: {columns:?}"
        );
        assert!(manifest.filters.is_none() && manifest.training.is_none());
        assert_eq!(manifest.source.sql.len(), 1);
        assert!(!manifest.source.raw_files.is_empty());
    }
    let feedback = by_kind(&acme, DatasetKind::Feedback);
    let range = feedback
        .time_range
        .map(|r| (r.min.timestamp_millis(), r.max.timestamp_millis()));
    assert_eq!(range, Some((at(11, 12), at(11, 12))));
    let outcomes = by_kind(&acme, DatasetKind::Outcomes);
    let range = outcomes
        .time_range
        .map(|r| (r.min.timestamp_millis(), r.max.timestamp_millis()));
    assert_eq!(range, Some((at(-5, 10), at(20, 10))));
    // Other has a conversation and an outcome, but no feedback: an empty file, still a table.
    let other_feedback = by_kind(&other, DatasetKind::Feedback);
    assert_eq!(
        (other_feedback.row_count, other_feedback.time_range),
        (0, None)
    );
    assert_eq!(
        parquet_rows(ok(f.lake.get(&other_feedback.path).await)).1,
        0
    );

    // Listing: each tenant sees only its own manifests.
    let listed = ok(f.analytics.list_datasets("acme").await);
    assert_eq!(listed, acme);
    let listed_other = ok(f.analytics.list_datasets("other").await);
    assert!(listed_other.iter().all(|m| m.tenant_id == "other"));
    assert_eq!(listed_other.len(), 3);
    assert!(ok(f.analytics.list_datasets("nobody").await).is_empty());

    // The directories read as Hive-partitioned tables by an engine that knows nothing of
    // Flywheel (the manifests beside the data are not read as data).
    let ctx = SessionContext::new();
    let root = f.lake.url().to_owned();
    ok(ctx
        .register_parquet(
            "conversations",
            format!("{root}/processed/conversations/"),
            ParquetReadOptions::default()
                .table_partition_cols(vec![("tenant_id".to_owned(), DataType::Utf8)]),
        )
        .await);
    let frame = ok(ctx
        .sql("SELECT tenant_id, conversation_id, deal_value FROM conversations ORDER BY tenant_id")
        .await);
    let batches = ok(frame.collect().await);
    let text = ok(datafusion::arrow::util::pretty::pretty_format_batches(
        &batches,
    ))
    .to_string();
    assert!(text.contains("| acme      | conv1           |"), "{text}");
    assert!(
        text.contains("| other     | conv1           | 99999.0    |"),
        "{text}"
    );
}

#[tokio::test]
async fn derive_datasets_writes_all_five_and_they_are_listed() {
    let f = with_conversations().await;
    let options = DeriveOptions {
        dataset: "v1".to_owned(),
        ..DeriveOptions::default()
    };
    let written = ok(f.analytics.derive_datasets("acme", &options).await);
    let kinds: Vec<DatasetKind> = written.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, DatasetKind::ALL.to_vec());
    assert_eq!(ok(f.analytics.list_datasets("acme").await), written);
    // Another tenant's export holds nothing of acme's.
    let other = ok(f.analytics.export_training("other", &options).await);
    for manifest in &other {
        assert_eq!(manifest.row_count, 0, "{manifest:?}");
        assert!(ok(f.lake.get(&manifest.path).await).is_empty());
    }
    let other_listed = ok(f.analytics.list_datasets("other").await);
    assert_eq!(other_listed.len(), 2);
    assert!(other_listed
        .iter()
        .all(|m| m.path.contains("tenant_id=other/")));
}

#[tokio::test]
async fn bad_names_filters_and_patterns_are_refused_before_writing() {
    let f = fixture().await;
    let analytics: &Analytics = &f.analytics;
    let bad_options = [
        DeriveOptions {
            dataset: "../escape".to_owned(),
            ..DeriveOptions::default()
        },
        DeriveOptions {
            dataset: "Latest".to_owned(),
            ..DeriveOptions::default()
        },
        DeriveOptions {
            filters: TrainingFilters {
                min_rating: Some(-1.0),
                ..TrainingFilters::default()
            },
            ..DeriveOptions::default()
        },
        DeriveOptions {
            scrub: ScrubRules {
                patterns: vec!["(".to_owned()],
                ..ScrubRules::default()
            },
            ..DeriveOptions::default()
        },
    ];
    for options in bad_options {
        match analytics.derive_datasets("acme", &options).await {
            Err(AnalyticsError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{options:?}: expected a refusal, got {other:?}"),
        }
    }
    for tenant in ["../acme", "Acme", "acme/x", ""] {
        assert!(
            matches!(
                analytics
                    .derive_datasets(tenant, &DeriveOptions::default())
                    .await,
                Err(AnalyticsError::Invalid(_))
            ),
            "{tenant}"
        );
        assert!(matches!(
            analytics.list_datasets(tenant).await,
            Err(AnalyticsError::Invalid(_))
        ));
    }
    // Every option is checked before anything is written.
    assert!(ok(f.lake.list("training-data").await).is_empty());
    assert!(ok(f.lake.list("processed").await).is_empty());
}
