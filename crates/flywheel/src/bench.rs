//! `flywheel bench ingest`: sustained durable ingestion against a real server on loopback,
//! next to a named peer — a plain `INSERT` loop of the same documents through the same
//! database driver — so the ratio shows what the pipeline costs.
//!
//! Every loop is bounded by a duration and every request goes to 127.0.0.1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flywheel_config::Config;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::app::Application;

// `flywheel bench local` lives in its own file next to this one, like `bench_gateway.rs`.
#[path = "bench_local.rs"]
pub mod local;

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestBench {
    pub duration: Duration,
    pub clients: usize,
    /// Offered rate (requests per second) for the fixed-rate latency scenario.
    pub rate: u32,
    /// Also run against PostgreSQL (a throwaway database is created on this server).
    pub postgres_url: Option<String>,
}

/// One measured scenario.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub backend: &'static str,
    pub scenario: String,
    pub events_per_sec: f64,
    pub requests_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: u64,
}

/// A realistic interaction of about 1.5 KB: an AI concierge turn with messages, outcomes,
/// feedback, metadata and experiments. Shared by the benchmark and the tests.
pub fn sample_interaction(user: &str, seq: usize) -> Value {
    json!({
        "interaction_type": "ai_concierge",
        "user_id": user,
        "user_type": "contractor",
        "session_id": format!("session-{user}"),
        "conversation_id": format!("conv-{user}-{}", seq / 4),
        "ai_conversation": {
            "messages": [
                {"role": "system", "content": "You are the Power100 concierge. Match contractors with strategic partners."},
                {"role": "user", "content": format!("We are a roofing company doing about $8M a year; question number {seq}: which partner helps us close a higher percentage of estimates?"), "tokens": 41},
                {"role": "assistant", "content": "Based on your focus on closing higher percentages and your revenue tier, two partners stand out. The first specialises in in-home sales training; the second offers follow-up automation that lifts close rates for companies your size.", "tokens": 58, "model": "gpt-4o-mini"}
            ],
            "total_tokens": 99 + seq % 7,
            "cost": 0.00042,
            "duration_ms": 850 + (seq % 13) as u64
        },
        "outcomes": {"partner_matched": true, "partner_id": format!("partner-{}", seq % 5), "match_score": 0.87, "demo_booked": seq.is_multiple_of(3), "deal_closed": false},
        "feedback": {"helpful": true, "accuracy": 4, "would_recommend": true},
        "metadata": {
            "app_version": "3.2.1", "api_version": "v1", "environment": "production",
            "client_ip": "203.0.113.45",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "referrer": "https://power100.io/contractors/dashboard",
            "location": {"country": "US", "state": "TX", "city": "Austin"}
        },
        "experiments": {"ai_model_version": "v2", "ui_variant": "b", "matching_algorithm": "weighted"}
    })
}

/// Runs every scenario on SQLite, then on PostgreSQL when configured.
/// `base` is the loaded configuration (so `flywheel.toml` and `FLYWHEEL_…` tune the run);
/// the data directory, bind address and database are replaced by throwaway ones.
pub async fn run_ingest(base: &Config, bench: &IngestBench) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    results.extend(run_backend(base, bench, "sqlite", &sqlite_url, dir.path()).await?);
    if let Some(admin_url) = &bench.postgres_url {
        let name = format!("flywheel_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .context("connecting to --postgres-url")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = replace_database(admin_url, &name);
        let pg_dir = tempfile::tempdir()?;
        let outcome = run_backend(base, bench, "postgres", &url, pg_dir.path()).await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        results.extend(outcome?);
    }
    Ok(results)
}

