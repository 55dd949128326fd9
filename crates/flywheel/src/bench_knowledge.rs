//! `flywheel bench knowledge`: the knowledge base's retrieval quality, ingestion throughput and
//! approximate-nearest-neighbour index, with pgvector as the peer in the same run.
//!
//! 1. **Retrieval evaluation.** The corpus is CPython's reference documentation topics
//!    (`pydoc_data/topics.py` of Python 3.11, shipped as `data/knowledge-eval/pydoc-topics.json`),
//!    one Markdown document per topic (reST-style underlined titles become ATX headings). They are
//!    ingested through the real [`KnowledgeService`] (a fresh SQLite store, the local embedding
//!    model, the configured index backend), and every question of the hand-labelled set
//!    (`data/knowledge-eval/questions.txt`) is searched in each mode with `top_k` 10; recall@5,
//!    MRR and nDCG@10 over documents come from [`flywheel_knowledge::eval`]. With a pgvector
//!    server, the same evaluation runs on the pgvector backend too.
//! 2. **Ingestion throughput.** The topics as a folder of Markdown files and as eight generated
//!    multi-page PDFs, ingested through the service file by file as `flywheel knowledge ingest`
//!    does, into a fresh collection per run; then the same chunk texts (title and heading path
//!    prepended, as ingestion embeds them) are embedded again through the gateway alone, which
//!    separates embedding time from the rest (extraction, chunking, storage, indexing).
//! 3. **ANN index.** Real embeddings (paragraphs of the topics and docstrings and comments of the
//!    machine's Python standard library, embedded by the local model and cached in `--dir`) with
//!    held-out passages as queries, and seeded random unit vectors. For each, the embedded backend
//!    (usearch HNSW) and pgvector's HNSW are built with the same parameters (M 16,
//!    ef_construction 64) through their [`KnowledgeIndex`] implementations, exact top-10 is
//!    computed by brute force, and for each `ef_search` the bench measures recall@10, single-query
//!    latency and sequential queries per second. pgvector is measured twice: through Flywheel's
//!    adapter ([`PgVectorIndex::vector_search`], a transaction with the scope lookup and
//!    `set_config`) and as one prepared `ORDER BY embedding <=> $1 LIMIT 10` statement on a
//!    connection with a session-level `hnsw.ef_search` — pgvector at its leanest, the peer the
//!    target compares against.
//!
//! Every engine runs alone: the embedded index is built, measured and dropped before pgvector's
//! is built. Without `--pgvector-url` the bench starts its own pgvector server from the
//! `pgserver` Python package (`scripts/pgvector_server.py`, embedded in the binary) in
//! `--dir/pgvector-data`, sized so that its buffer cache holds the index, and stops it at the end.
//! Results go to standard output as Markdown and to `--dir` as JSON.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flywheel_config::{Config, KnowledgeBackend, DEFAULT_EMBEDDING_MODEL};
use flywheel_core::{Principal, TenantId};
use flywheel_knowledge::eval::{score_query, summarise, QueryMetrics, Summary};
use flywheel_knowledge::index::embedded::{EmbeddedIndex, EmbeddedSettings};
use flywheel_knowledge::index::pgvector::{PgVectorIndex, PgVectorSettings};
use flywheel_knowledge::index::{IndexedChunk, KnowledgeIndex, Restriction, Scope, VectorQuery};
use flywheel_local::embed::{EmbeddingModel, EmbeddingModelOptions};
use flywheel_services::enrich::ClientContext;
use flywheel_services::gateway::EmbeddingsInput;
use flywheel_services::knowledge::{
    DocumentInput, DocumentSubmitted, KnowledgeService, NewCollectionInput, SearchFilter,
    SearchInput, SearchMode,
};
use flywheel_services::local_cli_principal;
use flywheel_store::KnowledgeDocumentRecord;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use crate::app::{start_local_models, Components};
use crate::bench::local::{machine, CpuCounters, Machine};

/// The Python reference topics (`pydoc_data.topics.topics` of CPython 3.11.7), key → text.
const TOPICS_JSON: &str = include_str!("../data/knowledge-eval/pydoc-topics.json");
/// The labelled questions (format in the file's header).
const QUESTIONS: &str = include_str!("../data/knowledge-eval/questions.txt");
/// Starts a pgvector server from the `pgserver` Python package.
const PGVECTOR_SCRIPT: &str = include_str!("../../../scripts/pgvector_server.py");

/// Hybrid recall@5 should be at least each single mode's.
pub const RECALL_AT_10_TARGET: f64 = 0.95;
/// Single-query p99 at 100,000 real embeddings, at the first `ef_search` reaching the recall
/// target.
pub const P99_TARGET_MS: f64 = 5.0;
/// Queries per second against pgvector's at equal recall.
pub const QPS_RATIO_TARGET: f64 = 1.0;

/// Results asked of every query (recall@10).
const TOP_K: usize = 10;
/// Chunks per upserted "document" when building an index: one transaction (pgvector) or one
/// writer step (embedded) each.
const BUILD_BATCH: usize = 1_000;
/// Queries run before a sweep, untimed, so that caches are warm for every engine.
const WARM_UP_QUERIES: usize = 200;
/// Passages per request to the embedding model while embedding the ANN corpus.
const EMBED_REQUEST: usize = 256;
/// The passages of the ANN corpus: at least this many words and at most this many characters
/// (longer paragraphs are cut at sentence ends).
const MIN_PASSAGE_WORDS: usize = 5;
const MAX_PASSAGE_CHARS: usize = 600;
/// How deep the walk of the Python directories goes.
const MAX_WALK_DEPTH: usize = 16;
/// PDFs generated from the topics, and their page geometry (Helvetica 10 pt on US Letter).
const PDF_FILES: usize = 8;
const PDF_LINES_PER_PAGE: usize = 56;
const PDF_LINE_CHARS: usize = 92;
/// Characters of a "page" of Markdown, which has no pages of its own.
const MARKDOWN_PAGE_CHARS: usize = 3_000;
/// The tenant and database names the bench uses.
const ANN_TENANT: &str = "bench";
const EVAL_DATABASE: &str = "flywheel_bench_knowledge_eval";
const ANN_DATABASE_PREFIX: &str = "flywheel_bench_knowledge_ann";
/// The table pgvector's backend keeps 384-dimensional chunks in (English text search).
const PG_TABLE_PREFIX: &str = "knowledge_chunks_english_";
/// Cache files in `--dir`.
const EMBEDDINGS_MAGIC: &[u8; 8] = b"FWKBEMB1";
const TRUTH_MAGIC: &[u8; 8] = b"FWKBGT01";

/// What to run.
#[derive(Debug, Clone)]
pub struct KnowledgeBench {
    /// Real embeddings indexed (queries are held out on top of these).
    pub vectors: usize,
    /// Random unit vectors indexed.
    pub random: usize,
    /// Queries per ANN dataset.
    pub queries: usize,
    /// The candidate pools swept.
    pub ef_search: Vec<usize>,
    /// The largest dataset pgvector is built for; a larger random set runs on the embedded index
    /// alone, and both engines also run a random set of this size.
    pub pgvector_max_vectors: usize,
    /// Ingestion runs per format (medians are reported).
    pub ingest_runs: usize,
    /// Caches (embeddings, exact neighbours, corpus files), the pgvector server's data and the
    /// results.
    pub dir: PathBuf,
    /// A PostgreSQL with the vector extension; without it the bench starts one.
    pub pgvector_url: Option<String>,
    pub pgvector: bool,
    pub eval: bool,
    pub ingest: bool,
    pub ann: bool,
    /// The interpreter with `pgserver` (and the one whose standard library is embedded).
    pub python: Option<PathBuf>,
    /// Seeds the query hold-out and the random vectors.
    pub seed: u64,
}

/// Everything measured.
#[derive(Debug)]
pub struct KnowledgeReport {
    pub machine: Machine,
    pub seconds: f64,
    pub pgvector: Option<PgInfo>,
    pub eval: Vec<EvalReport>,
    pub ingest: Option<IngestReport>,
    pub ann: Vec<AnnReport>,
    pub notes: Vec<String>,
}

/// The pgvector server used.
#[derive(Debug, Clone)]
pub struct PgInfo {
    pub server: String,
    pub postgres_version: String,
    pub pgvector_version: String,
    pub shared_buffers: String,
    pub started_by_bench: bool,
}

/// The retrieval evaluation on one backend.
#[derive(Debug)]
pub struct EvalReport {
    pub backend: String,
    pub documents: usize,
    pub chunks: i64,
    pub ingest_seconds: f64,
    pub modes: Vec<ModeReport>,
    pub questions: Vec<QuestionOutcome>,
}

/// One search mode over the whole set and per kind of question.
#[derive(Debug)]
pub struct ModeReport {
    pub mode: SearchMode,
    pub all: Summary,
    pub keyword: Summary,
    pub paraphrase: Summary,
    pub median_ms: f64,
}

/// One question's ranked documents per mode.
#[derive(Debug)]
pub struct QuestionOutcome {
    pub question: Question,
    /// Per mode (in [`MODES`] order): the deduplicated documents, best first, and the metrics.
    pub rankings: Vec<(Vec<String>, QueryMetrics)>,
}

/// A labelled question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub kind: QuestionKind,
    pub text: String,
    pub relevant: Vec<String>,
}

/// Whether a question shares the distinctive words of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionKind {
    Keyword,
    Paraphrase,
}

/// Ingestion throughput of the two formats.
#[derive(Debug)]
pub struct IngestReport {
    pub formats: Vec<IngestFormat>,
}

/// The runs of one format.
#[derive(Debug)]
pub struct IngestFormat {
    pub format: &'static str,
    pub files: usize,
    /// PDF pages, or 3,000-character page equivalents for Markdown.
    pub pages: f64,
    pub chars: usize,
    pub chunks: i64,
    pub runs: Vec<IngestRun>,
}

/// One ingestion of the whole folder.
#[derive(Debug, Clone, Copy)]
pub struct IngestRun {
    pub seconds: f64,
    /// The same chunk texts embedded through the gateway alone.
    pub embed_seconds: f64,
}

/// One ANN dataset and every engine measured on it.
#[derive(Debug)]
pub struct AnnReport {
    pub dataset: String,
    pub description: String,
    pub vectors: usize,
    pub queries: usize,
    pub dimensions: usize,
    /// Embedding the corpus (absent when the cache had it, and for random vectors).
    pub embed: Option<EmbedStats>,
    pub truth_seconds: Option<f64>,
    pub engines: Vec<EngineRun>,
}

/// Embedding the real corpus with the local model.
#[derive(Debug, Clone, Copy)]
pub struct EmbedStats {
    pub passages: usize,
    pub seconds: f64,
}

/// One engine on one dataset.
#[derive(Debug)]
pub struct EngineRun {
    pub engine: String,
    pub build_seconds: Option<f64>,
    /// Making the built index durable (the embedded backend's snapshot; pgvector commits as it
    /// goes).
    pub durable_seconds: Option<f64>,
    pub points: Vec<SweepPoint>,
    pub error: Option<String>,
}

/// One `ef_search` of a sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepPoint {
    pub ef: usize,
    pub recall: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub qps: f64,
}

const MODES: [SearchMode; 3] = [SearchMode::Vector, SearchMode::Lexical, SearchMode::Hybrid];
const ENGINE_EMBEDDED: &str = "flywheel embedded (usearch)";
const ENGINE_PG_ADAPTER: &str = "pgvector via PgVectorIndex";
const ENGINE_PG_RAW: &str = "pgvector, one prepared statement";

