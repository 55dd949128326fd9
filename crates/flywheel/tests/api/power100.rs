//! Power100 through the API: profiles with roles and versions, explainable matching logged as
//! `partner_match` interactions, the demo-booking lifecycle, deals, and the funnel from a
//! concierge conversation to a closed deal.
//!
//! Semantic fit uses the mock upstream's embeddings (deterministic unit vectors per text), so
//! the tests check that the factor is present or missing, not its value; the other factors are
//! checked against hand-computed numbers from docs/power100.md.

use std::io::Write;
use std::time::Duration;

use flywheel_config::{ProviderConfig, ProviderKindConfig, SecretRef};
use flywheel_mock_provider::MockServer;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestResponse};

struct Power100 {
    app: TestApp,
    _mock: MockServer,
    _key_file: tempfile::NamedTempFile,
}

/// An app whose gateway has the mock upstream as `mock` (chat for the concierge, embeddings
/// for semantic fit).
async fn power100_app() -> Power100 {
    let mock = MockServer::start().await.unwrap();
    let base_url = mock.base_url();
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    key_file.write_all(b"sk-power100-test-key").unwrap();
    let key = Some(SecretRef::File {
        file: key_file.path().to_owned(),
    });
    let app = spawn_app_with(move |config| {
        config.gateway.providers.insert(
            "mock".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::OpenaiCompatible,
                base_url: Some(format!("{base_url}/v1")),
                timeout: Duration::from_secs(5),
                api_key: key,
                ..ProviderConfig::default()
            },
        );
        config.concierge.model = "mock/gpt-mock".to_owned();
        config.power100.embedding_model = Some("mock/text-embed".to_owned());
    })
    .await;
    Power100 {
        app,
        _mock: mock,
        _key_file: key_file,
    }
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> TestResponse {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(body);
    if let Some(version) = if_match {
        request = request.header("If-Match", version);
    }
    app.send(request).await
}

