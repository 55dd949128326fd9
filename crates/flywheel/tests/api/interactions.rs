//! The collector API: validation, idempotency, quarantine, outcomes, scoping, tracking.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{sample_interaction, spawn_app, spawn_app_with, TestResponse};

fn details(response: &TestResponse) -> Vec<(String, String)> {
    response.json()["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_owned(),
                d["problem"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_single_interaction_is_stored_enriched_and_read_back() {
    let app = spawn_app().await;
    let response = app
        .post_interactions(&app.admin_key, &sample_interaction("c-1", 0))
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let id = response.json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let read = app
        .get(&format!("/v1/interactions/{id}"), Some(&app.admin_key))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let document = read.json();
    assert_eq!(document["tenant_id"], "default");
    assert_eq!(document["schema_version"], 1);
    assert!(document["received_at"].is_string());
    assert_eq!(
        document["metadata"]["client_ip"], "203.0.113.0",
        "truncated to /24 by default"
    );
    assert_eq!(document["metadata"]["device_type"], "desktop");
    assert_eq!(document["metadata"]["browser"], "Safari");
    assert_eq!(document["experiments"]["ui_variant"], "b");
    assert_eq!(
        document["ai_conversation"]["messages"][2]["model"],
        "gpt-4o-mini"
    );
}

#[tokio::test]
async fn interaction_id_is_the_idempotency_key() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut body = sample_interaction("c-1", 1);
    body["interaction_id"] = json!(id);
    let first = app.post_interactions(&app.admin_key, &body).await;
    assert_eq!(first.status, 201);
    body["user_id"] = json!("changed");
    let second = app.post_interactions(&app.admin_key, &body).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json()["status"], "duplicate");
    assert_eq!(second.json()["interaction_id"], id.as_str());
    let stored = app
        .get(&format!("/v1/interactions/{id}"), Some(&app.admin_key))
        .await
        .json();
    assert_eq!(stored["user_id"], "c-1", "a duplicate changes nothing");
    let batch = app
        .post_interactions(&app.admin_key, &json!([body]))
        .await
        .json();
    assert_eq!(batch["duplicates"], 1);
}

#[tokio::test]
async fn batches_report_each_item_and_quarantine_rejects() {
    let app = spawn_app().await;
    let repeated = uuid::Uuid::now_v7().to_string();
    let mut first = sample_interaction("c-1", 1);
    first["interaction_id"] = json!(repeated);
    let mut again = sample_interaction("c-1", 2);
    again["interaction_id"] = json!(repeated);
    let batch = json!([
        first,
        {"interaction_type": "Not Valid", "user_id": "c-1", "user_type": "contractor"},
        again,
        sample_interaction("c-2", 3),
    ]);
    let response = app.post_interactions(&app.admin_key, &batch).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["created"], 2);
    assert_eq!(body["rejected"], 2);
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["created", "rejected", "rejected", "created"]);
    assert_eq!(body["results"][1]["errors"][0]["field"], "interaction_type");
    assert!(body["results"][2]["errors"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("twice"));

    let all_bad = app
        .post_interactions(&app.admin_key, &json!([{"user_id": 5}]))
        .await;
    assert_eq!(all_bad.status, 422, "{}", all_bad.text);
    assert!(details(&all_bad)
        .iter()
        .any(|(field, _)| field == "[0].user_id"));

    let rejected = app
        .get("/v1/interactions/rejected", Some(&app.admin_key))
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    let entries = rejected.json()["rejected"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries
        .iter()
        .any(|e| e["batch_index"] == 1 && e["payload"].as_str().unwrap().contains("Not Valid")));
    assert!(entries.iter().all(|e| e["reason"].is_array()));
}