/// Runs the parts `bench` asks for.
pub async fn run_knowledge(
    config: &Config,
    bench: &KnowledgeBench,
) -> anyhow::Result<KnowledgeReport> {
    let started = Instant::now();
    let machine = machine();
    let cpu_before = CpuCounters::read();
    if !machine.release_build {
        eprintln!("warning: this is a debug build; measure with `cargo run --release`");
    }
    std::fs::create_dir_all(&bench.dir)
        .with_context(|| format!("creating --dir {}", bench.dir.display()))?;
    let dir = bench
        .dir
        .canonicalize()
        .with_context(|| format!("resolving --dir {}", bench.dir.display()))?;
    let topics = load_topics()?;
    let questions = parse_questions(QUESTIONS, &topics)?;
    let mut notes = Vec::new();

    let needs_pg = bench.pgvector && (bench.eval || bench.ann);
    let server = if needs_pg {
        Some(PgServer::start(bench, &dir).await?)
    } else {
        None
    };
    let outcome = run_parts(
        config,
        bench,
        &dir,
        &topics,
        &questions,
        server.as_ref(),
        &mut notes,
    )
    .await;
    if let Some(server) = &server {
        server.stop().await;
    }
    let (eval, ingest, ann) = outcome?;
    let mut machine = machine;
    machine.others_cpu_share = cpu_before.and_then(|before| {
        let after = CpuCounters::read()?;
        before.others_share(&after)
    });
    Ok(KnowledgeReport {
        machine,
        seconds: started.elapsed().as_secs_f64(),
        pgvector: server.map(|server| server.info),
        eval,
        ingest,
        ann,
        notes,
    })
}

type Parts = (Vec<EvalReport>, Option<IngestReport>, Vec<AnnReport>);

