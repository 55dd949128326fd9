//! `flywheel bench concierge`: what a concierge turn adds on top of the model call —
//! persistence (question, pending answer, completion), context building and trimming, the
//! deterministic tool route and durable logging — measured against the same model called
//! directly through the gateway, in the same run, with a model that answers instantly (the
//! in-repo mock upstream).
//!
//! Two measures: the difference of the end-to-end latencies (turn vs direct gateway call, both
//! over HTTP at concurrency 1), and the overhead the concierge measures itself per turn
//! (`details.timings.overhead_ms`: the turn's wall time minus time waiting for the model and
//! the tools). Sessions are rotated every `turns_per_session` turns so history stays realistic.
//! Every loop is bounded in time and every request goes to 127.0.0.1.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::bench::{new_histogram, progress};
use crate::bench_gateway::{start_flywheel, start_mock};

/// What to run.
#[derive(Debug, Clone)]
pub struct ConciergeBench {
    pub duration: Duration,
    pub turns_per_session: u32,
    /// TOML appended to the server's configuration.
    pub server_config: String,
}

/// Percentiles of one measure, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConciergeReport {
    pub turn: Percentiles,
    pub direct: Percentiles,
    pub overhead: Percentiles,
    pub errors: u64,
}

const PROFILE: &str = r#"{"company": "Acme Roofing", "focus_areas": ["roofing", "solar"], "revenue_tier": "$1M-$5M", "team_size": 12, "goals": ["double revenue", "hire two crews"]}"#;
const QUESTION: &str = "Which partners could help my crew win more solar jobs this year?";

pub async fn run_concierge(bench: &ConciergeBench) -> anyhow::Result<ConciergeReport> {
    let mock = start_mock()?;
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let extra = format!(
        "[models]\nenabled = false\n\n[concierge]\nmodel = \"mock/gpt-mock\"\n\n{}",
        bench.server_config
    );
    let (mut child, addr, admin_key) = start_flywheel(dir.path(), mock, &extra).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{addr}");
    let profile: Value = serde_json::from_str(PROFILE)?;
    let new_session = || async {
        let response = client
            .post(format!("{base}/v1/concierge/sessions"))
            .bearer_auth(&admin_key)
            .json(&json!({"user_id": "bench-user", "profile": profile}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "opening a session failed: {}",
            response.text().await.unwrap_or_default()
        );
        let body: Value = response.json().await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("the session has no id")
    };

    // Warm up both paths (connections, caches, the SQLite page cache).
    let mut session = new_session().await?;
    for _ in 0..20 {
        let _ = turn(&client, &base, &admin_key, &session).await;
    }
    session = new_session().await?;

    let mut turn_latency = new_histogram();
    let mut overhead = new_histogram();
    let mut errors = 0u64;
    let bar = progress("concierge turns c=1", bench.duration);
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < bench.duration {
        if n > 0 && n.is_multiple_of(bench.turns_per_session) {
            session = new_session().await?;
        }
        let sent = Instant::now();
        match turn(&client, &base, &admin_key, &session).await {
            Some(measured) => {
                let _ = turn_latency.record(sent.elapsed().as_micros() as u64);
                let _ = overhead.record((measured * 1000.0) as u64);
            }
            None => errors += 1,
        }
        n += 1;
        bar.set_position(started.elapsed().as_millis() as u64);
    }
    bar.finish_and_clear();

    let mut direct = new_histogram();
    let bar = progress("gateway calls c=1", bench.duration);
    let started = Instant::now();
    while started.elapsed() < bench.duration {
        let sent = Instant::now();
        let ok = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&admin_key)
            .json(
                &json!({"model": "mock/gpt-mock", "max_tokens": 512, "messages": [
                    {"role": "system", "content": "You are the Power100 AI Concierge."},
                    {"role": "user", "content": QUESTION},
                ]}),
            )
            .send()
            .await
            .map(|response| response.status().is_success())
            .unwrap_or(false);
        if ok {
            let _ = direct.record(sent.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
        bar.set_position(started.elapsed().as_millis() as u64);
    }
    bar.finish_and_clear();
    let _ = child.kill().await;
    Ok(ConciergeReport {
        turn: Percentiles::of(&turn_latency),
        direct: Percentiles::of(&direct),
        overhead: Percentiles::of(&overhead),
        errors,
    })
}

/// One turn; the concierge's own overhead in milliseconds when it succeeded.
async fn turn(client: &reqwest::Client, base: &str, key: &str, session: &str) -> Option<f64> {
    let response = client
        .post(format!("{base}/v1/concierge/sessions/{session}/messages"))
        .bearer_auth(key)
        .json(&json!({ "content": QUESTION }))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["message"]["details"]["timings"]["overhead_ms"].as_f64()
}

pub fn markdown(report: &ConciergeReport, bench: &ConciergeBench) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let added_p50 = report.turn.p50_us.saturating_sub(report.direct.p50_us);
    let added_p99 = report.turn.p99_us.saturating_sub(report.direct.p99_us);
    let verdict = if report.overhead.p99_us <= 5_000 {
        "met"
    } else {
        "NOT met"
    };
    format!(
        "Concierge turn overhead ({duration:?} per measure, {turns} turns per session, SQLite, model = mock upstream answering at once, c = 1)\n\n\
         | measure | n | p50 ms | p99 ms |\n|---|---|---|---|\n\
         | concierge turn (HTTP, end to end) | {tn} | {t50:.2} | {t99:.2} |\n\
         | same model through the gateway directly (HTTP) | {dn} | {d50:.2} | {d99:.2} |\n\
         | added by the concierge (difference of the two) | – | {a50:.2} | {a99:.2} |\n\
         | overhead measured inside each turn | {on} | {o50:.2} | {o99:.2} |\n\n\
         errors: {errors}. Target p99 of the overhead ≤ 5 ms: {verdict}.\n",
        duration = bench.duration,
        turns = bench.turns_per_session,
        tn = report.turn.count,
        t50 = ms(report.turn.p50_us),
        t99 = ms(report.turn.p99_us),
        dn = report.direct.count,
        d50 = ms(report.direct.p50_us),
        d99 = ms(report.direct.p99_us),
        a50 = ms(added_p50),
        a99 = ms(added_p99),
        on = report.overhead.count,
        o50 = ms(report.overhead.p50_us),
        o99 = ms(report.overhead.p99_us),
        errors = report.errors,
    )
}