async fn run_backend(
    base: &Config,
    bench: &IngestBench,
    backend: &'static str,
    url: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..base.clone()
    };
    config.lake.url = None;
    config.secrets.master_key = None;
    config.server.bind = "127.0.0.1:0".parse()?;
    config.server.max_body_bytes = 8 * 1024 * 1024;
    config.database.url = Some(url.to_owned());
    let admin_key = random_api_key();
    let app = Application::build(config, Some(SecretString::from(admin_key.clone()))).await?;
    let address = format!("http://{}", app.local_addr()?);
    let archiver = app.components().archiver.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.clients * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..16)
            .map(|b| {
                let items: Vec<Value> = (0..100)
                    .map(|i| sample_interaction(&format!("user-{}", i % 40), b * 100 + i))
                    .collect();
                serde_json::to_vec(&items).unwrap_or_default()
            })
            .collect(),
    );
    let singles: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..64)
            .map(|i| {
                serde_json::to_vec(&sample_interaction(&format!("user-{}", i % 40), i))
                    .unwrap_or_default()
            })
            .collect(),
    );
    let average_size = singles.iter().map(Vec::len).sum::<usize>() / singles.len().max(1);
    eprintln!("{backend}: documents average {average_size} bytes");

    let target = Target {
        client: client.clone(),
        url: format!("{address}/v1/interactions"),
        key: admin_key.clone(),
    };
    let mut results = Vec::new();
    let batch = closed_loop(
        &target,
        batches.clone(),
        100,
        bench.clients,
        bench.duration,
        &format!("{backend} batches of 100"),
    )
    .await;
    results.push(batch.into_result(backend, "pipeline: batches of 100, durable ack"));
    drain(&archiver, backend).await;
    let single = closed_loop(
        &target,
        singles.clone(),
        1,
        bench.clients,
        bench.duration,
        &format!("{backend} single events"),
    )
    .await;
    results.push(single.into_result(backend, "pipeline: single events, durable ack"));
    drain(&archiver, backend).await;
    let fixed = open_loop(
        &target,
        singles.clone(),
        bench.rate,
        bench.duration,
        &format!("{backend} {} req/s offered", bench.rate),
    )
    .await;
    results.push(fixed.into_result(
        backend,
        &format!("pipeline: single events at {} req/s offered", bench.rate),
    ));

    let _ = stop.send(());
    server.await.context("server task")??;

    // The peer: the same documents, a plain INSERT loop through the same driver.
    let documents: Vec<String> = (0..100)
        .map(|i| sample_interaction(&format!("user-{}", i % 40), i).to_string())
        .collect();
    results.push(peer_loop(backend, url, &documents, 100, bench.duration).await?);
    results.push(peer_loop(backend, url, &documents, 1, bench.duration).await?);
    Ok(results)
}

/// Ships the previous scenario's backlog to the lake before the next one starts, so that each
/// scenario pays for archiving its own data only (the archiver keeps running during it).
async fn drain(archiver: &flywheel_services::archive::Archiver, backend: &str) {
    let started = Instant::now();
    match archiver.archive(true).await {
        Ok(report) => eprintln!(
            "{backend}: archived the {} interactions of the previous scenario in {:.1}s",
            report.rows,
            started.elapsed().as_secs_f64()
        ),
        Err(err) => eprintln!("{backend}: archiving between scenarios failed: {err}"),
    }
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    key: String,
}

struct Measured {
    events: u64,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Histogram<u64>,
}

impl Measured {
    /// Gathers the counters of a finished scenario that started at `started`.
    fn collect(
        started: Instant,
        events_per_request: u64,
        requests: &AtomicU64,
        errors: &AtomicU64,
        latencies: Arc<Mutex<Histogram<u64>>>,
    ) -> Measured {
        let requests = requests.load(Ordering::Relaxed);
        Measured {
            events: requests * events_per_request,
            requests,
            errors: errors.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            latencies: Arc::try_unwrap(latencies)
                .ok()
                .and_then(|mutex| mutex.into_inner().ok())
                .unwrap_or_else(new_histogram),
        }
    }

    fn into_result(self, backend: &'static str, scenario: &str) -> BenchResult {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let has = !self.latencies.is_empty();
        BenchResult {
            backend,
            scenario: scenario.to_owned(),
            events_per_sec: self.events as f64 / secs,
            requests_per_sec: self.requests as f64 / secs,
            p50_ms: has.then(|| self.latencies.value_at_quantile(0.5) as f64 / 1000.0),
            p99_ms: has.then(|| self.latencies.value_at_quantile(0.99) as f64 / 1000.0),
            errors: self.errors,
        }
    }
}

