//! Tests every provider adapter must pass, generated per provider by `provider_suite!`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_llm::{
    ChatMessage, ChatRequest, Credential, ErrorClass, FinishReason, Provider, Role, StreamEvent,
    ToolCall, ToolDefinition,
};
use flywheel_mock_provider::MockServer;
use futures::future::BoxFuture;
use futures::StreamExt;
use secrecy::SecretString;

/// Builds the adapter under test pointed at `server`, with `timeout` as its request timeout.
pub type Maker = for<'a> fn(&'a MockServer, Duration) -> BoxFuture<'a, Arc<dyn Provider>>;

/// What a provider supports, and how it is addressed in the suite.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub model: &'static str,
    pub tools: bool,
    pub cached_tokens: bool,
    /// A key the mock accepts, as a user would store it.
    pub good_key: &'static str,
    /// A key the mock rejects with a message that echoes it.
    pub wrong_key: &'static str,
}

/// Generates the suite's tests for one provider.
macro_rules! provider_suite {
    ($make:path, $features:expr) => {
        #[tokio::test]
        async fn chat_answers_with_usage() {
            crate::suite::chat_answers_with_usage($make, $features).await;
        }
        #[tokio::test]
        async fn stream_matches_chat_and_ends_with_usage() {
            crate::suite::stream_matches_chat_and_ends_with_usage($make, $features).await;
        }
        #[tokio::test]
        async fn tool_calls_round_trip() {
            crate::suite::tool_calls_round_trip($make, $features).await;
        }
        #[tokio::test]
        async fn cached_input_tokens_are_reported() {
            crate::suite::cached_input_tokens_are_reported($make, $features).await;
        }
        #[tokio::test]
        async fn errors_are_classified_without_the_key() {
            crate::suite::errors_are_classified_without_the_key($make, $features).await;
        }
        #[tokio::test]
        async fn timeouts_are_classified() {
            crate::suite::timeouts_are_classified($make, $features).await;
        }
        #[tokio::test]
        async fn mid_stream_failure_is_an_error_not_a_truncation() {
            crate::suite::mid_stream_failure_is_an_error_not_a_truncation($make, $features).await;
        }
        #[tokio::test]
        async fn user_key_is_sent() {
            crate::suite::user_key_is_sent($make, $features).await;
        }
    };
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn request(features: Features, user_text: &str) -> ChatRequest {
    ChatRequest {
        model: features.model.to_owned(),
        messages: vec![
            ChatMessage::text(Role::System, "Be brief."),
            ChatMessage::text(Role::User, user_text),
        ],
        temperature: Some(0.2),
        max_tokens: Some(100),
        ..ChatRequest::default()
    }
}

fn lookup_tool() -> ToolDefinition {
    ToolDefinition {
        name: "lookup".to_owned(),
        description: Some("Looks something up.".to_owned()),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }),
        strict: None,
    }
}

struct Collected {
    text: String,
    tool_calls: Vec<ToolCall>,
    finishes: Vec<FinishReason>,
    usage: Option<flywheel_llm::Usage>,
    n_text_events: usize,
    error: Option<flywheel_llm::ProviderError>,
}

async fn collect(mut stream: flywheel_llm::ChatStream) -> Collected {
    let mut collected = Collected {
        text: String::new(),
        tool_calls: Vec::new(),
        finishes: Vec::new(),
        usage: None,
        n_text_events: 0,
        error: None,
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Text(text)) => {
                collected.n_text_events += 1;
                collected.text.push_str(&text);
            }
            Ok(StreamEvent::ToolCallStart { index, id, name }) => {
                assert_eq!(
                    index as usize,
                    collected.tool_calls.len(),
                    "tool call indexes are dense"
                );
                collected.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                });
            }
            Ok(StreamEvent::ToolCallArguments { index, fragment }) => {
                collected.tool_calls[index as usize]
                    .arguments
                    .push_str(&fragment);
            }
            Ok(StreamEvent::Finish(reason)) => collected.finishes.push(reason),
            Ok(StreamEvent::Usage(usage)) => collected.usage = Some(usage),
            Err(err) => {
                collected.error = Some(err);
                assert!(
                    stream.next().await.is_none(),
                    "nothing may follow a stream error"
                );
                break;
            }
        }
    }
    collected
}

pub async fn chat_answers_with_usage(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let answer = provider
        .chat(&request(features, "Hello there"), &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(answer.content.as_deref(), Some("Mock answer: Hello there"));
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert!(answer.tool_calls.is_empty());
    let usage = answer.usage.expect("usage is reported");
    // The mock counts words: "Be brief." + "Hello there" in, "Mock answer: Hello there" out.
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 4));
}

pub async fn stream_matches_chat_and_ends_with_usage(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let stream = provider
        .chat_stream(
            &request(features, "Hello there [[chunks:4]]"),
            &Credential::Platform,
        )
        .await
        .unwrap();
    let collected = collect(stream).await;
    assert!(collected.error.is_none(), "{:?}", collected.error);
    assert_eq!(collected.text, "Mock answer: Hello there");
    assert!(collected.n_text_events >= 2, "the answer arrives in pieces");
    assert_eq!(collected.finishes, vec![FinishReason::Stop]);
    let usage = collected.usage.expect("a stream's usage is never lost");
    assert_eq!(usage.output_tokens, 4);
    assert!(usage.input_tokens >= 4, "{usage:?}");
}

