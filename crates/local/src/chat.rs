//! GGUF chat models run in-process: loading ([`ChatModel::load`]), prompt rendering and token
//! counting, and streamed generation on one dedicated thread per model behind a bounded queue.
//!
//! Each model's thread owns the weights and the KV cache and answers one request at a time;
//! requests wait in a queue of `max_queue` places, and one more is refused at once with
//! [`LocalError::Busy`]. The thread ends when the last clone of the [`ChatModel`] is dropped.
//!
//! Threads: candle runs the quantised matrix products of generation on a pool of one thread
//! per core whose caller waits for its workers by spinning. That is fastest on an idle machine
//! (SmolLM2 on 2 cores: 79 tokens/s) and collapses when another process keeps a core busy
//! (4 tokens/s); `CANDLE_NUM_THREADS=1`, read by candle at first use, trades the peak for
//! robustness (54 tokens/s idle, 50 with a core busy).

mod compute;
mod gguf;
mod llama;
mod stop;
mod template;
mod tokenizer;
mod worker;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use flywheel_llm::ChatMessage;
use futures::Stream;

pub(crate) use self::compute::forward_turn;
use self::template::{ChatTemplate, TemplateSource};
use self::tokenizer::GgufTokenizer;
use self::worker::Job;
use crate::LocalError;

/// How a chat model is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatModelOptions {
    /// Caps the context window read from the GGUF (which candle caps at 4096 tokens).
    pub context_length: Option<usize>,
    /// Requests that may wait beyond the one being answered; more are refused with
    /// [`LocalError::Busy`].
    pub max_queue: usize,
    /// Output tokens when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
}

impl Default for ChatModelOptions {
    fn default() -> ChatModelOptions {
        ChatModelOptions {
            context_length: None,
            max_queue: 4,
            default_max_tokens: 512,
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatModelInfo {
    pub name: String,
    pub path: PathBuf,
    /// `general.architecture` from the GGUF, e.g. `llama`.
    pub architecture: String,
    /// The context window in use: the trained one, capped at 4096 and by the configuration.
    pub context_length: usize,
    /// The context window the model was trained with.
    pub trained_context_length: usize,
    pub vocab_size: usize,
    /// Tensors converted to Q8_0 at load because candle has no fast kernel for their type.
    pub requantized_tensors: usize,
    /// Whether the prompt is rendered with the model's own chat template (else ChatML).
    pub has_chat_template: bool,
    /// The token ids that end generation (the GGUF's EOS and known end-of-turn tokens).
    pub end_token_ids: Vec<u32>,
    pub load_duration: Duration,
}

/// A loaded chat model. Cheap to clone; every clone talks to the same worker thread.
#[derive(Clone)]
pub struct ChatModel {
    shared: Arc<Shared>,
}

struct Shared {
    info: ChatModelInfo,
    options: ChatModelOptions,
    tokenizer: Arc<GgufTokenizer>,
    template: ChatTemplate,
    jobs: SyncSender<Job>,
    stats: Arc<QueueStats>,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("info", &self.shared.info)
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

/// One chat completion to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub messages: Vec<ChatMessage>,
    pub sampling: SamplingParams,
}

/// How to pick tokens. Absent values take these defaults: temperature 0.7, top_p 1.0 (no
/// nucleus cut), a random seed, the model's `default_max_tokens`, no stop sequences.
/// Temperature 0 picks the most likely token every time (deterministic).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SamplingParams {
    /// 0 to 2.
    pub temperature: Option<f64>,
    /// Greater than 0, at most 1. Below 1, tokens are drawn from the smallest set of most
    /// likely tokens whose probabilities add up to `top_p` (looked for among the 512 most
    /// likely tokens).
    pub top_p: Option<f64>,
    /// The same seed, prompt and parameters give the same text.
    pub seed: Option<u64>,
    /// At least 1.
    pub max_tokens: Option<u32>,
    /// Text that ends the answer where it appears; it is not part of the answer. Empty
    /// strings are ignored.
    pub stop: Vec<String>,
}

/// The default temperature when a request sets none.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
/// The default top_p when a request sets none.
pub const DEFAULT_TOP_P: f64 = 1.0;

/// A streamed generation: text pieces, then one [`GenerationEvent::Done`]. Dropping it
/// cancels the generation; the worker notices within one token.
pub struct GenerationHandle {
    events: tokio::sync::mpsc::Receiver<Result<GenerationEvent, LocalError>>,
    prompt_tokens: usize,
}

impl std::fmt::Debug for GenerationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationHandle")
            .field("prompt_tokens", &self.prompt_tokens)
            .finish_non_exhaustive()
    }
}