pub(crate) fn progress(label: &str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>32} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// A bar counting `total` steps (runs) of a benchmark that has no fixed duration.
pub(crate) fn progress_count(label: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>32} [{bar:30}] {pos}/{len} runs {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

async fn send(target: &Target, body: Vec<u8>) -> bool {
    target
        .client
        .post(&target.url)
        .bearer_auth(&target.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

/// `clients` loops, each sending as fast as acknowledgements come back.
async fn closed_loop(
    target: &Target,
    bodies: Arc<Vec<Vec<u8>>>,
    events_per_request: u64,
    clients: usize,
    duration: Duration,
    label: &str,
) -> Measured {
    let bar = progress(label, duration);
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(new_histogram()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client_idx in 0..clients {
        let (target, bodies, requests, errors, latencies) = (
            target.clone(),
            bodies.clone(),
            requests.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = new_histogram();
            let mut idx = client_idx;
            while Instant::now() < deadline {
                idx = (idx + 1) % bodies.len();
                let sent = Instant::now();
                if send(&target, bodies[idx].clone()).await {
                    requests.fetch_add(1, Ordering::Relaxed);
                    let _ = local.record(sent.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Ok(mut shared) = latencies.lock() {
                let _ = shared.add(&local);
            }
        }));
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bar.set_position(started.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{} events",
            requests.load(Ordering::Relaxed) * events_per_request
        ));
    }
    for task in tasks {
        let _ = task.await;
    }
    bar.finish_and_clear();
    Measured::collect(started, events_per_request, &requests, &errors, latencies)
}

/// Requests sent on a fixed schedule whatever the responses do; latency counts from the
/// scheduled send time, so a stall is not hidden (no coordinated omission).
async fn open_loop(
    target: &Target,
    bodies: Arc<Vec<Vec<u8>>>,
    rate: u32,
    duration: Duration,
    label: &str,
) -> Measured {
    let bar = progress(label, duration);
    let rate = rate.max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(new_histogram()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(2_000));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (target, body, requests, errors, latencies) = (
            target.clone(),
            bodies[(n as usize) % bodies.len()].clone(),
            requests.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.spawn(async move {
            let ok = send(&target, body).await;
            let micros = scheduled.elapsed().as_micros() as u64;
            drop(permit);
            if ok {
                requests.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut histogram) = latencies.lock() {
                    let _ = histogram.record(micros);
                }
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        if n % 200 == 0 {
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(format!("{n} sent"));
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    Measured::collect(started, 1, &requests, &errors, latencies)
}

/// The peer: `INSERT INTO bench_peer (id, document) VALUES (…)` in a loop, committing every
/// `per_commit` rows (100 = the batch scenario, 1 = autocommit per event).
async fn peer_loop(
    backend: &'static str,
    url: &str,
    documents: &[String],
    per_commit: usize,
    duration: Duration,
) -> anyhow::Result<BenchResult> {
    let label = format!("{backend} peer INSERT x{per_commit}");
    let bar = progress(&label, duration);
    let started = Instant::now();
    let deadline = started + duration;
    let mut latencies = new_histogram();
    let mut rows = 0u64;
    macro_rules! run_peer {
        ($connection:expr) => {{
            let mut connection = $connection;
            sqlx::query("CREATE TABLE IF NOT EXISTS bench_peer (id TEXT PRIMARY KEY, document TEXT NOT NULL)")
                .execute(&mut connection)
                .await?;
            while Instant::now() < deadline {
                let commit_started = Instant::now();
                let mut tx = connection.begin().await?;
                for document in documents.iter().take(per_commit) {
                    sqlx::query("INSERT INTO bench_peer (id, document) VALUES ($1, $2)")
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(document.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                rows += per_commit as u64;
                let _ = latencies.record(commit_started.elapsed().as_micros() as u64);
                if rows % 1000 < per_commit as u64 {
                    bar.set_position(started.elapsed().as_millis() as u64);
                    bar.set_message(format!("{rows} rows"));
                }
            }
        }};
    }
    if backend == "sqlite" {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        run_peer!(sqlx::SqliteConnection::connect_with(&options).await?);
    } else {
        run_peer!(sqlx::PgConnection::connect(url).await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(BenchResult {
        backend,
        scenario: if per_commit == 1 {
            "peer: plain INSERT loop, one commit per event".to_owned()
        } else {
            format!("peer: plain INSERT loop, one commit per {per_commit} events")
        },
        events_per_sec: rows as f64 / elapsed,
        requests_per_sec: (rows / per_commit as u64) as f64 / elapsed,
        p50_ms: Some(latencies.value_at_quantile(0.5) as f64 / 1000.0),
        p99_ms: Some(latencies.value_at_quantile(0.99) as f64 / 1000.0),
        errors: 0,
    })
}

/// The results as a Markdown table.
pub fn markdown(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "| backend | scenario | events/s | requests/s | p50 ms | p99 ms | errors |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    let ms = |value: Option<f64>| value.map_or("–".to_owned(), |v| format!("{v:.2}"));
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} |\n",
            r.backend,
            r.scenario,
            r.events_per_sec,
            r.requests_per_sec,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.errors
        ));
    }
    out
}

/// A well-formed random API key (for the bootstrap admin of throwaway servers).
pub fn random_api_key() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    let prefix = Alphanumeric
        .sample_string(&mut rand::thread_rng(), 12)
        .to_ascii_lowercase();
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
    format!("fw_{prefix}_{secret}")
}

/// `postgres://user@host:port/db?x` with `db` replaced.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|idx| idx + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(idx) => &base[..scheme_end + idx],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}
