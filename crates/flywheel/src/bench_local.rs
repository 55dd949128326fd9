//! `flywheel bench local`: the in-process local models on the CPU next to named peers run on
//! the same files in the same run — llama-cpp-python (llama.cpp) on the same GGUF file for chat,
//! sentence-transformers (PyTorch) on the same model directory for embeddings.
//!
//! Chat: the same rendered prompt (about 130 tokens) on both sides, greedy decoding, the same
//! number of tokens asked for; prompt processing and generation speed per run, medians of N
//! runs after one warm-up. Embeddings: the same short sentences in batches of 32, sentences per
//! second. Flywheel is measured first, then the peer (never both at once); the peers run in
//! `scripts/bench_local_peers.py`, embedded in the binary and started as a subprocess.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use flywheel_config::ModelsConfig;
use flywheel_llm::{ChatMessage, Role};
use flywheel_local::chat::{
    ChatModel, ChatModelOptions, GenerationEvent, GenerationRequest, GenerationSummary,
    SamplingParams,
};
use flywheel_local::embed::{EmbeddingModel, EmbeddingModelOptions};
use futures::StreamExt;
use serde_json::Value;

use crate::bench::progress_count;

/// The peer script, embedded so that the bench runs from any directory.
const PEER_SCRIPT: &str = include_str!("../../../scripts/bench_local_peers.py");

/// The peer script's exit code for "this peer is not installed".
const PEER_MISSING_EXIT_CODE: i32 = 3;

/// Flywheel's generation speed the local chat model should reach, as a share of the peer's.
pub const CHAT_GENERATION_TARGET: f64 = 0.8;
/// Flywheel's embedding throughput the local embedding model should reach, as a share of the
/// peer's.
pub const EMBEDDING_TARGET: f64 = 1.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalBench {
    pub runs: usize,
    /// Tokens asked for per chat run.
    pub max_tokens: u32,
    /// Sentences per embedding run.
    pub sentences: usize,
    /// Sentences per embedding request.
    pub batch: usize,
    /// Threads the peers use (Flywheel's engine uses every core).
    pub threads: usize,
    /// The chat model's name in `[models.chat]`, when chat is measured.
    pub chat: Option<String>,
    /// The embedding model's name in `[models.embeddings]`, when embeddings are measured.
    pub embeddings: Option<String>,
    /// The interpreter with the peers installed.
    pub python: Option<PathBuf>,
    pub peers: bool,
}

/// Everything measured.
#[derive(Debug)]
pub struct LocalReport {
    pub machine: Machine,
    pub chat: Option<ChatReport>,
    pub embeddings: Option<EmbeddingReport>,
}

/// Where the numbers come from.
#[derive(Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub os: String,
    pub date: String,
    pub release_build: bool,
    /// The share of the machine's CPU time that other processes used during the run (0 to
    /// 1): other work slows both engines, and Flywheel's spinning thread barriers more.
    pub others_cpu_share: Option<f64>,
}

/// One chat generation.
#[derive(Debug, Clone, Copy)]
pub struct ChatRun {
    pub prompt_tokens: u64,
    pub prompt_seconds: f64,
    pub completion_tokens: u64,
    /// From the first token to the last: `completion_tokens - 1` decoding steps.
    pub generation_seconds: f64,
}

impl ChatRun {
    pub fn prompt_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_seconds.max(1e-9)
    }

    /// Decoding steps per second: every token after the first needs one forward pass.
    pub fn generation_tokens_per_sec(&self) -> f64 {
        self.completion_tokens.saturating_sub(1) as f64 / self.generation_seconds.max(1e-9)
    }
}

/// Chat on both engines.
#[derive(Debug)]
pub struct ChatReport {
    pub model: String,
    pub path: PathBuf,
    pub flywheel: Vec<ChatRun>,
    pub flywheel_text: String,
    pub peer: Result<PeerChat, String>,
}

/// The peer's chat runs.
#[derive(Debug)]
pub struct PeerChat {
    pub name: String,
    pub version: String,
    pub runs: Vec<ChatRun>,
    pub text: String,
}