async fn run_parts(
    config: &Config,
    bench: &KnowledgeBench,
    dir: &Path,
    topics: &BTreeMap<String, String>,
    questions: &[Question],
    server: Option<&PgServer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Parts> {
    let mut eval = Vec::new();
    if bench.eval {
        let harness = Harness::open(config, dir, KnowledgeBackend::Embedded, None).await?;
        let report = run_eval(&harness, topics, questions).await;
        harness.close().await;
        eval.push(report?);
        if let Some(server) = server {
            let url = server.fresh_database(EVAL_DATABASE).await?;
            let harness = Harness::open(config, dir, KnowledgeBackend::Pgvector, Some(url)).await?;
            let report = run_eval(&harness, topics, questions).await;
            harness.close().await;
            eval.push(report?);
            server.drop_database(EVAL_DATABASE).await;
        }
    }
    let ingest = if bench.ingest {
        let harness = Harness::open(config, dir, KnowledgeBackend::Embedded, None).await?;
        let report = run_ingest(&harness, topics, dir, bench.ingest_runs).await;
        harness.close().await;
        Some(report?)
    } else {
        None
    };
    let mut ann = Vec::new();
    if bench.ann {
        let real = real_dataset(config, bench, dir, topics).await?;
        if real.n_base < bench.vectors {
            notes.push(format!(
                "The Python installation yielded {} distinct passages: {} are indexed instead of \
                 --vectors {}.",
                real.n_base + real.n_queries,
                real.n_base,
                bench.vectors
            ));
        }
        ann.push(run_ann(bench, dir, real, server).await?);
        if bench.random > 0 {
            let sizes = if server.is_some() && bench.random > bench.pgvector_max_vectors {
                notes.push(format!(
                    "pgvector was not built for {} random vectors (over --pgvector-max-vectors \
                     {}); both engines ran on {} random vectors and the embedded index alone on \
                     {}.",
                    bench.random,
                    bench.pgvector_max_vectors,
                    bench.pgvector_max_vectors,
                    bench.random
                ));
                vec![(bench.pgvector_max_vectors, true), (bench.random, false)]
            } else {
                vec![(bench.random, true)]
            };
            for (size, with_pg) in sizes {
                let dataset = random_dataset(bench, size)?;
                let server = server.filter(|_| with_pg);
                ann.push(run_ann(bench, dir, dataset, server).await?);
            }
        }
    }
    Ok((eval, ingest, ann))
}

// ----- the service under test -----

/// A fresh Flywheel (temporary data directory, SQLite store, the configured local models) with
/// its knowledge base on one backend.
struct Harness {
    components: Components,
    knowledge: Arc<KnowledgeService>,
    actor: Principal,
    backend: KnowledgeBackend,
    /// Texts per embedding call during ingestion (`knowledge.embed_batch_size`).
    embed_batch_size: usize,
    _data_dir: tempfile::TempDir,
}

impl Harness {
    async fn open(
        base: &Config,
        dir: &Path,
        backend: KnowledgeBackend,
        pgvector_url: Option<String>,
    ) -> anyhow::Result<Harness> {
        let data_dir = tempfile::Builder::new()
            .prefix("knowledge-harness-")
            .tempdir_in(dir)
            .context("creating a data directory for the bench")?;
        let mut config = base.clone();
        config.data_dir = data_dir.path().to_owned();
        config.database.url = None;
        config.lake.url = None;
        config.knowledge.enabled = true;
        config.knowledge.backend = backend;
        config.knowledge.index_dir = None;
        config.knowledge.pgvector_url = pgvector_url;
        // Every document is ingested before add_document returns, as the CLI does.
        config.knowledge.sync_max_chars = usize::MAX;
        config.models.chat.clear();
        config.models.auto_fetch = false;
        if config.models.dir.is_relative() {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            config.models.dir = cwd.join(&config.models.dir);
        }
        let components = Components::open(&config).await?;
        let key = SecretString::from(crate::bench::random_api_key());
        components.prepare(&config, Some(&key)).await?;
        let knowledge = components
            .knowledge
            .clone()
            .context("the knowledge base is disabled")?;
        let local = components.local_models.clone().context(
            "no local models are configured; the bench embeds with the local embedding model",
        )?;
        let (task, _stop) = start_local_models(&config, Arc::clone(&local));
        task.await.context("loading the local embedding model")?;
        let model_name = config
            .knowledge
            .embedding_model
            .strip_prefix("local/")
            .unwrap_or(DEFAULT_EMBEDDING_MODEL)
            .to_owned();
        if local.embedding_model(&model_name).is_none() {
            let detail = local
                .status()
                .into_iter()
                .find(|status| status.name == model_name)
                .and_then(|status| status.detail)
                .unwrap_or_else(|| "it is not configured".to_owned());
            anyhow::bail!(
                "the local embedding model {model_name} is not available: {detail} (run `flywheel models fetch`)"
            );
        }
        let tenant = TenantId::parse(&config.bootstrap.tenant_id)
            .map_err(|err| anyhow::anyhow!("bootstrap.tenant_id: {err}"))?;
        Ok(Harness {
            components,
            knowledge,
            actor: local_cli_principal(tenant),
            backend,
            embed_batch_size: config.knowledge.embed_batch_size.max(1),
            _data_dir: data_dir,
        })
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            KnowledgeBackend::Embedded => "embedded",
            KnowledgeBackend::Pgvector => "pgvector",
        }
    }

    async fn create_collection(&self, name: &str) -> anyhow::Result<String> {
        let collection = self
            .knowledge
            .create_collection(
                &self.actor,
                NewCollectionInput {
                    name: name.to_owned(),
                    description: None,
                    embedding_model: None,
                },
            )
            .await
            .with_context(|| format!("creating collection {name}"))?;
        Ok(collection.embedding_model)
    }

    /// Adds one file as `flywheel knowledge ingest` does; the document as ingested.
    async fn add(
        &self,
        collection: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<KnowledgeDocumentRecord> {
        let submitted = self
            .knowledge
            .add_document(
                &self.actor,
                DocumentInput {
                    collection: collection.to_owned(),
                    bytes,
                    file_name: Some(file_name.to_owned()),
                    source: Some(file_name.to_owned()),
                    ..DocumentInput::default()
                },
            )
            .await
            .with_context(|| format!("ingesting {file_name}"))?;
        match submitted {
            DocumentSubmitted::Ingested(document) | DocumentSubmitted::Unchanged(document) => {
                Ok(document)
            }
            DocumentSubmitted::Queued(document, _) => {
                anyhow::bail!("{file_name} ({}) was queued, not ingested", document.id)
            }
        }
    }

    async fn close(&self) {
        if let Err(err) = self.knowledge.flush().await {
            eprintln!("warning: could not snapshot the knowledge index: {err}");
        }
        self.components.close().await;
    }
}

// ----- 1. retrieval evaluation -----

async fn run_eval(
    harness: &Harness,
    topics: &BTreeMap<String, String>,
    questions: &[Question],
) -> anyhow::Result<EvalReport> {
    let backend = harness.backend_name();
    let collection = "pydoc-topics";
    harness.create_collection(collection).await?;
    let bar = progress_items(&format!("eval: ingest ({backend})"), topics.len(), "topics");
    let started = Instant::now();
    let mut chunks = 0;
    for (key, text) in topics {
        let (_, markdown) = topic_markdown(text);
        let document = harness
            .add(collection, &format!("{key}.md"), markdown.into_bytes())
            .await?;
        chunks += document.chunk_count;
        bar.inc(1);
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let bar = progress_items(
        &format!("eval: search ({backend})"),
        questions.len() * MODES.len(),
        "searches",
    );
    let mut outcomes = Vec::with_capacity(questions.len());
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for question in questions {
        let relevant: HashSet<String> = question.relevant.iter().cloned().collect();
        let mut rankings = Vec::with_capacity(MODES.len());
        for (mode_idx, mode) in MODES.iter().enumerate() {
            let search_started = Instant::now();
            let outcome = harness
                .knowledge
                .search(
                    &harness.actor,
                    SearchInput {
                        collection: collection.to_owned(),
                        query: question.text.clone(),
                        top_k: Some(TOP_K),
                        num_candidates: None,
                        mode: *mode,
                        filter: SearchFilter::default(),
                        rescore: false,
                    },
                )
                .await
                .with_context(|| format!("searching {:?} ({})", question.text, mode.as_str()))?;
            took[mode_idx].push(search_started.elapsed().as_secs_f64() * 1000.0);
            let ranking: Vec<String> = outcome
                .results
                .iter()
                .map(|result| source_topic(result.source.as_deref(), &result.title))
                .collect();
            let ranking = flywheel_knowledge::eval::dedup_ranking(&ranking);
            let metrics = score_query(&ranking, &relevant).unwrap_or_default();
            rankings.push((ranking, metrics));
            bar.inc(1);
        }
        outcomes.push(QuestionOutcome {
            question: question.clone(),
            rankings,
        });
    }
    bar.finish_and_clear();
    let modes = MODES
        .iter()
        .enumerate()
        .map(|(mode_idx, mode)| {
            let of_kind = |kind: Option<QuestionKind>| {
                let metrics: Vec<QueryMetrics> = outcomes
                    .iter()
                    .filter(|outcome| kind.is_none_or(|kind| outcome.question.kind == kind))
                    .map(|outcome| outcome.rankings[mode_idx].1)
                    .collect();
                summarise(&metrics)
            };
            ModeReport {
                mode: *mode,
                all: of_kind(None),
                keyword: of_kind(Some(QuestionKind::Keyword)),
                paraphrase: of_kind(Some(QuestionKind::Paraphrase)),
                median_ms: median(&took[mode_idx]),
            }
        })
        .collect();
    Ok(EvalReport {
        backend: backend.to_owned(),
        documents: topics.len(),
        chunks,
        ingest_seconds,
        modes,
        questions: outcomes,
    })
}

/// The topic key of a result: its source without the `.md` the bench gave it.
fn source_topic(source: Option<&str>, title: &str) -> String {
    source
        .map(|source| source.strip_suffix(".md").unwrap_or(source).to_owned())
        .unwrap_or_else(|| title.to_owned())
}

/// The topics, key → text.
pub fn load_topics() -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_str(TOPICS_JSON).context("reading the embedded pydoc-topics.json")
}

/// Parses the questions file (see its header), checking every topic against `topics`.
pub fn parse_questions(
    text: &str,
    topics: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Question>> {
    let mut questions = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let [kind, question, relevant] = fields.as_slice() else {
            anyhow::bail!(
                "questions.txt line {}: expected `KIND | QUESTION | TOPICS`, got {line:?}",
                line_idx + 1
            );
        };
        let kind = match *kind {
            "keyword" => QuestionKind::Keyword,
            "paraphrase" => QuestionKind::Paraphrase,
            other => anyhow::bail!(
                "questions.txt line {}: the kind must be keyword or paraphrase, got {other:?}",
                line_idx + 1
            ),
        };
        let relevant: Vec<String> = relevant
            .split(',')
            .map(|topic| topic.trim().to_owned())
            .filter(|topic| !topic.is_empty())
            .collect();
        if question.is_empty() || relevant.is_empty() {
            anyhow::bail!(
                "questions.txt line {}: a question and at least one topic are needed",
                line_idx + 1
            );
        }
        if let Some(unknown) = relevant.iter().find(|topic| !topics.contains_key(*topic)) {
            anyhow::bail!(
                "questions.txt line {}: there is no topic {unknown:?}",
                line_idx + 1
            );
        }
        questions.push(Question {
            kind,
            text: (*question).to_owned(),
            relevant,
        });
    }
    Ok(questions)
}

/// A topic as Markdown, and its title: reST-style titles (a line underlined with `*`, `=`, `-`,
/// `~` or `^` of the same length) become ATX headings, levels in order of first appearance as in
/// reST; indented lines that would read as headings (`   # comment` in an example) are indented
/// one more space, which makes them code.
pub fn topic_markdown(text: &str) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    let mut levels: Vec<char> = Vec::new();
    let mut title = None;
    let mut out = String::with_capacity(text.len() + 256);
    let mut line_idx = 0;
    while line_idx < lines.len() {
        let line = lines[line_idx];
        let underline = lines
            .get(line_idx + 1)
            .and_then(|next| underline_char(line, next));
        if let Some(marker) = underline {
            let level = match levels.iter().position(|&seen| seen == marker) {
                Some(position) => position + 1,
                None => {
                    levels.push(marker);
                    levels.len()
                }
            };
            let heading = line.trim();
            title.get_or_insert_with(|| heading.to_owned());
            out.push_str(&"#".repeat(level.min(6)));
            out.push(' ');
            out.push_str(heading);
            out.push('\n');
            line_idx += 2;
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent > 0 && indent < 4 && line.trim_start().starts_with(['#', '`', '~']) {
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
        line_idx += 1;
    }
    (title.unwrap_or_default(), out)
}

fn underline_char(line: &str, next: &str) -> Option<char> {
    let heading = line.trim_end();
    if heading.is_empty() || heading.starts_with(' ') {
        return None;
    }
    let under = next.trim_end();
    let marker = under.chars().next()?;
    if !"*=-~^".contains(marker) || under.chars().any(|ch| ch != marker) {
        return None;
    }
    let (n_under, n_heading) = (under.chars().count(), heading.chars().count());
    (n_under >= 3 && n_under.abs_diff(n_heading) <= 2).then_some(marker)
}

// ----- 2. ingestion throughput -----

async fn run_ingest(
    harness: &Harness,
    topics: &BTreeMap<String, String>,
    dir: &Path,
    runs: usize,
) -> anyhow::Result<IngestReport> {
    let markdown_dir = dir.join("corpus").join("markdown");
    let pdf_dir = dir.join("corpus").join("pdf");
    for folder in [&markdown_dir, &pdf_dir] {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    for (key, text) in topics {
        let (_, markdown) = topic_markdown(text);
        write_file(&markdown_dir.join(format!("{key}.md")), markdown.as_bytes())?;
    }
    for (idx, pdf) in topic_pdfs(topics, PDF_FILES).into_iter().enumerate() {
        write_file(
            &pdf_dir.join(format!("python-reference-{:02}.pdf", idx + 1)),
            &pdf,
        )?;
    }
    let mut formats = Vec::new();
    for (format, folder) in [("markdown", &markdown_dir), ("pdf", &pdf_dir)] {
        let files = sorted_files(folder)?;
        let mut format_runs = Vec::with_capacity(runs);
        let (mut pages, mut chars, mut chunks) = (0.0, 0, 0);
        for run in 0..runs {
            let collection = format!("ingest-{format}-{}", run + 1);
            let model = harness.create_collection(&collection).await?;
            let bar = progress_items(
                &format!("ingest {format} (run {}/{runs})", run + 1),
                files.len(),
                "files",
            );
            let started = Instant::now();
            let mut documents = Vec::with_capacity(files.len());
            for file in &files {
                let bytes = tokio::fs::read(file)
                    .await
                    .with_context(|| format!("reading {}", file.display()))?;
                let name = file
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                documents.push(harness.add(&collection, &name, bytes).await?);
                bar.inc(1);
            }
            let seconds = started.elapsed().as_secs_f64();
            bar.finish_and_clear();
            chars = documents
                .iter()
                .map(|document| document.extracted_text.chars().count())
                .sum();
            chunks = documents.iter().map(|document| document.chunk_count).sum();
            pages = match format {
                "pdf" => documents
                    .iter()
                    .map(|document| document.pages.unwrap_or(1) as f64)
                    .sum(),
                _ => chars as f64 / MARKDOWN_PAGE_CHARS as f64,
            };
            let embed_seconds = time_embedding(harness, &model, &documents).await?;
            format_runs.push(IngestRun {
                seconds,
                embed_seconds,
            });
        }
        formats.push(IngestFormat {
            format,
            files: files.len(),
            pages,
            chars,
            chunks,
            runs: format_runs,
        });
    }
    Ok(IngestReport { formats })
}

/// Embeds the chunk texts of `documents` (title and heading path prepended, as ingestion does)
/// through the gateway in ingestion's batches; the seconds it took.
async fn time_embedding(
    harness: &Harness,
    model: &str,
    documents: &[KnowledgeDocumentRecord],
) -> anyhow::Result<f64> {
    let mut texts = Vec::new();
    for document in documents {
        let chunks = harness
            .knowledge
            .document_chunks(&harness.actor, &document.id)
            .await?;
        for chunk in chunks {
            let heading_path: Vec<String> =
                serde_json::from_str(&chunk.heading_path).unwrap_or_default();
            texts.push(embedding_text(
                &document.title,
                &heading_path,
                &chunk.content,
            ));
        }
    }
    let started = Instant::now();
    for batch in texts.chunks(harness.embed_batch_size) {
        harness
            .components
            .gateway
            .embeddings(
                &harness.actor,
                EmbeddingsInput {
                    model: model.to_owned(),
                    inputs: batch.to_vec(),
                    dimensions: None,
                    user: None,
                    client: ClientContext::default(),
                },
            )
            .await
            .context("embedding chunk texts through the gateway")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What ingestion embeds for a chunk (mirrors the services layer: the title, each heading of the
/// path that differs from it after ` > `, a newline, the chunk).
fn embedding_text(title: &str, heading_path: &[String], content: &str) -> String {
    let mut text = String::with_capacity(title.len() + content.len() + 64);
    text.push_str(title);
    for heading in heading_path {
        if heading != title {
            text.push_str(" > ");
            text.push_str(heading);
        }
    }
    text.push('\n');
    text.push_str(content);
    text
}

/// The topics' text in `n_files` PDFs of about equal size, topics in key order, each a run of
/// pages of wrapped lines.
pub fn topic_pdfs(topics: &BTreeMap<String, String>, n_files: usize) -> Vec<Vec<u8>> {
    let total: usize = topics.values().map(String::len).sum();
    let per_file = total.div_ceil(n_files.max(1)).max(1);
    let mut files: Vec<Vec<String>> = vec![Vec::new()];
    let mut size = 0;
    for text in topics.values() {
        if size >= per_file {
            files.push(Vec::new());
            size = 0;
        }
        if let Some(lines) = files.last_mut() {
            lines.extend(wrap_lines(text, PDF_LINE_CHARS));
            lines.push(String::new());
        }
        size += text.len();
    }
    files
        .iter()
        .map(|lines| {
            let pages: Vec<&[String]> = lines.chunks(PDF_LINES_PER_PAGE).collect();
            pdf_with_pages(&pages)
        })
        .collect()
}

/// Lines of at most `width` characters, breaking at spaces (a longer word stands alone).
fn wrap_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for line in text.lines() {
        let indent: String = line.chars().take_while(|ch| *ch == ' ').collect();
        let mut current = indent.clone();
        for word in line.split_whitespace() {
            let current_len = current.chars().count();
            if current_len > indent.len() && current_len + 1 + word.chars().count() > width {
                lines.push(std::mem::replace(&mut current, indent.clone()));
            }
            if current.chars().count() > indent.len() {
                current.push(' ');
            }
            current.push_str(word);
        }
        lines.push(if current.trim().is_empty() {
            String::new()
        } else {
            current
        });
    }
    lines
}

/// A PDF with one page per slice of lines (Helvetica, WinAnsiEncoding), built by hand: catalog,
/// page tree, font, then a page and a content stream per page, and the cross-reference table.
pub fn pdf_with_pages(pages: &[&[String]]) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|idx| 4 + idx * 2).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        page_ids
            .iter()
            .map(|id| format!("{id} 0 R"))
            .collect::<Vec<_>>()
            .join(" "),
        pages.len()
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
    );
    for (idx, lines) in pages.iter().enumerate() {
        let content_id = page_ids[idx] + 1;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ));
        let mut stream = String::from("BT /F1 10 Tf 12 TL 50 750 Td\n");
        for line in lines.iter() {
            if !line.is_empty() {
                stream.push('(');
                stream.push_str(&pdf_string(line));
                stream.push_str(") Tj ");
            }
            stream.push_str("T*\n");
        }
        stream.push_str("ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (idx, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", idx + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A line as the body of a PDF literal string: backslashes and parentheses escaped, typographic
/// punctuation as ASCII, anything else outside printable ASCII as `?`.
fn pdf_string(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    for ch in line.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '(' => out.push_str("\\("),
            ')' => out.push_str("\\)"),
            ' '..='~' => out.push(ch),
            '\t' => out.push(' '),
            '\u{2018}' | '\u{2019}' => out.push('\''),
            '\u{201c}' | '\u{201d}' => out.push('"'),
            '\u{2013}' | '\u{2014}' => out.push('-'),
            '\u{2026}' => out.push_str("..."),
            _ => out.push('?'),
        }
    }
    out
}

fn sorted_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("listing {}", folder.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

// ----- 3. ANN index -----

/// Vectors to index and queries with their exact neighbours.
struct AnnData {
    name: String,
    description: String,
    dimensions: usize,
    n_base: usize,
    base: Vec<f32>,
    n_queries: usize,
    queries: Vec<f32>,
    /// The lexical text of each base vector (what the indexes store beside it).
    texts: Option<Vec<String>>,
    /// A key for cache files derived from this dataset.
    cache_key: u64,
    embed: Option<EmbedStats>,
}

impl AnnData {
    fn base_vector(&self, idx: usize) -> &[f32] {
        &self.base[idx * self.dimensions..(idx + 1) * self.dimensions]
    }

    fn query(&self, idx: usize) -> &[f32] {
        &self.queries[idx * self.dimensions..(idx + 1) * self.dimensions]
    }

    fn text(&self, idx: usize) -> String {
        match &self.texts {
            Some(texts) => texts[idx].clone(),
            None => format!("random vector {idx}"),
        }
    }
}

/// Passages of the Python documentation topics and of the Python sources on this machine,
/// embedded by the local model (cached in `dir`), split into indexed vectors and held-out
/// queries.
async fn real_dataset(
    config: &Config,
    bench: &KnowledgeBench,
    dir: &Path,
    topics: &BTreeMap<String, String>,
) -> anyhow::Result<AnnData> {
    let roots = python_roots(bench).await;
    let spinner = spinner("ann: collecting passages");
    let wanted = bench.vectors + bench.queries;
    let passages = collect_passages(topics, &roots, wanted);
    spinner.finish_and_clear();
    if passages.len() <= bench.queries {
        anyhow::bail!(
            "only {} passages were found in the Python topics and {}; more than --queries {} are needed",
            passages.len(),
            roots
                .iter()
                .map(|root| root.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            bench.queries
        );
    }
    let models = &config.models;
    let model_config = models
        .embeddings
        .get(DEFAULT_EMBEDDING_MODEL)
        .with_context(|| format!("there is no [models.embeddings.{DEFAULT_EMBEDDING_MODEL}]"))?;
    let mut hash = Fnv::new();
    hash.write(DEFAULT_EMBEDDING_MODEL.as_bytes());
    hash.write(&(model_config.max_sequence_tokens as u64).to_le_bytes());
    for passage in &passages {
        hash.write(passage.as_bytes());
        hash.write(&[0]);
    }
    let cache_key = hash.finish();
    let cache = dir.join(format!(
        "real-embeddings-{}-{cache_key:016x}.bin",
        passages.len()
    ));
    let (vectors, dimensions, embed) = match read_matrix(&cache, EMBEDDINGS_MAGIC, passages.len()) {
        Some((vectors, dimensions)) => (vectors, dimensions, None),
        None => {
            let path = models.resolve(&model_config.path);
            let options = EmbeddingModelOptions {
                max_queue: 4,
                max_batch: model_config.max_batch,
                max_sequence_tokens: model_config.max_sequence_tokens,
            };
            let load_path = path.clone();
            let model = tokio::task::spawn_blocking(move || {
                EmbeddingModel::load(DEFAULT_EMBEDDING_MODEL, &load_path, options)
            })
            .await
            .context("the model loading thread")?
            .with_context(|| format!("loading the embedding model from {}", path.display()))?;
            let dimensions = model.dimensions();
            let started = Instant::now();
            let vectors = embed_passages(&model, &passages).await?;
            let seconds = started.elapsed().as_secs_f64();
            write_matrix(
                &cache,
                EMBEDDINGS_MAGIC,
                passages.len(),
                dimensions,
                &vectors,
            )?;
            (
                vectors,
                dimensions,
                Some(EmbedStats {
                    passages: passages.len(),
                    seconds,
                }),
            )
        }
    };
    // The held-out queries: a seeded sample of the passages.
    let mut order: Vec<usize> = (0..passages.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(bench.seed));
    let n_queries = bench.queries.min(passages.len() / 2);
    let (query_idx, base_idx) = order.split_at(n_queries);
    let mut base_idx = base_idx.to_vec();
    base_idx.sort_unstable();
    base_idx.truncate(bench.vectors);
    let gather = |indices: &[usize]| {
        let mut out = Vec::with_capacity(indices.len() * dimensions);
        for &idx in indices {
            out.extend_from_slice(&vectors[idx * dimensions..(idx + 1) * dimensions]);
        }
        out
    };
    let base = gather(&base_idx);
    let queries = gather(query_idx);
    let texts: Vec<String> = base_idx.iter().map(|&idx| passages[idx].clone()).collect();
    let mut key = Fnv::new();
    key.write(&cache_key.to_le_bytes());
    key.write(&(base_idx.len() as u64).to_le_bytes());
    key.write(&(n_queries as u64).to_le_bytes());
    key.write(&bench.seed.to_le_bytes());
    Ok(AnnData {
        name: format!("real-{}", base_idx.len()),
        description: format!(
            "{} passages of the Python 3.11 reference topics and of the docstrings and comments under {} embedded by {DEFAULT_EMBEDDING_MODEL}; {} held-out passages as queries",
            base_idx.len(),
            roots
                .iter()
                .map(|root| root.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            n_queries
        ),
        dimensions,
        n_base: base_idx.len(),
        base,
        n_queries,
        queries,
        texts: Some(texts),
        cache_key: key.finish(),
        embed,
    })
}

/// `/usr/lib/python3*` and the standard library (with its site-packages) of the Python
/// interpreter, sorted, without duplicates.
async fn python_roots(bench: &KnowledgeBench) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("python3") {
                roots.push(entry.path());
            }
        }
    }
    let python = python_command(bench);
    let output = tokio::process::Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    if let Ok(output) = output {
        let stdlib = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !stdlib.is_empty() {
            roots.push(PathBuf::from(stdlib));
        }
    }
    let mut roots: Vec<PathBuf> = roots
        .into_iter()
        .filter_map(|root| root.canonicalize().ok())
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

fn python_command(bench: &KnowledgeBench) -> OsString {
    bench
        .python
        .clone()
        .map(PathBuf::into_os_string)
        .or_else(|| std::env::var_os(flywheel_local::setup::PYTHON_ENV))
        .unwrap_or_else(|| OsString::from("python3"))
}

/// Up to `limit` distinct passages: paragraphs of the topics first, then docstring paragraphs
/// and comment blocks of every `.py` file under `roots` (files in path order).
pub fn collect_passages(
    topics: &BTreeMap<String, String>,
    roots: &[PathBuf],
    limit: usize,
) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut passages = Vec::new();
    let mut add = |paragraph: &str, passages: &mut Vec<String>| {
        for passage in split_passage(paragraph) {
            if passages.len() >= limit {
                return;
            }
            if seen.insert(passage.clone()) {
                passages.push(passage);
            }
        }
    };
    for text in topics.values() {
        for paragraph in text.split("\n\n") {
            add(paragraph, &mut passages);
        }
    }
    let mut files = Vec::new();
    for root in roots {
        walk_python_files(root, 0, &mut files);
    }
    files.sort();
    files.dedup();
    for file in files {
        if passages.len() >= limit {
            break;
        }
        let Ok(source) = std::fs::read_to_string(&file) else {
            continue;
        };
        for paragraph in python_text(&source) {
            add(&paragraph, &mut passages);
        }
    }
    passages
}

fn walk_python_files(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        // Symbolic links are not followed: they can loop and they repeat files.
        if kind.is_dir() {
            walk_python_files(&path, depth + 1, found);
        } else if kind.is_file() && path.extension().is_some_and(|ext| ext == "py") {
            found.push(path);
        }
    }
}

