//! The backends the suite runs against, times, charges, and what tests assert about errors.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use flywheel_limits::{Exceeded, LimitError, Limiter, MemoryLimiter, RedisLimiter};

/// A budget store under test. Each handle from `replica` shares the same budgets, as Flywheel
/// replicas do: the same map for memory, a new connection under the same key prefix for Redis.
#[derive(Debug)]
pub enum Backend {
    Memory(Arc<MemoryLimiter>),
    Redis { url: String, key_prefix: String },
}

impl Backend {
    pub fn memory() -> Self {
        Backend::Memory(Arc::new(MemoryLimiter::new()))
    }

    /// A Redis backend under a fresh key prefix, or `None` (with a notice) when
    /// `FLYWHEEL_TEST_REDIS_URL` is unset.
    pub async fn redis() -> Option<Self> {
        let Ok(url) = std::env::var("FLYWHEEL_TEST_REDIS_URL") else {
            eprintln!("notice: FLYWHEEL_TEST_REDIS_URL is not set; skipping a Redis limiter test");
            return None;
        };
        let key_prefix = format!("flywheel-test:{}", uuid::Uuid::new_v4());
        Some(Backend::Redis { url, key_prefix })
    }

    /// A handle on the backend's budgets.
    pub async fn replica(&self) -> Arc<dyn Limiter> {
        match self {
            Backend::Memory(limiter) => limiter.clone(),
            Backend::Redis { url, key_prefix } => Arc::new(
                RedisLimiter::connect(url, key_prefix)
                    .await
                    .expect("connect to the test Redis"),
            ),
        }
    }

    /// Removes the keys a Redis test wrote (they would expire by themselves, but only a month
    /// after the month windows the suite uses).
    pub async fn cleanup(self) {
        if let Backend::Redis { url, key_prefix } = self {
            delete_keys(&url, &key_prefix).await;
        }
    }
}

pub async fn delete_keys(url: &str, key_prefix: &str) {
    let client = redis::Client::open(url).expect("valid Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{key_prefix}:*"))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .expect("DEL");
    }
}

pub fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
        .expect("valid date")
}

/// The details of an `Exceeded` error; fails the test on success or another error.
pub fn expect_exceeded<T: std::fmt::Debug>(result: Result<T, LimitError>) -> Exceeded {
    match result {
        Err(LimitError::Exceeded(exceeded)) => exceeded,
        other => panic!("expected LimitError::Exceeded, got {other:?}"),
    }
}
