//! The OpenAI adapter and an OpenAI-compatible endpoint through the shared suite.

use std::sync::Arc;
use std::time::Duration;

use flywheel_llm::openai::{CompatibleOptions, OpenAiProvider};
use flywheel_llm::{HttpSettings, Provider};
use flywheel_mock_provider::MockServer;
use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::suite::Features;

const FEATURES: Features = Features {
    model: "gpt-4o-mini",
    tools: true,
    cached_tokens: true,
    good_key: "sk-user-own-key",
    wrong_key: "wrong-key",
};

fn settings(server: &MockServer, timeout: Duration) -> HttpSettings {
    HttpSettings {
        base_url: format!("{}/v1", server.base_url()),
        connect_timeout: Duration::from_secs(2),
        timeout,
    }
}

fn make(server: &MockServer, timeout: Duration) -> BoxFuture<'_, Arc<dyn Provider>> {
    Box::pin(async move {
        let provider = OpenAiProvider::openai(
            "openai",
            settings(server, timeout),
            Some(SecretString::from("sk-platform")),
        )
        .unwrap();
        Arc::new(provider) as Arc<dyn Provider>
    })
}

fn make_compatible(server: &MockServer, timeout: Duration) -> BoxFuture<'_, Arc<dyn Provider>> {
    Box::pin(async move {
        let provider = OpenAiProvider::compatible(
            "vllm",
            settings(server, timeout),
            Some(SecretString::from("sk-platform")),
            CompatibleOptions::default(),
        )
        .unwrap();
        Arc::new(provider) as Arc<dyn Provider>
    })
}

mod official {
    provider_suite!(super::make, super::FEATURES);
}

mod compatible {
    provider_suite!(super::make_compatible, super::FEATURES);
}

#[tokio::test]
async fn configured_unsupported_parameters_are_rejected_by_name() {
    let server = MockServer::start().await.unwrap();
    let provider = OpenAiProvider::compatible(
        "ollama",
        settings(&server, Duration::from_secs(1)),
        None,
        CompatibleOptions {
            unsupported_parameters: vec!["seed".to_owned()],
        },
    )
    .unwrap();
    let request = flywheel_llm::ChatRequest {
        model: "llama3".to_owned(),
        seed: Some(7),
        ..Default::default()
    };
    let err = provider.check(&request).unwrap_err();
    assert_eq!(err.parameter, "seed");
}

#[tokio::test]
async fn embeddings_keep_input_order() {
    let server = MockServer::start().await.unwrap();
    let provider = make(&server, Duration::from_secs(2)).await;
    let request = flywheel_llm::EmbeddingRequest {
        model: "text-embedding-3-small".to_owned(),
        inputs: vec!["alpha".to_owned(), "beta gamma".to_owned()],
        dimensions: Some(16),
        user: None,
    };
    let answer = provider
        .embed(&request, &flywheel_llm::Credential::Platform)
        .await
        .unwrap();
    assert_eq!(answer.vectors.len(), 2);
    assert_eq!(
        answer.vectors[0],
        flywheel_mock_provider::openai::vector("alpha", 16)
    );
    assert_eq!(answer.usage.input_tokens, 3);
}