#[tokio::test]
async fn wrong_types_and_ranges_are_field_errors() {
    let app = spawn_app().await;
    let mut body = sample_interaction("c-1", 0);
    body["outcomes"]["match_score"] = json!(1.5);
    body["outcomes"]["satisfaction_score"] = json!(11);
    body["outcomes"]["deal_value"] = json!(-1);
    body["ai_conversation"]["total_tokens"] = json!(-3);
    body["ai_conversation"]["cost"] = json!("free");
    body["timestamp"] = json!("last tuesday");
    let response = app.post_interactions(&app.admin_key, &body).await;
    assert_eq!(response.status, 422, "{}", response.text);
    let fields: Vec<String> = details(&response).into_iter().map(|(f, _)| f).collect();
    for expected in [
        "outcomes.match_score",
        "outcomes.satisfaction_score",
        "outcomes.deal_value",
        "ai_conversation.total_tokens",
        "ai_conversation.cost",
        "timestamp",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} not in {fields:?}"
        );
    }
    let not_object = app.post_interactions(&app.admin_key, &json!("hello")).await;
    assert_eq!(not_object.status, 422);
    let rejected = app
        .get("/v1/interactions/rejected", Some(&app.admin_key))
        .await
        .json();
    assert_eq!(rejected["rejected"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unparseable_bodies_are_quarantined() {
    let app = spawn_app().await;
    let send = |body: Vec<u8>| {
        app.client
            .post(app.url("/v1/interactions"))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(body)
    };
    let truncated = app.send(send(b"[{\"interaction_type\": ".to_vec())).await;
    assert_eq!(truncated.status, 400, "{}", truncated.text);
    assert_eq!(truncated.error_code(), "malformed_json");
    let invalid_utf8 = app
        .send(send(b"{\"user_id\": \"\xff\xfe\"}".to_vec()))
        .await;
    assert_eq!(invalid_utf8.status, 400);
    let rejected = app
        .get("/v1/interactions/rejected", Some(&app.admin_key))
        .await
        .json();
    let entries = rejected["rejected"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["reason"][0]["field"] == "body"));
    let wrong_type = app
        .send(
            app.client
                .post(app.url("/v1/interactions"))
                .bearer_auth(&app.admin_key)
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(wrong_type.status, 415);
}

#[tokio::test]
async fn oversized_batches_are_refused() {
    let app = spawn_app_with(|config| config.ingest.max_batch_items = 3).await;
    let batch: Vec<Value> = (0..4).map(|i| sample_interaction("c", i)).collect();
    let response = app.post_interactions(&app.admin_key, &json!(batch)).await;
    assert_eq!(response.status, 413, "{}", response.text);
    assert_eq!(response.error_code(), "batch_too_large");
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 3"));
    let ok = app
        .post_interactions(&app.admin_key, &json!(batch[..3].to_vec()))
        .await;
    assert_eq!(ok.status, 200);
    let empty = app.post_interactions(&app.admin_key, &json!([])).await;
    assert_eq!(empty.status, 422);
}

#[tokio::test]
async fn contractors_write_and_read_only_their_own() {
    let app = spawn_app().await;
    let (contractor, _) = app
        .create_key("default", "contractor", Some("contractor-7"))
        .await;
    let mut body = sample_interaction("someone-else", 0);
    body["user_type"] = json!("admin");
    let created = app.post_interactions(&contractor, &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = app
        .get(&format!("/v1/interactions/{id}"), Some(&app.admin_key))
        .await
        .json();
    assert_eq!(
        stored["user_id"], "contractor-7",
        "user_id is forced to the caller"
    );
    assert_eq!(stored["user_type"], "contractor");

    let other = app
        .post_interactions(&app.admin_key, &sample_interaction("contractor-8", 1))
        .await;
    let other_id = other.json()["interaction_id"].as_str().unwrap().to_owned();
    let denied = app
        .get(&format!("/v1/interactions/{other_id}"), Some(&contractor))
        .await;
    assert_eq!(denied.status, 404);
    let listed = app.get("/v1/interactions", Some(&contractor)).await.json();
    let users: Vec<&str> = listed["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec!["contractor-7"]);
    let outcome = app
        .post_json(
            &format!("/v1/interactions/{other_id}/outcomes"),
            Some(&contractor),
            &json!({"deal_closed": true}),
        )
        .await;
    assert_eq!(
        outcome.status, 404,
        "cannot attach outcomes to someone else's interaction"
    );
    assert_eq!(
        app.get("/v1/interactions/rejected", Some(&contractor))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn tenants_never_see_each_others_interactions() {
    let app = spawn_app().await;
    app.create_tenant("tenant-b").await;
    let (admin_b, _) = app.create_key("tenant-b", "admin", None).await;
    let mut body = sample_interaction("c-1", 0);
    let shared_id = uuid::Uuid::now_v7().to_string();
    body["interaction_id"] = json!(shared_id);
    let a = app.post_interactions(&app.admin_key, &body).await;
    assert_eq!(a.status, 201);
    app.post_interactions(&app.admin_key, &json!({"interaction_type": "Bad"}))
        .await;

    assert_eq!(
        app.get(&format!("/v1/interactions/{shared_id}"), Some(&admin_b))
            .await
            .status,
        404
    );
    let listed = app.get("/v1/interactions", Some(&admin_b)).await.json();
    assert!(listed["interactions"].as_array().unwrap().is_empty());
    let rejected = app
        .get("/v1/interactions/rejected", Some(&admin_b))
        .await
        .json();
    assert!(rejected["rejected"].as_array().unwrap().is_empty());
    let outcome = app
        .post_json(
            &format!("/v1/interactions/{shared_id}/outcomes"),
            Some(&admin_b),
            &json!({"deal_closed": true}),
        )
        .await;
    assert_eq!(outcome.status, 404);
    let by_conversation = app
        .post_json(
            "/v1/outcomes",
            Some(&admin_b),
            &json!({"conversation_id": "conv-c-1-0", "outcomes": {"deal_closed": true}}),
        )
        .await;
    assert_eq!(by_conversation.status, 404);

    // The same id in another tenant is a different interaction, not a duplicate.
    let b = app.post_interactions(&admin_b, &body).await;
    assert_eq!(b.status, 201, "{}", b.text);
    let read_b = app
        .get(&format!("/v1/interactions/{shared_id}"), Some(&admin_b))
        .await
        .json();
    assert_eq!(read_b["tenant_id"], "tenant-b");
}

#[tokio::test]
async fn later_outcomes_are_linked_and_merged() {
    let app = spawn_app().await;
    let mut turn = sample_interaction("c-9", 0);
    turn["outcomes"] =
        json!({"partner_matched": true, "partner_id": "partner-x", "match_score": 0.9});
    turn["conversation_id"] = json!("conv-9");
    let id = app.post_interactions(&app.admin_key, &turn).await.json()["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let demo = app
        .post_json(
            &format!("/v1/interactions/{id}/outcomes"),
            Some(&app.admin_key),
            &json!({"demo_booked": true}),
        )
        .await;
    assert_eq!(demo.status, 201, "{}", demo.text);
    assert_eq!(demo.json()["parent_interaction_id"], id.as_str());
    let deal = app
        .post_json(
            "/v1/outcomes",
            Some(&app.admin_key),
            &json!({"user_id": "c-9", "partner_id": "partner-x", "outcomes": {"deal_closed": true, "deal_value": 48000}}),
        )
        .await;
    assert_eq!(deal.status, 201, "{}", deal.text);
    let feedback = app
        .post_json(
            &format!("/v1/interactions/{id}/feedback"),
            Some(&app.admin_key),
            &json!({"helpful": false, "comments": "slow"}),
        )
        .await;
    assert_eq!(feedback.status, 201, "{}", feedback.text);
    let by_conversation = app
        .post_json(
            "/v1/outcomes",
            Some(&app.admin_key),
            &json!({"conversation_id": "conv-9", "outcomes": {"satisfaction_score": 9}}),
        )
        .await;
    assert_eq!(by_conversation.status, 201, "{}", by_conversation.text);

    let merged = app
        .get(&format!("/v1/interactions/{id}"), Some(&app.admin_key))
        .await
        .json();
    assert_eq!(merged["outcomes"]["partner_matched"], true);
    assert_eq!(merged["outcomes"]["demo_booked"], true);
    assert_eq!(merged["outcomes"]["deal_closed"], true);
    assert_eq!(merged["outcomes"]["deal_value"], 48000);
    assert_eq!(merged["outcomes"]["satisfaction_score"], 9);
    assert_eq!(merged["feedback"]["helpful"], false, "later feedback wins");
    assert_eq!(
        merged["feedback"]["would_recommend"], true,
        "fields not overridden are kept"
    );
    let linked_types: Vec<&str> = merged["linked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["interaction_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        linked_types,
        vec!["demo_booking", "deal_closed", "feedback", "outcome"]
    );

    // Each linked record is an interaction of its own, with the parent set.
    let deals = app
        .get(
            "/v1/interactions?interaction_type=deal_closed",
            Some(&app.admin_key),
        )
        .await
        .json();
    let deal = &deals["interactions"][0];
    assert_eq!(deal["parent_interaction_id"], id.as_str());
    assert_eq!(deal["user_id"], "c-9");
    assert_eq!(deal["outcomes"]["partner_id"], "partner-x");

    let bad = app
        .post_json(
            &format!("/v1/interactions/{id}/outcomes"),
            Some(&app.admin_key),
            &json!({"deal_value": -5}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let missing = app
        .post_json(
            &format!("/v1/interactions/{}/outcomes", uuid::Uuid::now_v7()),
            Some(&app.admin_key),
            &json!({"deal_closed": true}),
        )
        .await;
    assert_eq!(missing.status, 404);
    let neither = app
        .post_json(
            "/v1/outcomes",
            Some(&app.admin_key),
            &json!({"outcomes": {}}),
        )
        .await;
    assert_eq!(neither.status, 422);
}

#[tokio::test]
async fn listings_filter_and_paginate() {
    let app = spawn_app().await;
    for day in 1..=7 {
        let mut body = sample_interaction(if day % 2 == 0 { "even" } else { "odd" }, day);
        body["timestamp"] = json!(format!("2026-10-{day:02}T12:00:00Z"));
        assert_eq!(
            app.post_interactions(&app.admin_key, &body).await.status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(cursor) => format!("/v1/interactions?limit=3&cursor={cursor}"),
            None => "/v1/interactions?limit=3".to_owned(),
        };
        let page = app.get(&path, Some(&app.admin_key)).await.json();
        for item in page["interactions"].as_array().unwrap() {
            seen.push(item["timestamp"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=7)
        .rev()
        .map(|d| format!("2026-10-{d:02}T12:00:00Z"))
        .collect();
    assert_eq!(seen, expected, "newest first, each once");

    let filtered = app
        .get(
            "/v1/interactions?user_id=even&from=2026-10-03T00:00:00Z&to=2026-10-07T00:00:00Z",
            Some(&app.admin_key),
        )
        .await
        .json();
    let days: Vec<&str> = filtered["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(days, vec!["2026-10-06T12:00:00Z", "2026-10-04T12:00:00Z"]);
    let bad = app
        .get(
            "/v1/interactions?from=yesterday&limit=0&cursor=zz",
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(details(&bad).len(), 3);
}

#[tokio::test]
async fn api_calls_are_tracked_with_secrets_redacted() {
    let app = spawn_app_with(|config| config.features.api_call_tracking = true).await;
    let response = app
        .get(
            "/v1/interactions?limit=5&token=super-secret-value",
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(
        response.status, 400,
        "unknown query parameters are refused: {}",
        response.text
    );
    assert_eq!(app.get("/v1/me", Some(&app.admin_key)).await.status, 200);
    let mut calls = Vec::new();
    for _ in 0..50 {
        let listed = app
            .get(
                "/v1/interactions?interaction_type=api_call&limit=100",
                Some(&app.admin_key),
            )
            .await
            .json();
        calls = listed["interactions"].as_array().unwrap().clone();
        if calls.iter().any(|c| c["api_call"]["route"] == "/v1/me") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let me = calls
        .iter()
        .find(|c| c["api_call"]["route"] == "/v1/me")
        .expect("the /v1/me call was recorded");
    assert_eq!(me["api_call"]["method"], "GET");
    assert_eq!(me["api_call"]["status"], 200);
    assert_eq!(me["user_id"], "bootstrap-admin");
    assert!(me["api_call"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let listing = calls
        .iter()
        .find(|c| c["api_call"]["route"] == "/v1/interactions" && c["api_call"]["status"] == 400)
        .expect("the refused listing was recorded");
    assert_eq!(listing["api_call"]["query"]["token"], "[REDACTED]");
    assert_eq!(listing["api_call"]["query"]["limit"], "5");
    assert!(!calls
        .iter()
        .any(|c| c.to_string().contains("super-secret-value")));
}

#[tokio::test]
async fn switched_off_collection_says_so() {
    let app = spawn_app_with(|config| {
        config.features.data_collection = false;
        config.features.outcome_tracking = false;
    })
    .await;
    let response = app
        .post_interactions(&app.admin_key, &sample_interaction("c", 0))
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.error_code(), "feature_disabled");
}
