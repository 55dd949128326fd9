//! Sentence-embedding models (BERT family, e.g. all-MiniLM-L6-v2) run in-process: the
//! Hugging Face layout (`model.safetensors`, `tokenizer.json`, `config.json`) loaded with
//! candle, and sentence-transformers' computation (mean pooling over the real tokens, then L2
//! normalisation) on one dedicated thread per model behind a bounded queue. The encoder itself
//! (`bert`) packs a batch's tokens without padding and fuses the steps around the matrix
//! products, which makes it faster than sentence-transformers on the same CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::oneshot;

use self::bert::{BertEncoder, PackedBatch, PackingBuffers};
use crate::chat::QueueStats;
use crate::LocalError;

mod bert;

/// The architectures this runtime can run (`model_type` in `config.json`).
const SUPPORTED_ARCHITECTURES: &[&str] = &["bert"];

/// How an embedding model is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModelOptions {
    /// Requests that may wait beyond the one being computed; more are refused with
    /// [`LocalError::Busy`].
    pub max_queue: usize,
    /// Inputs computed together in one forward pass.
    pub max_batch: usize,
    /// Longer inputs are truncated to this many tokens (sentence-transformers'
    /// `max_seq_length`, 256 for all-MiniLM-L6-v2).
    pub max_sequence_tokens: usize,
}

impl Default for EmbeddingModelOptions {
    fn default() -> EmbeddingModelOptions {
        EmbeddingModelOptions {
            max_queue: 16,
            max_batch: 32,
            max_sequence_tokens: 256,
        }
    }
}

/// A loaded embedding model. Cheap to clone; every clone talks to the same worker thread.
#[derive(Clone)]
pub struct EmbeddingModel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    dir: PathBuf,
    dimensions: usize,
    options: EmbeddingModelOptions,
    /// Configured like the worker's (truncation, no padding), for counting tokens.
    tokenizer: Tokenizer,
    jobs: SyncSender<Job>,
    stats: Arc<QueueStats>,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel")
            .field("name", &self.shared.name)
            .field("dir", &self.shared.dir)
            .field("dimensions", &self.shared.dimensions)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// One L2-normalised vector per input, in input order, and the tokens they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs after truncation, `[CLS]` and `[SEP]` included.
    pub tokens: u64,
}

struct Job {
    inputs: Vec<String>,
    reply: oneshot::Sender<Result<Embeddings, LocalError>>,
}

