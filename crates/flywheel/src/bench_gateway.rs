//! `flywheel bench gateway`: what the LLM gateway adds on top of an upstream that answers
//! instantly, next to a named peer (LiteLLM's proxy) against the same upstream in the same run.
//!
//! The upstream is the in-repo mock (`flywheel-mock-provider`) on its own runtime thread; the
//! gateway is a real `flywheel serve` child process with interaction logging on; the load
//! generator is this process. Scenarios: latency at concurrency 1 (direct to the mock, through
//! Flywheel, through LiteLLM; JSON and SSE), then an open-loop rate sweep (requests scheduled
//! at a fixed rate, latency counted from the scheduled time) until p99 passes the looser bound (100 ms) or errors
//! pass 0.1 %. Every loop is bounded in time and every request goes to 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::bench::{new_histogram, progress, random_api_key};

/// What to run.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// Length of each scenario step.
    pub duration: Duration,
    /// Offered rates for Flywheel's sweep, ascending.
    pub rates: Vec<u32>,
    /// Offered rates for the peer's sweep, ascending.
    pub peer_rates: Vec<u32>,
    /// The LiteLLM proxy command; the peer is skipped (and said so) when it cannot start.
    pub litellm: Option<String>,
    /// p99 bound of a sustained rate.
    pub p99_bound: Duration,
    /// A looser p99 bound, reported too, so a peer that never meets the strict one still has a
    /// comparable number; sweeps continue until a step fails this one.
    pub loose_p99_bound: Duration,
    /// TOML appended to the gateway server's configuration (for experiments).
    pub server_config: String,
}

/// Latency at concurrency 1.
#[derive(Debug, Clone)]
pub struct SerialResult {
    pub target: String,
    pub format: &'static str,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

/// One step of a rate sweep.
#[derive(Debug, Clone)]
pub struct RateResult {
    pub target: String,
    pub format: &'static str,
    pub offered: u32,
    pub achieved: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    pub sent: u64,
    /// CPU time the gateway process used per request (µs), when measured.
    pub server_cpu_us: Option<f64>,
    /// The gateway's peak resident memory during the step, when measured.
    pub peak_rss_kib: Option<u64>,
}

impl RateResult {
    fn error_ratio(&self) -> f64 {
        self.errors as f64 / (self.sent.max(1)) as f64
    }

