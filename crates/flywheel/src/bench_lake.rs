//! `flywheel bench lake`: SQL over the lake at scale, next to DuckDB running the same SQL on the
//! same files in the same run.
//!
//! The bench writes (or reuses) a synthetic lake: N interactions over D days for tenant `bench`
//! and about 5 % more for a second tenant, from a seeded generator, one archive batch per day
//! through [`Lake::write_raw_batch`] — so the files are exactly what a compacted production lake
//! holds. Then it runs the four reports of `flywheel_analytics::reports` and three ad-hoc
//! queries ([`MONTH_COUNT`], [`JSON_GROUP_BY`], [`OUTCOME_JOIN`]) through Flywheel's engine,
//! cold (the first run of a new engine) and hot (the median of `--runs` more), then the same
//! statements through DuckDB in `scripts/bench_lake_duckdb.py` (embedded in the binary, started
//! as a subprocess), compares the answers and prints a Markdown table.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use flywheel_analytics::views::{self, Dialect};
use flywheel_analytics::{
    reports, Analytics, AnalyticsError, AnalyticsSettings, QueryResult, ScalarValue,
};
use flywheel_core::interaction::{rfc3339, InteractionRecord};
use flywheel_lake::{Lake, LakeSettings};
use indicatif::{ProgressBar, ProgressStyle};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::bench::local::{machine, CpuCounters, Machine};
use crate::bench::progress_count;

/// The peer script, embedded so that the bench runs from any directory.
const PEER_SCRIPT: &str = include_str!("../../../scripts/bench_lake_duckdb.py");

/// The peer script's exit code for "DuckDB is not installed".
const PEER_MISSING_EXIT_CODE: i32 = 3;

/// The tenant every query runs as.
pub const TENANT: &str = "bench";
/// The second tenant, whose rows every query must leave out.
pub const OTHER_TENANT: &str = "bench-other";
/// The second tenant's share of the activity.
const OTHER_TENANT_SHARE: f64 = 0.05;

/// A report's hot time should stay under this.
pub const REPORT_TARGET: Duration = Duration::from_secs(1);
/// Flywheel's hot time should stay within this multiple of DuckDB's.
pub const RATIO_TARGET: f64 = 1.5;

/// Changes whenever the generator's output changes, so that an old lake is not reused.
const GENERATOR_VERSION: u64 = 1;
const MANIFEST_FILE: &str = "bench-manifest.json";
const DAY_MS: i64 = 86_400_000;
/// 2025-01-01T00:00:00Z, the lake's first day.
const START_MS: i64 = 1_735_689_600_000;
/// Result rows kept (and compared) per query.
const MAX_ROWS: usize = 100_000;
/// Large enough that no query is cut short: this bench measures, it does not guard.
const QUERY_TIMEOUT: Duration = Duration::from_secs(900);

/// Ad hoc 1: a filtered count over one month (slow gateway calls in a month).
pub const MONTH_COUNT: &str = "SELECT count(*) AS slow_calls FROM interactions \
     WHERE interaction_type = 'ai_completion' AND ai_duration_ms > 2000 \
       AND \"timestamp\" >= $1 AND \"timestamp\" < $2";

/// Ad hoc 2: a group-by over a field that only the JSON document has (API routes by traffic).
pub const JSON_GROUP_BY: &str = "SELECT json_extract_string(document, '$.api_call.route') AS route, \
       count(*) AS calls, \
       avg(CAST(json_extract_string(document, '$.api_call.latency_ms') AS DOUBLE)) AS avg_latency_ms \
     FROM interactions \
     WHERE interaction_type = 'api_call' AND \"timestamp\" >= $1 AND \"timestamp\" < $2 \
     GROUP BY 1 ORDER BY calls DESC, route";

/// Ad hoc 3: interactions joined with `outcomes_latest` (which model answered in conversations
/// that led to a partner match, and how many of those closed a deal).
pub const OUTCOME_JOIN: &str = "SELECT i.ai_model AS model, count(*) AS answers, \
       count(DISTINCT o.interaction_id) AS matches, \
       count(DISTINCT CASE WHEN o.deal_closed THEN o.interaction_id END) AS deals \
     FROM interactions i JOIN outcomes_latest o ON o.conversation_id = i.conversation_id \
     WHERE i.interaction_type = 'ai_concierge_response' \
       AND i.\"timestamp\" >= $1 AND i.\"timestamp\" < $2 \
     GROUP BY 1 ORDER BY answers DESC, model";

/// What to run.
#[derive(Debug, Clone)]
pub struct LakeBench {
    /// Interactions in the lake, both tenants together.
    pub rows: u64,
    pub days: u32,
    pub seed: u64,
    pub dir: PathBuf,
    /// Write the lake again even when a matching one exists.
    pub regenerate: bool,
    /// Hot runs per query and engine (after the cold one).
    pub runs: usize,
    /// The interpreter with DuckDB installed.
    pub python: Option<PathBuf>,
    pub peer: bool,
}

/// Everything measured.
#[derive(Debug)]
pub struct LakeReport {
    pub machine: Machine,
    pub lake: LakeInfo,
    pub month: (i64, i64),
    pub queries: Vec<QueryReport>,
    /// DuckDB's name, version and threads, or why it did not run.
    pub peer: Result<String, String>,
}

/// The lake the queries ran on.
#[derive(Debug, Clone)]
pub struct LakeInfo {
    pub dir: PathBuf,
    pub rows: u64,
    pub days: u32,
    pub seed: u64,
    pub files: usize,
    pub bytes: u64,
    /// How long writing it took (in this run, or when it was written).
    pub generation: Duration,
    pub reused: bool,
    /// Rows per tenant and interaction type.
    pub mix: BTreeMap<String, u64>,
}

impl LakeInfo {
    pub fn mib_per_million(&self) -> f64 {
        self.bytes as f64 / 1024.0 / 1024.0 / (self.rows as f64 / 1e6).max(1e-9)
    }
}

/// A report or an ad-hoc query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Report,
    AdHoc,
}

/// One statement with its parameters.
#[derive(Debug, Clone)]
pub struct BenchQuery {
    pub name: &'static str,
    pub kind: QueryKind,
    pub sql: &'static str,
    pub params: Vec<Param>,
}

/// A bound parameter.
#[derive(Debug, Clone)]
pub enum Param {
    /// A UTC instant in Unix milliseconds (TIMESTAMP WITH TIME ZONE).
    Timestamp(i64),
    Text(String),
}

impl Param {
    fn scalar(&self) -> ScalarValue {
        match self {
            Param::Timestamp(ms) => {
                ScalarValue::TimestampMillisecond(Some(*ms), Some("UTC".into()))
            }
            Param::Text(text) => ScalarValue::Utf8(Some(text.clone())),
        }
    }

    fn json(&self) -> Value {
        match self {
            Param::Timestamp(ms) => json!({ "timestamp_ms": ms }),
            Param::Text(text) => json!({ "text": text }),
        }
    }
}

/// One engine's runs of one query.
#[derive(Debug, Clone)]
pub struct Timings {
    pub cold_ms: f64,
    pub hot_ms: Vec<f64>,
    pub rows: usize,
    /// The answer, as JSON objects (at most [`MAX_ROWS`]).
    pub result: Vec<Value>,
}

impl Timings {
    pub fn hot_median_ms(&self) -> f64 {
        median(&self.hot_ms)
    }
}

/// Whether the two engines answered the same.
#[derive(Debug, Clone, PartialEq)]
pub enum Agreement {
    Same,
    Different(String),
    NotCompared,
}

/// One query on both engines.
#[derive(Debug, Clone)]
pub struct QueryReport {
    pub query: BenchQuery,
    pub flywheel: Result<Timings, String>,
    pub peer: Result<Timings, String>,
    pub agreement: Agreement,
}

impl QueryReport {
    /// Flywheel's hot median over DuckDB's.
    pub fn hot_ratio(&self) -> Option<f64> {
        match (&self.flywheel, &self.peer) {
            (Ok(ours), Ok(theirs)) => Some(ours.hot_median_ms() / theirs.hot_median_ms().max(1e-6)),
            _ => None,
        }
    }
}

/// Generates or reuses the lake, runs every query on both engines and compares the answers.
pub async fn run_lake(bench: &LakeBench) -> anyhow::Result<LakeReport> {
    let mut machine = machine();
    if !machine.release_build {
        eprintln!("warning: this is a debug build; measure with `cargo build --release`");
    }
    let lake = Lake::open(&LakeSettings {
        url: bench.dir.display().to_string(),
        s3: Default::default(),
    })
    .with_context(|| format!("opening the bench lake at {}", bench.dir.display()))?;
    let info = ensure_lake(&lake, bench).await?;
    let month = month_window(bench.days);
    let queries = bench_queries(bench.days, month);

    let cpu_before = CpuCounters::read();
    let flywheel = run_flywheel(&lake, &queries, bench.runs).await?;
    let peer = if bench.peer {
        run_peer(bench, &queries).await
    } else {
        Err("skipped (--no-peer)".to_owned())
    };
    machine.others_cpu_share =
        cpu_before.and_then(|before| before.others_share(&CpuCounters::read()?));

    let (peer_name, mut peer_results) = match peer {
        Ok((name, results)) => (Ok(name), results),
        Err(note) => (Err(note), BTreeMap::new()),
    };
    let queries = queries
        .into_iter()
        .zip(flywheel)
        .map(|(query, flywheel)| {
            let peer = match &peer_name {
                Ok(_) => peer_results
                    .remove(query.name)
                    .unwrap_or_else(|| Err("the peer printed nothing for it".to_owned())),
                Err(note) => Err(note.clone()),
            };
            let agreement = match (&flywheel, &peer) {
                (Ok(ours), Ok(theirs)) => compare(ours, theirs),
                _ => Agreement::NotCompared,
            };
            QueryReport {
                query,
                flywheel,
                peer,
                agreement,
            }
        })
        .collect();
    Ok(LakeReport {
        machine,
        lake: info,
        month,
        queries,
        peer: peer_name,
    })
}

