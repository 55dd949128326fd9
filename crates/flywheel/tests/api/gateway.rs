//! The LLM gateway end to end against the mock upstream: the OpenAI-compatible API (JSON and
//! SSE), unsupported parameters, validation, retries and fallback (before and after the first
//! token), sticky variants, budgets under concurrency (in-process and Redis), bring-your-own
//! key, logging into the pipeline, feedback, and the official `openai` Python SDK.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use flywheel_config::{
    AliasConfig, Config, PriceOverride, ProviderConfig, ProviderKindConfig, SecretRef,
    TenantGatewayConfig, VariantConfig,
};
use flywheel_mock_provider::MockServer;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestResponse};

const PLATFORM_KEY: &str = "sk-platform-key-0001";

/// An app whose gateway has a `mock` provider (OpenAI wire format) and an `anthro` provider
/// (Anthropic wire format) on the mock upstream, plus a `broken` one nobody listens for.
struct Gateway {
    app: TestApp,
    mock: MockServer,
    _key_file: tempfile::NamedTempFile,
}

async fn gateway_with(customize: impl FnOnce(&mut Config)) -> Gateway {
    let mock = MockServer::start().await.unwrap();
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    key_file.write_all(PLATFORM_KEY.as_bytes()).unwrap();
    let key_path = key_file.path().to_owned();
    let base_url = mock.base_url();
    let app = spawn_app_with(move |config| {
        let key = Some(SecretRef::File { file: key_path });
        config.gateway.providers.insert(
            "mock".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::Openai,
                base_url: Some(format!("{base_url}/v1")),
                api_key: key.clone(),
                timeout: Duration::from_secs(5),
                models: vec!["gpt-mock".to_owned()],
                ..ProviderConfig::default()
            },
        );
        config.gateway.providers.insert(
            "anthro".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::Anthropic,
                base_url: Some(base_url.clone()),
                api_key: key,
                ..ProviderConfig::default()
            },
        );
        config.gateway.providers.insert(
            "broken".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::OpenaiCompatible,
                base_url: Some("http://127.0.0.1:1/v1".to_owned()),
                connect_timeout: Duration::from_millis(500),
                ..ProviderConfig::default()
            },
        );
        config.gateway.prices.push(PriceOverride {
            provider: "mock".to_owned(),
            model: "gpt-mock".to_owned(),
            input: 1.0,
            cached_input: Some(0.5),
            output: 2.0,
        });
        config.gateway.retry_base_delay = Duration::from_millis(5);
        config.gateway.retry_max_delay = Duration::from_millis(20);
        customize(config);
    })
    .await;
    Gateway {
        app,
        mock,
        _key_file: key_file,
    }
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text},
    ]})
}

impl Gateway {
    async fn complete(&self, token: &str, body: &Value) -> TestResponse {
        self.app
            .post_json("/v1/chat/completions", Some(token), body)
            .await
    }

