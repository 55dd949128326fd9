//! The behaviour every `Limiter` backend must have; `main.rs` runs each function per backend.

use std::time::Duration;

use chrono::TimeDelta;
use flywheel_limits::{Charge, LimitError, RateLimitStatus, Window};
use tokio::task::JoinSet;

use crate::helpers::{expect_exceeded, utc, Backend};

pub async fn reserve_reports_usage_remaining_and_reset(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 3, 14, 15, 9, 26);
    let charges = [
        Charge::new("principal:p:requests", Window::Minute, 10, 1),
        Charge::new("tenant:t:tokens", Window::Day, 1_000, 300),
    ];

    limiter.reserve(&charges, now).await.unwrap();
    let reservation = limiter.reserve(&charges, now).await.unwrap();

    let [requests, tokens] = reservation.charges() else {
        panic!("two charges reserved: {reservation:?}");
    };
    assert_eq!(requests.key, "principal:p:requests");
    assert_eq!(requests.window, Window::Minute);
    assert_eq!(requests.window_start, utc(2025, 3, 14, 15, 9, 0));
    assert_eq!(requests.reset_at, utc(2025, 3, 14, 15, 10, 0));
    assert_eq!(
        (requests.limit, requests.amount, requests.used_after),
        (10, 1, 2)
    );
    assert_eq!(requests.remaining(), 8);
    assert_eq!(tokens.window_start, utc(2025, 3, 14, 0, 0, 0));
    assert_eq!(tokens.reset_at, utc(2025, 3, 15, 0, 0, 0));
    assert_eq!(
        (tokens.limit, tokens.amount, tokens.used_after),
        (1_000, 300, 600)
    );
    // 400 of 1,000 tokens (40 %) is tighter than 8 of 10 requests (80 %).
    assert_eq!(
        reservation.tightest(),
        Some(RateLimitStatus {
            limit: 1_000,
            remaining: 400,
            reset_at: utc(2025, 3, 15, 0, 0, 0)
        })
    );
    assert_eq!(
        limiter
            .used("principal:p:requests", Window::Minute, now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        limiter
            .used("tenant:t:tokens", Window::Day, now)
            .await
            .unwrap(),
        600
    );
    assert_eq!(limiter.used("nobody", Window::Day, now).await.unwrap(), 0);
}

pub async fn empty_reservation_reserves_nothing(backend: &Backend) {
    let limiter = backend.replica().await;
    let reservation = limiter
        .reserve(&[], utc(2025, 1, 1, 0, 0, 0))
        .await
        .unwrap();
    assert!(reservation.charges().is_empty());
    assert_eq!(reservation.tightest(), None);
    limiter.settle(&reservation, &[]).await.unwrap();
}

pub async fn reservation_is_all_or_nothing(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);

    let exceeded = expect_exceeded(
        limiter
            .reserve(
                &[
                    Charge::new("requests", Window::Minute, 10, 5),
                    Charge::new("tokens", Window::Minute, 3, 4),
                ],
                now,
            )
            .await,
    );
    assert_eq!(exceeded.key, "tokens");
    assert_eq!(exceeded.window, Window::Minute);
    assert_eq!(
        (exceeded.limit, exceeded.used, exceeded.requested),
        (3, 0, 4)
    );
    assert_eq!(
        limiter.used("requests", Window::Minute, now).await.unwrap(),
        0
    );
    assert_eq!(
        limiter.used("tokens", Window::Minute, now).await.unwrap(),
        0
    );

    let reservation = limiter
        .reserve(
            &[
                Charge::new("requests", Window::Minute, 10, 5),
                Charge::new("tokens", Window::Minute, 3, 3),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(reservation.charges()[0].used_after, 5);
    assert_eq!(reservation.charges()[1].used_after, 3);
}

pub async fn first_charge_that_does_not_fit_is_reported(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let charges = [
        Charge::new("fits", Window::Hour, 100, 1),
        Charge::new("first-too-big", Window::Hour, 1, 2),
        Charge::new("second-too-big", Window::Hour, 1, 2),
    ];
    let exceeded = expect_exceeded(limiter.reserve(&charges, now).await);
    assert_eq!(exceeded.key, "first-too-big");
    assert_eq!(limiter.used("fits", Window::Hour, now).await.unwrap(), 0);
}

pub async fn exhausted_budget_denies_an_amount_of_zero(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);

    // An estimate of 0 is admitted while the budget has room, without using any of it.
    let reservation = limiter
        .reserve(&[Charge::new("tokens", Window::Day, 10, 0)], now)
        .await
        .unwrap();
    assert_eq!(reservation.charges()[0].used_after, 0);

    limiter
        .reserve(&[Charge::new("tokens", Window::Day, 10, 10)], now)
        .await
        .unwrap();
    let exceeded = expect_exceeded(
        limiter
            .reserve(&[Charge::new("tokens", Window::Day, 10, 0)], now)
            .await,
    );
    assert_eq!(
        (exceeded.limit, exceeded.used, exceeded.requested),
        (10, 10, 0)
    );
}