/// The prose of a Python source: paragraphs of its triple-quoted strings and its comment blocks
/// (consecutive `#` lines joined).
pub fn python_text(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    // Each step consumes at least one delimiter, so the loop ends.
    while let Some(start) = [rest.find("\"\"\""), rest.find("'''")]
        .into_iter()
        .flatten()
        .min()
    {
        let delimiter = &rest[start..start + 3];
        let body = &rest[start + 3..];
        let Some(end) = body.find(delimiter) else {
            break;
        };
        out.extend(body[..end].split("\n\n").map(str::to_owned));
        rest = &body[end + 3..];
    }
    let mut block: Vec<&str> = Vec::new();
    for line in source.lines().chain(std::iter::once("")) {
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix('#') {
            if !comment.starts_with('!') && !comment.contains("-*-") {
                block.push(comment.trim_start_matches('#').trim());
                continue;
            }
        }
        if !block.is_empty() {
            out.push(block.join(" "));
            block.clear();
        }
    }
    out
}

/// A paragraph as passages: whitespace collapsed; dropped when shorter than
/// [`MIN_PASSAGE_WORDS`] words; cut at sentence ends into pieces of at most
/// [`MAX_PASSAGE_CHARS`] characters (a longer sentence is cut at a word).
fn split_passage(paragraph: &str) -> Vec<String> {
    let words: Vec<&str> = paragraph.split_whitespace().collect();
    if words.len() < MIN_PASSAGE_WORDS {
        return Vec::new();
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    for word in words {
        if !current.is_empty() && current.len() + 1 + word.len() > MAX_PASSAGE_CHARS {
            pieces.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        let sentence_end = word.ends_with(['.', '?', '!']);
        if sentence_end && current.len() > MAX_PASSAGE_CHARS / 2 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
        .into_iter()
        .filter(|piece| piece.split_whitespace().count() >= MIN_PASSAGE_WORDS)
        .collect()
}

/// Embeds the passages in requests of [`EMBED_REQUEST`], two in flight so that the model's
/// thread never waits; the vectors, flat.
async fn embed_passages(model: &EmbeddingModel, passages: &[String]) -> anyhow::Result<Vec<f32>> {
    let bar = progress_items("ann: embedding passages", passages.len(), "passages");
    let mut vectors = Vec::with_capacity(passages.len() * model.dimensions());
    let mut requests = futures::stream::iter(passages.chunks(EMBED_REQUEST))
        .map(|batch| {
            let model = model.clone();
            let batch = batch.to_vec();
            async move { model.embed(batch).await }
        })
        .buffered(2);
    while let Some(embedded) = requests.next().await {
        let embedded = embedded.context("embedding passages")?;
        bar.inc(embedded.vectors.len() as u64);
        for vector in embedded.vectors {
            vectors.extend_from_slice(&vector);
        }
    }
    bar.finish_and_clear();
    Ok(vectors)
}

/// `n` unit vectors of 384 dimensions, uniform on the sphere (normalised Gaussians, seeded),
/// and as many queries from the same distribution.
fn random_dataset(bench: &KnowledgeBench, n: usize) -> anyhow::Result<AnnData> {
    const DIMENSIONS: usize = 384;
    let spinner = spinner(&format!("ann: generating {n} random vectors"));
    let mut rng = StdRng::seed_from_u64(bench.seed ^ 0x005e_ed0f_ba5e);
    let base = random_unit_vectors(&mut rng, n, DIMENSIONS);
    let queries = random_unit_vectors(&mut rng, bench.queries, DIMENSIONS);
    spinner.finish_and_clear();
    let mut key = Fnv::new();
    key.write(b"random-normal-v1");
    key.write(&(n as u64).to_le_bytes());
    key.write(&(bench.queries as u64).to_le_bytes());
    key.write(&bench.seed.to_le_bytes());
    Ok(AnnData {
        name: format!("random-{n}"),
        description: format!(
            "{n} random unit vectors of {DIMENSIONS} dimensions (normalised Gaussians, seed {}); {} random queries",
            bench.seed, bench.queries
        ),
        dimensions: DIMENSIONS,
        n_base: n,
        base,
        n_queries: bench.queries,
        queries,
        texts: None,
        cache_key: key.finish(),
        embed: None,
    })
}

fn random_unit_vectors(rng: &mut StdRng, n: usize, dimensions: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dimensions);
    let mut vector = vec![0.0_f64; dimensions];
    for _ in 0..n {
        // Box–Muller: two uniforms give two independent standard normals.
        for pair in vector.chunks_mut(2) {
            let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = rng.gen();
            let radius = (-2.0 * u1.ln()).sqrt();
            let angle = std::f64::consts::TAU * u2;
            pair[0] = radius * angle.cos();
            if let Some(second) = pair.get_mut(1) {
                *second = radius * angle.sin();
            }
        }
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        out.extend(vector.iter().map(|x| (x / norm) as f32));
    }
    out
}

/// Builds and measures every engine on one dataset.
async fn run_ann(
    bench: &KnowledgeBench,
    dir: &Path,
    data: AnnData,
    server: Option<&PgServer>,
) -> anyhow::Result<AnnReport> {
    let (truth, truth_seconds) = exact_neighbours(&data, dir)?;
    let mut engines = Vec::new();
    engines.push(run_embedded(bench, dir, &data, &truth).await);
    if let Some(server) = server {
        engines.extend(run_pgvector(bench, server, &data, &truth).await);
    }
    Ok(AnnReport {
        dataset: data.name.clone(),
        description: data.description.clone(),
        vectors: data.n_base,
        queries: data.n_queries,
        dimensions: data.dimensions,
        embed: data.embed,
        truth_seconds,
        engines,
    })
}

fn ann_scope(data: &AnnData) -> Scope {
    Scope {
        tenant_id: ANN_TENANT.to_owned(),
        collection_id: data.name.clone(),
    }
}

/// Upserts the dataset in documents of [`BUILD_BATCH`] chunks, one after the other; seconds.
async fn build_index(
    index: &dyn KnowledgeIndex,
    scope: &Scope,
    data: &AnnData,
    label: &str,
) -> anyhow::Result<f64> {
    index
        .create_scope(scope, data.dimensions)
        .await
        .with_context(|| format!("creating the scope of {}", data.name))?;
    let bar = progress_items(label, data.n_base, "vectors");
    let started = Instant::now();
    for (batch_idx, start) in (0..data.n_base).step_by(BUILD_BATCH).enumerate() {
        let end = (start + BUILD_BATCH).min(data.n_base);
        let chunks: Vec<IndexedChunk> = (start..end)
            .map(|idx| IndexedChunk {
                chunk_id: idx as u64,
                text: data.text(idx),
                embedding: data.base_vector(idx).to_vec(),
            })
            .collect();
        index
            .upsert_document(scope, &format!("batch-{batch_idx}"), chunks)
            .await
            .with_context(|| format!("indexing vectors {start}..{end} of {}", data.name))?;
        bar.inc((end - start) as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(seconds)
}

async fn run_embedded(
    bench: &KnowledgeBench,
    dir: &Path,
    data: &AnnData,
    truth: &[Vec<u32>],
) -> EngineRun {
    let mut run = EngineRun {
        engine: ENGINE_EMBEDDED.to_owned(),
        build_seconds: None,
        durable_seconds: None,
        points: Vec::new(),
        error: None,
    };
    let result: anyhow::Result<()> = async {
        let root = tempfile::Builder::new()
            .prefix("ann-embedded-")
            .tempdir_in(dir)
            .context("creating the embedded index directory")?;
        let index = EmbeddedIndex::open(
            root.path().to_owned(),
            EmbeddedSettings {
                connectivity: 16,
                expansion_add: 64,
                // The query's candidate pool is max(expansion_search, num_candidates): 1 lets
                // each sweep step set it alone.
                expansion_search: 1,
                ..EmbeddedSettings::default()
            },
        )
        .context("opening the embedded index")?;
        let scope = ann_scope(data);
        run.build_seconds = Some(
            build_index(
                &index,
                &scope,
                data,
                &format!("ann {}: embedded build", data.name),
            )
            .await?,
        );
        let started = Instant::now();
        index
            .flush()
            .await
            .context("snapshotting the embedded index")?;
        run.durable_seconds = Some(started.elapsed().as_secs_f64());
        let mut searcher = Searcher::Index {
            index: &index,
            scope: &scope,
        };
        run.points = sweep(
            &mut searcher,
            data,
            truth,
            &bench.ef_search,
            &format!("ann {}: embedded queries", data.name),
        )
        .await?;
        drop(index);
        drop(root);
        Ok(())
    }
    .await;
    if let Err(err) = result {
        run.error = Some(format!("{err:#}"));
    }
    run
}

/// pgvector through the adapter and as a raw statement, on a fresh database.
async fn run_pgvector(
    bench: &KnowledgeBench,
    server: &PgServer,
    data: &AnnData,
    truth: &[Vec<u32>],
) -> Vec<EngineRun> {
    let mut adapter = EngineRun {
        engine: ENGINE_PG_ADAPTER.to_owned(),
        build_seconds: None,
        durable_seconds: None,
        points: Vec::new(),
        error: None,
    };
    let mut raw = EngineRun {
        engine: ENGINE_PG_RAW.to_owned(),
        build_seconds: None,
        durable_seconds: None,
        points: Vec::new(),
        error: None,
    };
    let database = format!(
        "{ANN_DATABASE_PREFIX}_{}",
        data.name
            .replace(|ch: char| !ch.is_ascii_alphanumeric(), "_")
    );
    let result: anyhow::Result<()> = async {
        let url = server.fresh_database(&database).await?;
        let index = PgVectorIndex::connect(
            &url,
            PgVectorSettings {
                m: 16,
                ef_construction: 64,
                max_connections: 2,
                ..PgVectorSettings::default()
            },
        )
        .await
        .context("connecting the pgvector index")?;
        let scope = ann_scope(data);
        adapter.build_seconds = Some(
            build_index(
                &index,
                &scope,
                data,
                &format!("ann {}: pgvector build", data.name),
            )
            .await?,
        );
        let table = format!("{PG_TABLE_PREFIX}{}", data.dimensions);
        let mut connection = PgConnection::connect_with(&pg_options(&url)?)
            .await
            .context("connecting to pgvector")?;
        // Fresh statistics, as autovacuum would gather them, so that the planner knows the
        // table's size.
        connection
            .execute(format!("ANALYZE {table}").as_str())
            .await
            .context("analysing the table")?;
        let mut searcher = Searcher::Index {
            index: &index,
            scope: &scope,
        };
        let swept = sweep(
            &mut searcher,
            data,
            truth,
            &bench.ef_search,
            &format!("ann {}: pgvector queries", data.name),
        )
        .await;
        match swept {
            Ok(points) => adapter.points = points,
            Err(err) => adapter.error = Some(format!("{err:#}")),
        }
        index.close().await;
        let literals = (0..data.n_queries)
            .map(|idx| vector_literal(data.query(idx)))
            .collect();
        let mut searcher = Searcher::RawSql {
            connection,
            sql: format!(
                "SELECT chunk_id FROM {table} ORDER BY embedding <=> $1::vector LIMIT {TOP_K}"
            ),
            literals,
        };
        let swept = sweep(
            &mut searcher,
            data,
            truth,
            &bench.ef_search,
            &format!("ann {}: pgvector raw queries", data.name),
        )
        .await;
        if let Searcher::RawSql { connection, .. } = searcher {
            let _ = connection.close().await;
        }
        match swept {
            Ok(points) => raw.points = points,
            Err(err) => raw.error = Some(format!("{err:#}")),
        }
        Ok(())
    }
    .await;
    server.drop_database(&database).await;
    if let Err(err) = result {
        let message = format!("{err:#}");
        adapter.error.get_or_insert_with(|| message.clone());
        raw.error.get_or_insert(message);
    }
    vec![adapter, raw]
}

/// How a sweep asks one engine.
enum Searcher<'a> {
    Index {
        index: &'a dyn KnowledgeIndex,
        scope: &'a Scope,
    },
    RawSql {
        connection: PgConnection,
        sql: String,
        literals: Vec<String>,
    },
}

impl Searcher<'_> {
    async fn set_ef(&mut self, ef: usize) -> anyhow::Result<()> {
        if let Searcher::RawSql { connection, .. } = self {
            connection
                .execute(format!("SET hnsw.ef_search = {ef}").as_str())
                .await
                .context("setting hnsw.ef_search")?;
        }
        Ok(())
    }

    async fn search(
        &mut self,
        data: &AnnData,
        query_idx: usize,
        ef: usize,
    ) -> anyhow::Result<Vec<u64>> {
        match self {
            Searcher::Index { index, scope } => {
                let hits = index
                    .vector_search(
                        scope,
                        VectorQuery {
                            embedding: data.query(query_idx),
                            top_k: TOP_K,
                            num_candidates: ef,
                        },
                        &Restriction::default(),
                    )
                    .await
                    .context("searching")?;
                Ok(hits.into_iter().map(|hit| hit.chunk_id).collect())
            }
            Searcher::RawSql {
                connection,
                sql,
                literals,
            } => {
                let ids: Vec<i64> = sqlx::query_scalar(sql.as_str())
                    .bind(literals[query_idx].as_str())
                    .fetch_all(&mut *connection)
                    .await
                    .context("searching")?;
                Ok(ids.into_iter().map(|id| id as u64).collect())
            }
        }
    }
}

/// Warms up, then for each `ef`: every query once, sequentially, timed one by one.
async fn sweep(
    searcher: &mut Searcher<'_>,
    data: &AnnData,
    truth: &[Vec<u32>],
    efs: &[usize],
    label: &str,
) -> anyhow::Result<Vec<SweepPoint>> {
    let n_queries = data.n_queries;
    let bar = progress_items(
        label,
        (efs.len() * n_queries) + WARM_UP_QUERIES.min(n_queries),
        "queries",
    );
    if let Some(&largest) = efs.iter().max() {
        searcher.set_ef(largest).await?;
        for query_idx in 0..WARM_UP_QUERIES.min(n_queries) {
            searcher.search(data, query_idx, largest).await?;
            bar.inc(1);
        }
    }
    let mut points = Vec::with_capacity(efs.len());
    for &ef in efs {
        searcher.set_ef(ef).await?;
        let mut latencies = Vec::with_capacity(n_queries);
        let mut results = Vec::with_capacity(n_queries);
        let started = Instant::now();
        for query_idx in 0..n_queries {
            let query_started = Instant::now();
            let ids = searcher.search(data, query_idx, ef).await?;
            latencies.push(query_started.elapsed());
            results.push(ids);
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        let found: usize = results
            .iter()
            .zip(truth)
            .map(|(ids, exact)| {
                ids.iter()
                    .take(TOP_K)
                    .filter(|id| exact.contains(&(**id as u32)))
                    .count()
            })
            .sum();
        let expected: usize = truth.iter().map(|exact| exact.len().min(TOP_K)).sum();
        latencies.sort_unstable();
        points.push(SweepPoint {
            ef,
            recall: found as f64 / expected.max(1) as f64,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            mean_ms: latencies.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0
                / latencies.len().max(1) as f64,
            qps: n_queries as f64 / seconds.max(1e-9),
        });
    }
    bar.finish_and_clear();
    Ok(points)
}

fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// The exact top-10 of every query by brute force (cached in `dir`); and the seconds it took
/// when it was computed.
fn exact_neighbours(data: &AnnData, dir: &Path) -> anyhow::Result<(Vec<Vec<u32>>, Option<f64>)> {
    let cache = dir.join(format!("truth-{}-{:016x}.bin", data.name, data.cache_key));
    if let Some((flat, k)) = read_matrix(&cache, TRUTH_MAGIC, data.n_queries) {
        if k == TOP_K {
            let truth = flat
                .chunks(TOP_K)
                .map(|row| row.iter().map(|id| id.to_bits()).collect())
                .collect();
            return Ok((truth, None));
        }
    }
    let bar = progress_items(
        &format!("ann {}: exact neighbours", data.name),
        data.n_queries,
        "queries",
    );
    let started = Instant::now();
    let truth = brute_force_top_k(&data.base, &data.queries, data.dimensions, TOP_K, &bar);
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // The ids are stored as the bits of f32s so that one file format serves both caches.
    let flat: Vec<f32> = truth
        .iter()
        .flat_map(|row| {
            (0..TOP_K).map(move |idx| f32::from_bits(row.get(idx).copied().unwrap_or(u32::MAX)))
        })
        .collect();
    write_matrix(&cache, TRUTH_MAGIC, data.n_queries, TOP_K, &flat)?;
    Ok((truth, Some(seconds)))
}

/// For every query (rows of `queries`), the indices of the `k` rows of `base` with the largest
/// dot product, best first. Queries are split over the cores; each thread compares a block of
/// queries with every base vector while the block stays in cache.
pub fn brute_force_top_k(
    base: &[f32],
    queries: &[f32],
    dimensions: usize,
    k: usize,
    bar: &ProgressBar,
) -> Vec<Vec<u32>> {
    const BLOCK: usize = 32;
    let n_queries = queries.len() / dimensions.max(1);
    let n_threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(n_queries.max(1));
    let per_thread = n_queries.div_ceil(n_threads.max(1)).max(1);
    let mut results: Vec<Vec<Vec<u32>>> = Vec::new();
    std::thread::scope(|threads| {
        let handles: Vec<_> = queries
            .chunks(per_thread * dimensions)
            .map(|thread_queries| {
                threads.spawn(move || {
                    let mut out = Vec::with_capacity(thread_queries.len() / dimensions);
                    for block in thread_queries.chunks(BLOCK * dimensions) {
                        let block: Vec<&[f32]> = block.chunks(dimensions).collect();
                        let mut best: Vec<Vec<(f32, u32)>> =
                            vec![Vec::with_capacity(k + 1); block.len()];
                        for (base_idx, vector) in base.chunks_exact(dimensions).enumerate() {
                            for (query, best) in block.iter().zip(best.iter_mut()) {
                                let score = dot(query, vector);
                                if best.len() < k
                                    || best.last().is_some_and(|worst| score > worst.0)
                                {
                                    let position =
                                        best.partition_point(|(other, _)| *other >= score);
                                    best.insert(position, (score, base_idx as u32));
                                    best.truncate(k);
                                }
                            }
                        }
                        bar.inc(block.len() as u64);
                        out.extend(
                            best.into_iter()
                                .map(|row| row.into_iter().map(|(_, idx)| idx).collect()),
                        );
                    }
                    out
                })
            })
            .collect();
        for handle in handles {
            // A thread that panicked has no result; its queries then count as all misses.
            results.push(handle.join().unwrap_or_default());
        }
    });
    results.into_iter().flatten().collect()
}

/// A dot product the compiler vectorises (eight independent partial sums).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0_f32; LANES];
    let a_chunks = a.chunks_exact(LANES);
    let b_chunks = b.chunks_exact(LANES);
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// pgvector's text form of a vector.
fn vector_literal(values: &[f32]) -> String {
    let mut literal = String::with_capacity(values.len() * 12 + 2);
    literal.push('[');
    for (idx, value) in values.iter().enumerate() {
        if idx > 0 {
            literal.push(',');
        }
        literal.push_str(&value.to_string());
    }
    literal.push(']');
    literal
}

/// A cache file: magic, rows and columns (u64, little-endian), then `rows × columns` f32s.
fn write_matrix(
    path: &Path,
    magic: &[u8; 8],
    rows: usize,
    columns: usize,
    values: &[f32],
) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        file.write_all(magic)?;
        file.write_all(&(rows as u64).to_le_bytes())?;
        file.write_all(&(columns as u64).to_le_bytes())?;
        for value in values {
            file.write_all(&value.to_le_bytes())?;
        }
        file.flush()?;
        file.get_ref().sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// The matrix in `path` and its column count, when the file exists, has the magic and `rows`
/// rows, and is complete.
fn read_matrix(path: &Path, magic: &[u8; 8], rows: usize) -> Option<(Vec<f32>, usize)> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 24];
    file.read_exact(&mut header).ok()?;
    if &header[..8] != magic {
        return None;
    }
    let stored_rows = u64::from_le_bytes(header[8..16].try_into().ok()?) as usize;
    let columns = u64::from_le_bytes(header[16..24].try_into().ok()?) as usize;
    if stored_rows != rows || columns == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    if bytes.len() != rows.checked_mul(columns)?.checked_mul(4)? {
        return None;
    }
    let values = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    Some((values, columns))
}

/// FNV-1a, 64 bits: a stable key for cache file names (not a security measure).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// ----- the pgvector server -----

/// A pgvector server: the one at `--pgvector-url`, or one the bench started.
struct PgServer {
    url: String,
    info: PgInfo,
    /// The interpreter, script and data directory of a server the bench started.
    started: Option<(OsString, PathBuf, PathBuf)>,
    _scratch: Option<tempfile::TempDir>,
}

impl PgServer {
    async fn start(bench: &KnowledgeBench, dir: &Path) -> anyhow::Result<PgServer> {
        if let Some(url) = &bench.pgvector_url {
            let info = pg_info(url, false).await?;
            return Ok(PgServer {
                url: url.clone(),
                info,
                started: None,
                _scratch: None,
            });
        }
        let scratch = tempfile::tempdir().context("creating a temporary directory")?;
        let script = scratch.path().join("pgvector_server.py");
        write_file(&script, PGVECTOR_SCRIPT.as_bytes())?;
        let python = python_command(bench);
        let data_dir = dir.join("pgvector-data");
        let spinner = spinner("starting a pgvector server (pgserver)");
        let mut url = run_server_script(&python, &script, &data_dir, false).await?;
        // The index should sit in PostgreSQL's buffer cache, as the embedded index sits in
        // memory: a quarter of the RAM (at most 8 GiB), the usual advice; and checkpoints far
        // enough apart that building the index is not a series of them.
        let wanted = shared_buffers_target();
        let current = pg_setting(&url, "shared_buffers").await?;
        if current != wanted {
            let mut connection = PgConnection::connect_with(&pg_options(&url)?)
                .await
                .context("connecting to the pgvector server")?;
            for statement in [
                format!("ALTER SYSTEM SET shared_buffers = '{wanted}'"),
                "ALTER SYSTEM SET max_wal_size = '8GB'".to_owned(),
            ] {
                connection
                    .execute(statement.as_str())
                    .await
                    .with_context(|| format!("configuring the pgvector server: {statement}"))?;
            }
            let _ = connection.close().await;
            run_server_script(&python, &script, &data_dir, true).await?;
            url = run_server_script(&python, &script, &data_dir, false).await?;
        }
        spinner.finish_and_clear();
        let info = pg_info(&url, true).await?;
        Ok(PgServer {
            url,
            info,
            started: Some((python, script, data_dir)),
            _scratch: Some(scratch),
        })
    }

    /// Drops and creates `database`; its URL.
    async fn fresh_database(&self, database: &str) -> anyhow::Result<String> {
        let mut connection = PgConnection::connect_with(&pg_options(&self.url)?)
            .await
            .context("connecting to the pgvector server")?;
        connection
            .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
            .await
            .with_context(|| format!("dropping database {database}"))?;
        connection
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .with_context(|| format!("creating database {database}"))?;
        let _ = connection.close().await;
        Ok(crate::bench::replace_database(&self.url, database))
    }

    async fn drop_database(&self, database: &str) {
        let result: anyhow::Result<()> = async {
            let mut connection = PgConnection::connect_with(&pg_options(&self.url)?).await?;
            connection
                .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
                .await?;
            let _ = connection.close().await;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            eprintln!("warning: could not drop database {database}: {err:#}");
        }
    }

    async fn stop(&self) {
        if let Some((python, script, data_dir)) = &self.started {
            if let Err(err) = run_server_script(python, script, data_dir, true).await {
                eprintln!("warning: could not stop the pgvector server: {err:#}");
            }
        }
    }
}

/// Runs `pgvector_server.py` (to start: its URL; to stop: nothing).
async fn run_server_script(
    python: &OsString,
    script: &Path,
    data_dir: &Path,
    stop: bool,
) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--timeout")
        .arg("120");
    if stop {
        command.arg("--stop");
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} (install Python 3 and `pip install pgserver`, pass --python, or pass --pgvector-url / --skip-pgvector)",
                python.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        anyhow::bail!(
            "pgvector_server.py failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

fn shared_buffers_target() -> String {
    let kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(8 * 1024 * 1024);
    let gib = (kib / 4 / 1024 / 1024).clamp(1, 8);
    format!("{gib}GB")
}

fn pg_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).context("parsing the pgvector URL")
}

