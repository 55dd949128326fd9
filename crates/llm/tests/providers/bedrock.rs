//! The Bedrock adapter through the shared suite, and what is specific to it: AWS keys, the
//! model id in the path, structured output, tool choices and in-stream exceptions.
//!
//! The SDK never leaves the machine here: static credentials stand in for the default chain,
//! the region is explicit and the endpoint is the mock.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use flywheel_llm::bedrock::{BedrockProvider, BedrockSettings};
use flywheel_llm::{
    ChatMessage, ChatRequest, Credential, ErrorClass, FinishReason, Provider, ResponseFormat, Role,
    StreamEvent, ToolChoice, ToolDefinition,
};
use flywheel_mock_provider::MockServer;
use futures::future::BoxFuture;
use futures::StreamExt;
use secrecy::SecretString;

use crate::suite::Features;

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

const FEATURES: Features = Features {
    model: MODEL,
    tools: true,
    cached_tokens: true,
    good_key: "AKIDUSEROWNKEY:user-secret-access-key",
    wrong_key: "wrong-key:wrong-secret-access-key",
};

const PLATFORM_ACCESS_KEY_ID: &str = "AKIDPLATFORM";

fn settings(server: &MockServer, timeout: Duration) -> BedrockSettings {
    BedrockSettings {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(server.base_url()),
        connect_timeout: Duration::from_secs(2),
        timeout,
    }
}

/// An AWS configuration with static platform credentials, so no credential provider runs.
fn sdk_config(with_credentials: bool) -> SdkConfig {
    let builder = SdkConfig::builder();
    let builder = if with_credentials {
        builder.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            PLATFORM_ACCESS_KEY_ID,
            "platform-secret-access-key",
            None,
            None,
            "test",
        )))
    } else {
        builder
    };
    builder.build()
}

fn provider(server: &MockServer, timeout: Duration) -> BedrockProvider {
    BedrockProvider::with_sdk_config("bedrock", &sdk_config(true), settings(server, timeout))
        .unwrap()
}

fn make(server: &MockServer, timeout: Duration) -> BoxFuture<'_, Arc<dyn Provider>> {
    Box::pin(async move { Arc::new(provider(server, timeout)) as Arc<dyn Provider> })
}

provider_suite!(make, FEATURES);

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        model: MODEL.to_owned(),
        messages: vec![ChatMessage::text(Role::User, text)],
        ..ChatRequest::default()
    }
}

fn lookup_tool() -> ToolDefinition {
    ToolDefinition {
        name: "lookup".to_owned(),
        description: None,
        parameters: serde_json::json!({"type": "object", "properties": {"query": {"type": "string"}}}),
        strict: Some(true),
    }
}

#[tokio::test]
async fn the_platform_credential_signs_and_the_model_id_survives_the_path() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap();
    let calls = server.state.calls();
    let call = calls.last().unwrap();
    assert_eq!(call.api, "bedrock.converse");
    assert_eq!(call.model, MODEL);
    assert_eq!(call.credential.as_deref(), Some(PLATFORM_ACCESS_KEY_ID));
}

#[tokio::test]
async fn a_session_token_is_accepted_in_a_user_key() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let key = Credential::User(SecretString::from(
        "ASIATEMPORARY:temporary-secret:session-token",
    ));
    provider.chat(&ask("hi"), &key).await.unwrap();
    let calls = server.state.calls();
    assert_eq!(
        calls.last().unwrap().credential.as_deref(),
        Some("ASIATEMPORARY")
    );
}

#[tokio::test]
async fn a_malformed_user_key_fails_before_any_call_without_echoing_it() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    for malformed in ["just-one-part", "a:b:c:d", "id: spaced secret", ":secret"] {
        let key = Credential::User(SecretString::from(malformed));
        let err = provider.chat(&ask("hi"), &key).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Authentication, "{err}");
        assert!(!err.message.contains(malformed), "{err}");
        let err = provider.chat_stream(&ask("hi"), &key).await.err().unwrap();
        assert_eq!(err.class, ErrorClass::Authentication, "{err}");
    }
    assert!(server.state.calls().is_empty());
}

#[tokio::test]
async fn no_platform_credentials_is_an_authentication_error() {
    let server = MockServer::start().await.unwrap();
    let provider = BedrockProvider::with_sdk_config(
        "bedrock",
        &sdk_config(false),
        settings(&server, Duration::from_secs(5)),
    )
    .unwrap();
    let err = provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Authentication, "{err}");
    assert!(server.state.calls().is_empty());
}

#[tokio::test]
async fn bedrock_error_types_are_classified() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    for (status, class) in [
        (403, ErrorClass::Authentication),
        (404, ErrorClass::ModelNotFound),
        (408, ErrorClass::Timeout),
        (424, ErrorClass::Server),
    ] {
        let err = provider
            .chat(&ask(&format!("[[status:{status}]]")), &Credential::Platform)
            .await
            .unwrap_err();
        assert_eq!(err.class, class, "status {status}: {err}");
        assert_eq!(err.status, Some(status));
    }
    let err = provider
        .chat(&ask("[[status:429]]"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.retry_after, Some(Duration::ZERO));
    assert!(err.message.contains("ThrottlingException"), "{err}");
}

