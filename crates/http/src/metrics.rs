//! Prometheus metrics: HTTP requests and latency by route and status, database pool, build info.
//!
//! One registry per application (not a process-global one), so several apps in one test
//! process do not share counters.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use flywheel_services::ingest::IngestService;
use flywheel_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct HttpMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    ingest_commits: Counter,
    ingest_rows: Counter,
    ingest_rejected_full: Counter,
    ingest_dropped: Counter,
    last_writer_stats: Mutex<[u64; 4]>,
    store: Store,
    ingest: Arc<IngestService>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl HttpMetrics {
    pub fn new(
        store: Store,
        ingest: Arc<IngestService>,
        gateway: &flywheel_services::gateway::GatewayMetrics,
    ) -> HttpMetrics {
        let mut registry = Registry::with_prefix("flywheel");
        gateway.register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            durations.clone(),
        );
        let pool_size = Gauge::default();
        let pool_idle = Gauge::default();
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "Configured pool size",
            pool_max.clone(),
        );
        let build = Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("backend", store.backend_name().to_owned()),
        ]);
        registry.register("build", "Flywheel build information", build);
        let ingest_commits = Counter::default();
        let ingest_rows = Counter::default();
        let ingest_rejected_full = Counter::default();
        let ingest_dropped = Counter::default();
        registry.register(
            "ingest_commits",
            "Group commits of interactions",
            ingest_commits.clone(),
        );
        registry.register("ingest_rows", "Interactions committed", ingest_rows.clone());
        registry.register(
            "ingest_queue_full",
            "Write requests refused with 503 because the queue was full",
            ingest_rejected_full.clone(),
        );
        registry.register(
            "ingest_detached_dropped",
            "api_call records dropped because the queue was full or the commit failed",
            ingest_dropped.clone(),
        );
        HttpMetrics {
            registry,
            requests,
            durations,
            pool_size,
            pool_idle,
            pool_max,
            ingest_commits,
            ingest_rows,
            ingest_rejected_full,
            ingest_dropped,
            last_writer_stats: Mutex::new([0; 4]),
            store,
            ingest,
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition, with pool gauges read now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let stats = self.store.pool_stats();
        self.pool_size.set(i64::from(stats.size));
        self.pool_idle.set(i64::from(stats.idle));
        self.pool_max.set(i64::from(stats.max));
        let writer = self.ingest.writer().stats();
        let now = [
            writer.commits.load(Ordering::Relaxed),
            writer.rows.load(Ordering::Relaxed),
            writer.rejected_full.load(Ordering::Relaxed),
            writer.detached_dropped.load(Ordering::Relaxed),
        ];
        if let Ok(mut last) = self.last_writer_stats.lock() {
            let counters = [
                &self.ingest_commits,
                &self.ingest_rows,
                &self.ingest_rejected_full,
                &self.ingest_dropped,
            ];
            for ((counter, now), last) in counters.into_iter().zip(now).zip(last.iter_mut()) {
                counter.inc_by(now.saturating_sub(*last));
                *last = now;
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