impl EmbeddingModel {
    /// Loads the model in `dir` and starts its worker thread. Blocking: call it from
    /// `spawn_blocking`. Errors name the file and what is wrong with it.
    pub fn load(
        name: &str,
        dir: &Path,
        options: EmbeddingModelOptions,
    ) -> Result<EmbeddingModel, LocalError> {
        let started = Instant::now();
        if options.max_batch == 0 || options.max_sequence_tokens < 2 {
            return Err(LocalError::InvalidRequest(format!(
                "embedding model `{name}`: max_batch must be at least 1 and max_sequence_tokens \
                 at least 2"
            )));
        }
        if !dir.is_dir() {
            return Err(LocalError::model_file(
                dir,
                "the model directory does not exist; run `flywheel models fetch`, or set the \
                 model's path to a directory holding model.safetensors, tokenizer.json and \
                 config.json",
            ));
        }
        let config = read_config(&dir.join("config.json"))?;
        if options.max_sequence_tokens > config.max_position_embeddings {
            return Err(LocalError::InvalidRequest(format!(
                "embedding model `{name}`: max_sequence_tokens {} exceeds the model's {} \
                 positions",
                options.max_sequence_tokens, config.max_position_embeddings
            )));
        }
        let tokenizer = read_tokenizer(&dir.join("tokenizer.json"), options.max_sequence_tokens)?;
        let weights_path = dir.join("model.safetensors");
        let model = read_weights(&weights_path, &config)?;
        let stats = Arc::new(QueueStats::default());
        let (jobs, receiver) = sync_channel(options.max_queue);
        let worker = Worker {
            name: name.to_owned(),
            model,
            tokenizer: tokenizer.clone(),
            max_batch: options.max_batch,
            dimensions: config.hidden_size,
            buffers: PackingBuffers::default(),
        };
        let worker_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || worker.run(&worker_stats, &receiver))
            .map_err(|err| LocalError::Unavailable {
                model: name.to_owned(),
                reason: format!("the model's thread could not be started: {err}"),
            })?;
        tracing::info!(
            model = name,
            dir = %dir.display(),
            dimensions = config.hidden_size,
            load_ms = started.elapsed().as_millis() as u64,
            "local embedding model loaded"
        );
        Ok(EmbeddingModel {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                dir: dir.to_path_buf(),
                dimensions: config.hidden_size,
                options,
                tokenizer,
                jobs,
                stats,
            }),
        })
    }

    /// The length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.shared.dimensions
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The tokens `text` takes as an input (after truncation, `[CLS]` and `[SEP]` included).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.shared
            .tokenizer
            .encode_fast(text, true)
            .map(|encoding| encoding.len())
            .unwrap_or(0)
    }

    /// Requests waiting in the queue (not counting the one being computed).
    pub fn queue_depth(&self) -> usize {
        self.shared.stats.queued.load(Ordering::SeqCst)
    }

    /// Embeds `inputs` (in batches of `max_batch`); returns [`LocalError::Busy`] at once when
    /// the queue is full. Dropping the future before the worker starts on it cancels it.
    pub async fn embed(&self, inputs: Vec<String>) -> Result<Embeddings, LocalError> {
        if inputs.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                tokens: 0,
            });
        }
        let shared = &self.shared;
        let (reply, receiver) = oneshot::channel();
        shared.stats.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(err) = shared.jobs.try_send(Job { inputs, reply }) {
            shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(match err {
                TrySendError::Full(_) => LocalError::Busy {
                    model: shared.name.clone(),
                    queue: shared.options.max_queue,
                    retry_after: shared.stats.retry_after(shared.options.max_queue),
                },
                TrySendError::Disconnected(_) => self.stopped(),
            });
        }
        receiver.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> LocalError {
        LocalError::Unavailable {
            model: self.shared.name.clone(),
            reason: "the model's worker thread has stopped".to_owned(),
        }
    }
}

fn read_config(path: &Path) -> Result<BertConfig, LocalError> {
    let text = read_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| LocalError::model_file(path, format!("not valid JSON: {err}")))?;
    let model_type = value
        .get("model_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("bert");
    if !SUPPORTED_ARCHITECTURES.contains(&model_type) {
        return Err(LocalError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            architecture: model_type.to_owned(),
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        });
    }
    let config: BertConfig = serde_json::from_value(value).map_err(|err| {
        LocalError::model_file(path, format!("not a BERT model configuration: {err}"))
    })?;
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        || config.pad_token_id >= config.vocab_size
    {
        return Err(LocalError::model_file(
            path,
            format!(
                "inconsistent configuration: hidden size {}, {} attention heads, pad token {} of \
                 {}",
                config.hidden_size,
                config.num_attention_heads,
                config.pad_token_id,
                config.vocab_size
            ),
        ));
    }
    Ok(config)
}

fn read_tokenizer(path: &Path, max_sequence_tokens: usize) -> Result<Tokenizer, LocalError> {
    let bytes = read_bytes(path)?;
    let mut tokenizer = Tokenizer::from_bytes(&bytes)
        .map_err(|err| LocalError::model_file(path, format!("not a tokenizer.json: {err}")))?;
    // The file pads every input to 128 tokens; the worker pads each batch to its longest
    // input instead.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_sequence_tokens,
            ..TruncationParams::default()
        }))
        .map_err(|err| LocalError::model_file(path, format!("cannot truncate: {err}")))?;
    Ok(tokenizer)
}