#[tokio::test]
async fn an_exception_frame_after_text_ends_the_stream_with_its_class() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let mut stream = provider
        .chat_stream(
            &ask("a long answer [[fail_midstream]] [[status:429]] [[chunks:5]]"),
            &Credential::Platform,
        )
        .await
        .unwrap();
    let mut text = String::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Text(piece)) => text.push_str(&piece),
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(err) => {
                error = Some(err);
                break;
            }
        }
    }
    assert!(!text.is_empty());
    let error = error.expect("the exception is reported");
    assert_eq!(error.class, ErrorClass::RateLimited, "{error}");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn json_schema_output_is_sent_as_output_config() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let mut request = ask("Structured please");
    request.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".to_owned(),
        description: Some("The answer.".to_owned()),
        schema: serde_json::json!({"type": "object", "properties": {"answer": {"type": "string"}}}),
        strict: Some(true),
    });
    provider.check(&request).unwrap();
    let answer = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    let content: serde_json::Value =
        serde_json::from_str(answer.content.as_deref().unwrap()).unwrap();
    assert_eq!(content["answer"], "Structured please");
}

#[tokio::test]
async fn tool_choices_translate_to_what_bedrock_accepts() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    for choice in [
        ToolChoice::Auto,
        ToolChoice::Required,
        ToolChoice::Function("lookup".to_owned()),
    ] {
        let mut request = ask("Find it [[tool]]");
        request.tools = vec![lookup_tool()];
        request.tool_choice = Some(choice.clone());
        let answer = provider
            .chat(&request, &Credential::Platform)
            .await
            .unwrap();
        assert_eq!(answer.finish_reason, FinishReason::ToolCalls, "{choice:?}");
    }
    // `none` leaves the tools out, so the model cannot call one.
    let mut request = ask("Find it [[tool]]");
    request.tools = vec![lookup_tool()];
    request.tool_choice = Some(ToolChoice::None);
    provider.check(&request).unwrap();
    let answer = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert!(answer.tool_calls.is_empty());
}

#[tokio::test]
async fn unsupported_parameters_are_named() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let mut seeded = ask("hi");
    seeded.seed = Some(7);
    assert_eq!(provider.check(&seeded).unwrap_err().parameter, "seed");
    let mut json_mode = ask("hi");
    json_mode.response_format = Some(ResponseFormat::JsonObject);
    assert_eq!(
        provider.check(&json_mode).unwrap_err().parameter,
        "response_format"
    );
    let mut hot = ask("hi");
    hot.temperature = Some(1.5);
    assert_eq!(provider.check(&hot).unwrap_err().parameter, "temperature");
    let mut no_tools_now = ask("hi");
    no_tools_now.tools = vec![lookup_tool()];
    no_tools_now.tool_choice = Some(ToolChoice::None);
    no_tools_now.messages.push(ChatMessage {
        role: Role::Assistant,
        content: None,
        name: None,
        tool_calls: vec![flywheel_llm::ToolCall {
            id: "tooluse_1".to_owned(),
            name: "lookup".to_owned(),
            arguments: "{}".to_owned(),
        }],
        tool_call_id: None,
    });
    assert_eq!(
        provider.check(&no_tools_now).unwrap_err().parameter,
        "tool_choice"
    );
    provider.check(&ask("hi")).unwrap();
}

#[tokio::test]
async fn consecutive_messages_of_one_role_share_a_turn() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let mut request = ask("first");
    request
        .messages
        .push(ChatMessage::text(Role::User, "second"));
    request
        .messages
        .insert(0, ChatMessage::text(Role::System, "Be brief."));
    request.stop = vec!["END".to_owned()];
    request.top_p = Some(0.9);
    let answer = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    // The mock rejects turns that do not alternate, and reads the last user text.
    assert_eq!(answer.content.as_deref(), Some("Mock answer: first second"));
}

/// A default chain that finds nothing, as on a machine without AWS credentials.
#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            ),
        ))
    }
}

#[tokio::test]
async fn a_credentials_chain_that_finds_nothing_is_an_authentication_error() {
    let server = MockServer::start().await.unwrap();
    let config = SdkConfig::builder()
        .credentials_provider(SharedCredentialsProvider::new(NoCredentials))
        .build();
    let provider = BedrockProvider::with_sdk_config(
        "bedrock",
        &config,
        settings(&server, Duration::from_secs(5)),
    )
    .unwrap();
    let err = provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Authentication, "{err}");
    assert!(err.message.contains("no providers in chain"), "{err}");
    let err = provider
        .chat_stream(&ask("hi"), &Credential::Platform)
        .await
        .err()
        .unwrap();
    assert_eq!(err.class, ErrorClass::Authentication, "{err}");
    assert!(server.state.calls().is_empty());
}

#[tokio::test]
async fn a_user_key_serves_only_its_own_call() {
    let server = MockServer::start().await.unwrap();
    let provider = provider(&server, Duration::from_secs(5));
    let first = Credential::User(SecretString::from("AKIDFIRSTUSER:first-secret"));
    let second = Credential::User(SecretString::from("AKIDSECONDUSER:second-secret"));
    provider.chat(&ask("hi"), &first).await.unwrap();
    provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap();
    provider.chat(&ask("hi"), &second).await.unwrap();
    provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap();
    let presented: Vec<Option<String>> = server
        .state
        .calls()
        .into_iter()
        .map(|call| call.credential)
        .collect();
    let expected = [
        "AKIDFIRSTUSER",
        PLATFORM_ACCESS_KEY_ID,
        "AKIDSECONDUSER",
        PLATFORM_ACCESS_KEY_ID,
    ];
    assert_eq!(presented, expected.map(|key| Some(key.to_owned())).to_vec());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_connect_error() {
    // Nothing listens on a port just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let settings = BedrockSettings {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(endpoint_url),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    };
    let provider =
        BedrockProvider::with_sdk_config("bedrock", &sdk_config(true), settings).unwrap();
    let err = provider
        .chat(&ask("hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Connect, "{err}");
}
