//! What only `RedisLimiter` has: key names, their expiry, and connection errors.

use flywheel_limits::{Charge, LimitError, Limiter, RedisLimiter, Window, SETTLE_GRACE};
use redis::AsyncCommands;

use crate::helpers::{delete_keys, utc, Backend};

#[tokio::test]
async fn counters_are_named_by_prefix_key_window_and_start_and_expire_after_the_grace() {
    let Some(Backend::Redis { url, key_prefix }) = Backend::redis().await else {
        return;
    };
    let limiter = RedisLimiter::connect(&url, &key_prefix).await.unwrap();
    assert_eq!(limiter.key_prefix(), key_prefix);
    let now = utc(2025, 1, 1, 12, 0, 30);
    limiter
        .reserve(&[Charge::new("principal:p", Window::Minute, 10, 3)], now)
        .await
        .unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!(
        "{key_prefix}:principal:p:minute:{}",
        utc(2025, 1, 1, 12, 0, 0).timestamp()
    );
    let used: i64 = connection.get(&key).await.unwrap();
    assert_eq!(used, 3);
    // The window ends 30 s after `now`; the counter lives SETTLE_GRACE longer.
    let time_to_live_ms: i64 = connection.pttl(&key).await.unwrap();
    let expected_ms = i64::try_from((SETTLE_GRACE.as_secs() + 30) * 1_000).unwrap();
    assert!(
        (expected_ms - 5_000..=expected_ms).contains(&time_to_live_ms),
        "PTTL {time_to_live_ms} ms, expected about {expected_ms} ms"
    );

    delete_keys(&url, &key_prefix).await;
}

#[tokio::test]
async fn a_settle_after_the_counter_expired_does_not_recreate_it() {
    let Some(Backend::Redis { url, key_prefix }) = Backend::redis().await else {
        return;
    };
    let limiter = RedisLimiter::connect(&url, &key_prefix).await.unwrap();
    let now = utc(2025, 1, 1, 12, 0, 30);
    let reservation = limiter
        .reserve(&[Charge::new("k", Window::Minute, 10, 3)], now)
        .await
        .unwrap();
    delete_keys(&url, &key_prefix).await;

    limiter.settle(&reservation, &[7]).await.unwrap();
    assert_eq!(limiter.used("k", Window::Minute, now).await.unwrap(), 0);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = connection.keys(format!("{key_prefix}:*")).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn connection_errors_are_backend_errors_that_do_not_show_the_password() {
    // Nothing listens on port 1.
    let error = RedisLimiter::connect("redis://:hunter2@127.0.0.1:1", "p")
        .await
        .unwrap_err();
    assert!(matches!(error, LimitError::Backend(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    let error = RedisLimiter::connect("postgres://:hunter2@localhost", "p")
        .await
        .unwrap_err();
    assert!(matches!(error, LimitError::Backend(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
