//! The `local` provider through the gateway's `Provider` trait: model slots and their states,
//! parameter checks, chat, streams, embeddings and error classes.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use flywheel_llm::{
    ChatMessage, ChatRequest, Credential, EmbeddingRequest, ErrorClass, FinishReason, Provider,
    ProviderKind, ResponseFormat, Role, StreamEvent, ToolChoice, ToolDefinition,
};
use flywheel_local::{
    ChatModelOptions, ChatModelSpec, EmbeddingModelOptions, EmbeddingModelSpec, LocalProvider,
};
use futures::StreamExt;

use crate::helpers::{chat_model_path, embedding_model_dir, CHAT_MODEL_NAME, EMBEDDING_MODEL_NAME};

const MISSING_CHAT: &str = "missing-chat";
const MISSING_EMBEDDINGS: &str = "missing-embeddings";

fn missing_path() -> PathBuf {
    std::env::temp_dir().join("flywheel-local-tests-no-such-model/model.gguf")
}

fn specs() -> (Vec<ChatModelSpec>, Vec<EmbeddingModelSpec>) {
    let chat = vec![
        ChatModelSpec {
            name: CHAT_MODEL_NAME.to_owned(),
            path: chat_model_path(),
            options: ChatModelOptions {
                max_queue: 16,
                ..ChatModelOptions::default()
            },
        },
        ChatModelSpec {
            name: MISSING_CHAT.to_owned(),
            path: missing_path(),
            options: ChatModelOptions::default(),
        },
    ];
    let embeddings = vec![
        EmbeddingModelSpec {
            name: EMBEDDING_MODEL_NAME.to_owned(),
            dir: embedding_model_dir(),
            options: EmbeddingModelOptions::default(),
        },
        EmbeddingModelSpec {
            name: MISSING_EMBEDDINGS.to_owned(),
            dir: missing_path(),
            options: EmbeddingModelOptions::default(),
        },
    ];
    (chat, embeddings)
}

/// A provider with every model loaded (or failed).
fn provider() -> Arc<LocalProvider> {
    static PROVIDER: OnceLock<Arc<LocalProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let (chat, embeddings) = specs();
            let provider = LocalProvider::new(chat, embeddings);
            provider.load_all();
            Arc::new(provider)
        })
        .clone()
}

fn request(model: &str, text: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![
            ChatMessage::text(Role::System, "You are a helpful assistant."),
            ChatMessage::text(Role::User, text),
        ],
        temperature: Some(0.0),
        max_tokens: Some(12),
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn chat_through_the_provider_trait_reports_usage() {
    let provider = provider();
    assert_eq!(provider.name(), "local");
    assert_eq!(provider.kind(), ProviderKind::Local);
    assert!(provider.supports_embeddings());
    let request = request(CHAT_MODEL_NAME, "What is the capital of France?");
    provider.check(&request).unwrap();
    let response = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(response.model, CHAT_MODEL_NAME);
    let content = response.content.unwrap();
    assert!(content.contains("Paris"), "{content:?}");
    let usage = response.usage.unwrap();
    let model = provider.chat_model(CHAT_MODEL_NAME).unwrap();
    assert_eq!(
        usage.input_tokens,
        model.count_prompt_tokens(&request.messages).unwrap() as u64
    );
    assert!(usage.output_tokens >= 1 && usage.output_tokens <= 12);
    assert_eq!(usage.cached_input_tokens, None);
    if response.finish_reason == FinishReason::Length {
        assert_eq!(usage.output_tokens, 12);
    }
}

#[tokio::test]
async fn a_stream_carries_the_same_text_then_finish_and_usage() {
    let provider = provider();
    let request = request(CHAT_MODEL_NAME, "Name three colours.");
    let whole = provider
        .chat(&request, &Credential::Platform)
        .await
        .unwrap();
    let mut stream = provider
        .chat_stream(&request, &Credential::Platform)
        .await
        .unwrap();
    let mut text = String::new();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text(piece) => text.push_str(&piece),
            other => events.push(other),
        }
    }
    assert_eq!(Some(text), whole.content);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], StreamEvent::Finish(whole.finish_reason));
    assert_eq!(events[1], StreamEvent::Usage(whole.usage.unwrap()));
}