fn read_weights(path: &Path, config: &BertConfig) -> Result<BertEncoder, LocalError> {
    let bytes = read_bytes(path)?;
    let weights =
        VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).map_err(|err| {
            LocalError::model_file(
                path,
                format!("not a readable safetensors file ({err}); download it again"),
            )
        })?;
    catch_unwind(AssertUnwindSafe(|| BertEncoder::load(weights, config)))
        .map_err(|_| LocalError::model_file(path, "the model cannot be built from this file"))?
        .map_err(|err| {
            LocalError::model_file(
                path,
                format!("the weights do not match config.json's BERT model: {err}"),
            )
        })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, LocalError> {
    std::fs::read(path).map_err(|err| read_problem(path, &err))
}

fn read_text(path: &Path) -> Result<String, LocalError> {
    std::fs::read_to_string(path).map_err(|err| read_problem(path, &err))
}

fn read_problem(path: &Path, err: &std::io::Error) -> LocalError {
    let problem = if err.kind() == std::io::ErrorKind::NotFound {
        "the file does not exist; run `flywheel models fetch`".to_owned()
    } else {
        format!("the file cannot be read: {err}")
    };
    LocalError::model_file(path, problem)
}

/// The thread that owns the weights.
struct Worker {
    name: String,
    model: BertEncoder,
    tokenizer: Tokenizer,
    max_batch: usize,
    dimensions: usize,
    buffers: PackingBuffers,
}

impl Worker {
    fn run(mut self, stats: &QueueStats, jobs: &Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            if job.reply.is_closed() {
                continue; // The caller went away while waiting.
            }
            let started = Instant::now();
            let result =
                catch_unwind(AssertUnwindSafe(|| self.embed(&job.inputs))).unwrap_or_else(|_| {
                    Err(LocalError::Inference(
                        "the model's computation panicked; the request was abandoned".to_owned(),
                    ))
                });
            if let Err(err) = &result {
                tracing::warn!(model = %self.name, error = %err, "local embedding failed");
            }
            let _ = job.reply.send(result);
            stats.record_request(started.elapsed());
        }
        tracing::debug!(model = %self.name, "local embedding model worker stopped");
    }

    fn embed(&mut self, inputs: &[String]) -> Result<Embeddings, LocalError> {
        let encodings = inputs
            .iter()
            .map(|input| self.tokenizer.encode_fast(input.as_str(), true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| LocalError::Inference(format!("tokenization failed: {err}")))?;
        let tokens = encodings.iter().map(|e| e.len() as u64).sum();
        // Batches are packed (no padding, see `bert`), so inputs of different lengths can
        // share one without waste and stay in input order.
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in encodings.chunks(self.max_batch) {
            let ids: Vec<&[u32]> = batch.iter().map(|encoding| encoding.get_ids()).collect();
            vectors.extend(self.forward(&ids).map_err(LocalError::inference)?);
        }
        Ok(Embeddings { vectors, tokens })
    }

    /// Mean-pooled, L2-normalised embeddings of one batch of token id sequences.
    fn forward(&mut self, sequences: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let batch = PackedBatch::new(sequences, &mut self.buffers)?;
        let hidden = self
            .model
            .forward(&batch)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let dimensions = self.dimensions;
        let mut vectors = Vec::with_capacity(sequences.len());
        let mut rows = hidden.chunks_exact(dimensions);
        for ids in sequences {
            // Mean over the tokens (sentence-transformers' Pooling, mean mode); the packed
            // hidden states hold no padding.
            let mut sum = vec![0f32; dimensions];
            for row in rows.by_ref().take(ids.len()) {
                for (total, value) in sum.iter_mut().zip(row) {
                    *total += value;
                }
            }
            let count = ids.len().max(1) as f32;
            sum.iter_mut().for_each(|value| *value /= count);
            // L2 normalisation, with torch's `F.normalize` epsilon.
            let norm = sum.iter().map(|value| value * value).sum::<f32>().sqrt();
            let norm = norm.max(1e-12);
            sum.iter_mut().for_each(|value| *value /= norm);
            vectors.push(sum);
        }
        Ok(vectors)
    }
}
