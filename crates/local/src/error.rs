//! What can go wrong loading or running a local model. Every message names the input (file,
//! model, parameter), says what is wrong and what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// An error from a local chat or embedding model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocalError {
    /// A model file is missing, unreadable, not in the expected format, or corrupt.
    #[error("model file {}: {problem}", path.display())]
    ModelFile { path: PathBuf, problem: String },

    /// The model file is valid but its architecture is one this runtime cannot run.
    #[error(
        "model file {}: architecture `{architecture}` is not supported by the local runtime \
         (supported: {supported}); use a GGUF model of a supported architecture",
        path.display()
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        architecture: String,
        supported: String,
    },

    /// The model's request queue is full.
    #[error(
        "local model `{model}` is busy: its queue of {queue} waiting requests is full; \
         retry in about {} s",
        retry_after.as_secs().max(1)
    )]
    Busy {
        model: String,
        queue: usize,
        retry_after: Duration,
    },

    /// The rendered prompt does not fit the model's context window.
    #[error(
        "the prompt is {prompt_tokens} tokens but the model's context window is \
         {context_length} tokens (the prompt may use at most {} so that one token can be \
         generated); shorten the conversation",
        context_length.saturating_sub(1)
    )]
    ContextOverflow {
        prompt_tokens: usize,
        context_length: usize,
    },

    /// A request parameter is out of range or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The model failed while computing (a bug or resource problem, not the caller's fault).
    #[error("local inference failed: {0}")]
    Inference(String),

    /// The model cannot answer at all: not loaded, failed to load, or its worker stopped.
    #[error("local model `{model}` is unavailable: {reason}")]
    Unavailable { model: String, reason: String },
}

impl LocalError {
    pub(crate) fn model_file(path: &std::path::Path, problem: impl Into<String>) -> LocalError {
        LocalError::ModelFile {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn inference(err: impl std::fmt::Display) -> LocalError {
        LocalError::Inference(err.to_string())
    }
}
