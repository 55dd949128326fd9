//! The AI Concierge end to end against the mock upstream: persistent sessions that survive a
//! restart, the profile in the prompt, every turn logged and linked, streaming, tools on both
//! routes (function calling and deterministic), history trimming, limits, ownership, cut-off
//! answers, feedback and erasure.

use std::io::Write;
use std::time::Duration;

use flywheel_config::{Config, PriceOverride, ProviderConfig, ProviderKindConfig, SecretRef};
use flywheel_mock_provider::MockServer;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestResponse};

/// An app whose concierge talks to `mock/gpt-mock` (OpenAI wire format, function calling) on
/// the mock upstream; `plain/small` is the same upstream as a server without function calling.
struct Concierge {
    app: TestApp,
    mock: MockServer,
    _key_file: tempfile::NamedTempFile,
}

async fn concierge_with(customize: impl FnOnce(&mut Config)) -> Concierge {
    let mock = MockServer::start().await.unwrap();
    let base_url = mock.base_url();
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    key_file.write_all(b"sk-concierge-test-key").unwrap();
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
                api_key: key.clone(),
                ..ProviderConfig::default()
            },
        );
        config.gateway.providers.insert(
            "plain".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::OpenaiCompatible,
                base_url: Some(format!("{base_url}/v1")),
                timeout: Duration::from_secs(5),
                unsupported_parameters: vec!["tools".to_owned(), "tool_choice".to_owned()],
                api_key: key,
                ..ProviderConfig::default()
            },
        );
        config.gateway.prices.push(PriceOverride {
            provider: "mock".to_owned(),
            model: "gpt-mock".to_owned(),
            input: 1.0,
            cached_input: None,
            output: 2.0,
        });
        config.concierge.model = "mock/gpt-mock".to_owned();
        customize(config);
    })
    .await;
    Concierge {
        app,
        mock,
        _key_file: key_file,
    }
}

const PROFILE: &str = r#"{"company": "Acme Roofing", "focus_areas": ["roofing", "solar"], "revenue_tier": "$1M-$5M", "team_size": 12, "goals": ["double revenue"]}"#;

impl Concierge {
    async fn start(&self, token: &str, body: Value) -> Value {
        let response = self
            .app
            .post_json("/v1/concierge/sessions", Some(token), &body)
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        response.json()
    }

    async fn say(&self, token: &str, session: &str, text: &str) -> TestResponse {
        self.app
            .post_json(
                &format!("/v1/concierge/sessions/{session}/messages"),
                Some(token),
                &json!({ "content": text }),
            )
            .await
    }

    async fn transcript(&self, token: &str, session: &str) -> Value {
        let response = self
            .app
            .get(&format!("/v1/concierge/sessions/{session}"), Some(token))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json()
    }