    /// Waits until the detached log record of a call is committed.
    async fn logged(&self, token: &str, interaction_id: &str) -> Value {
        for _ in 0..100 {
            let response = self
                .app
                .get(&format!("/v1/interactions/{interaction_id}"), Some(token))
                .await;
            if response.status == 200 {
                return response.json();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("interaction {interaction_id} was never logged");
    }
}

/// `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
        })
        .map(|data| data.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn chat_completion_is_answered_priced_and_logged() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let response = gateway
        .complete(&admin, &chat("mock/gpt-mock", "Hello there"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "mock/gpt-mock");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Mock answer: Hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(
        response.header("x-flywheel-provider").as_deref(),
        Some("mock")
    );
    // 4 input tokens at $1/M plus 4 output tokens at $2/M.
    let cost: f64 = response
        .header("x-flywheel-cost-usd")
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - 12e-6).abs() < 1e-12, "{cost}");
    // The platform key was used, as the admin stored none.
    let calls = gateway.mock.state.calls();
    assert_eq!(
        calls.last().unwrap().credential.as_deref(),
        Some(PLATFORM_KEY)
    );

    let id = response.header("x-flywheel-interaction-id").unwrap();
    assert_eq!(body["id"], format!("chatcmpl-{id}"));
    let logged = gateway.logged(&admin, &id).await;
    assert_eq!(logged["interaction_type"], "ai_completion");
    let record = &logged["gateway"];
    assert_eq!(record["provider"], "mock");
    assert_eq!(record["model"], "gpt-mock");
    assert_eq!(record["input_tokens"], 4);
    assert_eq!(record["output_tokens"], 4);
    assert_eq!(record["finish_reason"], "stop");
    assert!(record["duration_ms"].is_u64());
    assert!((record["cost_usd"].as_f64().unwrap() - 12e-6).abs() < 1e-12);
    let messages = logged["ai_conversation"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "system, user, assistant");
    assert_eq!(messages[2]["content"], "Mock answer: Hello there");

    // Feedback links to the logged call.
    let feedback = gateway
        .app
        .post_json(
            &format!("/v1/inferences/chatcmpl-{id}/feedback"),
            Some(&admin),
            &json!({"helpful": true, "rating": 4, "comment": "good"}),
        )
        .await;
    assert_eq!(feedback.status, 201, "{}", feedback.text);
    let merged = gateway
        .app
        .get(&format!("/v1/interactions/{id}"), Some(&admin))
        .await
        .json();
    assert_eq!(merged["feedback"]["helpful"], true);
    assert_eq!(merged["feedback"]["rating"], 4.0);
    let bad = gateway
        .app
        .post_json(
            &format!("/v1/inferences/{id}/feedback"),
            Some(&admin),
            &json!({"rating": 9}),
        )
        .await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn unknown_model_prices_are_null_not_invented() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let response = gateway
        .complete(&admin, &chat("mock/unpriced-model", "hi"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(response.header("x-flywheel-cost-usd").is_none());
    let id = response.header("x-flywheel-interaction-id").unwrap();
    let logged = gateway.logged(&admin, &id).await;
    assert!(logged["gateway"]["cost_usd"].is_null());
    let metrics = gateway.app.get("/metrics", Some(&admin)).await.text;
    assert!(
        metrics.contains(
            "flywheel_llm_unpriced_calls_total{provider=\"mock\",model=\"unpriced-model\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn streaming_sends_openai_chunks_with_usage_and_done() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let mut body = chat("mock/gpt-mock", "Hello there [[chunks:4]]");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = gateway.complete(&admin, &body).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&response.text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|chunk| serde_json::from_str(chunk).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Mock answer: Hello there");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter(|chunk| !chunk["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);

    let id = response.header("x-flywheel-interaction-id").unwrap();
    let logged = gateway.logged(&admin, &id).await;
    assert_eq!(logged["gateway"]["stream"], true);
    assert_eq!(
        logged["gateway"]["output_tokens"], 4,
        "stream usage is never lost"
    );
    assert!(logged["gateway"]["time_to_first_token_ms"].is_u64());
}

#[tokio::test]
async fn tool_calls_pass_through_both_ways() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    for model in ["mock/gpt-mock", "anthro/claude-mock"] {
        let mut body = chat(model, "Find it [[tool]]");
        body["tools"] = tools.clone();
        let response = gateway.complete(&admin, &body).await;
        assert_eq!(response.status, 200, "{model}: {}", response.text);
        let message = &response.json()["choices"][0]["message"];
        assert_eq!(
            message["tool_calls"][0]["function"]["name"], "lookup",
            "{model}"
        );
        assert_eq!(response.json()["choices"][0]["finish_reason"], "tool_calls");
        let call = message["tool_calls"][0].clone();
        let follow_up = json!({"model": model, "tools": tools, "messages": [
            {"role": "user", "content": "Find it"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"result\": 42}"},
            {"role": "user", "content": "Thanks"},
        ]});
        let answer = gateway.complete(&admin, &follow_up).await;
        assert_eq!(answer.status, 200, "{model}: {}", answer.text);
        assert_eq!(
            answer.json()["choices"][0]["message"]["content"],
            "Mock answer: Thanks"
        );
    }
}

#[tokio::test]
async fn unsupported_parameters_and_limits_are_422_naming_the_field() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let field_of = |response: &TestResponse| -> Vec<String> {
        assert_eq!(response.status, 422, "{}", response.text);
        response.json()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|detail| detail["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut body = chat("mock/gpt-mock", "hi");
    body["frequency_penalty"] = json!(0.5);
    assert_eq!(
        field_of(&gateway.complete(&admin, &body).await),
        ["frequency_penalty"]
    );
    let mut body = chat("mock/gpt-mock", "hi");
    body["n"] = json!(2);
    assert_eq!(field_of(&gateway.complete(&admin, &body).await), ["n"]);
    // Anthropic has no seed.
    let mut body = chat("anthro/claude-mock", "hi");
    body["seed"] = json!(7);
    assert_eq!(field_of(&gateway.complete(&admin, &body).await), ["seed"]);
    // The Engify plan's limits.
    let mut body = chat("mock/gpt-mock", "hi");
    body["temperature"] = json!(2.5);
    body["max_tokens"] = json!(5000);
    assert_eq!(
        field_of(&gateway.complete(&admin, &body).await),
        ["temperature", "max_tokens"]
    );
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let body = json!({"model": "mock/gpt-mock", "messages": many});
    assert_eq!(
        field_of(&gateway.complete(&admin, &body).await),
        ["messages"]
    );
    let body = chat("mock/gpt-mock", &"x".repeat(10_001));
    assert_eq!(
        field_of(&gateway.complete(&admin, &body).await),
        ["messages[1].content"]
    );
    let unknown = gateway.complete(&admin, &chat("nowhere/model", "hi")).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let malformed = gateway.complete(&admin, &chat("no-slash", "hi")).await;
    assert_eq!(field_of(&malformed), ["model"]);
}

#[tokio::test]
async fn retries_then_falls_back_and_records_the_attempts() {
    let gateway = gateway_with(|config| {
        config.gateway.max_retries = 2;
        config.gateway.aliases.insert(
            "resilient".to_owned(),
            AliasConfig {
                targets: vec![
                    "broken/model".to_owned(),
                    "anthro/claude-mock".to_owned(),
                    "mock/gpt-mock".to_owned(),
                ],
                ..AliasConfig::default()
            },
        );
    })
    .await;
    let admin = gateway.app.admin_key.clone();
    // `broken` refuses connections (3 attempts); `anthro` fails 3 times with 500 (label shared
    // with the next entry, so `mock` sees the 4th call and succeeds).
    let response = gateway
        .complete(&admin, &chat("resilient", "go [[fail_first:3:fb]]"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.header("x-flywheel-provider").as_deref(),
        Some("mock")
    );
    assert_eq!(gateway.mock.state.total_calls("anthropic.messages"), 3);
    assert_eq!(gateway.mock.state.total_calls("openai.chat"), 1);
    let id = response.header("x-flywheel-interaction-id").unwrap();
    let logged = gateway.logged(&admin, &id).await;
    let attempts = logged["gateway"]["attempts"].as_array().unwrap();
    let classes: Vec<&str> = attempts
        .iter()
        .map(|attempt| attempt["error_class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["connect", "server"]);
    assert_eq!(logged["gateway"]["fell_back"], true);

    // Retries alone recover on the same provider.
    let retried = gateway
        .complete(&admin, &chat("mock/gpt-mock", "go [[fail_first:2:rt]]"))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    // A request the provider calls invalid is neither retried nor passed down the chain.
    let anthropic_calls = gateway.mock.state.total_calls("anthropic.messages");
    let openai_calls = gateway.mock.state.total_calls("openai.chat");
    let invalid = gateway
        .complete(&admin, &chat("resilient", "go [[status:400]]"))
        .await;
    assert_eq!(invalid.status, 400, "{}", invalid.text);
    assert_eq!(invalid.error_code(), "upstream_invalid_request");
    assert_eq!(
        gateway.mock.state.total_calls("anthropic.messages"),
        anthropic_calls + 1
    );
    assert_eq!(gateway.mock.state.total_calls("openai.chat"), openai_calls);
}

#[tokio::test]
async fn streams_fall_back_before_the_first_token_and_fail_loudly_after_it() {
    let gateway = gateway_with(|config| {
        config.gateway.max_retries = 0;
        config.gateway.aliases.insert(
            "chain".to_owned(),
            AliasConfig {
                targets: vec!["anthro/claude-mock".to_owned(), "mock/gpt-mock".to_owned()],
                ..AliasConfig::default()
            },
        );
    })
    .await;
    let admin = gateway.app.admin_key.clone();
    let mut body = chat("chain", "go [[fail_first:1:st]]");
    body["stream"] = json!(true);
    let response = gateway.complete(&admin, &body).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.header("x-flywheel-provider").as_deref(),
        Some("mock")
    );
    assert_eq!(
        sse_data(&response.text).last().map(String::as_str),
        Some("[DONE]")
    );

    let mut body = chat(
        "mock/gpt-mock",
        "a long answer [[fail_midstream]] [[chunks:6]]",
    );
    body["stream"] = json!(true);
    let response = gateway.complete(&admin, &body).await;
    assert_eq!(response.status, 200);
    let data = sse_data(&response.text);
    assert_ne!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "never a silent truncation"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    assert!(
        data.iter()
            .any(|chunk| chunk.contains("\"content\":\"Mock")),
        "text came first"
    );
    let id = response.header("x-flywheel-interaction-id").unwrap();
    let logged = gateway.logged(&admin, &id).await;
    assert_eq!(logged["gateway"]["incomplete"], true);
    assert!(logged["gateway"]["error_class"].is_string());
}

#[tokio::test]
async fn variants_are_sticky_per_user_and_recorded_as_experiments() {
    let gateway = gateway_with(|config| {
        config.gateway.aliases.insert(
            "concierge".to_owned(),
            AliasConfig {
                variants: vec![
                    VariantConfig {
                        name: "small".to_owned(),
                        weight: 1,
                        targets: vec!["mock/model-small".to_owned()],
                    },
                    VariantConfig {
                        name: "large".to_owned(),
                        weight: 1,
                        targets: vec!["mock/model-large".to_owned()],
                    },
                ],
                experiment: Some("ai_model_version".to_owned()),
                ..AliasConfig::default()
            },
        );
    })
    .await;
    let admin = gateway.app.admin_key.clone();
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..12 {
        let mut body = chat("concierge", "hi");
        body["user"] = json!(format!("end-user-{user}"));
        let first = gateway.complete(&admin, &body).await;
        let again = gateway.complete(&admin, &body).await;
        let variant = first.header("x-flywheel-variant").unwrap();
        assert_eq!(
            again.header("x-flywheel-variant").unwrap(),
            variant,
            "sticky"
        );
        seen.insert(variant.clone());
        if user == 0 {
            let id = first.header("x-flywheel-interaction-id").unwrap();
            let logged = gateway.logged(&admin, &id).await;
            assert_eq!(logged["experiments"]["ai_model_version"], variant);
        }
    }
    assert_eq!(seen.len(), 2, "both variants are used across users");
    let models = gateway.app.get("/v1/models", Some(&admin)).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"concierge") && ids.contains(&"mock/gpt-mock"),
        "{ids:?}"
    );
}

async fn budget_allows_exactly_ten_of_fifty(redis_url: Option<String>) {
    let gateway = gateway_with(move |config| {
        config.limits.budgets.principal.requests_per_minute = Some(10);
        if let Some(url) = redis_url {
            config.limits.redis_url = Some(url);
            config.limits.redis_key_prefix = format!("flywheel-test:{}", uuid::Uuid::new_v4());
        }
    })
    .await;
    let admin = gateway.app.admin_key.clone();
    let body = chat("mock/gpt-mock", "hi [[delay_ms:20]]");
    let requests = (0..50).map(|_| gateway.complete(&admin, &body));
    let responses = futures::future::join_all(requests).await;
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&TestResponse> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!((ok, limited.len()), (10, 40));
    let refused = limited[0];
    assert_eq!(refused.error_code(), "rate_limited");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.header("x-ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(
        refused.header("x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert!(refused.header("x-ratelimit-reset").is_some());
    assert_eq!(gateway.mock.state.total_calls("openai.chat"), 10);
}

#[tokio::test]
async fn a_budget_of_ten_admits_exactly_ten_of_fifty_parallel_requests() {
    budget_allows_exactly_ten_of_fifty(None).await;
}

#[tokio::test]
async fn replicas_share_a_redis_budget_of_ten_under_fifty_parallel_requests() {
    let Ok(url) = std::env::var("FLYWHEEL_TEST_REDIS_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "FLYWHEEL_TEST_REDIS_URL is required in CI (see .ci/run)"
        );
        eprintln!("skipping: FLYWHEEL_TEST_REDIS_URL is not set");
        return;
    };
    budget_allows_exactly_ten_of_fifty(Some(url)).await;
}

#[tokio::test]
async fn token_budgets_are_settled_with_real_usage() {
    let gateway = gateway_with(|config| {
        config.limits.budgets.tenant.tokens_per_day = Some(100);
    })
    .await;
    let admin = gateway.app.admin_key.clone();
    // Each call reserves an estimate (prompt + max_tokens 40) and settles at 8 real tokens, so
    // far more than 100 / 48 calls fit in the day's budget.
    let mut body = chat("mock/gpt-mock", "Hello there");
    body["max_tokens"] = json!(40);
    for _ in 0..6 {
        let response = gateway.complete(&admin, &body).await;
        assert_eq!(response.status, 200, "{}", response.text);
    }
    body["max_tokens"] = json!(200);
    let too_big = gateway.complete(&admin, &body).await;
    assert_eq!(too_big.status, 429, "{}", too_big.text);
    assert!(too_big.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens"));
}

#[tokio::test]
async fn users_bring_their_own_keys_which_never_leak() {
    let gateway = gateway_with(|config| {
        config.gateway.tenants.insert(
            "byok".to_owned(),
            TenantGatewayConfig {
                allow_platform_keys: Some(false),
                ..TenantGatewayConfig::default()
            },
        );
    })
    .await;
    let app = &gateway.app;
    app.create_tenant("byok").await;
    let (alice, _) = app.create_key("byok", "contractor", Some("alice")).await;
    let (bob, _) = app.create_key("byok", "contractor", Some("bob")).await;
    let secret = "sk-alice-own-secret-9876";

    // Without a key of her own, and with platform keys off for the tenant: refused.
    let refused = gateway.complete(&alice, &chat("mock/gpt-mock", "hi")).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("/v1/provider-keys"));

    let stored = app
        .post_json(
            "/v1/provider-keys",
            Some(&alice),
            &json!({"provider": "mock", "name": "mine", "key": secret, "monthly_token_limit": 100000}),
        )
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    assert!(!stored.text.contains(secret));
    assert_eq!(stored.json()["last_four"], "9876");
    let listed = app.get("/v1/provider-keys", Some(&alice)).await;
    assert!(!listed.text.contains(secret));
    assert_eq!(listed.json()["provider_keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/provider-keys", Some(&bob)).await.json()["provider_keys"],
        json!([])
    );

    let answered = gateway.complete(&alice, &chat("mock/gpt-mock", "hi")).await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    let presented = gateway
        .mock
        .state
        .calls()
        .last()
        .unwrap()
        .credential
        .clone();
    assert_eq!(
        presented.as_deref(),
        Some(secret),
        "her key, not the platform's"
    );
    // Bob has no key and may not use the platform's.
    assert_eq!(
        gateway
            .complete(&bob, &chat("mock/gpt-mock", "hi"))
            .await
            .status,
        403
    );

    // The database holds no plaintext key.
    if let Some(path) = app
        .config
        .database
        .url
        .as_deref()
        .and_then(|url| url.strip_prefix("sqlite://"))
    {
        let path = path.split('?').next().unwrap();
        let _ = app.components.store.close().await;
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let needle = secret.as_bytes();
                assert!(
                    !bytes.windows(needle.len()).any(|window| window == needle),
                    "{file} contains the plaintext key"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_rejected_user_key_is_reported_without_the_key() {
    let gateway = gateway_with(|_| {}).await;
    let app = &gateway.app;
    let stored = app
        .post_json(
            "/v1/provider-keys",
            Some(&app.admin_key),
            &json!({"provider": "mock", "name": "typo", "key": "wrong-key"}),
        )
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    let response = gateway
        .complete(&app.admin_key, &chat("mock/gpt-mock", "hi"))
        .await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(response.error_code(), "upstream_authentication");
    assert!(!response.text.contains("wrong-key"), "{}", response.text);
}

#[tokio::test]
async fn a_provider_without_any_key_is_a_503_that_says_how_to_get_one() {
    let gateway = gateway_with(|config| {
        config.gateway.providers.insert(
            "keyless".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::Openai,
                base_url: Some("http://127.0.0.1:1/v1".to_owned()),
                ..ProviderConfig::default()
            },
        );
    })
    .await;
    let response = gateway
        .complete(&gateway.app.admin_key, &chat("keyless/gpt-4o-mini", "hi"))
        .await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(response.error_code(), "model_unavailable");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("gateway.providers.keyless.api_key"),
        "{message}"
    );
    assert!(message.contains("POST /v1/provider-keys"), "{message}");
    assert!(message.contains("local/"), "{message}");
}

#[tokio::test]
async fn embeddings_work_as_floats_and_base64() {
    let gateway = gateway_with(|_| {}).await;
    let admin = gateway.app.admin_key.clone();
    let body =
        json!({"model": "mock/text-embed", "input": ["alpha", "beta gamma"], "dimensions": 8});
    let response = gateway
        .app
        .post_json("/v1/embeddings", Some(&admin), &body)
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let json = response.json();
    assert_eq!(json["data"].as_array().unwrap().len(), 2);
    let first: Vec<f32> = serde_json::from_value(json["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first, flywheel_mock_provider::openai::vector("alpha", 8));
    assert_eq!(json["usage"]["prompt_tokens"], 3);
    let mut body = body.clone();
    body["encoding_format"] = json!("base64");
    let encoded = gateway
        .app
        .post_json("/v1/embeddings", Some(&admin), &body)
        .await
        .json();
    assert!(encoded["data"][0]["embedding"].is_string());
    let tokens = json!({"model": "mock/text-embed", "input": [[1, 2, 3]]});
    let rejected = gateway
        .app
        .post_json("/v1/embeddings", Some(&admin), &tokens)
        .await;
    assert_eq!(rejected.status, 422);
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_unchanged() {
    let has_sdk = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !has_sdk {
        assert!(
            std::env::var_os("CI").is_none(),
            "the openai Python package is required in CI (see .ci/run)"
        );
        eprintln!("skipping: the openai Python package is not installed (pip install openai)");
        return;
    }
    let gateway = gateway_with(|_| {}).await;
    let script = r#"
import json, os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
chat = client.chat.completions.create(model="mock/gpt-mock", messages=[{"role": "user", "content": "Hello SDK"}], temperature=0.5, max_tokens=50)
stream = client.chat.completions.create(model="mock/gpt-mock", messages=[{"role": "user", "content": "Hello stream [[chunks:3]]"}], stream=True, stream_options={"include_usage": True})
pieces, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.total_tokens
emb = client.embeddings.create(model="mock/text-embed", input=["alpha"], dimensions=8)
print(json.dumps({"chat": chat.choices[0].message.content, "chat_tokens": chat.usage.total_tokens,
                  "stream": "".join(pieces), "stream_usage": usage, "embedding": emb.data[0].embedding}))
"#;
    let output = tokio::process::Command::new("python3")
        .args(["-c", script])
        .env("BASE_URL", format!("{}/v1", gateway.app.address))
        .env("API_KEY", &gateway.app.admin_key)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the SDK script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["chat"], "Mock answer: Hello SDK");
    assert_eq!(result["chat_tokens"], 6);
    assert_eq!(result["stream"], "Mock answer: Hello stream");
    assert_eq!(result["stream_usage"], 7);
    let embedding: Vec<f32> = serde_json::from_value(result["embedding"].clone()).unwrap();
    assert_eq!(
        embedding,
        flywheel_mock_provider::openai::vector("alpha", 8)
    );
}
