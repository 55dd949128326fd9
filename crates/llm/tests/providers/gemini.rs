//! The Gemini adapter through the shared suite, plus what only Gemini has: synthesised
//! tool-call ids, Gemini 3's thought-signature check on replayed calls, `MAX_TOKENS`,
//! JSON-schema answers, batched embeddings without usage, and the mock's request validation.

use std::sync::Arc;
use std::time::Duration;

use flywheel_llm::gemini::GeminiProvider;
use flywheel_llm::{
    ChatMessage, ChatRequest, Credential, EmbeddingRequest, ErrorClass, FinishReason, HttpSettings,
    Provider, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, ToolDefinition,
};
use flywheel_mock_provider::{MockServer, TOOL_ARGUMENTS};
use futures::future::BoxFuture;
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::json;

use crate::suite::Features;

const MODEL: &str = "gemini-2.5-flash";

const FEATURES: Features = Features {
    model: MODEL,
    tools: true,
    cached_tokens: true,
    good_key: "AIza-user-own-key",
    wrong_key: "wrong-key",
};

fn settings(server: &MockServer, timeout: Duration) -> HttpSettings {
    HttpSettings {
        base_url: server.base_url(),
        connect_timeout: Duration::from_secs(2),
        timeout,
    }
}

fn make(server: &MockServer, timeout: Duration) -> BoxFuture<'_, Arc<dyn Provider>> {
    Box::pin(async move {
        let provider = GeminiProvider::new(
            "gemini",
            settings(server, timeout),
            Some(SecretString::from("AIza-platform")),
        )
        .unwrap();
        Arc::new(provider) as Arc<dyn Provider>
    })
}

mod suite {
    provider_suite!(super::make, super::FEATURES);
}

async fn start() -> (MockServer, GeminiProvider) {
    let server = MockServer::start().await.expect("mock starts");
    let provider = GeminiProvider::new(
        "gemini",
        settings(&server, Duration::from_secs(5)),
        Some(SecretString::from("platform-key")),
    )
    .expect("provider builds");
    (server, provider)
}

fn key() -> Credential {
    Credential::User(SecretString::from("user-key"))
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: MODEL.to_owned(),
        messages: vec![
            ChatMessage::text(Role::System, "You are terse."),
            ChatMessage::text(Role::User, text),
        ],
        ..ChatRequest::default()
    }
}

fn lookup_tool() -> ToolDefinition {
    ToolDefinition {
        name: "lookup".to_owned(),
        description: Some("Looks something up".to_owned()),
        parameters: json!({
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }),
        strict: None,
    }
}

async fn collect(
    provider: &GeminiProvider,
    request: &ChatRequest,
) -> Vec<Result<StreamEvent, flywheel_llm::ProviderError>> {
    provider
        .chat_stream(request, &key())
        .await
        .expect("stream starts")
        .collect()
        .await
}

#[tokio::test]
async fn platform_key_is_used_and_its_absence_is_an_authentication_error() {
    let (server, provider) = start().await;
    provider
        .chat(&request("hi"), &Credential::Platform)
        .await
        .expect("answer");
    assert_eq!(
        server.state.calls()[0].credential.as_deref(),
        Some("platform-key")
    );
    let keyless = GeminiProvider::new("gemini", settings(&server, Duration::from_secs(5)), None)
        .expect("provider builds");
    let error = keyless
        .chat(&request("hi"), &Credential::Platform)
        .await
        .expect_err("no key");
    assert_eq!(error.class, ErrorClass::Authentication);
}