#[tokio::test]
async fn an_unavailable_model_says_why_and_how_to_fix_it() {
    let provider = provider();
    let err = provider
        .chat(&request(MISSING_CHAT, "Hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable);
    for expected in [
        MISSING_CHAT,
        &missing_path().display().to_string(),
        "does not exist",
        "run `flywheel models fetch`, or set models.chat.missing-chat.path to a GGUF file",
    ] {
        assert!(
            err.message.contains(expected),
            "{} lacks {expected}",
            err.message
        );
    }
    let err = provider
        .embed(
            &EmbeddingRequest {
                model: MISSING_EMBEDDINGS.to_owned(),
                inputs: vec!["x".to_owned()],
                dimensions: None,
                user: None,
            },
            &Credential::Platform,
        )
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable);
    assert!(
        err.message
            .contains("models.embeddings.missing-embeddings.path"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn status_reports_every_slot() {
    let provider = provider();
    let status = provider.status();
    let names: Vec<&str> = status.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            CHAT_MODEL_NAME,
            MISSING_CHAT,
            EMBEDDING_MODEL_NAME,
            MISSING_EMBEDDINGS
        ]
    );
    assert_eq!(provider.model_names(), names);
    let chat = &status[0];
    assert_eq!((chat.kind, chat.state), ("chat", "ready"));
    assert_eq!(chat.context_length, Some(4096));
    let missing = &status[1];
    assert_eq!((missing.kind, missing.state), ("chat", "unavailable"));
    assert!(missing
        .detail
        .as_deref()
        .unwrap()
        .contains("does not exist"));
    assert_eq!(missing.path, missing_path());
    assert_eq!((status[2].kind, status[2].state), ("embedding", "ready"));
    assert_eq!(status[2].dimensions, Some(384));
    assert_eq!(status[3].state, "unavailable");
    assert!(provider.chat_model(MISSING_CHAT).is_none());
    assert!(provider.embedding_model(EMBEDDING_MODEL_NAME).is_some());
}

#[tokio::test]
async fn loading_and_marked_unavailable_models_answer_unavailable() {
    let (chat, embeddings) = specs();
    let provider = LocalProvider::new(chat, embeddings);
    assert!(provider.status().iter().all(|s| s.state == "loading"));
    let err = provider
        .chat(&request(CHAT_MODEL_NAME, "Hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable);
    assert!(err.message.contains("still loading"), "{}", err.message);
    assert!(err.retry_after.is_some());

    provider.mark_unavailable(CHAT_MODEL_NAME, "the download failed: disk full".to_owned());
    let err = provider
        .chat(&request(CHAT_MODEL_NAME, "Hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable);
    assert!(err.message.contains("disk full"), "{}", err.message);
    assert_eq!(provider.status()[0].state, "unavailable");
}

#[tokio::test]
async fn an_unknown_model_lists_the_local_models() {
    let provider = provider();
    let err = provider
        .chat(&request("gpt-4o", "Hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ModelNotFound);
    assert!(err.message.contains("gpt-4o"), "{}", err.message);
    assert!(err.message.contains(CHAT_MODEL_NAME), "{}", err.message);
    assert!(
        err.message.contains(EMBEDDING_MODEL_NAME),
        "{}",
        err.message
    );
    // An embedding model is not a chat model.
    let err = provider
        .chat(&request(EMBEDDING_MODEL_NAME, "Hi"), &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ModelNotFound);
}

#[test]
fn check_rejects_what_the_local_runtime_cannot_honour() {
    let provider = provider();
    let base = request(CHAT_MODEL_NAME, "Hi");
    let rejected = |request: ChatRequest, parameter: &str| {
        let err = provider.check(&request).unwrap_err();
        assert_eq!(err.parameter, parameter);
        assert_eq!(err.provider, "local");
        assert!(!err.reason.is_empty());
    };
    rejected(
        ChatRequest {
            tools: vec![ToolDefinition {
                name: "lookup".to_owned(),
                description: None,
                parameters: serde_json::json!({"type": "object"}),
                strict: None,
            }],
            ..base.clone()
        },
        "tools",
    );
    rejected(
        ChatRequest {
            tool_choice: Some(ToolChoice::Required),
            ..base.clone()
        },
        "tool_choice",
    );
    rejected(
        ChatRequest {
            response_format: Some(ResponseFormat::JsonObject),
            ..base.clone()
        },
        "response_format",
    );
    rejected(
        ChatRequest {
            response_format: Some(ResponseFormat::JsonSchema {
                name: "x".to_owned(),
                description: None,
                schema: serde_json::json!({}),
                strict: None,
            }),
            ..base.clone()
        },
        "response_format",
    );
    rejected(
        ChatRequest {
            temperature: Some(2.5),
            ..base.clone()
        },
        "temperature",
    );
    provider
        .check(&ChatRequest {
            response_format: Some(ResponseFormat::Text),
            tool_choice: Some(ToolChoice::None),
            temperature: Some(2.0),
            ..base
        })
        .unwrap();
}

#[tokio::test]
async fn a_context_overflow_is_an_invalid_request() {
    let provider = provider();
    let err = provider
        .chat(
            &request(CHAT_MODEL_NAME, &"word ".repeat(5000)),
            &Credential::Platform,
        )
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidRequest);
    assert!(err.message.contains("context window"), "{}", err.message);
}

#[tokio::test]
async fn embeddings_through_the_provider_trait() {
    let provider = provider();
    let mut request = EmbeddingRequest {
        model: EMBEDDING_MODEL_NAME.to_owned(),
        inputs: vec!["Hello world".to_owned(), "Goodbye".to_owned()],
        dimensions: Some(384),
        user: None,
    };
    let response = provider
        .embed(&request, &Credential::Platform)
        .await
        .unwrap();
    assert_eq!(response.vectors.len(), 2);
    assert_eq!(response.vectors[0].len(), 384);
    assert_eq!(response.usage.input_tokens, 4 + 3); // [CLS] hello world [SEP], [CLS] goodbye [SEP]
    assert_eq!(response.usage.output_tokens, 0);

    request.dimensions = Some(256);
    let err = provider
        .embed(&request, &Credential::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidRequest);
    assert!(err.message.contains("384"), "{}", err.message);
}