pub async fn tool_calls_round_trip(make: Maker, features: Features) {
    if !features.tools {
        return;
    }
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let mut ask = request(features, "Find it [[tool]]");
    ask.tools = vec![lookup_tool()];
    let answer = provider.chat(&ask, &Credential::Platform).await.unwrap();
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
    assert_eq!(answer.tool_calls.len(), 1);
    let call = answer.tool_calls[0].clone();
    assert_eq!(call.name, "lookup");
    let arguments: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert_eq!(arguments, serde_json::json!({"query": "mock"}));

    let streamed = collect(
        provider
            .chat_stream(&ask, &Credential::Platform)
            .await
            .unwrap(),
    )
    .await;
    assert!(streamed.error.is_none(), "{:?}", streamed.error);
    assert_eq!(streamed.finishes, vec![FinishReason::ToolCalls]);
    assert_eq!(streamed.tool_calls.len(), 1);
    assert_eq!(streamed.tool_calls[0].name, "lookup");
    let streamed_arguments: serde_json::Value =
        serde_json::from_str(&streamed.tool_calls[0].arguments).unwrap();
    assert_eq!(streamed_arguments, arguments);

    // The follow-up carries the call and its result; the mock validates the structure.
    let mut follow_up = request(features, "Find it");
    follow_up.tools = vec![lookup_tool()];
    follow_up.messages.push(ChatMessage {
        role: Role::Assistant,
        content: None,
        name: None,
        tool_calls: vec![call.clone()],
        tool_call_id: None,
    });
    follow_up.messages.push(ChatMessage {
        role: Role::Tool,
        content: Some(r#"{"result": 42}"#.to_owned()),
        name: None,
        tool_calls: Vec::new(),
        tool_call_id: Some(call.id.clone()),
    });
    follow_up
        .messages
        .push(ChatMessage::text(Role::User, "Thanks"));
    let answer = provider
        .chat(&follow_up, &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(answer.content.as_deref(), Some("Mock answer: Thanks"));
}

pub async fn cached_input_tokens_are_reported(make: Maker, features: Features) {
    if !features.cached_tokens {
        return;
    }
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let answer = provider
        .chat(
            &request(features, "one two three [[cached:3]]"),
            &Credential::Platform,
        )
        .await
        .unwrap();
    let usage = answer.usage.unwrap();
    assert_eq!(usage.cached_input_tokens, Some(3));
    assert!(
        usage.input_tokens >= 3,
        "input tokens include cached ones: {usage:?}"
    );
    let streamed = collect(
        provider
            .chat_stream(
                &request(features, "one two three [[cached:3]]"),
                &Credential::Platform,
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(streamed.usage.unwrap().cached_input_tokens, Some(3));
}

pub async fn errors_are_classified_without_the_key(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    for (status, class) in [
        (429, ErrorClass::RateLimited),
        (500, ErrorClass::Server),
        (503, ErrorClass::Server),
        (400, ErrorClass::InvalidRequest),
    ] {
        let ask = request(features, &format!("fail [[status:{status}]]"));
        let err = provider
            .chat(&ask, &Credential::Platform)
            .await
            .unwrap_err();
        assert_eq!(err.class, class, "status {status}: {err}");
        let err = match provider.chat_stream(&ask, &Credential::Platform).await {
            Err(err) => err,
            Ok(stream) => collect(stream).await.error.expect("the stream fails"),
        };
        assert_eq!(err.class, class, "streamed, status {status}: {err}");
        if status == 429 {
            assert!(err.class.retryable());
        }
    }
    let wrong = Credential::User(SecretString::from(features.wrong_key));
    let err = provider
        .chat(&request(features, "hi"), &wrong)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Authentication, "{err}");
    let secret_part = features
        .wrong_key
        .split(':')
        .next_back()
        .unwrap_or_default();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(
            !shown.contains(features.wrong_key),
            "the key leaked: {shown}"
        );
        assert!(!shown.contains(secret_part), "the key leaked: {shown}");
    }
}

pub async fn timeouts_are_classified(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, Duration::from_millis(300)).await;
    let started = Instant::now();
    let err = provider
        .chat(
            &request(features, "slow [[delay_ms:3000]]"),
            &Credential::Platform,
        )
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_millis(2_500));
    let err = match provider
        .chat_stream(
            &request(features, "slow [[delay_ms:3000]]"),
            &Credential::Platform,
        )
        .await
    {
        Err(err) => err,
        Ok(stream) => collect(stream).await.error.expect("the stream times out"),
    };
    assert_eq!(err.class, ErrorClass::Timeout, "{err}");
    // A stream that starts, then stalls.
    let stalled = match provider
        .chat_stream(
            &request(features, "stall [[chunk_delay_ms:3000]]"),
            &Credential::Platform,
        )
        .await
    {
        Err(err) => err,
        Ok(stream) => collect(stream).await.error.expect("a stalled stream fails"),
    };
    assert_eq!(stalled.class, ErrorClass::Timeout, "{stalled}");
    assert!(started.elapsed() < Duration::from_millis(5_000));
}

pub async fn mid_stream_failure_is_an_error_not_a_truncation(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let stream = provider
        .chat_stream(
            &request(features, "a long answer [[fail_midstream]] [[chunks:5]]"),
            &Credential::Platform,
        )
        .await
        .unwrap();
    let collected = collect(stream).await;
    assert!(
        !collected.text.is_empty(),
        "some text arrived before the failure"
    );
    assert!(
        collected.finishes.is_empty(),
        "no finish after a broken stream"
    );
    assert!(collected.error.is_some(), "the break is reported");
}

pub async fn user_key_is_sent(make: Maker, features: Features) {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, TIMEOUT).await;
    let mine = Credential::User(SecretString::from(features.good_key));
    provider
        .chat(&request(features, "hi"), &mine)
        .await
        .unwrap();
    let calls = server.state.calls();
    let presented = calls
        .last()
        .and_then(|call| call.credential.clone())
        .unwrap();
    let expected = features.good_key.split(':').next().unwrap_or_default();
    assert_eq!(
        presented, expected,
        "the user's key, not the platform's, was presented"
    );
}