    fn sustained(&self, bound: Duration) -> bool {
        self.p99_us <= bound.as_micros() as u64 && self.error_ratio() < 0.001
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct GatewayReport {
    pub serial: Vec<SerialResult>,
    pub rates: Vec<RateResult>,
    pub idle_rss_kib: Option<u64>,
    pub loaded_rss_kib: Option<u64>,
    pub peer_note: Option<String>,
}

#[derive(Clone)]
struct Endpoint {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    model: String,
}

impl Endpoint {
    /// Sends one chat completion and reads the whole answer (all events for SSE).
    async fn call(&self, stream: bool, n: u64) -> bool {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for contractors."},
                {"role": "user", "content": format!("Which partner helps a roofing company close more estimates? Question {n}.")},
            ],
            "max_tokens": 64,
            "temperature": 0.2,
        });
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let Ok(response) = request.send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        match response.bytes().await {
            Ok(bytes) if stream => bytes.windows(6).any(|window| window == b"[DONE]"),
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// Runs the whole benchmark.
pub async fn run_gateway(bench: &GatewayBench) -> anyhow::Result<GatewayReport> {
    let mut report = GatewayReport::default();
    let mock_addr = start_mock()?;
    let mock_url = format!("http://{mock_addr}/v1/chat/completions");
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4_096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;

    let (mut gateway, gateway_addr, admin_key) =
        start_flywheel(dir.path(), mock_addr, &bench.server_config).await?;
    let gateway_pid = gateway.id();
    report.idle_rss_kib = gateway_pid.and_then(rss_kib);
    let direct = Endpoint {
        client: client.clone(),
        url: mock_url.clone(),
        key: Some("sk-bench".to_owned()),
        model: "gpt-mock".to_owned(),
    };
    let flywheel = Endpoint {
        client: client.clone(),
        url: format!("http://{gateway_addr}/v1/chat/completions"),
        key: Some(admin_key),
        model: "mock/gpt-mock".to_owned(),
    };
    // Warm up connections, caches and the database.
    let _ = serial(&flywheel, "flywheel", false, Duration::from_secs(2)).await;
    for stream in [false, true] {
        report
            .serial
            .push(serial(&direct, "direct to mock", stream, bench.duration).await);
        report
            .serial
            .push(serial(&flywheel, "flywheel", stream, bench.duration).await);
    }
    // The harness alone (load generator and mock on this machine): the ceiling any proxy
    // measured here is under.
    for &rate in &bench.rates {
        let result = open_loop(&direct, "direct to mock", false, rate, bench.duration).await;
        let sustained = result.sustained(bench.p99_bound);
        report.rates.push(result);
        if !sustained {
            break;
        }
    }
    for stream in [false, true] {
        for &rate in &bench.rates {
            let peak = Arc::new(AtomicU64::new(0));
            let sampler = gateway_pid.map(|pid| spawn_rss_sampler(pid, peak.clone()));
            let cpu_before = gateway_pid.and_then(cpu_ticks);
            let mut result = open_loop(&flywheel, "flywheel", stream, rate, bench.duration).await;
            if let (Some(before), Some(after)) = (cpu_before, gateway_pid.and_then(cpu_ticks)) {
                let requests = (result.sent - result.errors).max(1) as f64;
                result.server_cpu_us =
                    Some((after - before) as f64 * 1e6 / CLOCK_TICKS_PER_SEC / requests);
            }
            if let Some(sampler) = sampler {
                sampler.abort();
            }
            result.peak_rss_kib = Some(peak.load(Ordering::Relaxed)).filter(|kib| *kib > 0);
            let sustained = result.sustained(bench.loose_p99_bound);
            report.rates.push(result);
            if !sustained {
                break;
            }
        }
    }
    // Loaded memory: the peak during the steps the gateway sustained (an overloaded step
    // holds thousands of queued requests and says nothing about steady use).
    report.loaded_rss_kib = report
        .rates
        .iter()
        .filter(|r| r.target == "flywheel" && r.sustained(bench.p99_bound))
        .filter_map(|r| r.peak_rss_kib)
        .max();
    let _ = gateway.kill().await;

    match &bench.litellm {
        None => report.peer_note = Some("peer skipped (--no-peer)".to_owned()),
        Some(command) => match start_litellm(command, dir.path(), mock_addr).await {
            Ok((mut child, addr)) => {
                let peer = Endpoint {
                    client: client.clone(),
                    url: format!("http://{addr}/v1/chat/completions"),
                    key: Some(LITELLM_MASTER_KEY.to_owned()),
                    model: "mock/gpt-mock".to_owned(),
                };
                let _ = serial(&peer, "litellm", false, Duration::from_secs(2)).await;
                for stream in [false, true] {
                    report
                        .serial
                        .push(serial(&peer, "litellm", stream, bench.duration).await);
                }
                for stream in [false, true] {
                    for &rate in &bench.peer_rates {
                        let result =
                            open_loop(&peer, "litellm", stream, rate, bench.duration).await;
                        let sustained = result.sustained(bench.loose_p99_bound);
                        report.rates.push(result);
                        if !sustained {
                            break;
                        }
                    }
                }
                let _ = child.kill().await;
            }
            Err(err) => report.peer_note = Some(format!("peer not run: {err:#}")),
        },
    }
    Ok(report)
}

/// The mock upstream on its own single-threaded runtime, so its work is not scheduled among
/// the load generator's tasks.
pub(crate) fn start_mock() -> anyhow::Result<SocketAddr> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mock-upstream".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = sender.send(Err(anyhow::anyhow!("mock runtime: {err}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match flywheel_mock_provider::MockServer::start().await {
                    Ok(server) => {
                        let _ = sender.send(Ok(server.addr));
                        server.wait().await;
                    }
                    Err(err) => {
                        let _ = sender.send(Err(err));
                    }
                }
            });
        })
        .context("starting the mock upstream thread")?;
    receiver
        .recv_timeout(Duration::from_secs(10))
        .context("the mock upstream did not start")?
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `flywheel serve` as a child process with the mock as provider `mock` and logging on.
pub(crate) async fn start_flywheel(
    dir: &Path,
    mock: SocketAddr,
    extra_config: &str,
) -> anyhow::Result<(Child, SocketAddr, String)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config_path = dir.join("flywheel-bench.toml");
    let config = format!(
        r#"data_dir = "{data}"

[server]
bind = "{addr}"

[log]
level = "warn"

{extra}

[gateway.providers.mock]
kind = "openai"
base_url = "http://{mock}/v1"
api_key = {{ env = "BENCH_MOCK_KEY" }}
timeout = "10s"

[[gateway.prices]]
provider = "mock"
model = "gpt-mock"
input = 0.15
cached_input = 0.075
output = 0.6
"#,
        data = dir.join("flywheel-data").display(),
        extra = extra_config,
    );
    std::fs::write(&config_path, config).context("writing the bench configuration")?;
    let admin_key = random_api_key();
    let exe = std::env::current_exe().context("locating the flywheel binary")?;
    let child = Command::new(exe)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("FLYWHEEL_BOOTSTRAP_ADMIN_KEY", &admin_key)
        .env("BENCH_MOCK_KEY", "sk-bench")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting `flywheel serve`")?;
    wait_until_up(&format!("http://{addr}/readyz"), "flywheel serve").await?;
    Ok((child, addr, admin_key))
}