async fn pg_setting(url: &str, name: &str) -> anyhow::Result<String> {
    let mut connection = PgConnection::connect_with(&pg_options(url)?)
        .await
        .context("connecting to the pgvector server")?;
    let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(&mut connection)
        .await
        .with_context(|| format!("reading {name}"))?;
    let _ = connection.close().await;
    Ok(value)
}

async fn pg_info(url: &str, started_by_bench: bool) -> anyhow::Result<PgInfo> {
    let mut connection = PgConnection::connect_with(&pg_options(url)?)
        .await
        .context("connecting to the pgvector server")?;
    let postgres_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut connection)
        .await?;
    let shared_buffers: String = sqlx::query_scalar("SHOW shared_buffers")
        .fetch_one(&mut connection)
        .await?;
    let pgvector_version: Option<String> = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
    )
    .fetch_optional(&mut connection)
    .await?;
    let _ = connection.close().await;
    let options = pg_options(url)?;
    let server = match options.get_socket() {
        Some(socket) => format!("unix socket in {}", socket.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    Ok(PgInfo {
        server,
        postgres_version,
        pgvector_version: pgvector_version
            .context("the server has no vector extension (pgvector)")?,
        shared_buffers,
        started_by_bench,
    })
}

// ----- output -----

fn progress_items(label: &str, total: usize, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix:>40}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} {{elapsed}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
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

/// The first point (by `ef`) whose recall reaches `target`.
pub fn first_reaching(points: &[SweepPoint], target: f64) -> Option<SweepPoint> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|point| point.ef);
    sorted.into_iter().find(|point| point.recall >= target)
}