async fn put(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> TestResponse {
    send(app, reqwest::Method::PUT, path, token, body, if_match).await
}

async fn patch(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> TestResponse {
    send(app, reqwest::Method::PATCH, path, token, body, if_match).await
}

fn lead_partner() -> Value {
    json!({
        "id": "p-lead",
        "company_name": "LeadFlow Pros",
        "value_proposition": "We fill your calendar with qualified roofing leads",
        "key_differentiators": ["Exclusive leads", "Five-minute follow-up"],
        "focus_areas_served": ["controlling_lead_flow", "marketing_automation"],
        "revenue_tiers_served": ["5_10_million"],
        "service_areas": ["national"],
        "contacts": {"ceo": {"name": "Dana Lead", "email": "dana@leadflow.test"}},
    })
}

fn closing_partner() -> Value {
    json!({
        "id": "p-close",
        "company_name": "CloseRight",
        "focus_areas_served": ["closing_higher_percentage"],
        "revenue_tiers_served": ["25_50_million"],
        "service_areas": ["TX"],
    })
}

fn acme(goals: Option<&str>) -> Value {
    let mut body = json!({
        "id": "c-acme",
        "company_name": "Acme Roofing",
        "contact": {"name": "Ann Acme", "email": "ann@acme.test"},
        "service_areas": ["TX", "OK"],
        "focus_areas": ["Controlling Lead Flow", "closing_higher_percentage", "marketing_automation"],
        "revenue_tier": "5_10_million",
        "team_size": 25,
        "tech_stack": {"crm": ["JobNimbus"]},
    });
    if let Some(goals) = goals {
        body["business_goals"] = json!(goals);
    }
    body
}

async fn create(app: &TestApp, path: &str, token: &str, body: &Value) -> Value {
    let response = app.post_json(path, Some(token), body).await;
    assert_eq!(response.status, 201, "{path}: {}", response.text);
    response.json()
}

#[tokio::test]
async fn profiles_are_validated_versioned_and_owned() {
    let setup = power100_app().await;
    let app = &setup.app;
    let admin = app.admin_key.clone();
    let contractor = app
        .issue_token("default", "c-acme", "contractor", Duration::from_secs(600))
        .await;
    let other_contractor = app
        .issue_token("default", "c-other", "contractor", Duration::from_secs(600))
        .await;
    let partner = app
        .issue_token("default", "p-lead", "partner", Duration::from_secs(600))
        .await;

    // Partners are created by admins; a partner or a contractor cannot.
    let refused = app
        .post_json("/v1/partners", Some(&partner), &lead_partner())
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let created = create(app, "/v1/partners", &admin, &lead_partner()).await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["profile"]["active"], true);
    assert_eq!(created["profile"]["engagement_tier"], "standard");
    let again = app
        .post_json("/v1/partners", Some(&admin), &lead_partner())
        .await;
    assert_eq!(again.status, 409, "{}", again.text);

    // Every problem at once, under its field path.
    let mut bad = acme(None);
    bad["focus_areas"] = json!(["lead_flow_magic"]);
    bad["revenue_tier"] = json!("a_lot");
    bad["contact"]["email"] = json!("not-an-email");
    let invalid = app
        .post_json("/v1/contractors", Some(&contractor), &bad)
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.text);
    for field in ["focus_areas[0]", "revenue_tier", "contact.email"] {
        assert!(invalid.text.contains(field), "{field}: {}", invalid.text);
    }
    let unknown = app
        .post_json("/v1/contractors", Some(&contractor), &json!({"id": "c-acme", "company_name": "A", "contact": {"name": "A"}, "focus_areas": ["controlling_lead_flow"], "score": 99}))
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.text);

    // A contractor creates only its own profile, canonicalised.
    let foreign = app
        .post_json("/v1/contractors", Some(&other_contractor), &acme(None))
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    let own = app
        .post_json("/v1/contractors", Some(&contractor), &acme(None))
        .await;
    assert_eq!(own.status, 201, "{}", own.text);
    assert_eq!(own.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(
        own.json()["profile"]["focus_areas"],
        json!([
            "controlling_lead_flow",
            "closing_higher_percentage",
            "marketing_automation"
        ])
    );

    // Reads: the contractor itself and admins; nobody else.
    let read = app.get("/v1/contractors/c-acme", Some(&contractor)).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["profile"]["revenue_tier"], "5_10_million");
    for token in [&other_contractor, &partner] {
        let hidden = app.get("/v1/contractors/c-acme", Some(token)).await;
        assert_eq!(hidden.status, 404, "{}", hidden.text);
    }
    let listed = app.get("/v1/contractors", Some(&contractor)).await;
    assert_eq!(listed.status, 403);
    let listed = app.get("/v1/contractors", Some(&admin)).await;
    assert_eq!(listed.json()["data"][0]["id"], "c-acme", "{}", listed.text);

    // Optimistic concurrency: If-Match names the version read.
    let mut changed = acme(Some("Double our lead flow"));
    changed.as_object_mut().unwrap().remove("id");
    let updated = put(
        app,
        "/v1/contractors/c-acme",
        &contractor,
        &changed,
        Some("\"1\""),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json()["version"], 2);
    assert_eq!(
        updated.json()["profile"]["business_goals"],
        "Double our lead flow"
    );
    let stale = put(
        app,
        "/v1/contractors/c-acme",
        &admin,
        &changed,
        Some("\"1\""),
    )
    .await;
    assert_eq!(stale.status, 409, "{}", stale.text);
    let renamed = put(
        app,
        "/v1/contractors/c-acme",
        &admin,
        &acme(None).tap_id("c-new"),
        None,
    )
    .await;
    assert_eq!(renamed.status, 422, "{}", renamed.text);
    let by_other = put(
        app,
        "/v1/contractors/c-acme",
        &other_contractor,
        &changed,
        None,
    )
    .await;
    assert_eq!(by_other.status, 404, "{}", by_other.text);

    // A partner edits its own profile, but never its active flag, nor another partner.
    let mut own_edit = lead_partner();
    own_edit["description"] = json!("Roofing lead generation since 2010");
    let edited = put(app, "/v1/partners/p-lead", &partner, &own_edit, None).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(
        edited.json()["profile"]["active"],
        true,
        "absent active keeps it"
    );
    let mut deactivate = lead_partner();
    deactivate["active"] = json!(false);
    let refused = put(app, "/v1/partners/p-lead", &partner, &deactivate, None).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let mut score = lead_partner();
    score["power_confidence"] = json!(100);
    let refused = put(app, "/v1/partners/p-lead", &partner, &score, None).await;
    assert_eq!(
        refused.status, 422,
        "a score is not a profile field: {}",
        refused.text
    );
    create(app, "/v1/partners", &admin, &closing_partner()).await;
    let refused = put(
        app,
        "/v1/partners/p-close",
        &partner,
        &closing_partner(),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    // An admin deactivates; then only admins and the partner itself see it.
    let deactivated = put(app, "/v1/partners/p-lead", &admin, &deactivate, Some("2")).await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.text);
    assert_eq!(deactivated.json()["version"], 3);
    let hidden = app.get("/v1/partners/p-lead", Some(&contractor)).await;
    assert_eq!(hidden.status, 404);
    let seen = app.get("/v1/partners/p-lead", Some(&partner)).await;
    assert_eq!(seen.status, 200);
    let listed = app.get("/v1/partners", Some(&contractor)).await.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["p-close"]);
    let listed = app.get("/v1/partners?limit=1", Some(&admin)).await.json();
    assert_eq!(listed["data"][0]["id"], "p-close");
    assert_eq!(listed["next_after"], "p-close");

    // Another tenant sees none of it.
    app.create_tenant("beta").await;
    let (beta, _) = app.create_key("beta", "admin", None).await;
    let theirs = app.get("/v1/partners/p-close", Some(&beta)).await;
    assert_eq!(theirs.status, 404);
    let theirs = app.get("/v1/contractors/c-acme", Some(&beta)).await;
    assert_eq!(theirs.status, 404);
}

