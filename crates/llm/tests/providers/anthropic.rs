//! The Anthropic Messages adapter through the shared suite, plus what only Anthropic has:
//! parallel tool results merged into one user turn, structured outputs, overload (529) and
//! the parameters it refuses.

// The adapter-building helpers are not `#[test]` functions, so clippy's
// `allow-unwrap-in-tests` does not cover them; a failed construction should fail the test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use flywheel_llm::anthropic::AnthropicProvider;
use flywheel_llm::{
    ChatMessage, ChatRequest, Credential, ErrorClass, FinishReason, HttpSettings, Provider,
    ResponseFormat, Role, ToolCall, ToolChoice, ToolDefinition,
};
use flywheel_mock_provider::MockServer;
use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::suite::Features;

const FEATURES: Features = Features {
    model: "claude-sonnet-4-5",
    tools: true,
    cached_tokens: true,
    good_key: "sk-ant-user-own-key",
    wrong_key: "wrong-key",
};

fn settings(server: &MockServer, timeout: Duration) -> HttpSettings {
    HttpSettings {
        base_url: server.base_url(),
        connect_timeout: Duration::from_secs(2),
        timeout,
    }
}

fn provider(server: &MockServer, platform_key: Option<&str>) -> AnthropicProvider {
    AnthropicProvider::new(
        "anthropic",
        settings(server, Duration::from_secs(5)),
        platform_key.map(SecretString::from),
        4096,
    )
    .unwrap()
}

fn make(server: &MockServer, timeout: Duration) -> BoxFuture<'_, Arc<dyn Provider>> {
    Box::pin(async move {
        let provider = AnthropicProvider::new(
            "anthropic",
            settings(server, timeout),
            Some(SecretString::from("sk-ant-platform")),
            4096,
        )
        .unwrap();
        Arc::new(provider) as Arc<dyn Provider>
    })
}

mod suite {
    provider_suite!(super::make, super::FEATURES);
}

fn lookup_tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.to_owned(),
        description: None,
        parameters: serde_json::json!({"type": "object", "properties": {"query": {"type": "string"}}}),
        strict: Some(true),
    }
}

#[tokio::test]
async fn parallel_tool_results_and_a_user_text_form_one_valid_turn() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Some("sk-ant-platform"));
    let call = |id: &str| ToolCall {
        id: id.to_owned(),
        name: "lookup".to_owned(),
        arguments: r#"{"query":"x"}"#.to_owned(),
    };
    let result = |id: &str, text: &str| ChatMessage {
        tool_call_id: Some(id.to_owned()),
        ..ChatMessage::text(Role::Tool, text)
    };
    let request = ChatRequest {
        model: FEATURES.model.to_owned(),
        messages: vec![
            ChatMessage::text(Role::System, "Be brief."),
            ChatMessage::text(Role::User, "Look both up"),
            ChatMessage {
                role: Role::Assistant,
                content: Some("Looking.".to_owned()),
                name: None,
                tool_calls: vec![call("toolu_a"), call("toolu_b")],
                tool_call_id: None,
            },
            result("toolu_a", "first"),
            result("toolu_b", "second"),
            ChatMessage::text(Role::User, "Summarise"),
        ],
        tools: vec![lookup_tool("lookup")],
        tool_choice: Some(ToolChoice::Function("lookup".to_owned())),
        stop: vec!["STOP".to_owned()],
        user: Some("user-42".to_owned()),
        top_p: Some(0.9),
        ..ChatRequest::default()
    };
    let answer = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(answer.content.as_deref(), Some("Mock answer: Summarise"));
    assert_eq!(answer.finish_reason, FinishReason::Stop);

    // A result for a call the assistant never made is refused upstream as malformed.
    let mut orphan = request.clone();
    orphan.messages[4].tool_call_id = Some("toolu_unknown".to_owned());
    let err = provider
        .chat(&orphan, &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidRequest, "{err}");
    assert!(err.message.contains("tool_result"), "{err}");
}

#[tokio::test]
async fn json_schema_answers_with_json() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Some("sk-ant-platform"));
    let request = ChatRequest {
        model: FEATURES.model.to_owned(),
        messages: vec![ChatMessage::text(Role::User, "Give JSON")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".to_owned(),
            description: Some("The answer".to_owned()),
            schema: serde_json::json!({
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": false,
            }),
            strict: Some(true),
        }),
        ..ChatRequest::default()
    };
    provider.check(&request).unwrap();
    let answer = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    let value: serde_json::Value =
        serde_json::from_str(answer.content.as_deref().unwrap()).unwrap();
    assert_eq!(value, serde_json::json!({"answer": "Give JSON"}));
}

#[tokio::test]
async fn overload_is_a_retryable_server_error() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Some("sk-ant-platform"));
    let request = ChatRequest {
        model: FEATURES.model.to_owned(),
        messages: vec![ChatMessage::text(Role::User, "busy [[status:529]]")],
        ..ChatRequest::default()
    };
    let err = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Server, "{err}");
    assert!(err.class.retryable());
    assert!(err.message.contains("overloaded_error"), "{err}");
}

#[tokio::test]
async fn a_missing_platform_key_fails_before_any_call() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, None);
    let request = ChatRequest {
        model: FEATURES.model.to_owned(),
        messages: vec![ChatMessage::text(Role::User, "hi")],
        ..ChatRequest::default()
    };
    let err = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Authentication);
    assert_eq!(server.state.total_calls("anthropic.messages"), 0);
}

#[tokio::test]
async fn parameters_anthropic_cannot_honour_are_rejected_by_name() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, None);
    let base = ChatRequest {
        model: FEATURES.model.to_owned(),
        messages: vec![ChatMessage::text(Role::User, "hi")],
        ..ChatRequest::default()
    };
    provider.check(&base).unwrap();
    let cases = [
        (
            ChatRequest {
                seed: Some(7),
                ..base.clone()
            },
            "seed",
        ),
        (
            ChatRequest {
                response_format: Some(ResponseFormat::JsonObject),
                ..base.clone()
            },
            "response_format",
        ),
        (
            ChatRequest {
                temperature: Some(1.5),
                ..base.clone()
            },
            "temperature",
        ),
    ];
    for (request, parameter) in cases {
        let err = provider.check(&request).unwrap_err();
        assert_eq!(err.parameter, parameter);
    }
}