/// Queries per second at exactly `target` recall, interpolated linearly (in recall, on the
/// logarithm of QPS) between the last point below and the first point at or above it.
pub fn qps_at_recall(points: &[SweepPoint], target: f64) -> Option<f64> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|point| point.ef);
    let above_idx = sorted.iter().position(|point| point.recall >= target)?;
    let above = sorted[above_idx];
    let Some(below) = above_idx.checked_sub(1).map(|idx| sorted[idx]) else {
        return Some(above.qps);
    };
    if above.recall <= below.recall || below.recall >= target {
        return Some(above.qps);
    }
    let t = (target - below.recall) / (above.recall - below.recall);
    Some((below.qps.ln() + t * (above.qps.ln() - below.qps.ln())).exp())
}

/// The report as Markdown.
pub fn markdown(report: &KnowledgeReport, bench: &KnowledgeBench) -> String {
    let machine = &report.machine;
    let mut out = format!(
        "Machine: {} ({} cores), {} RAM, {}; {}; {} build; other processes used {} of the CPU during the run; the run took {:.1} min\n",
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.os,
        machine.date,
        if machine.release_build { "release" } else { "debug (not representative)" },
        machine
            .others_cpu_share
            .map_or("an unknown share".to_owned(), |share| format!("{:.1} %", share * 100.0)),
        report.seconds / 60.0
    );
    out.push_str(&format!(
        "Parameters: --vectors {} --random {} --queries {} --ef-search {} --pgvector-max-vectors {} --ingest-runs {} --seed {}; HNSW M 16, ef_construction 64 in both engines\n",
        bench.vectors,
        bench.random,
        bench.queries,
        bench
            .ef_search
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        bench.pgvector_max_vectors,
        bench.ingest_runs,
        bench.seed
    ));
    if let Some(pg) = &report.pgvector {
        out.push_str(&format!(
            "pgvector {} on PostgreSQL {} ({}; shared_buffers {}{})\n",
            pg.pgvector_version,
            pg.postgres_version,
            pg.server,
            pg.shared_buffers,
            if pg.started_by_bench {
                ", started by the bench"
            } else {
                ""
            }
        ));
    }
    for eval in &report.eval {
        out.push_str(&eval_markdown(eval));
    }
    if let Some(ingest) = &report.ingest {
        out.push_str(&ingest_markdown(ingest));
    }
    for ann in &report.ann {
        out.push_str(&ann_markdown(ann));
    }
    out.push_str(&targets_markdown(report));
    for note in &report.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out
}