/// The peer's master key: LiteLLM refuses to start without one, and authenticating every
/// request is what Flywheel does too.
const LITELLM_MASTER_KEY: &str = "sk-flywheel-bench-0123456789abcdef0123456789abcdef";

/// LiteLLM's proxy against the same mock, with retries and logging off.
async fn start_litellm(
    command: &str,
    dir: &Path,
    mock: SocketAddr,
) -> anyhow::Result<(Child, SocketAddr)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config_path = dir.join("litellm.yaml");
    let config = format!(
        r#"model_list:
  - model_name: mock/gpt-mock
    litellm_params:
      model: openai/gpt-mock
      api_base: http://{mock}/v1
      api_key: sk-bench
litellm_settings:
  num_retries: 0
  request_timeout: 10
  telemetry: false
  turn_off_message_logging: true
  set_verbose: false
"#
    );
    std::fs::write(&config_path, config).context("writing the LiteLLM configuration")?;
    let child = Command::new(command)
        .arg("--config")
        .arg(&config_path)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .env("LITELLM_MASTER_KEY", LITELLM_MASTER_KEY)
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting `{command}` (pip install 'litellm[proxy]')"))?;
    wait_until_up(&format!("http://{addr}/health/liveliness"), "litellm").await?;
    Ok((child, addr))
}

async fn wait_until_up(url: &str, what: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what} did not answer {url} within 90 s")
}