/// One event of a generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// More answer text (never empty, always whole characters).
    Text(String),
    /// The end, with counts and timings.
    Done(GenerationSummary),
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens`, or the context window is full.
    Length,
}

/// Counts and timings of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSummary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u64,
    /// Tokens sampled, the end-of-turn token included.
    pub completion_tokens: u64,
    /// Time to process the prompt (until the first token's logits).
    pub prompt_duration: Duration,
    /// Time from the first token's logits to the end.
    pub generation_duration: Duration,
    /// Time waiting in the queue.
    pub queue_wait: Duration,
}

impl ChatModel {
    /// Loads the GGUF at `path` and starts the model's worker thread. Blocking (about a
    /// second for SmolLM2): call it from `spawn_blocking`. Errors name the file and what is
    /// wrong with it.
    pub fn load(
        name: &str,
        path: &Path,
        options: ChatModelOptions,
    ) -> Result<ChatModel, LocalError> {
        if options.context_length.is_some_and(|context| context < 2) {
            return Err(LocalError::InvalidRequest(format!(
                "chat model `{name}`: context_length must be at least 2"
            )));
        }
        if options.default_max_tokens == 0 {
            return Err(LocalError::InvalidRequest(format!(
                "chat model `{name}`: default_max_tokens must be at least 1"
            )));
        }
        let loaded = gguf::load(path)?;
        let context_length =
            gguf::effective_context_length(loaded.trained_context_length, options.context_length);
        let info = ChatModelInfo {
            name: name.to_owned(),
            path: path.to_path_buf(),
            architecture: loaded.architecture,
            context_length,
            trained_context_length: loaded.trained_context_length,
            vocab_size: loaded.tokenizer.vocab_size(),
            requantized_tensors: loaded.requantized_tensors,
            has_chat_template: loaded.template.source() == TemplateSource::Model,
            end_token_ids: loaded.tokenizer.end_ids().to_vec(),
            load_duration: loaded.load_duration,
        };
        let tokenizer = Arc::new(loaded.tokenizer);
        let stats = Arc::new(QueueStats::default());
        let jobs = worker::spawn(
            name,
            loaded.weights,
            Arc::clone(&tokenizer),
            Arc::clone(&stats),
            options.max_queue,
        )
        .map_err(|err| LocalError::Unavailable {
            model: name.to_owned(),
            reason: format!("the model's thread could not be started: {err}"),
        })?;
        tracing::info!(
            model = name,
            file = %path.display(),
            architecture = %info.architecture,
            context_length,
            requantized_tensors = info.requantized_tensors,
            load_ms = info.load_duration.as_millis() as u64,
            "local chat model loaded"
        );
        Ok(ChatModel {
            shared: Arc::new(Shared {
                info,
                options,
                tokenizer,
                template: loaded.template,
                jobs,
                stats,
            }),
        })
    }

    pub fn info(&self) -> &ChatModelInfo {
        &self.shared.info
    }

    /// The number of prompt tokens `messages` make once rendered with the chat template
    /// (what a generation would be charged for the prompt).
    pub fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize, LocalError> {
        Ok(self.prompt_ids(messages)?.len())
    }

    /// The number of tokens of `text` on its own (no template, no special tokens added).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.shared
            .tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .unwrap_or(0)
    }

    /// Checks the request, renders and tokenizes the prompt, and queues the generation.
    /// Returns [`LocalError::Busy`] at once when the queue is full, and
    /// [`LocalError::ContextOverflow`] when the prompt does not fit.
    pub fn generate(&self, request: GenerationRequest) -> Result<GenerationHandle, LocalError> {
        let shared = &self.shared;
        let sampling = worker::Sampling::from_params(&request.sampling)?;
        let max_tokens = request
            .sampling
            .max_tokens
            .unwrap_or(shared.options.default_max_tokens);
        if max_tokens == 0 {
            return Err(LocalError::InvalidRequest(
                "max_tokens must be at least 1".to_owned(),
            ));
        }
        let prompt = self.prompt_ids(&request.messages)?;
        if prompt.is_empty() {
            return Err(LocalError::InvalidRequest(
                "the conversation renders to an empty prompt".to_owned(),
            ));
        }
        let context_length = shared.info.context_length;
        if prompt.len() + 1 > context_length {
            return Err(LocalError::ContextOverflow {
                prompt_tokens: prompt.len(),
                context_length,
            });
        }
        let prompt_tokens = prompt.len();
        // A small buffer: the worker runs at most this far ahead of a slow reader.
        let (events, receiver) = tokio::sync::mpsc::channel(64);
        let job = Job {
            prompt,
            sampling,
            max_tokens,
            context_length,
            stop: request.sampling.stop,
            events,
            enqueued_at: Instant::now(),
        };
        shared.stats.queued.fetch_add(1, Ordering::SeqCst);
        match shared.jobs.try_send(job) {
            Ok(()) => Ok(GenerationHandle {
                events: receiver,
                prompt_tokens,
            }),
            Err(err) => {
                shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match err {
                    TrySendError::Full(_) => LocalError::Busy {
                        model: shared.info.name.clone(),
                        queue: shared.options.max_queue,
                        retry_after: shared.stats.retry_after(shared.options.max_queue),
                    },
                    TrySendError::Disconnected(_) => LocalError::Unavailable {
                        model: shared.info.name.clone(),
                        reason: "the model's worker thread has stopped".to_owned(),
                    },
                })
            }
        }
    }

    /// The token ids of `text` (special tokens written in it, like `<|im_start|>`, are
    /// recognised).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        self.shared.tokenizer.encode(text)
    }

    /// The text of `ids` as generation would stream it: control tokens are left out, and
    /// bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut stream = tokenizer::Utf8Stream::default();
        let mut text = String::new();
        for &id in ids {
            stream.push(self.shared.tokenizer.token_bytes(id), &mut text);
        }
        stream.finish(&mut text);
        text
    }

    /// Requests waiting in the queue (not counting the one being answered).
    pub fn queue_depth(&self) -> usize {
        self.shared.stats.queued.load(Ordering::SeqCst)
    }

    /// The rendered prompt as text (for diagnostics and tests).
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LocalError> {
        self.shared.template.render(messages)
    }

    fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LocalError> {
        let prompt = self.shared.template.render(messages)?;
        self.shared.tokenizer.encode_prompt(&prompt)
    }
}

impl GenerationHandle {
    /// The number of prompt tokens, known as soon as the request is queued.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }
}

impl Stream for GenerationHandle {
    type Item = Result<GenerationEvent, LocalError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// Shared between a model's handles and its worker: queue length and recent request times.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    pub(crate) queued: AtomicUsize,
    /// An exponential moving average of request durations, in milliseconds.
    pub(crate) average_request_ms: AtomicU64,
}

impl QueueStats {
    /// How long a refused caller should wait: the queue's expected drain time, 1 s to 60 s.
    pub(crate) fn retry_after(&self, max_queue: usize) -> Duration {
        let average = self.average_request_ms.load(Ordering::Relaxed);
        let estimate = average.saturating_mul(max_queue.max(1) as u64);
        Duration::from_millis(estimate.clamp(1_000, 60_000))
    }

    pub(crate) fn record_request(&self, duration: Duration) {
        let sample = duration.as_millis().min(u128::from(u32::MAX)) as u64;
        let previous = self.average_request_ms.load(Ordering::Relaxed);
        let next = if previous == 0 {
            sample
        } else {
            (previous * 7 + sample) / 8
        };
        self.average_request_ms.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_bounded_and_grows_with_the_queue() {
        let stats = QueueStats::default();
        assert_eq!(stats.retry_after(4), Duration::from_secs(1));
        stats.record_request(Duration::from_secs(2));
        assert_eq!(stats.retry_after(4), Duration::from_secs(8));
        stats.record_request(Duration::from_secs(600));
        assert_eq!(stats.retry_after(4), Duration::from_secs(60));
    }

    #[test]
    fn the_context_window_is_capped_by_candle_and_by_the_configuration() {
        assert_eq!(gguf::effective_context_length(8192, None), 4096);
        assert_eq!(gguf::effective_context_length(2048, None), 2048);
        assert_eq!(gguf::effective_context_length(8192, Some(1024)), 1024);
    }
}
