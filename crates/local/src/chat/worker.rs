//! The thread that owns a chat model's weights and answers its queued requests one at a
//! time: prompt processing in chunks, sampling, incremental decoding, stop sequences, and
//! cancellation when the caller drops its handle.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_transformers::generation::{LogitsProcessor, Sampling as CandleSampling};
use tokio::sync::mpsc::Sender;

use super::compute::forward_turn;
use super::llama::Llama;
use super::stop::StopSequences;
use super::tokenizer::{GgufTokenizer, Utf8Stream};
use super::{
    FinishReason, GenerationEvent, GenerationSummary, QueueStats, SamplingParams,
    DEFAULT_TEMPERATURE, DEFAULT_TOP_P,
};
use crate::LocalError;

/// Prompt tokens processed per forward pass. Bounds the attention scores' memory (heads ×
/// chunk × context floats) for long prompts while keeping the matrix products large.
const PREFILL_CHUNK: usize = 512;

/// Below this, a temperature is treated as 0 (greedy): dividing logits by it would overflow.
const GREEDY_BELOW: f64 = 1e-7;

/// Nucleus sampling looks for the nucleus among this many most likely tokens, found in linear
/// time, instead of sorting the whole vocabulary for every token (which cost SmolLM2 a third
/// of its speed). A nucleus wider than this, which only a very flat distribution has, is cut
/// to these tokens.
const NUCLEUS_CANDIDATES: usize = 512;

/// A queued generation.
pub(crate) struct Job {
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampling: Sampling,
    pub(crate) max_tokens: u32,
    pub(crate) context_length: usize,
    pub(crate) stop: Vec<String>,
    pub(crate) events: Sender<Result<GenerationEvent, LocalError>>,
    pub(crate) enqueued_at: Instant,
}

/// Validated sampling settings.
#[derive(Debug, Clone)]
pub(crate) struct Sampling {
    kind: CandleSampling,
    seed: u64,
}

impl Sampling {
    pub(crate) fn from_params(params: &SamplingParams) -> Result<Sampling, LocalError> {
        let temperature = params.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(LocalError::InvalidRequest(format!(
                "temperature must be between 0 and 2, got {temperature}"
            )));
        }
        let top_p = params.top_p.unwrap_or(DEFAULT_TOP_P);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(LocalError::InvalidRequest(format!(
                "top_p must be greater than 0 and at most 1, got {top_p}"
            )));
        }
        let kind = if temperature < GREEDY_BELOW {
            CandleSampling::ArgMax
        } else if top_p < 1.0 {
            CandleSampling::TopKThenTopP {
                k: NUCLEUS_CANDIDATES,
                p: top_p,
                temperature,
            }
        } else {
            // No nucleus cut: sample from the whole distribution without sorting it.
            CandleSampling::All { temperature }
        };
        let seed = params.seed.unwrap_or_else(random_seed);
        Ok(Sampling { kind, seed })
    }
}

/// A seed from the process's random hasher keys (fresh per call), to avoid a dependency.
fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// Starts the worker thread; it runs until every sender of the returned queue is dropped.
pub(crate) fn spawn(
    name: &str,
    weights: Llama,
    tokenizer: Arc<GgufTokenizer>,
    stats: Arc<QueueStats>,
    max_queue: usize,
) -> std::io::Result<SyncSender<Job>> {
    let (jobs, receiver) = sync_channel(max_queue);
    let model_name = name.to_owned();
    std::thread::Builder::new()
        .name(format!("chat-{name}"))
        .spawn(move || run(&model_name, &weights, &tokenizer, &stats, &receiver))?;
    Ok(jobs)
}

fn run(
    name: &str,
    model: &Llama,
    tokenizer: &GgufTokenizer,
    stats: &QueueStats,
    jobs: &Receiver<Job>,
) {
    while let Ok(job) = jobs.recv() {
        stats.queued.fetch_sub(1, Ordering::SeqCst);
        if job.events.is_closed() {
            continue; // Cancelled while waiting.
        }
        let started = Instant::now();
        let queue_wait = started.duration_since(job.enqueued_at);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            generate(model, tokenizer, &job, queue_wait)
        }));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(_) => Some(LocalError::Inference(
                "the model's computation panicked; the request was abandoned".to_owned(),
            )),
        };
        if let Some(err) = failure {
            tracing::warn!(model = name, error = %err, "local generation failed");
            let _ = job.events.blocking_send(Err(err));
        }
        stats.record_request(started.elapsed());
    }
    tracing::debug!(model = name, "local chat model worker stopped");
}

