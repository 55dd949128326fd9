//! The limiter suite: every test in `suite` runs against `MemoryLimiter` and, when
//! `FLYWHEEL_TEST_REDIS_URL` is set, against `RedisLimiter` (each test under its own random key
//! prefix, removed afterwards). Without the variable the Redis tests print a notice and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod redis_only;
mod suite;

/// Generates one test per backend for each function of `suite`.
macro_rules! limiter_suite {
    ($($test:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::suite::$test(&crate::helpers::Backend::memory()).await;
                }
            )*
        }

        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = crate::helpers::Backend::redis().await else {
                        return;
                    };
                    crate::suite::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
    };
}

limiter_suite!(
    reserve_reports_usage_remaining_and_reset,
    empty_reservation_reserves_nothing,
    reservation_is_all_or_nothing,
    first_charge_that_does_not_fit_is_reported,
    exhausted_budget_denies_an_amount_of_zero,
    limit_of_zero_allows_nothing,
    exceeded_reports_when_the_budget_resets,
    month_budget_resets_on_the_first_of_january,
    windows_of_one_key_are_separate_counters,
    charges_on_the_same_counter_add_up,
    settle_releases_and_consumes_budget,
    usage_never_goes_below_zero,
    settle_lands_in_the_original_window_after_the_clock_moves,
    settle_rejects_a_wrong_number_of_amounts,
    fifty_parallel_reservations_fit_a_budget_of_ten,
    replicas_share_one_budget,
);