/// One request at a time for `duration`.
async fn serial(
    endpoint: &Endpoint,
    target: &str,
    stream: bool,
    duration: Duration,
) -> SerialResult {
    let format = if stream { "SSE" } else { "JSON" };
    let bar = progress(&format!("{target} {format} c=1"), duration);
    let mut histogram = new_histogram();
    let mut errors = 0;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        let sent = Instant::now();
        if endpoint.call(stream, n).await {
            let _ = histogram.record(sent.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
        n += 1;
        if n.is_multiple_of(100) {
            bar.set_position(started.elapsed().as_millis() as u64);
        }
    }
    bar.finish_and_clear();
    SerialResult {
        target: target.to_owned(),
        format,
        requests: histogram.len(),
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        errors,
    }
}

/// Requests on a fixed schedule; latency from the scheduled time (no coordinated omission).
async fn open_loop(
    endpoint: &Endpoint,
    target: &str,
    stream: bool,
    rate: u32,
    duration: Duration,
) -> RateResult {
    let format = if stream { "SSE" } else { "JSON" };
    let bar = progress(&format!("{target} {format} {rate}/s"), duration);
    let rate = rate.max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Histogram<u64>>> = Arc::new(Mutex::new(new_histogram()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4_096));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    for n in 0..total {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            // More than 4,096 outstanding: the target is far past saturation.
            errors.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            continue;
        };
        sent += 1;
        let (endpoint, ok, errors, latencies) = (
            endpoint.clone(),
            ok.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.spawn(async move {
            let success = endpoint.call(stream, n).await;
            let micros = scheduled.elapsed().as_micros() as u64;
            drop(permit);
            if success {
                ok.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut histogram) = latencies.lock() {
                    let _ = histogram.record(micros);
                }
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        if n % 500 == 0 {
            bar.set_position(started.elapsed().as_millis() as u64);
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();
    let histogram = latencies
        .lock()
        .map(|histogram| histogram.clone())
        .unwrap_or_else(|_| new_histogram());
    RateResult {
        target: target.to_owned(),
        format,
        offered: rate,
        achieved: ok.load(Ordering::Relaxed) as f64 / elapsed,
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        errors: errors.load(Ordering::Relaxed),
        sent,
        server_cpu_us: None,
        peak_rss_kib: None,
    }
}

/// `USER_HZ`, the unit of `/proc/<pid>/stat` CPU times: 100 on every Linux platform Flywheel
/// runs on.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn spawn_rss_sampler(pid: u32, peak: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Some(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// The report as Markdown: latency at concurrency 1 with the added latency, the sweeps, the
/// highest sustained rates and their ratio, memory.
pub fn markdown(report: &GatewayReport, bench: &GatewayBench) -> String {
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let mut out = String::from(
        "Latency at concurrency 1 (ms)\n\n| target | format | requests | p50 | p99 | added p50 | added p99 | errors |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for result in &report.serial {
        let direct = report
            .serial
            .iter()
            .find(|other| other.target == "direct to mock" && other.format == result.format);
        let added = |mine: u64, theirs: Option<u64>| match theirs {
            Some(theirs) if result.target != "direct to mock" => {
                format!("{:+.3}", (mine as f64 - theirs as f64) / 1000.0)
            }
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            result.target,
            result.format,
            result.requests,
            ms(result.p50_us),
            ms(result.p99_us),
            added(result.p50_us, direct.map(|d| d.p50_us)),
            added(result.p99_us, direct.map(|d| d.p99_us)),
            result.errors
        ));
    }
    out.push_str(&format!(
        "\nOpen-loop rate sweep (a step passes with p99 ≤ {} ms and < 0.1 % errors; a sweep stops after a step over the looser bound)\n\n| target | format | offered/s | achieved/s | p50 ms | p99 ms | errors | passes | server CPU µs/request |\n|---|---|---:|---:|---:|---:|---:|---|---:|\n",
        bench.p99_bound.as_millis()
    ));
    for result in &report.rates {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {}/{} | {} | {} |\n",
            result.target,
            result.format,
            result.offered,
            result.achieved,
            ms(result.p50_us),
            ms(result.p99_us),
            result.errors,
            result.sent,
            if result.sustained(bench.p99_bound) {
                "yes"
            } else {
                "no"
            },
            result
                .server_cpu_us
                .map_or("–".to_owned(), |us| format!("{us:.0}"))
        ));
    }
    out.push_str(
        "\nHighest sustained rate (requests/s with < 0.1 % errors)\n\n| format | p99 bound | flywheel | litellm | ratio |\n|---|---|---:|---:|---:|\n",
    );
    for format in ["JSON", "SSE"] {
        for bound in [bench.p99_bound, bench.loose_p99_bound] {
            let best = |target: &str| {
                report
                    .rates
                    .iter()
                    .filter(|r| r.target == target && r.format == format && r.sustained(bound))
                    .map(|r| r.offered)
                    .max()
            };
            let (ours, theirs) = (best("flywheel"), best("litellm"));
            let ratio = match (ours, theirs) {
                (Some(ours), Some(theirs)) if theirs > 0 => {
                    format!("{:.0}×", f64::from(ours) / f64::from(theirs))
                }
                (Some(_), None) => "peer sustained none of its rates".to_owned(),
                _ => "–".to_owned(),
            };
            out.push_str(&format!(
                "| {format} | {} ms | {} | {} | {ratio} |\n",
                bound.as_millis(),
                ours.map_or("none".to_owned(), |r| r.to_string()),
                theirs.map_or("none".to_owned(), |r| r.to_string()),
            ));
        }
    }
    let mib = |kib: Option<u64>| {
        kib.map_or("–".to_owned(), |kib| {
            format!("{:.1} MiB", kib as f64 / 1024.0)
        })
    };
    out.push_str(&format!(
        "\nFlywheel resident memory: idle {}, peak during the sustained steps {}\n",
        mib(report.idle_rss_kib),
        mib(report.loaded_rss_kib)
    ));
    if let Some(note) = &report.peer_note {
        out.push_str(&format!("\nPeer: {note}\n"));
    }
    out
}

/// Parses `1000,2000,4000`.
pub fn parse_rates(text: &str) -> Result<Vec<u32>, String> {
    let rates: Result<Vec<u32>, _> = text
        .split(',')
        .map(|part| part.trim().parse::<u32>())
        .collect();
    match rates {
        Ok(rates) if !rates.is_empty() && rates.iter().all(|rate| *rate > 0) => Ok(rates),
        _ => Err(format!(
            "`{text}` is not a comma-separated list of positive rates such as 1000,2000,4000"
        )),
    }
}