/// The four reports over the whole lake, the month count and the JSON group-by over one month,
/// the join over the whole lake.
pub fn bench_queries(days: u32, month: (i64, i64)) -> Vec<BenchQuery> {
    let from = Param::Timestamp(START_MS);
    let to = Param::Timestamp(START_MS + i64::from(days) * DAY_MS);
    let (month_from, month_to) = (Param::Timestamp(month.0), Param::Timestamp(month.1));
    let whole = || vec![from.clone(), to.clone()];
    let with_text = |text: &str| {
        let mut params = whole();
        params.push(Param::Text(text.to_owned()));
        params
    };
    vec![
        BenchQuery {
            name: "report: ai-usage",
            kind: QueryKind::Report,
            sql: reports::AI_USAGE,
            params: with_text("ai_concierge_response"),
        },
        BenchQuery {
            name: "report: funnel",
            kind: QueryKind::Report,
            sql: reports::FUNNEL,
            params: whole(),
        },
        BenchQuery {
            name: "report: partners",
            kind: QueryKind::Report,
            sql: reports::PARTNERS,
            params: whole(),
        },
        BenchQuery {
            name: "report: models",
            kind: QueryKind::Report,
            sql: reports::MODELS,
            params: with_text(""),
        },
        BenchQuery {
            name: "filtered count, one month",
            kind: QueryKind::AdHoc,
            sql: MONTH_COUNT,
            params: vec![month_from.clone(), month_to.clone()],
        },
        BenchQuery {
            name: "group by a JSON field, one month",
            kind: QueryKind::AdHoc,
            sql: JSON_GROUP_BY,
            params: vec![month_from, month_to],
        },
        BenchQuery {
            name: "join with outcomes_latest",
            kind: QueryKind::AdHoc,
            sql: OUTCOME_JOIN,
            params: whole(),
        },
    ]
}

/// The calendar month around the middle of the lake (clipped to the lake).
fn month_window(days: u32) -> (i64, i64) {
    use chrono::Datelike;
    let middle = START_MS + i64::from(days / 2) * DAY_MS;
    let end = START_MS + i64::from(days.max(1)) * DAY_MS;
    let date = chrono::DateTime::from_timestamp_millis(middle)
        .unwrap_or_default()
        .date_naive();
    let first = date.with_day(1).unwrap_or(date);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let ms = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .map_or(START_MS, |time| time.and_utc().timestamp_millis())
    };
    (ms(first).max(START_MS), ms(next).min(end))
}

// ---------------------------------------------------------------------------------------------
// Running the queries
// ---------------------------------------------------------------------------------------------

/// Every query through Flywheel's engine: a new engine per query for the cold run, then the
/// hot runs on it.
async fn run_flywheel(
    lake: &Lake,
    queries: &[BenchQuery],
    runs: usize,
) -> anyhow::Result<Vec<Result<Timings, String>>> {
    let bar = progress_count("flywheel queries", queries.len() * (runs + 1));
    let mut results = Vec::with_capacity(queries.len());
    for query in queries {
        let settings = AnalyticsSettings {
            query_timeout: QUERY_TIMEOUT,
            ..AnalyticsSettings::default()
        };
        let analytics =
            Analytics::new(lake.clone(), settings).context("starting the SQL engine")?;
        let params: Vec<ScalarValue> = query.params.iter().map(Param::scalar).collect();
        let (cold, first) = timed_query(&analytics, query.sql, &params).await;
        bar.inc(1);
        let timings = match first {
            Err(err) => Err(err.to_string()),
            Ok(first) => {
                let mut hot_ms = Vec::with_capacity(runs);
                let mut failure = None;
                for _ in 0..runs {
                    let (elapsed, result) = timed_query(&analytics, query.sql, &params).await;
                    bar.inc(1);
                    match result {
                        Ok(_) => hot_ms.push(elapsed.as_secs_f64() * 1000.0),
                        Err(err) => {
                            failure = Some(err.to_string());
                            break;
                        }
                    }
                }
                match failure {
                    Some(err) => Err(format!("a hot run failed: {err}")),
                    None => {
                        let bytes = flywheel_analytics::output::json_rows(&first)
                            .context("encoding a result as JSON")?;
                        let result: Vec<Value> =
                            serde_json::from_slice(&bytes).context("reading a result back")?;
                        Ok(Timings {
                            cold_ms: cold.as_secs_f64() * 1000.0,
                            hot_ms,
                            rows: first.rows,
                            result,
                        })
                    }
                }
            }
        };
        if let Err(err) = &timings {
            bar.println(format!("flywheel {}: {err}", query.name));
        }
        results.push(timings);
        // The engine's threads end here: nothing of Flywheel runs during the peer.
        drop(analytics);
    }
    bar.finish_and_clear();
    Ok(results)
}

/// One run as tenant [`TENANT`], timed around the call.
async fn timed_query(
    analytics: &Analytics,
    sql: &str,
    params: &[ScalarValue],
) -> (Duration, Result<QueryResult, AnalyticsError>) {
    let started = Instant::now();
    let result = analytics
        .query_with(TENANT, sql, params.to_vec(), MAX_ROWS, QUERY_TIMEOUT)
        .await;
    (started.elapsed(), result)
}

type PeerResults = BTreeMap<&'static str, Result<Timings, String>>;