pub async fn limit_of_zero_allows_nothing(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    for amount in [0, 1] {
        let exceeded = expect_exceeded(
            limiter
                .reserve(&[Charge::new("blocked", Window::Month, 0, amount)], now)
                .await,
        );
        assert_eq!(
            (exceeded.limit, exceeded.used, exceeded.requested),
            (0, 0, amount)
        );
    }
}

pub async fn exceeded_reports_when_the_budget_resets(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let exceeded = expect_exceeded(
        limiter
            .reserve(&[Charge::new("k", Window::Minute, 1, 2)], now)
            .await,
    );
    assert_eq!(exceeded.reset_at, utc(2025, 1, 1, 12, 1, 0));
    assert_eq!(exceeded.retry_after, Duration::from_secs(30));
    assert_eq!(exceeded.retry_after_secs(), 30);
    assert_eq!(
        LimitError::Exceeded(exceeded).to_string(),
        "minute budget `k` exceeded: 0 of 1 used, 2 requested; resets at 2025-01-01 12:01:00 UTC"
    );
}

pub async fn month_budget_resets_on_the_first_of_january(backend: &Backend) {
    let limiter = backend.replica().await;
    let dollars = |amount| {
        [Charge::new(
            "tenant:t:micro-dollars",
            Window::Month,
            5_000_000,
            amount,
        )]
    };

    limiter
        .reserve(&dollars(5_000_000), utc(2024, 12, 15, 8, 0, 0))
        .await
        .unwrap();
    let new_year_eve = utc(2024, 12, 31, 23, 0, 0);
    let exceeded = expect_exceeded(limiter.reserve(&dollars(1), new_year_eve).await);
    assert_eq!(exceeded.used, 5_000_000);
    assert_eq!(exceeded.reset_at, utc(2025, 1, 1, 0, 0, 0));
    assert_eq!(exceeded.retry_after, Duration::from_secs(3_600));

    let reservation = limiter
        .reserve(&dollars(1), utc(2025, 1, 1, 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(reservation.charges()[0].used_after, 1);
    assert_eq!(reservation.charges()[0].reset_at, utc(2025, 2, 1, 0, 0, 0));
}

pub async fn windows_of_one_key_are_separate_counters(backend: &Backend) {
    let limiter = backend.replica().await;
    // At the top of the hour the minute and the hour window start at the same instant.
    let now = utc(2025, 1, 1, 12, 0, 0);
    let charges = [
        Charge::new("k", Window::Minute, 5, 5),
        Charge::new("k", Window::Hour, 100, 5),
    ];
    let reservation = limiter.reserve(&charges, now).await.unwrap();
    assert_eq!(reservation.charges()[0].used_after, 5);
    assert_eq!(reservation.charges()[1].used_after, 5);

    expect_exceeded(
        limiter
            .reserve(&charges, now + TimeDelta::seconds(59))
            .await,
    );
    let next_minute = limiter
        .reserve(&charges, now + TimeDelta::seconds(60))
        .await
        .unwrap();
    assert_eq!(next_minute.charges()[0].used_after, 5);
    assert_eq!(next_minute.charges()[1].used_after, 10);
}

pub async fn charges_on_the_same_counter_add_up(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let exceeded = expect_exceeded(
        limiter
            .reserve(
                &[
                    Charge::new("k", Window::Minute, 10, 6),
                    Charge::new("k", Window::Minute, 10, 6),
                ],
                now,
            )
            .await,
    );
    assert_eq!((exceeded.used, exceeded.requested), (6, 6));
    assert_eq!(limiter.used("k", Window::Minute, now).await.unwrap(), 0);

    let reservation = limiter
        .reserve(
            &[
                Charge::new("k", Window::Minute, 10, 4),
                Charge::new("k", Window::Minute, 10, 6),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(reservation.charges()[0].used_after, 4);
    assert_eq!(reservation.charges()[1].used_after, 10);
    assert_eq!(limiter.used("k", Window::Minute, now).await.unwrap(), 10);
}

pub async fn settle_releases_and_consumes_budget(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let tokens = |amount| Charge::new("tokens", Window::Day, 1_000, amount);
    let requests = Charge::new("requests", Window::Day, 10, 1);

    let first = limiter
        .reserve(&[requests.clone(), tokens(500)], now)
        .await
        .unwrap();
    limiter.settle(&first, &[1, 200]).await.unwrap();
    assert_eq!(limiter.used("tokens", Window::Day, now).await.unwrap(), 200);
    assert_eq!(limiter.used("requests", Window::Day, now).await.unwrap(), 1);

    let second = limiter
        .reserve(&[requests, tokens(300)], now)
        .await
        .unwrap();
    assert_eq!(second.charges()[1].used_after, 500);
    limiter.settle(&second, &[1, 700]).await.unwrap();
    assert_eq!(limiter.used("tokens", Window::Day, now).await.unwrap(), 900);

    let exceeded = expect_exceeded(limiter.reserve(&[tokens(101)], now).await);
    assert_eq!(exceeded.used, 900);
    limiter.reserve(&[tokens(100)], now).await.unwrap();
}

pub async fn usage_never_goes_below_zero(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let reservation = limiter
        .reserve(&[Charge::new("k", Window::Hour, 10, 5)], now)
        .await
        .unwrap();
    limiter.settle(&reservation, &[0]).await.unwrap();
    // Settling twice is a caller's mistake; it must still not leave a negative (or huge) count.
    limiter.settle(&reservation, &[0]).await.unwrap();
    assert_eq!(limiter.used("k", Window::Hour, now).await.unwrap(), 0);

    let full = limiter
        .reserve(&[Charge::new("k", Window::Hour, 10, 10)], now)
        .await
        .unwrap();
    assert_eq!(full.charges()[0].used_after, 10);
    expect_exceeded(
        limiter
            .reserve(&[Charge::new("k", Window::Hour, 10, 1)], now)
            .await,
    );
}

pub async fn settle_lands_in_the_original_window_after_the_clock_moves(backend: &Backend) {
    let limiter = backend.replica().await;
    let charge = |amount| [Charge::new("k", Window::Minute, 10, amount)];
    let before = utc(2025, 1, 1, 12, 0, 50);
    let after = utc(2025, 1, 1, 12, 1, 5);

    let old = limiter.reserve(&charge(5), before).await.unwrap();
    let new = limiter.reserve(&charge(3), after).await.unwrap();
    assert_eq!(new.charges()[0].used_after, 3);

    limiter.settle(&old, &[9]).await.unwrap();
    assert_eq!(limiter.used("k", Window::Minute, before).await.unwrap(), 9);
    assert_eq!(limiter.used("k", Window::Minute, after).await.unwrap(), 3);

    limiter.settle(&new, &[1]).await.unwrap();
    assert_eq!(limiter.used("k", Window::Minute, before).await.unwrap(), 9);
    assert_eq!(limiter.used("k", Window::Minute, after).await.unwrap(), 1);
}

pub async fn settle_rejects_a_wrong_number_of_amounts(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let reservation = limiter
        .reserve(&[Charge::new("k", Window::Hour, 10, 5)], now)
        .await
        .unwrap();
    let error = limiter.settle(&reservation, &[1, 2]).await.unwrap_err();
    assert!(
        matches!(
            error,
            LimitError::SettleMismatch {
                n_charges: 1,
                n_actual: 2
            }
        ),
        "{error:?}"
    );
    assert_eq!(limiter.used("k", Window::Hour, now).await.unwrap(), 5);
}

/// 50 concurrent reservations against a budget of 10 requests: exactly 10 are admitted.
pub async fn fifty_parallel_reservations_fit_a_budget_of_ten(backend: &Backend) {
    let limiter = backend.replica().await;
    let now = utc(2025, 1, 1, 12, 0, 30);
    let charges = vec![
        Charge::new("requests", Window::Minute, 10, 1),
        Charge::new("tokens", Window::Day, 1_000_000, 100),
    ];

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let limiter = limiter.clone();
        let charges = charges.clone();
        tasks.spawn(async move { limiter.reserve(&charges, now).await });
    }
    let (mut n_admitted, mut n_denied) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => n_admitted += 1,
            Err(LimitError::Exceeded(exceeded)) => {
                assert_eq!(exceeded.key, "requests");
                n_denied += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((n_admitted, n_denied), (10, 40));
    assert_eq!(
        limiter.used("requests", Window::Minute, now).await.unwrap(),
        10
    );
    assert_eq!(
        limiter.used("tokens", Window::Day, now).await.unwrap(),
        1_000
    );
}

/// Two replicas (for Redis, two limiters with their own connections) draw on one budget.
pub async fn replicas_share_one_budget(backend: &Backend) {
    let replicas = [backend.replica().await, backend.replica().await];
    let now = utc(2025, 1, 1, 12, 0, 30);
    let charges = vec![Charge::new("tenant:t:requests", Window::Hour, 10, 1)];

    let mut tasks = JoinSet::new();
    for task_idx in 0..50 {
        let limiter = replicas[task_idx % 2].clone();
        let charges = charges.clone();
        tasks.spawn(async move { limiter.reserve(&charges, now).await.ok() });
    }
    let mut reservations = Vec::new();
    while let Some(result) = tasks.join_next().await {
        reservations.extend(result.unwrap());
    }
    assert_eq!(reservations.len(), 10);
    for replica in &replicas {
        assert_eq!(
            replica
                .used("tenant:t:requests", Window::Hour, now)
                .await
                .unwrap(),
            10
        );
    }

    // A reservation made through one replica can be settled through the other.
    replicas[1].settle(&reservations[0], &[0]).await.unwrap();
    assert_eq!(
        replicas[0]
            .used("tenant:t:requests", Window::Hour, now)
            .await
            .unwrap(),
        9
    );
    replicas[0].reserve(&charges, now).await.unwrap();
    expect_exceeded(replicas[1].reserve(&charges, now).await);
}