/// Embeddings on both engines.
#[derive(Debug)]
pub struct EmbeddingReport {
    pub model: String,
    pub path: PathBuf,
    pub sentences: usize,
    /// Sentences per second of each run.
    pub flywheel: Vec<f64>,
    pub peer: Result<PeerEmbeddings, String>,
}

/// The peer's embedding runs.
#[derive(Debug)]
pub struct PeerEmbeddings {
    pub name: String,
    pub version: String,
    pub torch_version: String,
    pub sentences_per_sec: Vec<f64>,
    /// The lowest cosine similarity between Flywheel's and the peer's vectors of the first
    /// sentences (1.0 = the same vectors).
    pub min_cosine: Option<f64>,
}

/// Runs the chat and embedding parts that `bench` asks for.
pub async fn run_local(models: &ModelsConfig, bench: &LocalBench) -> anyhow::Result<LocalReport> {
    let machine = machine();
    let cpu_before = CpuCounters::read();
    if !machine.release_build {
        eprintln!("warning: this is a debug build; measure with `cargo run --release`");
    }
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let script = scratch.path().join("bench_local_peers.py");
    std::fs::write(&script, PEER_SCRIPT)
        .with_context(|| format!("writing the peer script to {}", script.display()))?;
    let peers = bench.peers.then(|| Peers {
        python: bench
            .python
            .clone()
            .map(PathBuf::into_os_string)
            .or_else(|| std::env::var_os(flywheel_local::setup::PYTHON_ENV))
            .unwrap_or_else(|| OsString::from("python3")),
        script,
        scratch: scratch.path().to_owned(),
    });
    let chat = match &bench.chat {
        Some(name) => Some(run_chat(models, name, bench, peers.as_ref()).await?),
        None => None,
    };
    let embeddings = match &bench.embeddings {
        Some(name) => Some(run_embeddings(models, name, bench, peers.as_ref()).await?),
        None => None,
    };
    let mut machine = machine;
    machine.others_cpu_share = cpu_before.and_then(|before| {
        let after = CpuCounters::read()?;
        before.others_share(&after)
    });
    Ok(LocalReport {
        machine,
        chat,
        embeddings,
    })
}

/// How to start the peer script.
struct Peers {
    python: OsString,
    script: PathBuf,
    /// Where the prompt and sentence files for the peer are written.
    scratch: PathBuf,
}

/// The system prompt and question of every chat run: a concierge question that asks for a long,
/// detailed answer, so that greedy decoding rarely ends before `max_tokens`.
fn chat_messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::text(
            Role::System,
            "You are the Power100 AI Concierge. You help home-improvement contractors grow their \
             business and find the right strategic partners.",
        ),
        ChatMessage::text(
            Role::User,
            "We are a roofing and siding company in Austin, Texas, with about forty employees \
             and eight million dollars in yearly revenue. Our close rate on in-home estimates \
             has dropped from thirty-five to twenty-six percent over the last year, and our \
             sales team says leads are weaker. Explain, step by step and in detail, what we \
             should change in lead qualification, follow-up, pricing presentation and sales \
             training, and which kinds of partners could help.",
        ),
    ]
}