fn eval_markdown(eval: &EvalReport) -> String {
    let n_keyword = eval
        .questions
        .iter()
        .filter(|outcome| outcome.question.kind == QuestionKind::Keyword)
        .count();
    let mut out = format!(
        "\nRetrieval evaluation, {} backend: {} topics ({} chunks, ingested in {:.1} s), {} questions ({} keyword, {} paraphrase), top_k {TOP_K}, metrics over deduplicated documents\n\n\
         | mode | recall@5 | MRR | nDCG@10 | recall@5 keyword | recall@5 paraphrase | MRR keyword | MRR paraphrase | median search ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        eval.backend,
        eval.documents,
        eval.chunks,
        eval.ingest_seconds,
        eval.questions.len(),
        n_keyword,
        eval.questions.len() - n_keyword
    );
    for mode in &eval.modes {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |\n",
            mode.mode.as_str(),
            mode.all.recall_at_5,
            mode.all.mrr,
            mode.all.ndcg_at_10,
            mode.keyword.recall_at_5,
            mode.paraphrase.recall_at_5,
            mode.keyword.mrr,
            mode.paraphrase.mrr,
            mode.median_ms
        ));
    }
    let (mut hybrid_worse, mut hybrid_better) = (0, 0);
    for outcome in &eval.questions {
        let [vector, lexical, hybrid] = [0, 1, 2].map(|idx| outcome.rankings[idx].1.recall_at_5);
        if hybrid < vector.max(lexical) {
            hybrid_worse += 1;
        }
        if hybrid > vector.max(lexical) {
            hybrid_better += 1;
        }
    }
    out.push_str(&format!(
        "\nPer question, hybrid's recall@5 is below the better single mode on {hybrid_worse} and above both on {hybrid_better} of {} questions.\n",
        eval.questions.len()
    ));
    out
}