/// Generates one answer, sending events as it goes. Returns early (Ok) when the caller has
/// gone away.
fn generate(
    model: &Llama,
    tokenizer: &GgufTokenizer,
    job: &Job,
    queue_wait: Duration,
) -> Result<(), LocalError> {
    let mut sampler = LogitsProcessor::from_sampling(job.sampling.seed, job.sampling.kind.clone());
    let events = &job.events;

    let prompt_started = Instant::now();
    // The cache holds the prompt and every answer token that is fed back.
    let capacity = (job.prompt.len() + job.max_tokens as usize).min(job.context_length);
    let mut cache = model.cache(capacity).map_err(LocalError::inference)?;
    let mut logits = None;
    for chunk in job.prompt.chunks(PREFILL_CHUNK) {
        if events.is_closed() {
            return Ok(());
        }
        let _turn = forward_turn();
        logits = Some(
            model
                .forward(chunk, &mut cache)
                .map_err(LocalError::inference)?,
        );
    }
    let mut logits =
        logits.ok_or_else(|| LocalError::InvalidRequest("the prompt is empty".to_owned()))?;
    let prompt_duration = prompt_started.elapsed();

    let generation_started = Instant::now();
    let mut utf8 = Utf8Stream::default();
    let mut stops = StopSequences::new(&job.stop);
    let mut decoded = String::new();
    let mut text = String::new();
    let mut completion_tokens: u32 = 0;
    let mut stopped_by_sequence = false;
    let finish_reason = loop {
        let token = sampler.sample(&logits).map_err(LocalError::inference)?;
        completion_tokens += 1;
        if tokenizer.is_end(token) {
            break FinishReason::Stop;
        }
        decoded.clear();
        utf8.push(tokenizer.token_bytes(token), &mut decoded);
        if !decoded.is_empty() && stops.push(&decoded, &mut text) {
            stopped_by_sequence = true;
        }
        if !text.is_empty() {
            let piece = std::mem::take(&mut text);
            if events
                .blocking_send(Ok(GenerationEvent::Text(piece)))
                .is_err()
            {
                return Ok(()); // The caller dropped the handle.
            }
        } else if events.is_closed() {
            return Ok(());
        }
        if stopped_by_sequence {
            break FinishReason::Stop;
        }
        if completion_tokens >= job.max_tokens
            || job.prompt.len() + completion_tokens as usize >= job.context_length
        {
            break FinishReason::Length;
        }
        let _turn = forward_turn();
        logits = model
            .forward(&[token], &mut cache)
            .map_err(LocalError::inference)?;
    };

    let mut finish_reason = finish_reason;
    if !stopped_by_sequence {
        // Whatever was held back (an unfinished character, a possible stop sequence's start)
        // is part of the answer after all, unless it completes a stop sequence.
        decoded.clear();
        utf8.finish(&mut decoded);
        if stops.push(&decoded, &mut text) {
            finish_reason = FinishReason::Stop;
        } else {
            stops.finish(&mut text);
        }
        if !text.is_empty()
            && events
                .blocking_send(Ok(GenerationEvent::Text(text)))
                .is_err()
        {
            return Ok(());
        }
    }
    let summary = GenerationSummary {
        finish_reason,
        prompt_tokens: job.prompt.len() as u64,
        completion_tokens: u64::from(completion_tokens),
        prompt_duration,
        generation_duration: generation_started.elapsed(),
        queue_wait,
    };
    let _ = events.blocking_send(Ok(GenerationEvent::Done(summary)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: Option<f64>, top_p: Option<f64>) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn sampling_defaults_and_modes() {
        let sampling = Sampling::from_params(&params(None, None)).unwrap();
        assert_eq!(
            sampling.kind,
            CandleSampling::All {
                temperature: DEFAULT_TEMPERATURE
            }
        );
        let greedy = Sampling::from_params(&params(Some(0.0), Some(0.5))).unwrap();
        assert_eq!(greedy.kind, CandleSampling::ArgMax);
        let nucleus = Sampling::from_params(&params(Some(1.0), Some(0.9))).unwrap();
        assert_eq!(
            nucleus.kind,
            CandleSampling::TopKThenTopP {
                k: NUCLEUS_CANDIDATES,
                p: 0.9,
                temperature: 1.0
            }
        );
    }

    #[test]
    fn out_of_range_sampling_is_rejected_naming_the_parameter() {
        for (temperature, top_p, parameter) in [
            (Some(2.5), None, "temperature"),
            (Some(-0.1), None, "temperature"),
            (Some(f64::NAN), None, "temperature"),
            (None, Some(0.0), "top_p"),
            (None, Some(1.5), "top_p"),
            (None, Some(f64::NAN), "top_p"),
        ] {
            let err = Sampling::from_params(&params(temperature, top_p)).unwrap_err();
            assert!(matches!(err, LocalError::InvalidRequest(_)), "{err:?}");
            assert!(err.to_string().contains(parameter), "{err}");
        }
    }

    #[test]
    fn random_seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }
}