trait TapId {
    fn tap_id(self, id: &str) -> Value;
}

impl TapId for Value {
    fn tap_id(mut self, id: &str) -> Value {
        self["id"] = json!(id);
        self
    }
}

fn factor<'a>(found: &'a Value, name: &str) -> &'a Value {
    found["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["factor"] == name)
        .unwrap_or_else(|| panic!("no factor {name} in {found}"))
}

async fn seed_partners(app: &TestApp) {
    let admin = app.admin_key.clone();
    create(app, "/v1/partners", &admin, &lead_partner()).await;
    create(app, "/v1/partners", &admin, &closing_partner()).await;
    let mut inactive = lead_partner().tap_id("p-off");
    inactive["active"] = json!(false);
    create(app, "/v1/partners", &admin, &inactive).await;
}

#[tokio::test]
async fn matches_are_ranked_explained_and_logged() {
    let setup = power100_app().await;
    let app = &setup.app;
    let admin = app.admin_key.clone();
    seed_partners(app).await;
    let contractor = app
        .issue_token("default", "c-acme", "contractor", Duration::from_secs(600))
        .await;
    create(app, "/v1/contractors", &contractor, &acme(None)).await;

    // No goals: semantic fit is missing, as is PowerConfidence (no evidence yet); their weight
    // moves to the three known factors (0.35 + 0.15 + 0.15 = 0.65).
    let response = app
        .get("/v1/contractors/c-acme/matches?top=3", Some(&contractor))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["semantic"]["used"], false, "{body}");
    let data = body["data"].as_array().unwrap();
    let ids: Vec<&str> = data
        .iter()
        .map(|m| m["partner_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["p-lead", "p-close"],
        "inactive partners are not ranked"
    );
    // p-lead: focus (0.5 + 0.2 + 0.2) / 1.2 = 0.75, tier 1, area 1 (national).
    let lead = &data[0];
    let expected = (0.35 * 0.75 + 0.15 + 0.15) / 0.65;
    assert!(
        (lead["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{lead}"
    );
    assert!(
        (lead["coverage"].as_f64().unwrap() - 0.65).abs() < 1e-9,
        "{lead}"
    );
    assert_eq!(factor(lead, "semantic")["confidence"], 0.0);
    assert_eq!(factor(lead, "semantic")["value"], Value::Null);
    assert_eq!(factor(lead, "power_confidence")["confidence"], 0.0);
    assert!((factor(lead, "focus_area")["value"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    assert!(
        lead["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("primary focus area")),
        "{lead}"
    );
    // p-close: focus 0.3 / 1.2 = 0.25, tier two steps away 0, one of two areas 0.5.
    let close = &data[1];
    let expected = (0.35 * 0.25 + 0.0 + 0.15 * 0.5) / 0.65;
    assert!(
        (close["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{close}"
    );
    assert_eq!(factor(close, "revenue_tier")["value"], 0.0);
    assert_eq!(close["rank"], 2);

    // Each match is a partner_match interaction of the contractor with its outcomes.
    let logged = app
        .get(
            "/v1/interactions?user_id=c-acme&interaction_type=partner_match",
            Some(&admin),
        )
        .await;
    assert_eq!(logged.status, 200, "{}", logged.text);
    let logged = logged.json()["interactions"].as_array().cloned().unwrap();
    assert_eq!(logged.len(), 2, "{logged:?}");
    let first = logged
        .iter()
        .find(|i| i["interaction_id"] == lead["match_id"])
        .unwrap();
    assert_eq!(first["user_type"], "contractor");
    assert_eq!(first["outcomes"]["partner_matched"], true);
    assert_eq!(first["outcomes"]["partner_id"], "p-lead");
    assert!(
        (first["outcomes"]["match_score"].as_f64().unwrap() - lead["score"].as_f64().unwrap())
            .abs()
            < 1e-9
    );

    // With goals, semantic fit is computed for partners that describe their offer only.
    let mut with_goals = acme(Some("We need more qualified leads for roofing"));
    with_goals.as_object_mut().unwrap().remove("id");
    let updated = put(app, "/v1/contractors/c-acme", &admin, &with_goals, None).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let body = app
        .get("/v1/contractors/c-acme/matches?top=1", Some(&admin))
        .await
        .json();
    assert_eq!(body["semantic"]["used"], true, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let ranked = app
        .get("/v1/contractors/c-acme/matches?top=3", Some(&admin))
        .await
        .json();
    for found in ranked["data"].as_array().unwrap() {
        let expected = if found["partner_id"] == "p-lead" {
            1.0
        } else {
            0.0
        };
        assert_eq!(factor(found, "semantic")["confidence"], expected, "{found}");
    }

    // Limits and roles.
    let bad = app
        .get("/v1/contractors/c-acme/matches?top=0", Some(&admin))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let partner = app
        .issue_token("default", "p-lead", "partner", Duration::from_secs(600))
        .await;
    let refused = app
        .get("/v1/contractors/c-acme/matches", Some(&partner))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let other = app
        .issue_token("default", "c-other", "contractor", Duration::from_secs(600))
        .await;
    let hidden = app
        .get("/v1/contractors/c-acme/matches", Some(&other))
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
}

#[tokio::test]
async fn demo_bookings_follow_their_lifecycle() {
    let setup = power100_app().await;
    let app = &setup.app;
    let admin = app.admin_key.clone();
    seed_partners(app).await;
    let contractor = app
        .issue_token("default", "c-acme", "contractor", Duration::from_secs(600))
        .await;
    let partner = app
        .issue_token("default", "p-lead", "partner", Duration::from_secs(600))
        .await;
    create(app, "/v1/contractors", &contractor, &acme(None)).await;
    create(
        app,
        "/v1/contractors",
        &admin,
        &acme(None).tap_id("c-other"),
    )
    .await;
    let matches = app
        .get("/v1/contractors/c-acme/matches", Some(&contractor))
        .await
        .json();
    let match_id = matches["data"][0]["match_id"].as_str().unwrap().to_owned();

    // Booking needs a real match of the same contractor, and an active partner.
    let theirs = app
        .post_json(
            "/v1/demo-bookings",
            Some(&admin),
            &json!({"contractor_id": "c-other", "match_id": match_id}),
        )
        .await;
    assert_eq!(theirs.status, 422, "{}", theirs.text);
    let inactive = app
        .post_json(
            "/v1/demo-bookings",
            Some(&contractor),
            &json!({"partner_id": "p-off"}),
        )
        .await;
    assert_eq!(inactive.status, 409, "{}", inactive.text);
    let by_partner = app
        .post_json(
            "/v1/demo-bookings",
            Some(&partner),
            &json!({"contractor_id": "c-acme", "partner_id": "p-lead"}),
        )
        .await;
    assert_eq!(by_partner.status, 403, "{}", by_partner.text);

    let booking = create(
        app,
        "/v1/demo-bookings",
        &contractor,
        &json!({"match_id": match_id}),
    )
    .await;
    assert_eq!(booking["status"], "requested");
    assert_eq!(booking["partner_id"], "p-lead");
    assert_eq!(booking["contractor_id"], "c-acme");
    let id = booking["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/demo-bookings/{id}");

    // The booking is a demo_booking interaction linked to the match as an outcome.
    let logged = app
        .get(&format!("/v1/interactions/{id}"), Some(&admin))
        .await;
    assert_eq!(logged.status, 200, "{}", logged.text);
    let logged = logged.json();
    assert_eq!(logged["interaction_type"], "demo_booking");
    assert_eq!(logged["parent_interaction_id"], match_id.as_str());
    assert_eq!(logged["outcomes"]["demo_booked"], true);

    // A contractor cannot schedule; an unknown status is 422; a skipped step is 409.
    let refused = patch(
        app,
        &path,
        &contractor,
        &json!({"status": "scheduled"}),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let unknown = patch(app, &path, &partner, &json!({"status": "done"}), None).await;
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    let skipped = patch(app, &path, &partner, &json!({"status": "completed"}), None).await;
    assert_eq!(skipped.status, 409, "{}", skipped.text);

    let scheduled = patch(
        app,
        &path,
        &partner,
        &json!({"status": "scheduled", "scheduled_for": "2030-01-02T15:00:00Z"}),
        Some("\"1\""),
    )
    .await;
    assert_eq!(scheduled.status, 200, "{}", scheduled.text);
    assert_eq!(scheduled.json()["status"], "scheduled");
    assert_eq!(scheduled.json()["version"], 2);
    let stale = patch(
        app,
        &path,
        &admin,
        &json!({"status": "completed"}),
        Some("\"1\""),
    )
    .await;
    assert_eq!(stale.status, 409, "{}", stale.text);
    let completed = patch(app, &path, &partner, &json!({"status": "completed"}), None).await;
    assert_eq!(completed.status, 200, "{}", completed.text);
    let after_end = patch(app, &path, &admin, &json!({"status": "cancelled"}), None).await;
    assert_eq!(
        after_end.status, 409,
        "final states are final: {}",
        after_end.text
    );

    // A contractor may cancel its own request; another partner does not see the booking.
    let second = create(
        app,
        "/v1/demo-bookings",
        &contractor,
        &json!({"partner_id": "p-close"}),
    )
    .await;
    let second_path = format!("/v1/demo-bookings/{}", second["id"].as_str().unwrap());
    let hidden = patch(
        app,
        &second_path,
        &partner,
        &json!({"status": "scheduled"}),
        None,
    )
    .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    let cancelled = patch(
        app,
        &second_path,
        &contractor,
        &json!({"status": "cancelled"}),
        None,
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let read = app.get(&second_path, Some(&contractor)).await;
    assert_eq!(read.json()["status"], "cancelled");
}

#[tokio::test]
async fn funnel_counts_conversation_match_booking_and_deal() {
    let setup = power100_app().await;
    let app = &setup.app;
    let admin = app.admin_key.clone();
    seed_partners(app).await;
    let contractor = app
        .issue_token("default", "c-acme", "contractor", Duration::from_secs(600))
        .await;
    create(
        app,
        "/v1/contractors",
        &contractor,
        &acme(Some("More leads")),
    )
    .await;

    // A concierge conversation.
    let session = create(app, "/v1/concierge/sessions", &contractor, &json!({})).await;
    let conversation = session["id"].as_str().unwrap().to_owned();
    let said = app
        .post_json(
            &format!("/v1/concierge/sessions/{conversation}/messages"),
            Some(&contractor),
            &json!({"content": "Who can help me with lead flow?"}),
        )
        .await;
    assert_eq!(said.status, 200, "{}", said.text);

    // Match in that conversation, book the best, close a deal.
    let matches = app
        .get(
            &format!("/v1/contractors/c-acme/matches?top=2&conversation_id={conversation}"),
            Some(&contractor),
        )
        .await;
    assert_eq!(matches.status, 200, "{}", matches.text);
    let match_id = matches.json()["data"][0]["match_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let booking = create(
        app,
        "/v1/demo-bookings",
        &contractor,
        &json!({"match_id": match_id, "conversation_id": conversation}),
    )
    .await;
    let negative = app
        .post_json(
            "/v1/deals",
            Some(&admin),
            &json!({"booking_id": booking["id"], "value": -5}),
        )
        .await;
    assert_eq!(negative.status, 422, "{}", negative.text);
    let bad_date = app
        .post_json(
            "/v1/deals",
            Some(&admin),
            &json!({"booking_id": booking["id"], "value": 5, "closed_on": "soon"}),
        )
        .await;
    assert_eq!(bad_date.status, 422, "{}", bad_date.text);
    let other_partner = app
        .issue_token("default", "p-close", "partner", Duration::from_secs(600))
        .await;
    let refused = app
        .post_json(
            "/v1/deals",
            Some(&other_partner),
            &json!({"booking_id": booking["id"], "value": 5}),
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text);
    let partner = app
        .issue_token("default", "p-lead", "partner", Duration::from_secs(600))
        .await;
    let deal = create(
        app,
        "/v1/deals",
        &partner,
        &json!({"booking_id": booking["id"], "value": 48000, "closed_on": "2026-11-20"}),
    )
    .await;
    assert_eq!(deal["status"], "closed");
    assert_eq!(deal["match_id"], match_id.as_str());
    assert_eq!(deal["conversation_id"], conversation.as_str());
    let read = app
        .get(
            &format!("/v1/deals/{}", deal["id"].as_str().unwrap()),
            Some(&contractor),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);

    // The match's interaction merges the chain: matched, booked, closed.
    let merged = app
        .get(&format!("/v1/interactions/{match_id}"), Some(&admin))
        .await
        .json();
    assert_eq!(merged["outcomes"]["partner_matched"], true, "{merged}");
    assert_eq!(merged["outcomes"]["demo_booked"], true, "{merged}");
    assert_eq!(merged["outcomes"]["deal_closed"], true, "{merged}");
    assert_eq!(merged["outcomes"]["deal_value"], 48000.0, "{merged}");

    app.flush_lake().await;
    let now = chrono::Utc::now();
    let window = format!(
        "from={}&to={}",
        (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let funnel = app
        .get(&format!("/v1/reports/funnel?{window}"), Some(&admin))
        .await;
    assert_eq!(funnel.status, 200, "{}", funnel.text);
    let users: Vec<u64> = funnel.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["users"].as_u64().unwrap())
        .collect();
    assert_eq!(users, vec![1, 1, 1, 1], "{}", funnel.text);
    let partners = app
        .get(&format!("/v1/reports/partners?{window}"), Some(&admin))
        .await
        .json();
    let lead = partners["partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner_id"] == "p-lead")
        .cloned()
        .unwrap_or_else(|| panic!("{partners}"));
    assert_eq!(lead["deals"], 1, "{partners}");
    assert_eq!(lead["deal_value"], 48000.0, "{partners}");
}

#[tokio::test]
async fn the_concierge_finds_partners_and_books_a_demo() {
    let setup = power100_app().await;
    let app = &setup.app;
    seed_partners(app).await;
    let contractor = app
        .issue_token("default", "c-acme", "contractor", Duration::from_secs(600))
        .await;
    create(app, "/v1/contractors", &contractor, &acme(None)).await;
    let session = create(app, "/v1/concierge/sessions", &contractor, &json!({})).await;
    let conversation = session["id"].as_str().unwrap().to_owned();
    let say = |text: &'static str| {
        let path = format!("/v1/concierge/sessions/{conversation}/messages");
        let token = contractor.clone();
        async move {
            let turn = app
                .post_json(&path, Some(&token), &json!({ "content": text }))
                .await;
            assert_eq!(turn.status, 200, "{}", turn.text);
            turn.json()["message"]["tool_calls"][0].clone()
        }
    };

    let found = say("Find me partners [[tool:find_partners]]").await;
    assert_eq!(found["name"], "find_partners", "{found}");
    assert_eq!(found["ok"], true, "{found}");
    let best = found["result"]["matches"][0].clone();
    assert_eq!(best["partner_id"], "p-lead", "{found}");

    let booked = say("Book the best one [[tool:book_demo]]").await;
    assert_eq!(booked["name"], "book_demo", "{booked}");
    assert_eq!(booked["ok"], true, "{booked}");
    assert_eq!(booked["result"]["partner_id"], "p-lead");
    assert_eq!(booked["result"]["match_id"], best["match_id"]);
    let booking = app
        .get(
            &format!(
                "/v1/demo-bookings/{}",
                booked["result"]["booking_id"].as_str().unwrap()
            ),
            Some(&contractor),
        )
        .await
        .json();
    assert_eq!(booking["conversation_id"], conversation.as_str());
    assert_eq!(booking["status"], "requested");

    let looked = say("Look me up [[tool:lookup_profile]]").await;
    assert_eq!(looked["name"], "lookup_profile", "{looked}");
    assert_eq!(
        looked["result"]["stored_profile"]["company_name"], "Acme Roofing",
        "{looked}"
    );
    assert_eq!(looked["result"]["activity"]["demos_booked"], 1, "{looked}");

    // Every step is an interaction of the conversation.
    let logged = app
        .get(
            &format!("/v1/interactions?conversation_id={conversation}&limit=100"),
            Some(&app.admin_key),
        )
        .await
        .json();
    let types: Vec<&str> = logged["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["interaction_type"].as_str().unwrap())
        .collect();
    for wanted in ["partner_match", "demo_booking", "ai_concierge_tool_call"] {
        assert!(types.contains(&wanted), "{wanted} missing from {types:?}");
    }
}

/// The storage suite for the Power100 area: SQLite always, PostgreSQL when configured.
#[tokio::test]
async fn power100_store_is_tenant_scoped_and_versioned_on_every_backend() {
    use chrono::DateTime;
    use flywheel_core::{Tenant, TenantId};
    use flywheel_store::{DemoBookingRecord, MatchRecord, ProfileKind, ProfileRecord, StoreError};

    let at = |millis: i64| DateTime::from_timestamp_millis(millis).unwrap();
    for backend in crate::helpers::storage_backends().await {
        let name = backend.name;
        let tenants = backend.store.tenants();
        for id in ["acme", "beta"] {
            tenants
                .insert_tenant(&Tenant {
                    id: TenantId::parse(id).unwrap(),
                    name: id.to_owned(),
                    operator: false,
                    created_at: at(1_000),
                })
                .await
                .unwrap();
        }
        let acme = TenantId::parse("acme").unwrap();
        let beta = TenantId::parse("beta").unwrap();
        let store = backend.store.power100();
        let profile = |id: &str, version: i64| ProfileRecord {
            tenant_id: acme.clone(),
            id: id.to_owned(),
            profile: format!("{{\"id\":\"{id}\",\"v\":{version}}}"),
            version,
            created_at: at(2_000),
            updated_at: at(2_000 + version),
        };
        for id in ["p-b", "p-a", "p-c"] {
            store
                .insert_profile(ProfileKind::Partner, &profile(id, 1))
                .await
                .unwrap();
        }
        let duplicate = store
            .insert_profile(ProfileKind::Partner, &profile("p-a", 1))
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict { .. })),
            "{name}: {duplicate:?}"
        );
        // The same id is free in the other kind and the other tenant.
        store
            .insert_profile(ProfileKind::Contractor, &profile("p-a", 1))
            .await
            .unwrap();
        assert!(store
            .get_profile(ProfileKind::Partner, &beta, "p-a")
            .await
            .unwrap()
            .is_none());
        // Pages by id.
        let first = store
            .list_profiles(ProfileKind::Partner, &acme, None, 2)
            .await
            .unwrap();
        let ids: Vec<&str> = first.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p-a", "p-b"], "{name}");
        let rest = store
            .list_profiles(ProfileKind::Partner, &acme, Some("p-b"), 2)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1, "{name}");
        assert_eq!(rest[0], profile("p-c", 1), "{name}");
        // An update names the version it replaces.
        assert!(store
            .update_profile(ProfileKind::Partner, &profile("p-a", 2))
            .await
            .unwrap());
        assert!(
            !store
                .update_profile(ProfileKind::Partner, &profile("p-a", 2))
                .await
                .unwrap(),
            "{name}: a second update from version 1 loses"
        );
        let read = store
            .get_profile(ProfileKind::Partner, &acme, "p-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, profile("p-a", 2), "{name}");

        let matched = |id: &str, rank: i64, created: i64| MatchRecord {
            id: id.to_owned(),
            tenant_id: acme.clone(),
            contractor_id: "c-1".to_owned(),
            partner_id: format!("p-{rank}"),
            rank,
            score: 0.5 / rank as f64,
            details: "{}".to_owned(),
            conversation_id: Some("conv-1".to_owned()),
            created_at: at(created),
        };
        store
            .insert_matches(&[matched("m-1", 1, 5_000), matched("m-2", 2, 5_000)])
            .await
            .unwrap();
        store
            .insert_matches(&[matched("m-3", 2, 6_000), matched("m-4", 1, 6_000)])
            .await
            .unwrap();
        assert_eq!(
            store.get_match(&acme, "m-2").await.unwrap(),
            Some(matched("m-2", 2, 5_000)),
            "{name}"
        );
        assert!(store.get_match(&beta, "m-2").await.unwrap().is_none());
        let latest = store
            .latest_match(&acme, "c-1", Some("conv-1"))
            .await
            .unwrap();
        assert_eq!(latest.map(|m| m.id), Some("m-4".to_owned()), "{name}");
        assert!(store
            .latest_match(&acme, "c-1", Some("other"))
            .await
            .unwrap()
            .is_none());

        let booking = DemoBookingRecord {
            id: "b-1".to_owned(),
            tenant_id: acme.clone(),
            contractor_id: "c-1".to_owned(),
            partner_id: "p-1".to_owned(),
            match_id: Some("m-1".to_owned()),
            conversation_id: None,
            status: "requested".to_owned(),
            scheduled_for: None,
            notes: Some("hello".to_owned()),
            version: 1,
            created_by: "c-1".to_owned(),
            created_at: at(7_000),
            updated_at: at(7_000),
        };
        store.insert_booking(&booking).await.unwrap();
        let scheduled = DemoBookingRecord {
            status: "scheduled".to_owned(),
            scheduled_for: Some(at(9_000)),
            version: 2,
            updated_at: at(8_000),
            ..booking.clone()
        };
        assert!(store.update_booking(&scheduled).await.unwrap());
        assert!(!store.update_booking(&scheduled).await.unwrap(), "{name}");
        assert_eq!(
            store.get_booking(&acme, "b-1").await.unwrap(),
            Some(scheduled),
            "{name}"
        );
        assert!(store.get_booking(&beta, "b-1").await.unwrap().is_none());
    }
}