fn ingest_markdown(ingest: &IngestReport) -> String {
    let mut out = String::from(
        "\nIngestion through the service (SQLite store, embedded index, local embeddings), file by file; medians of the runs\n\n\
         | format | files | pages | chunks | total s | pages/s | chunks/s | embedding s (gateway alone) | rest s | embedding share | pages/s per run |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for format in &ingest.formats {
        let totals: Vec<f64> = format.runs.iter().map(|run| run.seconds).collect();
        let embeds: Vec<f64> = format.runs.iter().map(|run| run.embed_seconds).collect();
        let total = median(&totals);
        let embed = median(&embeds);
        out.push_str(&format!(
            "| {} | {} | {:.0}{} | {} | {:.1} | **{:.1}** | {:.0} | {:.1} | {:.1} | {:.0} % | {} |\n",
            format.format,
            format.files,
            format.pages,
            if format.format == "markdown" { " (3,000-char pages)" } else { "" },
            format.chunks,
            total,
            format.pages / total.max(1e-9),
            format.chunks as f64 / total.max(1e-9),
            embed,
            (total - embed).max(0.0),
            embed / total.max(1e-9) * 100.0,
            totals
                .iter()
                .map(|seconds| format!("{:.1}", format.pages / seconds.max(1e-9)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

fn ann_markdown(ann: &AnnReport) -> String {
    let mut out = format!(
        "\nANN index, {}: {} ({} dimensions, top {TOP_K}, single client, sequential queries)\n",
        ann.dataset, ann.description, ann.dimensions
    );
    if let Some(embed) = ann.embed {
        out.push_str(&format!(
            "Embedding the corpus: {} passages in {:.0} s ({:.0} passages/s; cached for later runs)\n",
            embed.passages,
            embed.seconds,
            embed.passages as f64 / embed.seconds.max(1e-9)
        ));
    }
    if let Some(seconds) = ann.truth_seconds {
        out.push_str(&format!(
            "Exact neighbours by brute force: {seconds:.1} s\n"
        ));
    }
    out.push_str("\n| engine | build s | vectors/s | durable s |\n|---|---:|---:|---:|\n");
    for engine in &ann.engines {
        if let Some(build) = engine.build_seconds {
            out.push_str(&format!(
                "| {} | {:.1} | {:.0} | {} |\n",
                engine.engine,
                build,
                ann.vectors as f64 / build.max(1e-9),
                engine
                    .durable_seconds
                    .map_or("at commit".to_owned(), |seconds| format!("{seconds:.1}"))
            ));
        }
    }
    out.push_str(
        "\n| engine | ef_search | recall@10 | p50 ms | p99 ms | mean ms | queries/s |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for engine in &ann.engines {
        if let Some(error) = &engine.error {
            out.push_str(&format!(
                "| {} | failed: {error} | | | | | |\n",
                engine.engine
            ));
        }
        for point in &engine.points {
            out.push_str(&format!(
                "| {} | {} | {:.4} | {:.3} | {:.3} | {:.3} | {:.0} |\n",
                engine.engine,
                point.ef,
                point.recall,
                point.p50_ms,
                point.p99_ms,
                point.mean_ms,
                point.qps
            ));
        }
    }
    out.push_str(&format!("\nAt recall@10 ≥ {RECALL_AT_10_TARGET}:\n\n"));
    let embedded = ann
        .engines
        .iter()
        .find(|engine| engine.engine == ENGINE_EMBEDDED);
    for engine in &ann.engines {
        match first_reaching(&engine.points, RECALL_AT_10_TARGET) {
            Some(point) => out.push_str(&format!(
                "- {}: first at ef_search {} (recall {:.4}, p99 {:.3} ms, {:.0} queries/s); {} queries/s interpolated at exactly {RECALL_AT_10_TARGET}\n",
                engine.engine,
                point.ef,
                point.recall,
                point.p99_ms,
                point.qps,
                qps_at_recall(&engine.points, RECALL_AT_10_TARGET)
                    .map_or("?".to_owned(), |qps| format!("{qps:.0}"))
            )),
            None => out.push_str(&format!(
                "- {}: not reached (best {:.4})\n",
                engine.engine,
                engine.points.iter().map(|point| point.recall).fold(0.0, f64::max)
            )),
        }
    }
    if let Some(embedded) = embedded {
        for peer in ann
            .engines
            .iter()
            .filter(|engine| engine.engine != ENGINE_EMBEDDED)
        {
            let ratio_first = first_reaching(&embedded.points, RECALL_AT_10_TARGET)
                .zip(first_reaching(&peer.points, RECALL_AT_10_TARGET))
                .map(|(ours, theirs)| ours.qps / theirs.qps);
            let ratio_interpolated = qps_at_recall(&embedded.points, RECALL_AT_10_TARGET)
                .zip(qps_at_recall(&peer.points, RECALL_AT_10_TARGET))
                .map(|(ours, theirs)| ours / theirs);
            if let (Some(first), Some(interpolated)) = (ratio_first, ratio_interpolated) {
                out.push_str(&format!(
                    "- embedded / {}: **{first:.2}×** the queries/s at each one's first ef_search reaching {RECALL_AT_10_TARGET}, {interpolated:.2}× interpolated at exactly {RECALL_AT_10_TARGET}\n",
                    peer.engine
                ));
            }
        }
    }
    out
}

fn targets_markdown(report: &KnowledgeReport) -> String {
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let mut out = String::from("\nAgainst the targets:\n\n");
    for eval in &report.eval {
        let recall = |mode: SearchMode| {
            eval.modes
                .iter()
                .find(|report| report.mode == mode)
                .map_or(f64::NAN, |report| report.all.recall_at_5)
        };
        let (vector, lexical, hybrid) = (
            recall(SearchMode::Vector),
            recall(SearchMode::Lexical),
            recall(SearchMode::Hybrid),
        );
        out.push_str(&format!(
            "- {}: hybrid recall@5 {hybrid:.3} ≥ vector {vector:.3} and ≥ lexical {lexical:.3}: **{}**\n",
            eval.backend,
            met(hybrid >= vector && hybrid >= lexical)
        ));
    }
    for ann in &report.ann {
        let Some(embedded) = ann
            .engines
            .iter()
            .find(|engine| engine.engine == ENGINE_EMBEDDED)
        else {
            continue;
        };
        let best = embedded
            .points
            .iter()
            .map(|point| point.recall)
            .fold(0.0, f64::max);
        let first = first_reaching(&embedded.points, RECALL_AT_10_TARGET);
        out.push_str(&format!(
            "- {}: recall@10 ≥ {RECALL_AT_10_TARGET} (embedded, best {best:.4}{}): **{}**",
            ann.dataset,
            first.map_or(String::new(), |point| format!(
                ", first at ef_search {}",
                point.ef
            )),
            met(first.is_some())
        ));
        if ann.dataset.starts_with("real") {
            if let Some(point) = first {
                out.push_str(&format!(
                    "; p99 {:.3} ms ≤ {P99_TARGET_MS} ms at {} vectors: **{}**",
                    point.p99_ms,
                    ann.vectors,
                    met(point.p99_ms <= P99_TARGET_MS)
                ));
            }
        }
        for peer in ann
            .engines
            .iter()
            .filter(|engine| engine.engine != ENGINE_EMBEDDED)
        {
            if let Some(ratio) = qps_at_recall(&embedded.points, RECALL_AT_10_TARGET)
                .zip(qps_at_recall(&peer.points, RECALL_AT_10_TARGET))
                .map(|(ours, theirs)| ours / theirs)
            {
                out.push_str(&format!(
                    "; {ratio:.2}× {}'s queries/s at recall {RECALL_AT_10_TARGET}: **{}**",
                    peer.engine,
                    met(ratio >= QPS_RATIO_TARGET)
                ));
            }
        }
        out.push('\n');
    }
    if let Some(ingest) = &report.ingest {
        for format in &ingest.formats {
            let total = median(
                &format
                    .runs
                    .iter()
                    .map(|run| run.seconds)
                    .collect::<Vec<_>>(),
            );
            out.push_str(&format!(
                "- ingestion, {}: {:.1} pages/s (no numeric target)\n",
                format.format,
                format.pages / total.max(1e-9)
            ));
        }
    }
    out
}

/// The report as JSON (written to `--dir`).
pub fn json(report: &KnowledgeReport, bench: &KnowledgeBench) -> Value {
    let machine = &report.machine;
    let summary = |summary: &Summary| {
        json!({
            "queries": summary.queries,
            "recall_at_5": summary.recall_at_5,
            "recall_at_10": summary.recall_at_10,
            "mrr": summary.mrr,
            "ndcg_at_10": summary.ndcg_at_10,
        })
    };
    let point = |point: &SweepPoint| {
        json!({
            "ef_search": point.ef,
            "recall_at_10": point.recall,
            "p50_ms": point.p50_ms,
            "p99_ms": point.p99_ms,
            "mean_ms": point.mean_ms,
            "qps": point.qps,
        })
    };
    json!({
        "bench": "knowledge",
        "machine": {
            "cpu": machine.cpu,
            "cores": machine.cores,
            "memory": machine.memory,
            "os": machine.os,
            "date": machine.date,
            "release_build": machine.release_build,
            "others_cpu_share": machine.others_cpu_share,
        },
        "parameters": {
            "vectors": bench.vectors,
            "random": bench.random,
            "queries": bench.queries,
            "ef_search": bench.ef_search,
            "pgvector_max_vectors": bench.pgvector_max_vectors,
            "ingest_runs": bench.ingest_runs,
            "seed": bench.seed,
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "top_k": TOP_K,
        },
        "seconds": report.seconds,
        "pgvector": report.pgvector.as_ref().map(|pg| json!({
            "server": pg.server,
            "postgres_version": pg.postgres_version,
            "pgvector_version": pg.pgvector_version,
            "shared_buffers": pg.shared_buffers,
            "started_by_bench": pg.started_by_bench,
        })),
        "eval": report.eval.iter().map(|eval| json!({
            "backend": eval.backend,
            "documents": eval.documents,
            "chunks": eval.chunks,
            "ingest_seconds": eval.ingest_seconds,
            "modes": eval.modes.iter().map(|mode| json!({
                "mode": mode.mode.as_str(),
                "all": summary(&mode.all),
                "keyword": summary(&mode.keyword),
                "paraphrase": summary(&mode.paraphrase),
                "median_search_ms": mode.median_ms,
            })).collect::<Vec<_>>(),
            "questions": eval.questions.iter().map(|outcome| json!({
                "kind": match outcome.question.kind {
                    QuestionKind::Keyword => "keyword",
                    QuestionKind::Paraphrase => "paraphrase",
                },
                "question": outcome.question.text,
                "relevant": outcome.question.relevant,
                "rankings": MODES.iter().zip(&outcome.rankings).map(|(mode, (ranking, metrics))| json!({
                    "mode": mode.as_str(),
                    "documents": ranking.iter().take(TOP_K).collect::<Vec<_>>(),
                    "recall_at_5": metrics.recall_at_5,
                    "reciprocal_rank": metrics.reciprocal_rank,
                    "ndcg_at_10": metrics.ndcg_at_10,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ingest": report.ingest.as_ref().map(|ingest| ingest.formats.iter().map(|format| json!({
            "format": format.format,
            "files": format.files,
            "pages": format.pages,
            "chars": format.chars,
            "chunks": format.chunks,
            "runs": format.runs.iter().map(|run| json!({
                "seconds": run.seconds,
                "embed_seconds": run.embed_seconds,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()),
        "ann": report.ann.iter().map(|ann| json!({
            "dataset": ann.dataset,
            "description": ann.description,
            "vectors": ann.vectors,
            "queries": ann.queries,
            "dimensions": ann.dimensions,
            "embed": ann.embed.map(|embed| json!({"passages": embed.passages, "seconds": embed.seconds})),
            "truth_seconds": ann.truth_seconds,
            "engines": ann.engines.iter().map(|engine| json!({
                "engine": engine.engine,
                "build_seconds": engine.build_seconds,
                "durable_seconds": engine.durable_seconds,
                "error": engine.error,
                "points": engine.points.iter().map(point).collect::<Vec<_>>(),
                "qps_at_recall_target": qps_at_recall(&engine.points, RECALL_AT_10_TARGET),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "notes": report.notes,
    })
}

/// Writes the JSON and Markdown reports into `--dir`; the JSON file's path.
pub fn write_results(
    report: &KnowledgeReport,
    bench: &KnowledgeBench,
    markdown_text: &str,
) -> anyhow::Result<PathBuf> {
    let path = bench.dir.join("knowledge-bench-results.json");
    let text =
        serde_json::to_string_pretty(&json(report, bench)).context("serialising the results")?;
    write_file(&path, text.as_bytes())?;
    write_file(
        &bench.dir.join("knowledge-bench-results.md"),
        markdown_text.as_bytes(),
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_questions_parse_and_name_existing_topics() {
        let topics = load_topics().unwrap();
        assert!(topics.len() >= 79, "{}", topics.len());
        let questions = parse_questions(QUESTIONS, &topics).unwrap();
        assert!(questions.len() >= 40, "{}", questions.len());
        let keyword = questions
            .iter()
            .filter(|question| question.kind == QuestionKind::Keyword)
            .count();
        assert!(keyword >= 10 && questions.len() - keyword >= 10);
        let distinct: HashSet<&str> = questions.iter().map(|q| q.text.as_str()).collect();
        assert_eq!(distinct.len(), questions.len(), "a question is repeated");
    }

    #[test]
    fn bad_question_lines_are_refused_with_their_line() {
        let topics: BTreeMap<String, String> =
            [("try".to_owned(), "The try statement".to_owned())].into();
        let ok = parse_questions("# header\n\nkeyword | q | try\n", &topics).unwrap();
        assert_eq!(
            ok,
            vec![Question {
                kind: QuestionKind::Keyword,
                text: "q".to_owned(),
                relevant: vec!["try".to_owned()],
            }]
        );
        for bad in [
            "keyword | q",
            "other | q | try",
            "keyword | q | nope",
            "keyword |  | try",
        ] {
            let err = parse_questions(bad, &topics).unwrap_err().to_string();
            assert!(err.contains("line 1"), "{bad}: {err}");
        }
    }

    #[test]
    fn underlined_titles_become_headings_by_order_of_appearance() {
        let text = "The \"try\" statement\n*******************\n\nIntro.\n\n\
                    except clause\n=============\n\nBody.\n\n   # a comment in an example\n   x = 1\n\n\
                    finally clause\n==============\n\nEnd.\n";
        let (title, markdown) = topic_markdown(text);
        assert_eq!(title, "The \"try\" statement");
        assert!(
            markdown.starts_with("# The \"try\" statement\n\nIntro."),
            "{markdown}"
        );
        assert!(markdown.contains("\n## except clause\n"), "{markdown}");
        assert!(markdown.contains("\n## finally clause\n"), "{markdown}");
        assert!(
            markdown.contains("\n    # a comment in an example\n"),
            "{markdown}"
        );
        assert!(!markdown.contains("***"), "{markdown}");
        // A rule much longer than the line above it is not an underline.
        let (_, markdown) = topic_markdown("Source: pdb.py\n==============================\n");
        assert!(markdown.contains("====="), "{markdown}");
    }

    #[test]
    fn the_generated_pdfs_extract_page_by_page() {
        let topics: BTreeMap<String, String> = [
            (
                "a".to_owned(),
                "Alpha (first) topic \\ with “quotes”.\n\n".repeat(60),
            ),
            ("b".to_owned(), "Beta topic text.\n".repeat(10)),
        ]
        .into();
        let pdfs = topic_pdfs(&topics, 2);
        assert_eq!(pdfs.len(), 2);
        let extracted = flywheel_knowledge::extract::extract(
            flywheel_knowledge::extract::SourceFormat::Pdf,
            &pdfs[0],
        )
        .unwrap();
        assert_eq!(extracted.pages, Some(3));
        assert!(
            extracted
                .text
                .contains("Alpha (first) topic \\ with \"quotes\"."),
            "{}",
            extracted.text
        );
    }

    #[test]
    fn lines_wrap_at_spaces_and_keep_their_indentation() {
        let lines = wrap_lines("   one two three four\nshort", 12);
        assert_eq!(lines, vec!["   one two", "   three", "   four", "short"]);
        assert!(lines.iter().all(|line| line.chars().count() <= 12));
    }

    #[test]
    fn python_prose_is_docstring_paragraphs_and_comment_blocks() {
        let source = "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n\"\"\"Module summary line.\n\nSecond paragraph.\"\"\"\n\
                      # A comment that goes\n# on for two lines.\nx = '''raw'''\n";
        let text = python_text(source);
        assert_eq!(
            text,
            vec![
                "Module summary line.",
                "Second paragraph.",
                "raw",
                "A comment that goes on for two lines."
            ]
        );
    }

    #[test]
    fn passages_are_deduplicated_short_ones_dropped_long_ones_cut() {
        assert!(split_passage("too short to keep").is_empty());
        let sentence = "This sentence has exactly eight words in it.";
        let long = vec![sentence; 40].join(" ");
        let pieces = split_passage(&long);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|piece| piece.len() <= MAX_PASSAGE_CHARS));
        assert!(pieces.iter().all(|piece| piece.ends_with('.')));
        let topics: BTreeMap<String, String> =
            [("a".to_owned(), format!("{sentence}\n\n{sentence}\n\nshort"))].into();
        assert_eq!(
            collect_passages(&topics, &[], 10),
            vec![sentence.to_owned()]
        );
    }

    #[test]
    fn brute_force_finds_the_nearest_by_dot_product() {
        let base = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7, -1.0, 0.0];
        let queries = [0.9, 0.1, 0.0, -1.0];
        let truth = brute_force_top_k(&base, &queries, 2, 2, &ProgressBar::hidden());
        // Second query (0, -1): v0 and v3 score 0, v2 −0.7, v1 −1; the tie keeps index order.
        assert_eq!(truth, vec![vec![0, 2], vec![0, 3]]);
    }

    #[test]
    fn random_vectors_are_unit_length_and_seeded() {
        let a = random_unit_vectors(&mut StdRng::seed_from_u64(7), 3, 384);
        let b = random_unit_vectors(&mut StdRng::seed_from_u64(7), 3, 384);
        assert_eq!(a, b);
        for vector in a.chunks(384) {
            assert!((dot(vector, vector) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn qps_at_recall_interpolates_between_the_neighbouring_points() {
        let point = |ef, recall, qps| SweepPoint {
            ef,
            recall,
            p50_ms: 0.0,
            p99_ms: 0.0,
            mean_ms: 0.0,
            qps,
        };
        let points = [
            point(10, 0.80, 4000.0),
            point(20, 0.90, 2000.0),
            point(40, 1.0, 1000.0),
        ];
        assert_eq!(first_reaching(&points, 0.95).map(|p| p.ef), Some(40));
        let qps = qps_at_recall(&points, 0.95).unwrap();
        assert!(
            (qps - 2000f64.sqrt() * 1000f64.sqrt()).abs() < 1e-6,
            "{qps}"
        );
        assert_eq!(qps_at_recall(&points, 0.5), Some(4000.0));
        assert_eq!(qps_at_recall(&points, 1.5), None);
    }

    #[test]
    fn matrices_roundtrip_and_a_wrong_size_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_matrix(
            &path,
            EMBEDDINGS_MAGIC,
            2,
            3,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        )
        .unwrap();
        let (values, columns) = read_matrix(&path, EMBEDDINGS_MAGIC, 2).unwrap();
        assert_eq!((values.len(), columns), (6, 3));
        assert!(read_matrix(&path, EMBEDDINGS_MAGIC, 3).is_none());
        assert!(read_matrix(&path, TRUTH_MAGIC, 2).is_none());
    }
}