/// DuckDB on the same files with the same SQL; its description and results by query name.
async fn run_peer(
    bench: &LakeBench,
    queries: &[BenchQuery],
) -> Result<(String, PeerResults), String> {
    let scratch = tempfile::tempdir().map_err(|err| format!("no temporary directory: {err}"))?;
    let script = scratch.path().join("bench_lake_duckdb.py");
    let spec_path = scratch.path().join("spec.json");
    let lake_dir = std::fs::canonicalize(&bench.dir)
        .map_err(|err| format!("cannot resolve {}: {err}", bench.dir.display()))?;
    let spec = json!({
        "lake": lake_dir.display().to_string(),
        "tenant": TENANT,
        "runs": bench.runs,
        "views": views::definitions(Dialect::DuckDb),
        "queries": queries.iter().map(|query| json!({
            "name": query.name,
            "sql": query.sql,
            "params": query.params.iter().map(Param::json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&script, PEER_SCRIPT)
        .and_then(|()| std::fs::write(&spec_path, spec.to_string()))
        .map_err(|err| format!("cannot write the peer's files: {err}"))?;
    let python = bench
        .python
        .clone()
        .map(PathBuf::into_os_string)
        .or_else(|| std::env::var_os(flywheel_local::setup::PYTHON_ENV))
        .unwrap_or_else(|| OsString::from("python3"));
    eprintln!(
        "running DuckDB on the same files ({} queries)…",
        queries.len()
    );
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg("--spec")
        .arg(&spec_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // The peer's per-query lines go straight to the terminal.
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| {
            format!(
                "`{}` could not be started ({err}); install Python 3 or pass --python",
                python.to_string_lossy()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok());
    let json = match json {
        Some(json) if json.get("error").is_some() => {
            return Err(format!(
                "not run: {}",
                json["error"]
                    .as_str()
                    .unwrap_or("the peer reported an error")
            ))
        }
        Some(json) if output.status.success() => json,
        _ if output.status.code() == Some(PEER_MISSING_EXIT_CODE) => {
            return Err("not run: DuckDB is not installed (pip install duckdb)".to_owned())
        }
        _ => return Err(format!("failed ({}); see its output above", output.status)),
    };
    Ok(parse_peer(&json, queries))
}

fn parse_peer(json: &Value, queries: &[BenchQuery]) -> (String, PeerResults) {
    let name = format!(
        "{} {} ({} threads)",
        json["peer"].as_str().unwrap_or("duckdb"),
        json["version"].as_str().unwrap_or("?"),
        json["threads"]
            .as_u64()
            .map_or_else(|| json["threads"].to_string(), |n| n.to_string())
    );
    let mut results = BTreeMap::new();
    for entry in json["queries"].as_array().into_iter().flatten() {
        let Some(query) = queries
            .iter()
            .find(|query| Some(query.name) == entry["name"].as_str())
        else {
            continue;
        };
        let timings = match entry["error"].as_str() {
            Some(error) => Err(format!("DuckDB cannot run it: {error}")),
            None => {
                let hot_ms: Vec<f64> = entry["hot_ms"]
                    .as_array()
                    .map(|runs| runs.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                match (entry["cold_ms"].as_f64(), entry["rows"].as_u64()) {
                    (Some(cold_ms), Some(rows)) => Ok(Timings {
                        cold_ms,
                        hot_ms,
                        rows: usize::try_from(rows).unwrap_or(usize::MAX),
                        result: entry["result"].as_array().cloned().unwrap_or_default(),
                    }),
                    _ => Err("the peer's output lacks cold_ms or rows".to_owned()),
                }
            }
        };
        results.insert(query.name, timings);
    }
    (name, results)
}

/// The same number of rows, and the same values column by column (numbers within a relative
/// 1e-6: sums of floating-point numbers depend on the order of addition).
fn compare(ours: &Timings, theirs: &Timings) -> Agreement {
    if ours.rows != theirs.rows {
        return Agreement::Different(format!(
            "{} rows against DuckDB's {}",
            ours.rows, theirs.rows
        ));
    }
    for (row_idx, (our_row, their_row)) in ours.result.iter().zip(&theirs.result).enumerate() {
        let (Some(our_row), Some(their_row)) = (our_row.as_object(), their_row.as_object()) else {
            return Agreement::Different(format!("row {row_idx} is not an object"));
        };
        for (column, our_value) in our_row {
            let their_value = their_row.get(column).unwrap_or(&Value::Null);
            if !same_value(our_value, their_value) {
                return Agreement::Different(format!(
                    "row {row_idx}, column {column}: {our_value} against DuckDB's {their_value}"
                ));
            }
        }
    }
    Agreement::Same
}

fn same_value(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
            _ => a == b,
        },
        // Decimal or 64-bit values may come as text from one side.
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => {
            match (text.parse::<f64>(), number.as_f64()) {
                (Ok(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
                _ => false,
            }
        }
        _ => ours == theirs,
    }
}

// ---------------------------------------------------------------------------------------------
// The lake: reuse or generate
// ---------------------------------------------------------------------------------------------

/// Reuses the lake in `bench.dir` when its manifest matches, else writes it.
async fn ensure_lake(lake: &Lake, bench: &LakeBench) -> anyhow::Result<LakeInfo> {
    let manifest_path = bench.dir.join(MANIFEST_FILE);
    let raw_dir = bench.dir.join(flywheel_lake::RAW_DATASET);
    let manifest: Option<Value> = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("reading {}", manifest_path.display()))?,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("reading {}", manifest_path.display()))
        }
    };
    let matches = manifest.as_ref().is_some_and(|manifest| {
        manifest["complete"] == json!(true)
            && manifest["generator_version"] == json!(GENERATOR_VERSION)
            && manifest["rows"] == json!(bench.rows)
            && manifest["days"] == json!(bench.days)
            && manifest["seed"] == json!(bench.seed)
    });
    let (generation, mix, reused) = match &manifest {
        Some(manifest) if matches && !bench.regenerate => {
            let mix = manifest["mix"]
                .as_object()
                .map(|mix| {
                    mix.iter()
                        .map(|(key, value)| (key.clone(), value.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            let seconds = manifest["generated_in_seconds"].as_f64().unwrap_or(0.0);
            eprintln!(
                "reusing the lake in {} (rows {}, days {}, seed {}; --regenerate writes it again)",
                bench.dir.display(),
                bench.rows,
                bench.days,
                bench.seed
            );
            (Duration::from_secs_f64(seconds.max(0.0)), mix, true)
        }
        _ => {
            if manifest.is_none() && raw_dir.exists() {
                anyhow::bail!(
                    "{} exists but {} has no {MANIFEST_FILE}: it is not a lake this bench wrote; \
                     delete it or pass another --dir",
                    raw_dir.display(),
                    bench.dir.display()
                );
            }
            if raw_dir.exists() {
                std::fs::remove_dir_all(&raw_dir)
                    .with_context(|| format!("removing the old {}", raw_dir.display()))?;
            }
            let mut manifest = json!({
                "complete": false,
                "generator_version": GENERATOR_VERSION,
                "rows": bench.rows,
                "days": bench.days,
                "seed": bench.seed,
                "tenants": [TENANT, OTHER_TENANT],
                "first_day": "2025-01-01",
            });
            write_manifest(&manifest_path, &manifest)?;
            let started = Instant::now();
            let mix = generate(lake, bench).await?;
            let generation = started.elapsed();
            manifest["complete"] = json!(true);
            manifest["generated_in_seconds"] = json!(generation.as_secs_f64());
            manifest["mix"] = json!(mix);
            write_manifest(&manifest_path, &manifest)?;
            (generation, mix, false)
        }
    };
    let files = lake
        .current_raw_files()
        .await
        .context("listing the lake's files")?;
    Ok(LakeInfo {
        dir: bench.dir.clone(),
        rows: bench.rows,
        days: bench.days,
        seed: bench.seed,
        files: files.len(),
        bytes: files.iter().map(|file| file.size).sum(),
        generation,
        reused,
        mix,
    })
}

fn write_manifest(path: &Path, manifest: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(manifest).context("encoding the manifest")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Writes the lake: days are generated in order on one thread while the lake's own thread
/// encodes the previous day, so the output depends on the seed only.
async fn generate(lake: &Lake, bench: &LakeBench) -> anyhow::Result<BTreeMap<String, u64>> {
    let bar = ProgressBar::new(bench.rows);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>32} [{bar:30}] {human_pos}/{human_len} rows {per_sec} {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("generating the lake");
    let mut generator = Generator::new(bench.seed, bench.rows, bench.days);
    let days = bench.days;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(u32, Vec<InteractionRecord>)>(2);
    let producer = tokio::task::spawn_blocking(move || {
        for day in 0..days {
            let rows = generator.day(day);
            if sender.blocking_send((day, rows)).is_err() {
                return;
            }
        }
    });
    let mut mix: BTreeMap<String, u64> = BTreeMap::new();
    while let Some((day, rows)) = receiver.recv().await {
        for row in &rows {
            *mix.entry(format!("{}/{}", row.tenant_id, row.interaction_type))
                .or_default() += 1;
        }
        let n_rows = rows.len() as u64;
        lake.write_raw_batch(i64::from(day) + 1, rows)
            .await
            .with_context(|| format!("writing day {day} of the bench lake"))?;
        bar.inc(n_rows);
    }
    producer.await.context("the generator thread")?;
    bar.finish_and_clear();
    Ok(mix)
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// A client: its user agent and what enrichment reads from it (`None`: not a browser).
struct Client {
    user_agent: &'static str,
    parsed: Option<(&'static str, &'static str, &'static str)>,
    weight: f64,
}

/// Browsers and apps of people, with the device, browser and OS that enrichment derives.
const CLIENTS: [Client; 8] = [
    Client {
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        parsed: Some(("desktop", "Chrome", "Windows 10")),
        weight: 30.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        parsed: Some(("desktop", "Safari", "Mac OSX")),
        weight: 12.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        parsed: Some(("mobile", "Safari", "iPhone")),
        weight: 22.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (Linux; Android 14; SM-S918U) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        parsed: Some(("mobile", "Chrome", "Android")),
        weight: 14.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        parsed: Some(("desktop", "Edge", "Windows 10")),
        weight: 10.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        parsed: Some(("desktop", "Firefox", "Windows 10")),
        weight: 4.0,
    },
    Client {
        user_agent: "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        parsed: Some(("mobile", "Safari", "iPad")),
        weight: 5.0,
    },
    Client {
        user_agent: "Power100/3.2.1 (iPhone; iOS 18.1; Scale/3.00)",
        parsed: None,
        weight: 3.0,
    },
];

/// Clients of services and integrations (not browsers).
const SDK_AGENTS: [&str; 3] = [
    "OpenAI/Python 1.57.0",
    "power100-matching/4.2.0 reqwest/0.12",
    "python-requests/2.32.3",
];
const CRM_AGENT: &str = "power100-crm-sync/2.4.1";

/// Where people are: country, state, city, weight.
const PLACES: [(&str, &str, &str, f64); 16] = [
    ("US", "TX", "Austin", 9.0),
    ("US", "TX", "Dallas", 8.0),
    ("US", "TX", "Houston", 7.0),
    ("US", "FL", "Tampa", 7.0),
    ("US", "FL", "Orlando", 6.0),
    ("US", "AZ", "Phoenix", 7.0),
    ("US", "GA", "Atlanta", 6.0),
    ("US", "NC", "Charlotte", 5.0),
    ("US", "CO", "Denver", 5.0),
    ("US", "OH", "Columbus", 4.0),
    ("US", "IL", "Chicago", 5.0),
    ("US", "CA", "San Diego", 5.0),
    ("US", "NY", "Buffalo", 3.0),
    ("CA", "ON", "Toronto", 4.0),
    ("CA", "AB", "Calgary", 2.0),
    ("GB", "England", "London", 2.0),
];

/// A model behind the gateway: name, share of calls, median latency (ms), price per million
/// input and output tokens (`None`: unpriced).
struct ModelSpec {
    name: &'static str,
    weight: f64,
    median_ms: f64,
    price: Option<(f64, f64)>,
}

const GATEWAY_MODELS: [ModelSpec; 9] = [
    ModelSpec {
        name: "openai/gpt-4o-mini",
        weight: 30.0,
        median_ms: 650.0,
        price: Some((0.15, 0.60)),
    },
    ModelSpec {
        name: "openai/gpt-4o",
        weight: 9.0,
        median_ms: 1400.0,
        price: Some((2.50, 10.0)),
    },
    ModelSpec {
        name: "openai/gpt-4.1-mini",
        weight: 8.0,
        median_ms: 800.0,
        price: Some((0.40, 1.60)),
    },
    ModelSpec {
        name: "anthropic/claude-3-5-haiku-20241022",
        weight: 12.0,
        median_ms: 900.0,
        price: Some((0.80, 4.0)),
    },
    ModelSpec {
        name: "anthropic/claude-sonnet-4-20250514",
        weight: 6.0,
        median_ms: 2400.0,
        price: Some((3.0, 15.0)),
    },
    ModelSpec {
        name: "gemini/gemini-2.0-flash",
        weight: 10.0,
        median_ms: 550.0,
        price: Some((0.10, 0.40)),
    },
    ModelSpec {
        name: "bedrock/meta.llama3-1-70b-instruct-v1:0",
        weight: 4.0,
        median_ms: 1600.0,
        price: Some((0.72, 0.72)),
    },
    ModelSpec {
        name: "local/smollm2-135m-instruct",
        weight: 8.0,
        median_ms: 1900.0,
        price: None,
    },
    ModelSpec {
        name: "vllm/qwen2.5-7b-instruct",
        weight: 5.0,
        median_ms: 450.0,
        price: None,
    },
];

/// The concierge's models (indices into [`GATEWAY_MODELS`]) and their shares.
const CONCIERGE_MODELS: [(usize, f64); 3] = [(0, 60.0), (3, 25.0), (7, 15.0)];

const EMBEDDING_MODELS: [(&str, f64, Option<f64>); 2] = [
    ("openai/text-embedding-3-small", 70.0, Some(0.02)),
    ("local/all-minilm-l6-v2", 30.0, None),
];

/// API routes: method, route, share, median latency (ms).
const ROUTES: [(&str, &str, f64, f64); 12] = [
    ("GET", "/v1/partners", 14.0, 18.0),
    ("GET", "/v1/partners/{id}", 12.0, 9.0),
    ("POST", "/v1/interactions", 20.0, 6.0),
    ("GET", "/v1/interactions/{id}", 6.0, 7.0),
    ("POST", "/v1/concierge/sessions", 5.0, 12.0),
    ("GET", "/v1/concierge/sessions/{id}", 7.0, 10.0),
    ("POST", "/v1/chat/completions", 10.0, 820.0),
    ("POST", "/v1/embeddings", 4.0, 140.0),
    ("GET", "/v1/reports/ai-usage", 3.0, 240.0),
    ("GET", "/v1/reports/funnel", 2.0, 310.0),
    ("GET", "/v1/matches", 9.0, 25.0),
    ("PATCH", "/v1/profile", 8.0, 15.0),
];

/// The share of activity in each UTC hour (North American working hours peak).
const HOURS: [f64; 24] = [
    2.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 11.0, 11.0, 11.0, 10.0,
    10.0, 9.0, 8.0, 6.0, 4.0, 3.0,
];

const TRADES: [&str; 8] = [
    "roofing",
    "siding",
    "window",
    "HVAC",
    "solar",
    "plumbing",
    "remodeling",
    "gutter",
];

const QUESTIONS: [&str; 12] = [
    "How do I improve my close rate on in-home estimates?",
    "Which partners can help us offer financing on larger jobs?",
    "What is a good marketing budget for a company our size?",
    "Our leads from paid search got worse this year. What should we change?",
    "Can you recommend a CRM that works well for field sales teams?",
    "How should we structure commission for our sales reps?",
    "Who could help us recruit and train more installers?",
    "What does a healthy gross margin look like for our trade?",
    "How do other contractors handle follow-up after a lost bid?",
    "Is it worth adding a second trade to our business?",
    "Which partner has the best results with storm damage leads?",
    "How can we get more reviews from happy customers?",
];

const ANSWER_SENTENCES: [&str; 16] = [
    "Start by qualifying leads on the first call: budget, timeline and who makes the decision.",
    "Contractors of your size usually close 30 to 40 percent of qualified in-home estimates.",
    "A same-day follow-up with a written proposal lifts close rates noticeably.",
    "Several partners in the network specialise in consumer financing for home improvement.",
    "Offering two or three options instead of a single price makes the decision easier.",
    "Track the cost per appointment by lead source, not only the cost per lead.",
    "Your sales team benefits from a short weekly ride-along and role-play session.",
    "A CRM with mobile estimates and e-signature shortens the time from visit to contract.",
    "Review sites matter most for homeowners comparing two or three final bids.",
    "Partners with a dedicated onboarding team typically show results within 60 days.",
    "Keep the first visit focused on the homeowner's problem before presenting the price.",
    "Recruiting through trade schools and referral bonuses works well for installers.",
    "Look at your margin per job type: small repairs often cost more than they earn.",
    "I matched your profile with partners who work with companies of similar revenue.",
    "A clear warranty and a project timeline answer the most common objections.",
    "You can book a demo with any of these partners directly from this conversation.",
];

const FEEDBACK_COMMENTS: [&str; 6] = [
    "Very helpful, thanks.",
    "The partner suggestions were spot on.",
    "Too generic for our situation.",
    "Good answer but a bit long.",
    "Exactly what I needed.",
    "Did not answer the financing part.",
];

const FORMS: [&str; 4] = [
    "partner_request",
    "contact",
    "profile_update",
    "demo_request",
];

/// A person or service of a tenant.
struct Person {
    id: String,
    client: usize,
    place: usize,
    ip: String,
    ui_variant: &'static str,
}

/// A tenant's users.
struct Population {
    tenant: &'static str,
    contractors: Vec<Person>,
    partners: Vec<Person>,
    /// The ids partners are known by in outcomes.
    partner_ids: Vec<String>,
    services: Vec<Person>,
}

/// What stays the same across days: people and the weighted tables.
struct World {
    tenants: [Population; 2],
    hours: WeightedIndex<f64>,
    gateway_models: WeightedIndex<f64>,
    concierge_models: WeightedIndex<f64>,
    embedding_models: WeightedIndex<f64>,
    routes: WeightedIndex<f64>,
}

/// Day-by-day generation with a carried-over queue of rows that land on later days (outcomes
/// linked weeks later, turns past midnight).
struct Generator {
    world: World,
    rng: StdRng,
    rows: u64,
    days: u32,
    /// Cumulative day weights (weekends quieter, the product growing over the year).
    cumulative: Vec<f64>,
    pending: BTreeMap<u32, Vec<InteractionRecord>>,
    emitted: u64,
}

impl Generator {
    fn new(seed: u64, rows: u64, days: u32) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed);
        let places = weighted(PLACES.iter().map(|place| place.3));
        let clients = weighted(CLIENTS.iter().map(|client| client.weight));
        let person = |rng: &mut StdRng, id: String| Person {
            id,
            client: clients.sample(rng),
            place: places.sample(rng),
            ip: format!(
                "{}.{}.{}.0",
                rng.gen_range(23..=223),
                rng.gen_range(0..=255),
                rng.gen_range(0..=255)
            ),
            ui_variant: if rng.gen_bool(0.5) { "a" } else { "b" },
        };
        let population =
            |rng: &mut StdRng, tenant: &'static str, contractors: usize, partners: usize| {
                let contractors = (0..contractors)
                    .map(|idx| person(rng, format!("contractor-{idx:06}")))
                    .collect();
                let partners: Vec<Person> = (0..partners)
                    .map(|idx| person(rng, format!("partner-{idx:04}")))
                    .collect();
                let partner_ids = partners.iter().map(|p| p.id.clone()).collect();
                let services = [
                    "svc-matching",
                    "svc-summaries",
                    "svc-lead-scoring",
                    "svc-content",
                ]
                .iter()
                .map(|name| person(rng, (*name).to_owned()))
                .collect();
                Population {
                    tenant,
                    contractors,
                    partners,
                    partner_ids,
                    services,
                }
            };
        let tenants = [
            population(&mut rng, TENANT, 50_000, 200),
            population(&mut rng, OTHER_TENANT, 2_500, 12),
        ];
        let world = World {
            tenants,
            hours: weighted(HOURS.iter().copied()),
            gateway_models: weighted(GATEWAY_MODELS.iter().map(|model| model.weight)),
            concierge_models: weighted(CONCIERGE_MODELS.iter().map(|model| model.1)),
            embedding_models: weighted(EMBEDDING_MODELS.iter().map(|model| model.1)),
            routes: weighted(ROUTES.iter().map(|route| route.2)),
        };
        let mut total = 0.0;
        let cumulative = (0..days)
            .map(|day| {
                total += day_weight(day, days);
                total
            })
            .collect();
        Generator {
            world,
            rng,
            rows,
            days,
            cumulative,
            pending: BTreeMap::new(),
            emitted: 0,
        }
    }

    /// The rows of `day` (days must be asked for in order), sorted by arrival like an archive
    /// batch.
    fn day(&mut self, day: u32) -> Vec<InteractionRecord> {
        let last_day = day + 1 >= self.days;
        let target = if last_day {
            self.rows
        } else {
            let total = self.cumulative.last().copied().unwrap_or(1.0);
            let share = self.cumulative[day as usize] / total;
            (self.rows as f64 * share).round() as u64
        };
        let quota = usize::try_from(target.saturating_sub(self.emitted)).unwrap_or(usize::MAX);
        let today = self.pending.remove(&day).unwrap_or_default();
        let mut sink = Sink {
            day,
            days: self.days,
            today,
            pending: &mut self.pending,
        };
        while sink.today.len() < quota {
            let mut activity = Activity {
                world: &self.world,
                rng: &mut self.rng,
                sink: &mut sink,
            };
            activity.any(day);
        }
        let mut rows = sink.today;
        if last_day {
            rows.truncate(quota);
        }
        rows.sort_by_key(|row| (row.received_at_ms, row.timestamp_ms));
        self.emitted += rows.len() as u64;
        rows
    }
}

/// A day's weight: weekends are quieter and the product grows over the period.
fn day_weight(day: u32, days: u32) -> f64 {
    let growth = 0.7 + 0.6 * f64::from(day) / f64::from(days.max(1));
    // 2025-01-01 was a Wednesday: day 3 is a Saturday.
    let weekday = match (day + 2) % 7 {
        5 => 0.55,
        6 => 0.45,
        _ => 1.0,
    };
    growth * weekday
}

fn weighted(weights: impl Iterator<Item = f64>) -> WeightedIndex<f64> {
    // The tables above are non-empty with positive weights.
    WeightedIndex::new(weights).unwrap_or_else(|_| unreachable!("constant positive weights"))
}

/// Where generated rows go: today's file, a later day's, or nowhere (past the last day).
struct Sink<'a> {
    day: u32,
    days: u32,
    today: Vec<InteractionRecord>,
    pending: &'a mut BTreeMap<u32, Vec<InteractionRecord>>,
}

impl Sink<'_> {
    fn push(&mut self, record: InteractionRecord) {
        let day = (record.timestamp_ms - START_MS).div_euclid(DAY_MS);
        match u32::try_from(day) {
            Ok(day) if day == self.day => self.today.push(record),
            Ok(day) if day > self.day && day < self.days => {
                self.pending.entry(day).or_default().push(record);
            }
            // Past the lake's last day: not happened yet.
            _ => {}
        }
    }
}

/// One user's activity: a conversation, a burst of API or gateway calls, a match, a form.
struct Activity<'a, 'b> {
    world: &'a World,
    rng: &'a mut StdRng,
    sink: &'a mut Sink<'b>,
}

/// What a document's envelope needs.
struct Envelope<'p> {
    tenant: &'static str,
    id: String,
    timestamp_ms: i64,
    received_at_ms: i64,
    interaction_type: &'static str,
    user: &'p Person,
    user_type: &'static str,
}

impl Activity<'_, '_> {
    fn any(&mut self, day: u32) {
        let tenant_idx = usize::from(self.rng.gen_bool(OTHER_TENANT_SHARE));
        let hour = self.world.hours.sample(self.rng) as i64;
        let start = START_MS
            + i64::from(day) * DAY_MS
            + hour * 3_600_000
            + self.rng.gen_range(0..3_600_000);
        match self.rng.gen_range(0..100) {
            0..=21 => self.conversation(tenant_idx, start),
            22..=50 => self.gateway_burst(tenant_idx, start),
            51..=80 => self.api_burst(tenant_idx, start),
            81..=89 => self.direct_match(tenant_idx, start),
            _ => {
                let world = self.world;
                let population = &world.tenants[tenant_idx];
                let user = self.pick(&population.contractors);
                self.form(population.tenant, user, start);
            }
        }
    }

    /// A skewed pick: a few people are much more active than most.
    fn pick<'p>(&mut self, people: &'p [Person]) -> &'p Person {
        let u: f64 = self.rng.gen();
        let idx = ((u * u * u) * people.len() as f64) as usize;
        &people[idx.min(people.len().saturating_sub(1))]
    }

    fn id(&mut self, ms: i64) -> String {
        let random: [u8; 10] = self.rng.gen();
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(ms).unwrap_or(0), &random)
            .into_uuid()
            .to_string()
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = self.rng.gen();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// 1 + a geometric number of further items with continuation probability `p`, at most `max`.
    fn count(&mut self, p: f64, max: u32) -> u32 {
        let mut n = 1;
        while n < max && self.rng.gen_bool(p) {
            n += 1;
        }
        n
    }

    fn emit(&mut self, envelope: Envelope<'_>, mut body: Map<String, Value>) {
        let time =
            |ms: i64| rfc3339(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default());
        body.insert("interaction_id".into(), json!(envelope.id));
        body.insert("tenant_id".into(), json!(envelope.tenant));
        body.insert("timestamp".into(), json!(time(envelope.timestamp_ms)));
        body.insert("received_at".into(), json!(time(envelope.received_at_ms)));
        body.insert("interaction_type".into(), json!(envelope.interaction_type));
        body.insert("user_id".into(), json!(envelope.user.id));
        body.insert("user_type".into(), json!(envelope.user_type));
        body.insert("schema_version".into(), json!(1));
        let record = InteractionRecord {
            tenant_id: envelope.tenant.to_owned(),
            interaction_id: envelope.id,
            timestamp_ms: envelope.timestamp_ms,
            received_at_ms: envelope.received_at_ms,
            interaction_type: envelope.interaction_type.to_owned(),
            user_id: envelope.user.id.clone(),
            user_type: envelope.user_type.to_owned(),
            document_json: Value::Object(body).to_string(),
        };
        self.sink.push(record);
    }

    /// What enrichment leaves in `metadata` for a person's request.
    fn metadata(&mut self, user: &Person, at_ms: i64, referrer: bool) -> Value {
        let client = &CLIENTS[user.client];
        let place = PLACES[user.place];
        let mut metadata = json!({
            "app_version": app_version(at_ms),
            "api_version": "v1",
            "environment": "production",
            "client_ip": user.ip,
            "user_agent": client.user_agent,
            "location": {"country": place.0, "state": place.1, "city": place.2},
        });
        if let Some((device, browser, os)) = client.parsed {
            metadata["device_type"] = json!(device);
            metadata["browser"] = json!(browser);
            metadata["os"] = json!(os);
        }
        if referrer && self.rng.gen_bool(0.4) {
            metadata["referrer"] = json!(
                [
                    "https://www.google.com/",
                    "https://power100.io/partners",
                    "https://www.facebook.com/"
                ][self.rng.gen_range(0..3)]
            );
        }
        metadata
    }

    /// What enrichment leaves for a service or integration calling the API.
    fn service_metadata(&mut self, agent: &str, at_ms: i64) -> Value {
        json!({
            "app_version": app_version(at_ms),
            "api_version": "v1",
            "environment": "production",
            "client_ip": format!("10.20.{}.0", self.rng.gen_range(0..8)),
            "user_agent": agent,
        })
    }

    fn question_text(&mut self) -> String {
        let question = QUESTIONS[self.rng.gen_range(0..QUESTIONS.len())];
        if self.rng.gen_bool(0.4) {
            let trade = TRADES[self.rng.gen_range(0..TRADES.len())];
            let employees = self.rng.gen_range(5..120);
            format!("We are a {trade} company with about {employees} employees. {question}")
        } else {
            question.to_owned()
        }
    }

    fn answer_text(&mut self) -> String {
        let sentences = self.rng.gen_range(2..=5);
        (0..sentences)
            .map(|_| ANSWER_SENTENCES[self.rng.gen_range(0..ANSWER_SENTENCES.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A model call's tokens, latency and cost.
    fn usage(&mut self, model: &ModelSpec, input_median: f64) -> (u64, u64, u64, Option<f64>) {
        let input = self.lognormal(input_median, 0.6).clamp(20.0, 30_000.0) as u64;
        let output = self.lognormal(200.0, 0.55).clamp(5.0, 4_000.0) as u64;
        let duration = (self.lognormal(model.median_ms, 0.45) * (0.6 + output as f64 / 500.0))
            .clamp(40.0, 120_000.0) as u64;
        let cost = model.price.map(|(input_price, output_price)| {
            round8((input as f64 * input_price + output as f64 * output_price) / 1e6)
        });
        (input, output, duration, cost)
    }

    /// A concierge conversation: questions and answers (each answer through the gateway, which
    /// logs its own call), feedback on some answers, and sometimes a partner match with its
    /// later outcomes.
    fn conversation(&mut self, tenant_idx: usize, start: i64) {
        let world = self.world;
        let population = &world.tenants[tenant_idx];
        let user = self.pick(&population.contractors);
        let session = self.id(start);
        let model = &GATEWAY_MODELS[CONCIERGE_MODELS[world.concierge_models.sample(self.rng)].0];
        let prompt_version = if start < START_MS + 200 * DAY_MS {
            "v3"
        } else {
            "v4"
        };
        let turns = self.count(0.68, 12);
        let mut at = start;
        for turn in 0..turns {
            let question_id = self.id(at);
            let question = self.question_text();
            let mut body = Map::new();
            body.insert("session_id".into(), json!(session));
            body.insert("conversation_id".into(), json!(session));
            body.insert(
                "ai_conversation".into(),
                json!({"messages": [{"role": "user", "content": question,
                    "timestamp": rfc3339(chrono::DateTime::from_timestamp_millis(at).unwrap_or_default())}]}),
            );
            body.insert(
                "concierge".into(),
                json!({"session_id": session, "model": model.name}),
            );
            body.insert("metadata".into(), self.metadata(user, at, false));
            let lag = self.rng.gen_range(2..40);
            self.emit(
                Envelope {
                    tenant: population.tenant,
                    id: question_id.clone(),
                    timestamp_ms: at,
                    received_at_ms: at + lag,
                    interaction_type: "ai_concierge",
                    user,
                    user_type: "contractor",
                },
                body,
            );

            let (input, output, model_ms, cost) =
                self.usage(model, 450.0 + 260.0 * f64::from(turn));
            let tools_ms = if self.rng.gen_bool(0.3) {
                self.rng.gen_range(15..400)
            } else {
                0
            };
            let overhead_ms = self.rng.gen_range(2..25);
            let call_at = at + 20 + tools_ms + i64::try_from(model_ms).unwrap_or(0);
            let answer_at = call_at + overhead_ms;
            let answer = self.answer_text();
            let call_id = self.id(call_at);
            self.gateway_call(
                population.tenant,
                user,
                "contractor",
                call_id.clone(),
                call_at,
                model,
                (input, output, model_ms, cost),
                Some(&session),
                &question,
                &answer,
            );
            let answer_id = self.id(answer_at);
            let mut conversation = json!({
                "messages": [{"role": "assistant", "content": answer,
                    "timestamp": rfc3339(chrono::DateTime::from_timestamp_millis(answer_at).unwrap_or_default()),
                    "tokens": output, "model": model.name}],
                "total_tokens": input + output,
                "duration_ms": model_ms + u64::try_from(tools_ms + overhead_ms + 20).unwrap_or(0),
            });
            if let Some(cost) = cost {
                conversation["cost"] = json!(cost);
            }
            let mut body = Map::new();
            body.insert("session_id".into(), json!(session));
            body.insert("conversation_id".into(), json!(session));
            body.insert("parent_interaction_id".into(), json!(question_id));
            body.insert("ai_conversation".into(), conversation);
            body.insert(
                "concierge".into(),
                json!({
                    "session_id": session,
                    "status": "complete",
                    "input_tokens": input,
                    "output_tokens": output,
                    "details": {
                        "tool_route": if tools_ms > 0 { "search_knowledge" } else { "none" },
                        "iterations": if tools_ms > 0 { 2 } else { 1 },
                        "gateway_interactions": [call_id],
                        "finish_reason": "stop",
                        "context": {"history_messages": 2 * turn, "prompt_tokens": input, "trimmed": false},
                        "timings": {"model_ms": model_ms, "tools_ms": tools_ms, "overhead_ms": overhead_ms},
                    },
                }),
            );
            body.insert(
                "experiments".into(),
                json!({"ui_variant": user.ui_variant, "concierge_prompt": prompt_version}),
            );
            body.insert("metadata".into(), self.metadata(user, answer_at, false));
            let received_at_ms = answer_at + self.rng.gen_range(1..15);
            self.emit(
                Envelope {
                    tenant: population.tenant,
                    id: answer_id.clone(),
                    timestamp_ms: answer_at,
                    received_at_ms,
                    interaction_type: "ai_concierge_response",
                    user,
                    user_type: "contractor",
                },
                body,
            );
            if self.rng.gen_bool(0.09) {
                self.feedback(population.tenant, user, &session, &answer_id, answer_at);
            }
            at = answer_at + self.lognormal(40_000.0, 0.8).clamp(3_000.0, 1_800_000.0) as i64;
        }
        if self.rng.gen_bool(0.3) {
            let match_at = at + self.rng.gen_range(5_000..180_000);
            self.partner_match(tenant_idx, user, match_at, Some(&session));
        }
    }

    /// The gateway's record of one chat call.
    #[allow(clippy::too_many_arguments)]
    fn gateway_call(
        &mut self,
        tenant: &'static str,
        user: &Person,
        user_type: &'static str,
        id: String,
        at: i64,
        model: &ModelSpec,
        (input, output, duration_ms, cost): (u64, u64, u64, Option<f64>),
        conversation: Option<&str>,
        prompt: &str,
        answer: &str,
    ) {
        let failed = self.rng.gen_bool(0.015);
        let (provider, model_name) = model.name.split_once('/').unwrap_or(("openai", model.name));
        let mut messages = vec![
            json!({"role": "system", "content": "You are the Power100 assistant. Answer briefly and accurately."}),
            json!({"role": "user", "content": prompt}),
        ];
        if !failed {
            messages.push(json!({"role": "assistant", "content": answer, "model": model.name, "tokens": output}));
        }
        let error_class =
            failed.then(|| ["rate_limited", "timeout", "upstream_error"][self.rng.gen_range(0..3)]);
        let mut conversation_json = json!({
            "messages": messages,
            "total_tokens": if failed { 0 } else { input + output },
            "duration_ms": duration_ms,
        });
        let cost = cost.filter(|_| !failed);
        if let Some(cost) = cost {
            conversation_json["cost"] = json!(cost);
        }
        let mut body = Map::new();
        body.insert("ai_conversation".into(), conversation_json);
        body.insert(
            "gateway".into(),
            json!({
                "operation": "chat.completions",
                "provider": provider,
                "model": model_name,
                "requested_model": model_name,
                "alias": null,
                "variant": null,
                "fell_back": false,
                "stream": self.rng.gen_bool(0.6),
                "input_tokens": (!failed).then_some(input),
                "output_tokens": (!failed).then_some(output),
                "cached_input_tokens": null,
                "cost_usd": cost,
                "duration_ms": duration_ms,
                "time_to_first_token_ms": (!failed).then_some(duration_ms / 4),
                "finish_reason": (!failed).then_some("stop"),
                "error_class": error_class,
                "attempts": 1,
                "credential": if self.rng.gen_bool(0.8) { "platform" } else { "user_key" },
            }),
        );
        if let Some(conversation) = conversation {
            body.insert("conversation_id".into(), json!(conversation));
        }
        body.insert("metadata".into(), self.service_metadata(SDK_AGENTS[0], at));
        let received_at_ms = at + self.rng.gen_range(0..5);
        self.emit(
            Envelope {
                tenant,
                id,
                timestamp_ms: at,
                received_at_ms,
                interaction_type: "ai_completion",
                user,
                user_type,
            },
            body,
        );
    }

    /// Product features calling the gateway: chat completions and some embeddings.
    fn gateway_burst(&mut self, tenant_idx: usize, start: i64) {
        let world = self.world;
        let population = &world.tenants[tenant_idx];
        let (user, user_type) = if self.rng.gen_bool(0.8) {
            (self.pick(&population.services), "service")
        } else {
            (self.pick(&population.contractors), "contractor")
        };
        let calls = self.count(0.62, 10);
        let mut at = start;
        for _ in 0..calls {
            if self.rng.gen_bool(0.12) {
                let (name, _, price) = EMBEDDING_MODELS[world.embedding_models.sample(self.rng)];
                let (provider, model) = name.split_once('/').unwrap_or(("openai", name));
                let inputs = self.count(0.8, 64);
                let tokens = u64::from(inputs) * self.rng.gen_range(12..90);
                let duration_ms = self.lognormal(120.0, 0.4) as u64;
                let id = self.id(at);
                let mut body = Map::new();
                body.insert(
                    "gateway".into(),
                    json!({
                        "operation": "embeddings",
                        "provider": provider,
                        "model": model,
                        "requested_model": model,
                        "n_inputs": inputs,
                        "input_tokens": tokens,
                        "cost_usd": price.map(|price| round8(tokens as f64 * price / 1e6)),
                        "duration_ms": duration_ms,
                        "credential": "platform",
                    }),
                );
                body.insert("metadata".into(), self.service_metadata(SDK_AGENTS[0], at));
                let received_at_ms = at + self.rng.gen_range(0..5);
                self.emit(
                    Envelope {
                        tenant: population.tenant,
                        id,
                        timestamp_ms: at,
                        received_at_ms,
                        interaction_type: "ai_embedding",
                        user,
                        user_type,
                    },
                    body,
                );
            } else {
                let model = &GATEWAY_MODELS[world.gateway_models.sample(self.rng)];
                let usage = self.usage(model, 900.0);
                let prompt = format!(
                    "Summarise this {} lead for the sales team: {}",
                    TRADES[self.rng.gen_range(0..TRADES.len())],
                    QUESTIONS[self.rng.gen_range(0..QUESTIONS.len())]
                );
                let answer = self.answer_text();
                let id = self.id(at);
                self.gateway_call(
                    population.tenant,
                    user,
                    user_type,
                    id,
                    at,
                    model,
                    usage,
                    None,
                    &prompt,
                    &answer,
                );
            }
            at += self.rng.gen_range(200..30_000);
        }
    }

    /// API requests recorded by Flywheel itself (`api_call`).
    fn api_burst(&mut self, tenant_idx: usize, start: i64) {
        let world = self.world;
        let population = &world.tenants[tenant_idx];
        let (user, user_type, agent) = match self.rng.gen_range(0..100) {
            0..=59 => (self.pick(&population.contractors), "contractor", None),
            60..=84 => (self.pick(&population.partners), "partner", None),
            _ => (
                self.pick(&population.services),
                "service",
                Some(SDK_AGENTS[self.rng.gen_range(1..3)]),
            ),
        };
        let calls = self.count(0.72, 12);
        let mut at = start;
        for _ in 0..calls {
            let (method, route, _, median) = ROUTES[world.routes.sample(self.rng)];
            let status = match self.rng.gen_range(0..1000) {
                0..=2 => 500,
                3..=14 => 429,
                15..=39 => 404,
                40..=59 => 422,
                _ if method == "POST" => 201,
                _ => 200,
            };
            let latency_ms = (self.lognormal(median, 0.5) * 10.0).round() / 10.0;
            let query = (method == "GET" && self.rng.gen_bool(0.3)).then(|| "limit=50".to_owned());
            let request_id = self.id(at);
            let id = self.id(at);
            let metadata = match agent {
                Some(agent) => self.service_metadata(agent, at),
                None => self.metadata(user, at, false),
            };
            let mut body = Map::new();
            body.insert(
                "api_call".into(),
                json!({"method": method, "route": route, "status": status,
                    "latency_ms": latency_ms, "request_id": request_id, "query": query}),
            );
            body.insert("metadata".into(), metadata);
            let received = at + latency_ms as i64;
            self.emit(
                Envelope {
                    tenant: population.tenant,
                    id,
                    timestamp_ms: at,
                    received_at_ms: received,
                    interaction_type: "api_call",
                    user,
                    user_type,
                },
                body,
            );
            at += self.rng.gen_range(100..20_000);
        }
    }

    /// A match asked for in the app (often after a form), without a conversation.
    fn direct_match(&mut self, tenant_idx: usize, start: i64) {
        let world = self.world;
        let population = &world.tenants[tenant_idx];
        let user = self.pick(&population.contractors);
        if self.rng.gen_bool(0.5) {
            self.form(population.tenant, user, start);
        }
        let at = start + self.rng.gen_range(1_000..60_000);
        self.partner_match(tenant_idx, user, at, None);
    }

    fn form(&mut self, tenant: &'static str, user: &Person, at: i64) {
        let id = self.id(at);
        let mut body = Map::new();
        body.insert(
            "form".into(),
            json!({
                "name": FORMS[self.rng.gen_range(0..FORMS.len())],
                "fields": self.rng.gen_range(3..14),
                "completion_ms": self.lognormal(45_000.0, 0.6) as u64,
                "step": "submitted",
            }),
        );
        body.insert("metadata".into(), self.metadata(user, at, true));
        let received_at_ms = at + self.rng.gen_range(50..2_000);
        self.emit(
            Envelope {
                tenant,
                id,
                timestamp_ms: at,
                received_at_ms,
                interaction_type: "form_submission",
                user,
                user_type: "contractor",
            },
            body,
        );
    }

    /// A partner match (the root of an outcome chain) and what happens to it later: a demo
    /// (sometimes cancelled), a deal (sometimes corrected), a satisfaction score.
    fn partner_match(
        &mut self,
        tenant_idx: usize,
        user: &Person,
        at: i64,
        conversation: Option<&str>,
    ) {
        let world = self.world;
        let population = &world.tenants[tenant_idx];
        let tenant = population.tenant;
        let matched = self.rng.gen_bool(0.85);
        let partner = {
            let u: f64 = self.rng.gen();
            let idx = ((u * u) * population.partner_ids.len() as f64) as usize;
            population.partner_ids[idx.min(population.partner_ids.len() - 1)].clone()
        };
        let root = self.id(at);
        let mut outcomes = json!({"partner_matched": matched});
        if matched {
            let score = 0.35 + 0.64 * self.rng.gen::<f64>().sqrt();
            outcomes["partner_id"] = json!(partner);
            outcomes["match_score"] = json!((score * 1000.0).round() / 1000.0);
        }
        let mut body = Map::new();
        if let Some(conversation) = conversation {
            body.insert("conversation_id".into(), json!(conversation));
        }
        body.insert("outcomes".into(), outcomes);
        body.insert(
            "experiments".into(),
            json!({"matching_algorithm": if self.rng.gen_bool(0.5) { "v2" } else { "v3-embeddings" }}),
        );
        body.insert("metadata".into(), self.metadata(user, at, false));
        let received_at_ms = at + self.rng.gen_range(20..500);
        self.emit(
            Envelope {
                tenant,
                id: root.clone(),
                timestamp_ms: at,
                received_at_ms,
                interaction_type: "partner_match",
                user,
                user_type: "contractor",
            },
            body,
        );
        if !matched {
            return;
        }
        let link = |outcomes: Value| (outcomes, root.clone());
        if self.rng.gen_bool(0.25) {
            let later = at + self.lognormal(4.0 * DAY_MS as f64, 0.6) as i64;
            let score =
                [6.0, 7.0, 8.0, 8.0, 9.0, 9.0, 10.0, 10.0, 4.0, 5.0][self.rng.gen_range(0..10)];
            self.linked(
                tenant,
                user,
                later,
                "satisfaction_survey",
                conversation,
                link(json!({"satisfaction_score": score, "partner_id": partner})),
            );
        }
        if !self.rng.gen_bool(0.4) {
            return;
        }
        let demo_at = at
            + self
                .lognormal(3.0 * DAY_MS as f64, 0.7)
                .clamp(7_200_000.0, 30.0 * DAY_MS as f64) as i64;
        self.linked(
            tenant,
            user,
            demo_at,
            "demo_booking",
            conversation,
            link(json!({"demo_booked": true, "partner_id": partner})),
        );
        if self.rng.gen_bool(0.1) {
            // Cancelled: the demo is withdrawn and nothing follows.
            let cancel_at = demo_at + self.rng.gen_range(DAY_MS / 4..7 * DAY_MS);
            self.linked(
                tenant,
                user,
                cancel_at,
                "demo_booking",
                conversation,
                link(json!({"demo_booked": false, "partner_id": partner})),
            );
            return;
        }
        let decided_at = demo_at + self.lognormal(21.0 * DAY_MS as f64, 0.6) as i64;
        match self.rng.gen_range(0..100) {
            0..=34 => {
                let value = (self.lognormal(12_000.0, 0.8) * 100.0).round() / 100.0;
                self.linked(
                    tenant,
                    user,
                    decided_at,
                    "deal_closed",
                    conversation,
                    link(json!({"deal_closed": true, "deal_value": value, "partner_id": partner})),
                );
                if self.rng.gen_bool(0.06) {
                    // The value is corrected later (a change order).
                    let corrected = (value * self.rng.gen_range(0.7..1.4) * 100.0).round() / 100.0;
                    let fix_at = decided_at + self.rng.gen_range(DAY_MS..20 * DAY_MS);
                    self.linked(
                        tenant,
                        user,
                        fix_at,
                        "deal_closed",
                        conversation,
                        link(json!({"deal_value": corrected, "partner_id": partner})),
                    );
                }
            }
            35..=49 => {
                self.linked(
                    tenant,
                    user,
                    decided_at,
                    "deal_closed",
                    conversation,
                    link(json!({"deal_closed": false, "partner_id": partner})),
                );
            }
            _ => {}
        }
    }

    /// An outcome recorded later by an integration, linked to its root; it carries the root's
    /// user and conversation.
    fn linked(
        &mut self,
        tenant: &'static str,
        user: &Person,
        at: i64,
        interaction_type: &'static str,
        conversation: Option<&str>,
        (outcomes, parent): (Value, String),
    ) {
        let id = self.id(at);
        let mut body = Map::new();
        body.insert("parent_interaction_id".into(), json!(parent));
        if let Some(conversation) = conversation {
            body.insert("conversation_id".into(), json!(conversation));
        }
        body.insert("outcomes".into(), outcomes);
        body.insert("source".into(), json!({"system": "crm", "record": format!("opp-{}", self.rng.gen_range(100_000..999_999))}));
        body.insert("metadata".into(), self.service_metadata(CRM_AGENT, at));
        let received_at_ms = at + self.rng.gen_range(200..5_000);
        self.emit(
            Envelope {
                tenant,
                id,
                timestamp_ms: at,
                received_at_ms,
                interaction_type,
                user,
                user_type: "contractor",
            },
            body,
        );
    }

    /// Feedback on an answer: minutes later mostly, sometimes days later.
    fn feedback(
        &mut self,
        tenant: &'static str,
        user: &Person,
        conversation: &str,
        answer: &str,
        answer_at: i64,
    ) {
        let at = if self.rng.gen_bool(0.85) {
            answer_at + self.rng.gen_range(10_000..600_000)
        } else {
            answer_at + self.rng.gen_range(DAY_MS..4 * DAY_MS)
        };
        let helpful = self.rng.gen_bool(0.72);
        let mut feedback = json!({
            "helpful": helpful,
            "accuracy": f64::from(if helpful { self.rng.gen_range(6..=10) } else { self.rng.gen_range(1..=6) }),
        });
        if self.rng.gen_bool(0.5) {
            feedback["would_recommend"] = json!(helpful && self.rng.gen_bool(0.8));
        }
        if self.rng.gen_bool(0.3) {
            feedback["comments"] =
                json!(FEEDBACK_COMMENTS[self.rng.gen_range(0..FEEDBACK_COMMENTS.len())]);
        }
        let id = self.id(at);
        let mut body = Map::new();
        body.insert("parent_interaction_id".into(), json!(answer));
        body.insert("conversation_id".into(), json!(conversation));
        body.insert("session_id".into(), json!(conversation));
        body.insert("feedback".into(), feedback);
        body.insert("metadata".into(), self.metadata(user, at, false));
        let received_at_ms = at + self.rng.gen_range(20..800);
        self.emit(
            Envelope {
                tenant,
                id,
                timestamp_ms: at,
                received_at_ms,
                interaction_type: "feedback",
                user,
                user_type: "contractor",
            },
            body,
        );
    }
}

/// The app's version at a time: a minor release every six weeks.
fn app_version(at_ms: i64) -> String {
    let weeks = (at_ms - START_MS).max(0) / (7 * DAY_MS);
    format!("3.{}.{}", 4 + weeks / 6, weeks % 6)
}

fn round8(value: f64) -> f64 {
    (value * 1e8).round() / 1e8
}

// ---------------------------------------------------------------------------------------------
// Machine, CPU share, output
// ---------------------------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The report as Markdown: machine, lake, one table of every query on both engines against the
/// targets, and each disagreement or failure spelled out.
pub fn markdown(report: &LakeReport, bench: &LakeBench) -> String {
    let machine = &report.machine;
    let lake = &report.lake;
    let mut out = format!(
        "Machine: {} ({} cores), {} RAM, {}; {}; {} build; other processes used {} of the CPU during the queries\n",
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.os,
        machine.date,
        if machine.release_build { "release" } else { "debug (not representative)" },
        machine
            .others_cpu_share
            .map_or("an unknown share".to_owned(), |share| format!("{:.1} %", share * 100.0)),
    );
    let lake_end = START_MS + i64::from(lake.days) * DAY_MS;
    let tenant_rows = |tenant: &str| {
        lake.mix
            .iter()
            .filter(|(key, _)| key.split_once('/').is_some_and(|(t, _)| t == tenant))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    out.push_str(&format!(
        "\nLake: {} ({}), {} interactions ({TENANT}: {}, {OTHER_TENANT}: {}) over {} days from {} to {}, seed {}; \
         {} Parquet files, {:.1} MiB on disk = **{:.1} MiB per million interactions**; {} in {:.1} s ({:.0} rows/s)\n",
        lake.dir.display(),
        if lake.reused { "reused" } else { "generated in this run" },
        lake.rows,
        tenant_rows(TENANT),
        tenant_rows(OTHER_TENANT),
        lake.days,
        date(START_MS),
        date(lake_end - 1),
        lake.seed,
        lake.files,
        lake.bytes as f64 / 1024.0 / 1024.0,
        lake.mib_per_million(),
        if lake.reused { "generated earlier" } else { "generated" },
        lake.generation.as_secs_f64(),
        lake.rows as f64 / lake.generation.as_secs_f64().max(1e-9),
    ));
    let mut types: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, n) in &lake.mix {
        if let Some((_, kind)) = key.split_once('/') {
            *types.entry(kind).or_default() += n;
        }
    }
    let mut types: Vec<(&str, u64)> = types.into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    out.push_str(&format!(
        "\nMix (both tenants): {}\n",
        types
            .iter()
            .map(|(kind, n)| format!(
                "{kind} {:.1} %",
                *n as f64 * 100.0 / lake.rows.max(1) as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!(
        "\nAs tenant `{TENANT}`. Reports and the join: the whole lake [{}, {}); the month queries: [{}, {}). \
         Cold: the first run in a new engine (new `Analytics` / new DuckDB connection; the OS page cache stays warm); \
         hot: median of {} further runs. Peer: {}.\n\n",
        date(START_MS),
        date(lake_end),
        date(report.month.0),
        date(report.month.1),
        bench.runs,
        match &report.peer {
            Ok(name) => name.clone(),
            Err(note) => note.clone(),
        }
    ));
    out.push_str(
        "| query | rows | flywheel cold ms | flywheel hot ms | duckdb cold ms | duckdb hot ms | hot ratio flywheel/duckdb | targets | same answer |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let mut notes = Vec::new();
    for query in &report.queries {
        let ms = |timings: &Result<Timings, String>, hot: bool| match timings {
            Ok(t) if hot => format!("{:.0}", t.hot_median_ms()),
            Ok(t) => format!("{:.0}", t.cold_ms),
            Err(_) => "—".to_owned(),
        };
        let ratio = query.hot_ratio();
        let mut targets = Vec::new();
        if query.query.kind == QueryKind::Report {
            if let Ok(ours) = &query.flywheel {
                let met = ours.hot_median_ms() < REPORT_TARGET.as_secs_f64() * 1000.0;
                targets.push(format!(
                    "< 1 s: {}",
                    if met { "met" } else { "**not met**" }
                ));
            }
        }
        if let Some(ratio) = ratio {
            targets.push(format!(
                "≤ {RATIO_TARGET}×: {}",
                if ratio <= RATIO_TARGET {
                    "met"
                } else {
                    "**not met**"
                }
            ));
        }
        let rows = match (&query.flywheel, &query.peer) {
            (Ok(ours), _) => ours.rows.to_string(),
            (_, Ok(theirs)) => theirs.rows.to_string(),
            _ => "—".to_owned(),
        };
        let agreement = match &query.agreement {
            Agreement::Same => "yes".to_owned(),
            Agreement::Different(why) => {
                notes.push(format!("- **Mismatch** in {}: {why}", query.query.name));
                "**no** (see below)".to_owned()
            }
            Agreement::NotCompared => "—".to_owned(),
        };
        for (engine, timings) in [("Flywheel", &query.flywheel), ("DuckDB", &query.peer)] {
            if let Err(err) = timings {
                if engine != "DuckDB" || bench.peer {
                    notes.push(format!(
                        "- {engine} did not answer {}: {err}",
                        query.query.name
                    ));
                }
            }
        }
        out.push_str(&format!(
            "| {} | {rows} | {} | {} | {} | {} | {} | {} | {agreement} |\n",
            query.query.name,
            ms(&query.flywheel, false),
            ms(&query.flywheel, true),
            ms(&query.peer, false),
            ms(&query.peer, true),
            ratio.map_or("—".to_owned(), |ratio| format!("**{ratio:.2}×**")),
            targets.join("; "),
        ));
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    let hot_runs = |timings: &Result<Timings, String>| match timings {
        Ok(t) => t
            .hot_ms
            .iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => "—".to_owned(),
    };
    out.push_str("\nEvery hot run (ms): ");
    out.push_str(
        &report
            .queries
            .iter()
            .map(|query| {
                format!(
                    "{}: flywheel {}; duckdb {}",
                    query.query.name,
                    hot_runs(&query.flywheel),
                    hot_runs(&query.peer)
                )
            })
            .collect::<Vec<_>>()
            .join(" · "),
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate_days(seed: u64, rows: u64, days: u32) -> Vec<Vec<InteractionRecord>> {
        let mut generator = Generator::new(seed, rows, days);
        (0..days).map(|day| generator.day(day)).collect()
    }

    #[test]
    fn the_generator_is_deterministic_and_exact() {
        let a = generate_days(7, 5_000, 20);
        let b = generate_days(7, 5_000, 20);
        assert_eq!(a, b);
        let c = generate_days(8, 5_000, 20);
        assert_ne!(a, c);
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 5_000);
        for (day, rows) in a.iter().enumerate() {
            for row in rows {
                assert_eq!((row.timestamp_ms - START_MS).div_euclid(DAY_MS), day as i64);
            }
        }
    }

    #[test]
    fn documents_follow_the_contract_and_have_realistic_sizes() {
        let days = generate_days(42, 20_000, 30);
        let tenant = flywheel_core::TenantId::parse(TENANT).unwrap();
        let other = flywheel_core::TenantId::parse(OTHER_TENANT).unwrap();
        let mut kinds = BTreeMap::new();
        let mut sizes = Vec::new();
        for row in days.iter().flatten() {
            let value: Value = serde_json::from_str(&row.document_json).unwrap();
            let tenant = if row.tenant_id == TENANT {
                &tenant
            } else {
                &other
            };
            let received = chrono::DateTime::from_timestamp_millis(row.received_at_ms).unwrap();
            let parsed = flywheel_core::Interaction::parse(value, tenant, received)
                .unwrap_or_else(|err| panic!("{}: {err}", row.document_json));
            assert_eq!(parsed.interaction_id.to_string(), row.interaction_id);
            assert_eq!(parsed.timestamp.timestamp_millis(), row.timestamp_ms);
            assert_eq!(parsed.interaction_type, row.interaction_type);
            *kinds.entry(row.interaction_type.clone()).or_insert(0u64) += 1;
            sizes.push(row.document_json.len() as f64);
        }
        for kind in [
            "ai_concierge",
            "ai_concierge_response",
            "ai_completion",
            "ai_embedding",
            "api_call",
            "partner_match",
            "demo_booking",
            "deal_closed",
            "satisfaction_survey",
            "feedback",
            "form_submission",
        ] {
            assert!(
                kinds.get(kind).copied().unwrap_or(0) > 0,
                "no {kind}: {kinds:?}"
            );
        }
        let (min, max) = sizes
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        assert!(min > 300.0 && max < 3_000.0, "document sizes {min}..{max}");
        let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
        assert!(
            (500.0..1_500.0).contains(&mean),
            "mean document size {mean}"
        );
    }

    #[test]
    fn the_month_window_is_the_middle_calendar_month() {
        let (from, to) = month_window(365);
        assert_eq!(
            (date(from), date(to)),
            ("2025-07-01".to_owned(), "2025-08-01".to_owned())
        );
        let (from, to) = month_window(10);
        assert_eq!(
            (date(from), date(to)),
            ("2025-01-01".to_owned(), "2025-01-11".to_owned())
        );
    }

    #[test]
    fn answers_are_compared_by_rows_and_values() {
        let timings = |result: Vec<Value>| Timings {
            cold_ms: 1.0,
            hot_ms: vec![1.0],
            rows: result.len(),
            result,
        };
        let ours = timings(vec![
            json!({"day": "2025-01-01", "cost": 0.1 + 0.2, "n": 3}),
        ]);
        let same = timings(vec![json!({"day": "2025-01-01", "cost": 0.3, "n": 3})]);
        assert_eq!(compare(&ours, &same), Agreement::Same);
        let other = timings(vec![json!({"day": "2025-01-01", "cost": 0.31, "n": 3})]);
        assert!(
            matches!(compare(&ours, &other), Agreement::Different(why) if why.contains("cost"))
        );
        assert!(matches!(
            compare(&ours, &timings(vec![])),
            Agreement::Different(_)
        ));
    }
}