    async fn interactions(&self, token: &str, conversation: &str) -> Vec<Value> {
        let response = self
            .app
            .get(
                &format!("/v1/interactions?conversation_id={conversation}&limit=100"),
                Some(token),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json()["interactions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The messages of the last chat request the mock upstream received.
    fn last_prompt(&self) -> Vec<Value> {
        let calls = self.mock.state.calls();
        let last = calls.last().expect("the upstream was called");
        last.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn of_type<'a>(items: &'a [Value], interaction_type: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|item| item["interaction_type"] == interaction_type)
        .collect()
}

#[tokio::test]
async fn a_conversation_is_answered_persisted_logged_and_survives_a_restart() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let contractor = concierge
        .app
        .issue_token(
            "default",
            "contractor-7",
            "contractor",
            Duration::from_secs(600),
        )
        .await;
    let profile: Value = serde_json::from_str(PROFILE).unwrap();
    let session = concierge
        .start(
            &contractor,
            json!({ "profile": profile, "context": {"source": "web"} }),
        )
        .await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    assert_eq!(session["user_id"], "contractor-7");
    assert_eq!(session["status"], "active");

    let first = concierge.say(&contractor, &session_id, "Hello there").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first = first.json();
    assert_eq!(first["message"]["content"], "Mock answer: Hello there");
    assert_eq!(first["message"]["status"], "complete");
    assert_eq!(first["message"]["model"], "mock/gpt-mock");
    assert!(first["message"]["output_tokens"].as_i64().unwrap() > 0);
    assert!(first["message"]["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(first["user_message"]["seq"], 1);
    assert_eq!(first["message"]["seq"], 2);
    // The persona and the profile reach the model as the system prompt.
    let prompt = concierge.last_prompt();
    assert_eq!(prompt[0]["role"], "system");
    let system = prompt[0]["content"].as_str().unwrap();
    assert!(system.contains("Power100 AI Concierge"), "{system}");
    assert!(system.contains("- company: Acme Roofing"), "{system}");
    assert!(system.contains("- focus areas: roofing, solar"), "{system}");
    assert!(system.contains("- source: web"), "{system}");

    let second = concierge
        .say(&contractor, &session_id, "And then")
        .await
        .json();
    assert_eq!(second["message"]["content"], "Mock answer: And then");
    // The model saw the first turn.
    let prompt = concierge.last_prompt();
    let roles: Vec<&str> = prompt.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);

    // Every turn is an interaction, linked by conversation and parent.
    let items = concierge.interactions(&admin, &session_id).await;
    assert_eq!(of_type(&items, "ai_concierge_session_start").len(), 1);
    let asks = of_type(&items, "ai_concierge");
    let answers = of_type(&items, "ai_concierge_response");
    assert_eq!((asks.len(), answers.len()), (2, 2), "{items:#?}");
    for answer in &answers {
        let parent = answer["parent_interaction_id"].as_str().unwrap();
        assert!(asks.iter().any(|ask| ask["interaction_id"] == parent));
        assert_eq!(answer["user_id"], "contractor-7");
        assert_eq!(answer["session_id"], session_id.as_str());
        assert!(answer["ai_conversation"]["total_tokens"].as_u64().unwrap() > 0);
        assert!(answer["ai_conversation"]["cost"].as_f64().unwrap() > 0.0);
        assert!(answer["ai_conversation"]["duration_ms"].is_u64());
    }
    assert_eq!(
        answers
            .iter()
            .find(|a| a["interaction_id"] == first["message"]["id"])
            .map(|a| a["ai_conversation"]["messages"][0]["content"].clone()),
        Some(json!("Mock answer: Hello there"))
    );

    // Conversations survive a restart.
    let app = concierge.app.restart().await;
    let transcript = app
        .get(
            &format!("/v1/concierge/sessions/{session_id}"),
            Some(&contractor),
        )
        .await
        .json();
    let contents: Vec<&str> = transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "Hello there",
            "Mock answer: Hello there",
            "And then",
            "Mock answer: And then"
        ]
    );
    assert_eq!(transcript["session"]["message_count"], 4);
    let listed = app
        .get("/v1/concierge/conversations", Some(&contractor))
        .await
        .json();
    assert_eq!(listed["conversations"][0]["id"], session_id.as_str());

    // Ending is logged; an ended session takes no more messages.
    let ended = app
        .post_json(
            &format!("/v1/concierge/sessions/{session_id}/end"),
            Some(&contractor),
            &json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.json()["status"], "ended");
    let again = app
        .post_json(
            &format!("/v1/concierge/sessions/{session_id}/messages"),
            Some(&contractor),
            &json!({"content": "still there?"}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
}

#[tokio::test]
async fn sessions_are_private_to_their_user_and_tenant() {
    let concierge = concierge_with(|_| {}).await;
    let app = &concierge.app;
    app.create_tenant("other").await;
    let alice = app
        .issue_token("default", "alice", "contractor", Duration::from_secs(600))
        .await;
    let bob = app
        .issue_token("default", "bob", "contractor", Duration::from_secs(600))
        .await;
    let outsider = app
        .issue_token("other", "alice", "contractor", Duration::from_secs(600))
        .await;
    let session = concierge.start(&alice, json!({})).await;
    let id = session["id"].as_str().unwrap();
    for token in [&bob, &outsider] {
        let read = app
            .get(&format!("/v1/concierge/sessions/{id}"), Some(token))
            .await;
        assert_eq!(read.status, 404, "{}", read.text);
        let write = concierge.say(token, id, "hi").await;
        assert_eq!(write.status, 404, "{}", write.text);
    }
    // A contractor cannot open a session for someone else or list theirs.
    let forged = app
        .post_json(
            "/v1/concierge/sessions",
            Some(&bob),
            &json!({"user_id": "alice"}),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let listing = app
        .get("/v1/concierge/conversations?user_id=alice", Some(&bob))
        .await;
    assert_eq!(listing.status, 403, "{}", listing.text);
    let own = app
        .get("/v1/concierge/conversations", Some(&bob))
        .await
        .json();
    assert_eq!(own["conversations"], json!([]));
    // The admin sees alice's session; an admin must name the user when opening one.
    let admin_list = app
        .get(
            "/v1/concierge/conversations?user_id=alice",
            Some(&app.admin_key),
        )
        .await
        .json();
    assert_eq!(admin_list["conversations"][0]["id"], id);
    let unnamed = app
        .post_json("/v1/concierge/sessions", Some(&app.admin_key), &json!({}))
        .await;
    assert_eq!(unnamed.status, 422, "{}", unnamed.text);
    assert_eq!(unnamed.json()["error"]["details"][0]["field"], "user_id");
    // Not a UUID, or unknown: 404 too.
    let bogus = app
        .get("/v1/concierge/sessions/not-a-session", Some(&alice))
        .await;
    assert_eq!(bogus.status, 404);
}

#[tokio::test]
async fn bad_messages_and_profiles_get_field_errors_with_the_limit() {
    let concierge = concierge_with(|config| config.concierge.max_message_chars = 50).await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap();
    let long = concierge.say(&admin, id, &"x".repeat(51)).await;
    assert_eq!(long.status, 422, "{}", long.text);
    let detail = &long.json()["error"]["details"][0];
    assert_eq!(detail["field"], "content");
    assert!(detail["problem"].as_str().unwrap().contains("at most 50"));
    let empty = concierge.say(&admin, id, "   ").await;
    assert_eq!(empty.status, 422);
    let bad_profile = concierge
        .app
        .post_json(
            "/v1/concierge/sessions",
            Some(&admin),
            &json!({"user_id": "u1", "profile": {"team_size": -3, "focus_areas": [1]}}),
        )
        .await;
    assert_eq!(bad_profile.status, 422, "{}", bad_profile.text);
    let fields: Vec<String> = bad_profile.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["profile.team_size", "profile.focus_areas"]);
    // Nothing was stored for the rejected messages.
    let transcript = concierge.transcript(&admin, id).await;
    assert_eq!(transcript["messages"], json!([]));
}

#[tokio::test]
async fn a_streamed_answer_arrives_in_pieces_and_is_stored_whole() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap();
    let response = concierge
        .app
        .send(
            concierge
                .app
                .client
                .post(
                    concierge
                        .app
                        .url(&format!("/v1/concierge/sessions/{id}/messages")),
                )
                .bearer_auth(&admin)
                .json(&json!({"content": "Stream this [[chunks:4]]", "stream": true})),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let events = sse_events(&response.text);
    let deltas: String = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.iter().filter(|(name, _)| name == "delta").count() >= 2);
    assert_eq!(deltas, "Mock answer: Stream this");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(done["message"]["content"], deltas.as_str());
    assert_eq!(done["message"]["status"], "complete");
    let transcript = concierge.transcript(&admin, id).await;
    assert_eq!(transcript["messages"][1]["content"], deltas.as_str());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_answer_leaves_an_incomplete_answer() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap();
    let response = concierge
        .app
        .client
        .post(
            concierge
                .app
                .url(&format!("/v1/concierge/sessions/{id}/messages")),
        )
        .bearer_auth(&admin)
        .json(&json!({"content": "slow [[chunks:10]] [[chunk_delay_ms:300]]", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    // Read the first piece, then hang up.
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let mut status = String::new();
    for _ in 0..100 {
        let transcript = concierge.transcript(&admin, id).await;
        status = transcript["messages"][1]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status != "pending" {
            let answer = &transcript["messages"][1];
            assert_eq!(status, "incomplete", "{answer}");
            assert!(answer["details"]["error"]
                .as_str()
                .unwrap()
                .contains("disconnected"));
            let content = answer["content"].as_str().unwrap_or_default();
            assert!(content.len() < "Mock answer: slow".len(), "{content}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the answer stayed {status}");
}

#[tokio::test]
async fn an_answer_cut_off_by_a_crash_is_marked_incomplete_at_restart() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap().to_owned();
    // What a crash between storing the question and completing the answer leaves behind.
    let store = concierge.app.components.store.concierge();
    let now = chrono::Utc::now() - chrono::Duration::seconds(1);
    let tenant = flywheel_core::TenantId::parse("default").unwrap();
    let user = flywheel_store::ConciergeMessageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        session_id: id.clone(),
        tenant_id: tenant,
        seq: 0,
        role: "user".into(),
        content: Some("question".into()),
        tool_calls: None,
        tool_call_id: None,
        tool_name: None,
        status: "complete".into(),
        model: None,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        duration_ms: None,
        details: None,
        created_at: now,
        completed_at: Some(now),
    };
    let pending = flywheel_store::ConciergeMessageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        role: "assistant".into(),
        content: None,
        status: "pending".into(),
        ..user.clone()
    };
    store.append_messages(&mut [user, pending]).await.unwrap();
    // While pending, another message is refused rather than interleaved.
    let busy = concierge.say(&admin, &id, "hello?").await;
    assert_eq!(busy.status, 409, "{}", busy.text);
    let is_postgres = concierge
        .app
        .config
        .database
        .url
        .as_deref()
        .unwrap_or("")
        .starts_with("postgres");
    let app = concierge
        .app
        .restart_with(move |config| {
            // PostgreSQL may be shared with replicas still answering: only answers older than
            // the timeout are stale there.
            if is_postgres {
                config.concierge.answer_timeout = Duration::from_millis(1);
            }
        })
        .await;
    let transcript = app
        .get(&format!("/v1/concierge/sessions/{id}"), Some(&admin))
        .await
        .json();
    assert_eq!(transcript["messages"][1]["status"], "incomplete");
    assert_eq!(transcript["messages"][1]["content"], Value::Null);
    // The conversation goes on; the cut-off answer is not shown to the model.
    let next = app
        .post_json(
            &format!("/v1/concierge/sessions/{id}/messages"),
            Some(&admin),
            &json!({"content": "hello?"}),
        )
        .await;
    assert_eq!(next.status, 200, "{}", next.text);
    let _ = concierge.mock;
}

#[tokio::test]
async fn tools_are_called_by_models_that_call_functions_and_logged() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let profile: Value = serde_json::from_str(PROFILE).unwrap();
    let session = concierge
        .start(&admin, json!({"user_id": "u1", "profile": profile}))
        .await;
    let id = session["id"].as_str().unwrap();
    let turn = concierge.say(&admin, id, "Look me up [[tool]]").await;
    assert_eq!(turn.status, 200, "{}", turn.text);
    let answer = &turn.json()["message"];
    assert_eq!(answer["content"], "Mock answer: Look me up");
    let calls = answer["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["name"], "lookup_profile");
    assert_eq!(calls[0]["route"], "function_calling");
    assert_eq!(calls[0]["ok"], true);
    assert_eq!(calls[0]["result"]["profile"]["company"], "Acme Roofing");
    assert_eq!(answer["details"]["iterations"], 2);
    // The model got the tool's result in the follow-up call.
    let prompt = concierge.last_prompt();
    let tool_message = prompt.iter().find(|m| m["role"] == "tool").unwrap();
    assert!(tool_message["content"]
        .as_str()
        .unwrap()
        .contains("Acme Roofing"));
    // Usage of both calls is counted.
    assert!(answer["input_tokens"].as_i64().unwrap() > 0);
    let items = concierge.interactions(&admin, id).await;
    let logged = of_type(&items, "ai_concierge_tool_call");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["concierge"]["tool"], "lookup_profile");
}

#[tokio::test]
async fn tool_calls_per_turn_are_bounded() {
    let concierge = concierge_with(|config| config.concierge.max_tool_iterations = 0).await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap();
    let turn = concierge
        .say(&admin, id, "Look me up [[tool]]")
        .await
        .json();
    // With no tool iterations allowed the model is not offered tools and must answer.
    assert_eq!(turn["message"]["content"], "Mock answer: Look me up");
    assert_eq!(turn["message"]["tool_calls"], Value::Null);
    let calls = concierge.mock.state.calls();
    assert!(calls.last().unwrap().body.get("tools").is_none());
}

#[tokio::test]
async fn models_without_function_calling_get_tool_results_by_the_deterministic_route() {
    let concierge = concierge_with(|config| config.concierge.model = "plain/small".into()).await;
    let admin = concierge.app.admin_key.clone();
    let profile: Value = serde_json::from_str(PROFILE).unwrap();
    let session = concierge
        .start(&admin, json!({"user_id": "u1", "profile": profile}))
        .await;
    let id = session["id"].as_str().unwrap();
    let turn = concierge
        .say(&admin, id, "Which partners fit my company?")
        .await;
    assert_eq!(turn.status, 200, "{}", turn.text);
    let answer = &turn.json()["message"];
    let names: Vec<&str> = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookup_profile", "search_knowledge"]);
    assert_eq!(answer["tool_calls"][0]["route"], "deterministic");
    let system = concierge.last_prompt()[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("[lookup_profile]"), "{system}");
    let request = concierge.mock.state.calls().last().unwrap().body.clone();
    assert!(
        request.get("tools").is_none(),
        "tools are not offered to this model"
    );
    // A message that needs no tool runs none.
    let plain = concierge.say(&admin, id, "Thanks.").await.json();
    assert_eq!(plain["message"]["tool_calls"], Value::Null);
}

#[tokio::test]
async fn history_is_trimmed_to_the_context_window_and_the_trim_is_recorded() {
    let concierge = concierge_with(|config| {
        config.concierge.context_window = Some(400);
        config.concierge.max_output_tokens = 100;
    })
    .await;
    let admin = concierge.app.admin_key.clone();
    let session = concierge.start(&admin, json!({"user_id": "u1"})).await;
    let id = session["id"].as_str().unwrap();
    let filler = "lorem ipsum dolor sit amet ".repeat(8);
    let mut last = Value::Null;
    for turn in 0..6 {
        let response = concierge
            .say(&admin, id, &format!("turn {turn} {filler}"))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        last = response.json();
    }
    let context = &last["message"]["details"]["context"];
    assert_eq!(context["window"], 400);
    assert_eq!(context["counted"], "estimated");
    assert!(
        context["trimmed_messages"].as_u64().unwrap() >= 2,
        "{context}"
    );
    assert!(context["prompt_tokens"].as_u64().unwrap() <= context["budget"].as_u64().unwrap());
    let prompt = concierge.last_prompt();
    assert_eq!(prompt[0]["role"], "system");
    assert!(prompt.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .starts_with("turn 5"));
    assert!(
        prompt.len() < 12,
        "old turns were dropped: {}",
        prompt.len()
    );
    assert_eq!(
        prompt[1]["role"], "user",
        "history starts with a whole turn"
    );
    // A message too large for the window on its own is refused with the numbers.
    let huge = concierge.say(&admin, id, &"word ".repeat(1_500)).await;
    assert_eq!(huge.status, 422, "{}", huge.text);
    assert!(huge.text.contains("context window"));
}

#[tokio::test]
async fn feedback_is_linked_to_the_answer() {
    let concierge = concierge_with(|_| {}).await;
    let contractor = concierge
        .app
        .issue_token("default", "c1", "contractor", Duration::from_secs(600))
        .await;
    let other = concierge
        .app
        .issue_token("default", "c2", "contractor", Duration::from_secs(600))
        .await;
    let session = concierge.start(&contractor, json!({})).await;
    let id = session["id"].as_str().unwrap();
    let turn = concierge.say(&contractor, id, "Help me").await.json();
    let answer_id = turn["message"]["id"].as_str().unwrap();
    let path = format!("/v1/concierge/messages/{answer_id}/feedback");
    let body = json!({"helpful": true, "accuracy": 8, "comments": "spot on"});
    let stranger = concierge.app.post_json(&path, Some(&other), &body).await;
    assert_eq!(stranger.status, 404, "{}", stranger.text);
    let bad = concierge
        .app
        .post_json(&path, Some(&contractor), &json!({"accuracy": 11}))
        .await;
    assert_eq!(bad.status, 422);
    let on_question = concierge
        .app
        .post_json(
            &format!(
                "/v1/concierge/messages/{}/feedback",
                turn["user_message"]["id"].as_str().unwrap()
            ),
            Some(&contractor),
            &body,
        )
        .await;
    assert_eq!(on_question.status, 422);
    let recorded = concierge
        .app
        .post_json(&path, Some(&contractor), &body)
        .await;
    assert_eq!(recorded.status, 201, "{}", recorded.text);
    let merged = concierge
        .app
        .get(&format!("/v1/interactions/{answer_id}"), Some(&contractor))
        .await
        .json();
    assert_eq!(merged["feedback"]["helpful"], true);
    assert_eq!(merged["feedback"]["accuracy"], 8.0);
    assert_eq!(merged["feedback"]["comments"], "spot on");
}

#[tokio::test]
async fn erasure_removes_a_users_conversations_and_is_recorded() {
    let concierge = concierge_with(|_| {}).await;
    let admin = concierge.app.admin_key.clone();
    let keep = concierge.start(&admin, json!({"user_id": "keeper"})).await;
    let keep_id = keep["id"].as_str().unwrap();
    concierge.say(&admin, keep_id, "mine").await;
    let mut erased_ids = Vec::new();
    for _ in 0..2 {
        let session = concierge.start(&admin, json!({"user_id": "leaver"})).await;
        let id = session["id"].as_str().unwrap().to_owned();
        concierge.say(&admin, &id, "please forget me").await;
        erased_ids.push(id);
    }
    let contractor = concierge
        .app
        .issue_token("default", "keeper", "contractor", Duration::from_secs(600))
        .await;
    let refused = concierge
        .app
        .delete(
            "/v1/concierge/conversations?user_id=leaver",
            Some(&contractor),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let erased = concierge
        .app
        .delete("/v1/concierge/conversations?user_id=leaver", Some(&admin))
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let erased = erased.json();
    assert_eq!(erased["sessions_deleted"], 2);
    assert_eq!(erased["messages_deleted"], 4);
    // Start, question and answer of both sessions at least (gateway call logs may add more).
    assert!(
        erased["interactions_deleted"].as_u64().unwrap() >= 6,
        "{erased}"
    );
    for id in &erased_ids {
        let gone = concierge
            .app
            .get(&format!("/v1/concierge/sessions/{id}"), Some(&admin))
            .await;
        assert_eq!(gone.status, 404);
        let logged = concierge.interactions(&admin, id).await;
        assert!(
            logged
                .iter()
                .all(|i| i["interaction_type"] != "ai_concierge"),
            "{logged:#?}"
        );
    }
    // Someone else's conversation is untouched, and the erasure itself is on record.
    assert_eq!(
        concierge.transcript(&admin, keep_id).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let records = concierge
        .app
        .get(
            "/v1/interactions?user_id=leaver&interaction_type=data_erasure",
            Some(&admin),
        )
        .await
        .json();
    assert_eq!(
        records["interactions"][0]["erasure"]["erasure_id"],
        erased["id"]
    );
    assert_eq!(records["interactions"][0]["erasure"]["sessions_deleted"], 2);
}

/// `(event name, data)` of an SSE body, in order.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut name = String::from("message");
    for line in text.lines() {
        if let Some(event) = line.strip_prefix("event:") {
            name = event.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:") {
            events.push((name.clone(), serde_json::from_str(data.trim()).unwrap()));
            name = String::from("message");
        }
    }
    events
}