#[tokio::test]
async fn tool_calls_get_stable_synthesised_ids() {
    let (_server, provider) = start().await;
    let mut first = request("find it [[tool]]");
    first.tools = vec![lookup_tool()];
    first.tool_choice = Some(ToolChoice::Auto);

    let answer = provider.chat(&first, &key()).await.expect("answer");
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
    assert_eq!(answer.content, None);
    assert_eq!(
        answer.tool_calls,
        vec![ToolCall {
            id: "call_0".to_owned(),
            name: "lookup".to_owned(),
            arguments: TOOL_ARGUMENTS.to_owned(),
        }]
    );

    let events: Vec<StreamEvent> = collect(&provider, &first)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("no stream error");
    assert_eq!(
        events[..3],
        [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_0".to_owned(),
                name: "lookup".to_owned(),
            },
            StreamEvent::ToolCallArguments {
                index: 0,
                fragment: TOOL_ARGUMENTS.to_owned(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
    assert!(matches!(events[3], StreamEvent::Usage(_)));

    let follow_up = follow_up(first, answer.tool_calls);
    let answer = provider.chat(&follow_up, &key()).await.expect("follow-up");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    let content = answer.content.expect("text");
    assert!(content.contains("sunny"), "{content}");
}

/// The conversation after the assistant's tool calls, each answered.
fn follow_up(mut request: ChatRequest, calls: Vec<ToolCall>) -> ChatRequest {
    let ids: Vec<String> = calls.iter().map(|call| call.id.clone()).collect();
    request.messages.push(ChatMessage {
        role: Role::Assistant,
        content: None,
        name: None,
        tool_calls: calls,
        tool_call_id: None,
    });
    for id in ids {
        request.messages.push(ChatMessage {
            role: Role::Tool,
            content: Some("sunny".to_owned()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: Some(id),
        });
    }
    request
}

#[tokio::test]
async fn gemini_3_follow_ups_pass_thought_signature_validation() {
    let (_server, provider) = start().await;
    let mut first = request("find it [[tool]]");
    first.model = "gemini-3-pro-preview".to_owned();
    first.tools = vec![lookup_tool()];
    first.tool_choice = Some(ToolChoice::Function("lookup".to_owned()));
    let answer = provider.chat(&first, &key()).await.expect("answer");
    assert_eq!(answer.tool_calls.len(), 1);
    let follow_up = follow_up(first, answer.tool_calls);
    let answer = provider.chat(&follow_up, &key()).await.expect("follow-up");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn tool_result_without_its_call_is_refused_before_sending() {
    let (server, provider) = start().await;
    let mut request = request("hi");
    request.messages.push(ChatMessage {
        role: Role::Tool,
        content: Some("orphan".to_owned()),
        name: None,
        tool_calls: Vec::new(),
        tool_call_id: Some("call_7".to_owned()),
    });
    let error = provider.chat(&request, &key()).await.expect_err("refused");
    assert_eq!(error.class, ErrorClass::InvalidRequest);
    assert!(server.state.calls().is_empty());
}

#[tokio::test]
async fn generation_settings_are_honoured() {
    let (_server, provider) = start().await;
    let mut limited = request("one two three four five six");
    limited.max_tokens = Some(3);
    limited.temperature = Some(0.2);
    limited.top_p = Some(0.9);
    limited.stop = vec!["END".to_owned()];
    limited.seed = Some(42);
    limited.user = Some("end-user".to_owned());
    let answer = provider.chat(&limited, &key()).await.expect("answer");
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.content.as_deref(), Some("Mock answer: one"));

    let mut json_request = request("structured");
    json_request.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".to_owned(),
        description: None,
        schema: json!({"type": "object", "properties": {"answer": {"type": "string"}}}),
        strict: Some(true),
    });
    let answer = provider.chat(&json_request, &key()).await.expect("answer");
    let value: serde_json::Value =
        serde_json::from_str(&answer.content.expect("text")).expect("JSON answer");
    assert_eq!(value, json!({"answer": "structured"}));
}

#[tokio::test]
async fn errors_carry_google_status_names() {
    let (_server, provider) = start().await;
    let error = provider
        .chat(&request("[[status:429]]"), &key())
        .await
        .expect_err("429");
    assert_eq!(error.retry_after, Some(Duration::ZERO));
    assert!(
        error.message.contains("RESOURCE_EXHAUSTED"),
        "{}",
        error.message
    );
    let error = provider
        .chat(&request("[[status:404]]"), &key())
        .await
        .expect_err("404");
    assert_eq!(error.class, ErrorClass::ModelNotFound);
    assert!(error.message.contains("NOT_FOUND"), "{}", error.message);
}

#[tokio::test]
async fn embeddings_come_back_in_order_in_batches_of_100() {
    let (server, provider) = start().await;
    let inputs: Vec<String> = (0..250).map(|n| format!("text {n}")).collect();
    let answer = provider
        .embed(
            &EmbeddingRequest {
                model: "gemini-embedding-001".to_owned(),
                inputs: inputs.clone(),
                dimensions: Some(16),
                user: None,
            },
            &key(),
        )
        .await
        .expect("embeddings");
    assert_eq!(answer.vectors.len(), 250);
    assert!(answer.vectors.iter().all(|vector| vector.len() == 16));
    assert_eq!(server.state.total_calls("gemini.embed"), 3);
    // Gemini reports no token usage for embeddings.
    assert_eq!(answer.usage.total_tokens(), 0);

    let single = provider
        .embed(
            &EmbeddingRequest {
                model: "gemini-embedding-001".to_owned(),
                inputs: vec![inputs[120].clone()],
                dimensions: Some(16),
                user: None,
            },
            &key(),
        )
        .await
        .expect("embedding");
    assert_eq!(single.vectors[0], answer.vectors[120]);
}

/// The mock validates requests as Gemini does, so adapter mistakes surface as 400s.
#[tokio::test]
async fn mock_rejects_malformed_requests() {
    let server = MockServer::start().await.expect("mock starts");
    let client = reqwest::Client::new();
    let post = |model_action: &str, body: serde_json::Value| {
        client
            .post(format!(
                "{}/v1beta/models/{model_action}",
                server.base_url()
            ))
            .header("x-goog-api-key", "k")
            .json(&body)
            .send()
    };
    let orphan_response = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}],
    });
    let unknown_field = json!({
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"max_tokens": 5},
    });
    let bad_role = json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]});
    let unanswered_call = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
            {"role": "user", "parts": [{"text": "and?"}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}],
    });
    let unsigned_call = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}],
    });
    let cases = [
        (MODEL, orphan_response),
        (MODEL, unknown_field),
        (MODEL, bad_role),
        (MODEL, unanswered_call),
        ("gemini-3-pro-preview", unsigned_call.clone()),
    ];
    for (model, body) in cases {
        let response = post(&format!("{model}:generateContent"), body)
            .await
            .expect("answer");
        assert_eq!(response.status(), 400);
        let error: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    }
    // The same call is fine for a model that does not check thought signatures.
    let response = post(&format!("{MODEL}:generateContent"), unsigned_call)
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let array = post(
        &format!("{MODEL}:streamGenerateContent"),
        json!({"contents": [{"parts": [{"text": "hi"}]}]}),
    )
    .await
    .expect("answer");
    assert_eq!(array.status(), 200);
    let chunks: Vec<serde_json::Value> = array.json().await.expect("a JSON array without alt=sse");
    assert_eq!(chunks.len(), 3);
}