async fn run_chat(
    models: &ModelsConfig,
    name: &str,
    bench: &LocalBench,
    peers: Option<&Peers>,
) -> anyhow::Result<ChatReport> {
    let config = models.chat.get(name).with_context(|| {
        format!("--chat-model {name}: there is no [models.chat.{name}] in the configuration")
    })?;
    let path = models.resolve(&config.path);
    if !path.is_file() {
        anyhow::bail!(
            "chat model {name}: {} does not exist; run `flywheel models fetch`",
            path.display()
        );
    }
    let options = ChatModelOptions {
        context_length: config.context_length,
        max_queue: 4,
        default_max_tokens: bench.max_tokens,
    };
    let (load_name, load_path) = (name.to_owned(), path.clone());
    let model =
        tokio::task::spawn_blocking(move || ChatModel::load(&load_name, &load_path, options))
            .await
            .context("the model loading thread")?
            .with_context(|| format!("loading chat model {name} from {}", path.display()))?;
    let messages = chat_messages();
    let prompt = model
        .render_prompt(&messages)
        .context("rendering the benchmark prompt")?;

    let bar = progress_count("flywheel chat", bench.runs + 1);
    let (_, _) = flywheel_chat_run(&model, &messages, bench.max_tokens).await?;
    bar.inc(1);
    let mut runs = Vec::with_capacity(bench.runs);
    let mut flywheel_text = String::new();
    for _ in 0..bench.runs {
        let (summary, text) = flywheel_chat_run(&model, &messages, bench.max_tokens).await?;
        runs.push(ChatRun {
            prompt_tokens: summary.prompt_tokens,
            prompt_seconds: summary.prompt_duration.as_secs_f64(),
            completion_tokens: summary.completion_tokens,
            generation_seconds: summary.generation_duration.as_secs_f64(),
        });
        flywheel_text = text;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // The model's thread ends with the last handle: nothing of Flywheel runs during the peer.
    drop(model);

    let peer = match peers {
        None => Err("skipped (--no-peer)".to_owned()),
        Some(peers) => {
            let prompt_file = peers.scratch.join("prompt.txt");
            std::fs::write(&prompt_file, &prompt)
                .with_context(|| format!("writing {}", prompt_file.display()))?;
            let args: Vec<OsString> = vec![
                "chat".into(),
                "--model".into(),
                path.clone().into_os_string(),
                "--prompt-file".into(),
                prompt_file.into_os_string(),
                "--threads".into(),
                bench.threads.to_string().into(),
                "--max-tokens".into(),
                bench.max_tokens.to_string().into(),
                "--runs".into(),
                bench.runs.to_string().into(),
            ];
            run_peer(peers, &args)
                .await
                .and_then(|json| parse_peer_chat(&json))
        }
    };
    Ok(ChatReport {
        model: name.to_owned(),
        path,
        flywheel: runs,
        flywheel_text,
        peer,
    })
}

/// One greedy generation; returns its summary and text.
async fn flywheel_chat_run(
    model: &ChatModel,
    messages: &[ChatMessage],
    max_tokens: u32,
) -> anyhow::Result<(GenerationSummary, String)> {
    let request = GenerationRequest {
        messages: messages.to_vec(),
        sampling: SamplingParams {
            temperature: Some(0.0),
            max_tokens: Some(max_tokens),
            ..SamplingParams::default()
        },
    };
    let mut handle = model.generate(request).context("starting a generation")?;
    let mut text = String::new();
    while let Some(event) = handle.next().await {
        match event.context("generating")? {
            GenerationEvent::Text(piece) => text.push_str(&piece),
            GenerationEvent::Done(summary) => return Ok((summary, text)),
        }
    }
    anyhow::bail!("the generation ended without its summary")
}

fn parse_peer_chat(json: &Value) -> Result<PeerChat, String> {
    let runs = json["runs"]
        .as_array()
        .ok_or("the peer printed no runs")?
        .iter()
        .map(|run| {
            Ok(ChatRun {
                prompt_tokens: run["prompt_tokens"].as_u64().ok_or("prompt_tokens")?,
                prompt_seconds: run["prompt_seconds"].as_f64().ok_or("prompt_seconds")?,
                completion_tokens: run["completion_tokens"]
                    .as_u64()
                    .ok_or("completion_tokens")?,
                generation_seconds: run["generation_seconds"]
                    .as_f64()
                    .ok_or("generation_seconds")?,
            })
        })
        .collect::<Result<Vec<_>, &str>>()
        .map_err(|field| format!("the peer's output lacks {field}"))?;
    Ok(PeerChat {
        name: json["peer"].as_str().unwrap_or("peer").to_owned(),
        version: json["version"].as_str().unwrap_or("?").to_owned(),
        runs,
        text: json["text"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Short sentences of the kind a concierge embeds (notes about jobs and leads), varied so that
/// their lengths differ a little, as real inputs do. Deterministic.
fn sentences(count: usize) -> Vec<String> {
    const SUBJECTS: [&str; 8] = [
        "Our roofing crew",
        "The sales team",
        "A homeowner in Austin",
        "The new partner",
        "Our marketing agency",
        "The siding installer",
        "A contractor in Dallas",
        "The estimator",
    ];
    const VERBS: [&str; 7] = [
        "closed",
        "lost",
        "scheduled",
        "followed up on",
        "priced",
        "reviewed",
        "booked",
    ];
    const OBJECTS: [&str; 9] = [
        "a large estimate",
        "the demo appointment",
        "three new leads",
        "the warranty claim",
        "a window replacement job",
        "the financing offer",
        "a referral from a neighbour",
        "the storm damage inspection",
        "a gutter repair",
    ];
    const TAILS: [&str; 5] = [
        "yesterday.",
        "last week after two calls.",
        "with a small discount on the first visit.",
        "before the holidays for a repeat customer.",
        "this morning.",
    ];
    (0..count)
        .map(|index| {
            format!(
                "{} {} {} {}",
                SUBJECTS[index % SUBJECTS.len()],
                VERBS[(index / 2) % VERBS.len()],
                OBJECTS[(index / 3) % OBJECTS.len()],
                TAILS[(index / 5) % TAILS.len()]
            )
        })
        .collect()
}

/// How many vectors are compared between the engines.
const COMPARED_VECTORS: usize = 4;

async fn run_embeddings(
    models: &ModelsConfig,
    name: &str,
    bench: &LocalBench,
    peers: Option<&Peers>,
) -> anyhow::Result<EmbeddingReport> {
    let config = models.embeddings.get(name).with_context(|| {
        format!(
            "--embedding-model {name}: there is no [models.embeddings.{name}] in the configuration"
        )
    })?;
    let path = models.resolve(&config.path);
    if !path.is_dir() {
        anyhow::bail!(
            "embedding model {name}: {} does not exist; run `flywheel models fetch`",
            path.display()
        );
    }
    let options = EmbeddingModelOptions {
        max_queue: 4,
        max_batch: bench.batch,
        max_sequence_tokens: config.max_sequence_tokens,
    };
    let (load_name, load_path) = (name.to_owned(), path.clone());
    let model =
        tokio::task::spawn_blocking(move || EmbeddingModel::load(&load_name, &load_path, options))
            .await
            .context("the model loading thread")?
            .with_context(|| format!("loading embedding model {name} from {}", path.display()))?;
    let inputs = sentences(bench.sentences);

    let bar = progress_count("flywheel embeddings", bench.runs + 1);
    let mut first_vectors = Vec::new();
    let mut rates = Vec::with_capacity(bench.runs);
    for run in 0..=bench.runs {
        let started = Instant::now();
        for (batch_idx, batch) in inputs.chunks(bench.batch).enumerate() {
            let embeddings = model
                .embed(batch.to_vec())
                .await
                .context("embedding a batch")?;
            if run == 0 && batch_idx == 0 {
                first_vectors = embeddings.vectors;
            }
        }
        // Run 0 warms up (allocations, caches) and is not counted.
        if run > 0 {
            rates.push(inputs.len() as f64 / started.elapsed().as_secs_f64().max(1e-9));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(model);

    let peer = match peers {
        None => Err("skipped (--no-peer)".to_owned()),
        Some(peers) => {
            let sentences_file = peers.scratch.join("sentences.txt");
            std::fs::write(&sentences_file, inputs.join("\n"))
                .with_context(|| format!("writing {}", sentences_file.display()))?;
            let args: Vec<OsString> = vec![
                "embed".into(),
                "--model".into(),
                path.clone().into_os_string(),
                "--sentences-file".into(),
                sentences_file.into_os_string(),
                "--threads".into(),
                bench.threads.to_string().into(),
                "--batch".into(),
                bench.batch.to_string().into(),
                "--max-sequence-tokens".into(),
                config.max_sequence_tokens.to_string().into(),
                "--runs".into(),
                bench.runs.to_string().into(),
                "--sample".into(),
                COMPARED_VECTORS.to_string().into(),
            ];
            run_peer(peers, &args)
                .await
                .and_then(|json| parse_peer_embeddings(&json, &first_vectors))
        }
    };
    Ok(EmbeddingReport {
        model: name.to_owned(),
        path,
        sentences: inputs.len(),
        flywheel: rates,
        peer,
    })
}

fn parse_peer_embeddings(json: &Value, ours: &[Vec<f32>]) -> Result<PeerEmbeddings, String> {
    let sentences_per_sec = json["runs"]
        .as_array()
        .ok_or("the peer printed no runs")?
        .iter()
        .map(|run| {
            let sentences = run["sentences"].as_f64()?;
            let seconds = run["seconds"].as_f64()?;
            Some(sentences / seconds.max(1e-9))
        })
        .collect::<Option<Vec<f64>>>()
        .ok_or("the peer's runs lack sentences or seconds")?;
    let theirs: Vec<Vec<f64>> = json["sample_embeddings"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| {
                    row.as_array()
                        .map(|values| values.iter().filter_map(Value::as_f64).collect())
                })
                .collect()
        })
        .unwrap_or_default();
    let min_cosine = ours
        .iter()
        .zip(&theirs)
        .map(|(ours, theirs)| cosine(ours, theirs))
        .reduce(f64::min);
    Ok(PeerEmbeddings {
        name: json["peer"].as_str().unwrap_or("peer").to_owned(),
        version: json["version"].as_str().unwrap_or("?").to_owned(),
        torch_version: json["torch_version"].as_str().unwrap_or("?").to_owned(),
        sentences_per_sec,
        min_cosine,
    })
}

fn cosine(ours: &[f32], theirs: &[f64]) -> f64 {
    let dot: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| f64::from(*a) * b)
        .sum();
    let norm_ours = ours
        .iter()
        .map(|a| f64::from(*a).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm_theirs = theirs.iter().map(|b| b.powi(2)).sum::<f64>().sqrt();
    dot / (norm_ours * norm_theirs).max(1e-12)
}

/// Runs the peer script; its JSON, or why the peer did not run.
async fn run_peer(peers: &Peers, args: &[OsString]) -> Result<Value, String> {
    let python = peers.python.to_string_lossy().into_owned();
    let output = tokio::process::Command::new(&peers.python)
        .arg(&peers.script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // The peer's per-run lines and its libraries' messages go straight to the terminal.
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| {
            format!("`{python}` could not be started ({err}); install Python 3 or pass --python")
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok());
    match json {
        Some(json) if json.get("error").is_some() => Err(format!(
            "not run: {}",
            json["error"]
                .as_str()
                .unwrap_or("the peer reported an error")
        )),
        Some(json) if output.status.success() => Ok(json),
        _ if output.status.code() == Some(PEER_MISSING_EXIT_CODE) => {
            Err("not run: the peer is not installed".to_owned())
        }
        _ => Err(format!("failed ({}); see its output above", output.status)),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// CPU model, cores, memory, OS and date, from `/proc` and `/etc/os-release` where present.
pub(crate) fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(
            || std::env::consts::ARCH.to_owned(),
            |(_, name)| name.trim().to_owned(),
        );
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    let os = read("/etc/os-release")
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map_or_else(
            || std::env::consts::OS.to_owned(),
            |name| name.trim_matches('"').to_owned(),
        );
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory,
        os,
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        release_build: !cfg!(debug_assertions),
        others_cpu_share: None,
    }
}

/// CPU time of the whole machine and of this process with its waited-for children (the
/// peers), in clock ticks, from `/proc/stat` and `/proc/self/stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuCounters {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
}

impl CpuCounters {
    pub(crate) fn read() -> Option<CpuCounters> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let values: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|value| value.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let busy = [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|idx| values.get(*idx))
            .sum::<u64>();
        let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name: utime, stime, cutime, cstime are the
        // 12th to 15th.
        let fields: Vec<&str> = own_stat.rsplit_once(')')?.1.split_whitespace().collect();
        let own = (11..=14)
            .map(|idx| fields.get(idx).and_then(|value| value.parse::<u64>().ok()))
            .sum::<Option<u64>>()?;
        Some(CpuCounters {
            machine_busy: busy,
            machine_total: busy + idle,
            own,
        })
    }

    /// The share of the machine's CPU time between `self` and `later` used by other processes.
    pub(crate) fn others_share(&self, later: &CpuCounters) -> Option<f64> {
        let total = later.machine_total.checked_sub(self.machine_total)?;
        let busy = later.machine_busy.checked_sub(self.machine_busy)?;
        let own = later.own.checked_sub(self.own)?;
        (total > 0).then(|| busy.saturating_sub(own) as f64 / total as f64)
    }
}

/// The report as Markdown: machine, then one table per part with medians, every run, and the
/// ratio to the peer against its target.
pub fn markdown(report: &LocalReport, bench: &LocalBench) -> String {
    let machine = &report.machine;
    let mut out = format!(
        "Machine: {} ({} cores), {} RAM, {}; {}; {} build; other processes used {} of the CPU during the run\n",
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.os,
        machine.date,
        if machine.release_build {
            "release"
        } else {
            "debug (not representative)"
        },
        machine
            .others_cpu_share
            .map_or("an unknown share".to_owned(), |share| format!(
                "{:.1} %",
                share * 100.0
            ))
    );
    let list = |values: &[f64], precision: usize| {
        values
            .iter()
            .map(|value| format!("{value:.precision$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(chat) = &report.chat {
        out.push_str(&format!(
            "\nLocal chat: {} ({}), greedy, {} tokens asked for, {} runs after one warm-up; peer threads: {}\n\n\
             | engine | prompt tokens | generated tokens | prompt tok/s (median) | generation tok/s (median) | generation tok/s per run |\n\
             |---|---:|---:|---:|---:|---|\n",
            chat.model,
            chat.path.display(),
            bench.max_tokens,
            bench.runs,
            bench.threads
        ));
        let row = |name: &str, runs: &[ChatRun]| {
            let prompt: Vec<f64> = runs.iter().map(ChatRun::prompt_tokens_per_sec).collect();
            let generation: Vec<f64> = runs
                .iter()
                .map(ChatRun::generation_tokens_per_sec)
                .collect();
            let completion: Vec<f64> = runs
                .iter()
                .map(|run| run.completion_tokens as f64)
                .collect();
            (
                format!(
                    "| {name} | {} | {:.0} | {:.0} | {:.1} | {} |\n",
                    runs.first().map_or(0, |run| run.prompt_tokens),
                    median(&completion),
                    median(&prompt),
                    median(&generation),
                    list(&generation, 1)
                ),
                median(&prompt),
                median(&generation),
            )
        };
        let (flywheel_row, flywheel_prompt, flywheel_generation) = row("flywheel", &chat.flywheel);
        out.push_str(&flywheel_row);
        match &chat.peer {
            Ok(peer) => {
                let (peer_row, peer_prompt, peer_generation) =
                    row(&format!("{} {}", peer.name, peer.version), &peer.runs);
                out.push_str(&peer_row);
                let generation_ratio = flywheel_generation / peer_generation;
                out.push_str(&format!(
                    "| flywheel / peer | | | {:.2}× | **{:.2}×** (target ≥ {CHAT_GENERATION_TARGET}×: {}) | |\n",
                    flywheel_prompt / peer_prompt,
                    generation_ratio,
                    if generation_ratio >= CHAT_GENERATION_TARGET { "met" } else { "not met" }
                ));
                let shared = common_prefix_chars(&chat.flywheel_text, &peer.text);
                out.push_str(&format!(
                    "\nThe two greedy answers share their first {shared} characters. Flywheel: {:?}…; peer: {:?}…\n",
                    chat.flywheel_text.chars().take(80).collect::<String>(),
                    peer.text.chars().take(80).collect::<String>()
                ));
            }
            Err(note) => out.push_str(&format!("\nPeer: {note}\n")),
        }
    }
    if let Some(embeddings) = &report.embeddings {
        out.push_str(&format!(
            "\nLocal embeddings: {} ({}), {} sentences per run in requests of {}, {} runs after one warm-up; peer threads: {}\n\n\
             | engine | sentences/s (median) | sentences/s per run |\n|---|---:|---|\n",
            embeddings.model,
            embeddings.path.display(),
            embeddings.sentences,
            bench.batch,
            bench.runs,
            bench.threads
        ));
        let ours = median(&embeddings.flywheel);
        out.push_str(&format!(
            "| flywheel | {ours:.0} | {} |\n",
            list(&embeddings.flywheel, 0)
        ));
        match &embeddings.peer {
            Ok(peer) => {
                let theirs = median(&peer.sentences_per_sec);
                out.push_str(&format!(
                    "| {} {} (torch {}) | {theirs:.0} | {} |\n",
                    peer.name,
                    peer.version,
                    peer.torch_version,
                    list(&peer.sentences_per_sec, 0)
                ));
                let ratio = ours / theirs;
                out.push_str(&format!(
                    "| flywheel / peer | **{ratio:.2}×** (target ≥ {EMBEDDING_TARGET}×: {}) | |\n",
                    if ratio >= EMBEDDING_TARGET {
                        "met"
                    } else {
                        "not met"
                    }
                ));
                if let Some(min_cosine) = peer.min_cosine {
                    out.push_str(&format!(
                        "\nThe vectors of the first {COMPARED_VECTORS} sentences agree with the peer's: lowest cosine similarity {min_cosine:.6}.\n"
                    ));
                }
            }
            Err(note) => out.push_str(&format!("\nPeer: {note}\n")),
        }
    }
    out
}

fn common_prefix_chars(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn generation_speed_counts_decoding_steps() {
        let run = ChatRun {
            prompt_tokens: 100,
            prompt_seconds: 0.5,
            completion_tokens: 11,
            generation_seconds: 2.0,
        };
        assert_eq!(run.prompt_tokens_per_sec(), 200.0);
        assert_eq!(run.generation_tokens_per_sec(), 5.0);
    }

    #[test]
    fn the_peer_output_is_parsed_and_compared() {
        let json = serde_json::json!({
            "peer": "sentence-transformers",
            "version": "9.9",
            "torch_version": "2.0",
            "runs": [{"sentences": 100, "seconds": 0.5}, {"sentences": 100, "seconds": 0.25}],
            "sample_embeddings": [[1.0, 0.0], [0.0, 1.0]],
        });
        let parsed = parse_peer_embeddings(&json, &[vec![1.0, 0.0], vec![1.0, 1.0]]).unwrap();
        assert_eq!(parsed.sentences_per_sec, vec![200.0, 400.0]);
        let min = parsed.min_cosine.unwrap();
        assert!(
            (min - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9,
            "{min}"
        );

        let chat = serde_json::json!({
            "peer": "llama-cpp-python", "version": "0.3", "text": "Hi",
            "runs": [{"prompt_tokens": 10, "prompt_seconds": 0.1, "completion_tokens": 5, "generation_seconds": 0.4}],
        });
        let parsed = parse_peer_chat(&chat).unwrap();
        assert_eq!(parsed.runs[0].generation_tokens_per_sec(), 10.0);
        assert!(parse_peer_chat(&serde_json::json!({"runs": [{}]})).is_err());
    }

    #[test]
    fn sentences_are_short_and_varied() {
        let sentences = sentences(64);
        assert_eq!(sentences.len(), 64);
        let distinct: std::collections::BTreeSet<&String> = sentences.iter().collect();
        assert_eq!(distinct.len(), 64);
        assert!(sentences.iter().all(|s| s.split_whitespace().count() <= 20));
    }
}
