//! The [`Limiter`] trait and the values it takes and returns: charges, reservations, the
//! rate-limit status reported to clients, and errors.

use std::cmp::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::window::Window;

/// How long after its window ends a counter is kept so that a late settle still lands in it.
/// Longer than any call the gateway lets run; Redis keys expire this long after their window.
pub const SETTLE_GRACE: Duration = Duration::from_secs(15 * 60);

/// The largest limit or amount handled exactly: `2^53 - 1`, because Redis runs its scripts in
/// Lua, whose numbers are doubles. Larger limits and amounts are clamped to it by both backends.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// Checks and reserves budgets atomically, then settles them with the real usage.
#[async_trait]
pub trait Limiter: Send + Sync + std::fmt::Debug {
    /// Reserves every charge in the windows that contain `now`, or none of them.
    ///
    /// If every charge fits (`used + amount <= limit` and `used < limit`) all are added;
    /// otherwise nothing is, and the first charge that does not fit is reported as
    /// [`LimitError::Exceeded`].
    async fn reserve(
        &self,
        charges: &[Charge],
        now: DateTime<Utc>,
    ) -> Result<Reservation, LimitError>;

    /// Replaces each reserved amount by the actual one (`actual[i]` for the reservation's
    /// `i`-th charge), in the window the reservation was made in, even if the clock has moved
    /// to the next one. Usage never goes below zero. Call it once per reservation.
    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), LimitError>;

    /// The amount used so far on `key` in the `window` that contains `at` (0 when nothing was
    /// reserved there, or when the window's counter has expired).
    async fn used(&self, key: &str, window: Window, at: DateTime<Utc>) -> Result<u64, LimitError>;
}

/// One budget a request draws on: `amount` of `limit` on `key` in the current `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The budget's name, chosen by the caller, e.g. `tenant:acme:tokens`. The window is part
    /// of the counter's identity, so one key may carry a per-minute and a per-hour budget.
    pub key: String,
    /// The window the budget applies to.
    pub window: Window,
    /// The most the window may use.
    pub limit: u64,
    /// What this request reserves (an estimate, replaced when settling).
    pub amount: u64,
}

impl Charge {
    /// A charge of `amount` against `limit` on `key` per `window`.
    pub fn new(key: impl Into<String>, window: Window, limit: u64, amount: u64) -> Self {
        Self {
            key: key.into(),
            window,
            limit,
            amount,
        }
    }
}

/// What a successful [`Limiter::reserve`] reserved, in the order of its charges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    charges: Vec<ReservedCharge>,
}

/// One reserved charge and the state of its budget right after the reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedCharge {
    /// The charge's key.
    pub key: String,
    /// The charge's window.
    pub window: Window,
    /// The first instant of the window the amount was reserved in; settling uses it.
    pub window_start: DateTime<Utc>,
    /// When the window ends and its budget resets.
    pub reset_at: DateTime<Utc>,
    /// The limit (clamped to [`MAX_AMOUNT`]).
    pub limit: u64,
    /// The reserved amount (clamped to [`MAX_AMOUNT`]).
    pub amount: u64,
    /// The window's usage including this reservation.
    pub used_after: u64,
}

/// The numbers behind the `x-ratelimit-limit`, `x-ratelimit-remaining` and
/// `x-ratelimit-reset` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The budget's limit.
    pub limit: u64,
    /// What is left of it in the current window.
    pub remaining: u64,
    /// When the window ends.
    pub reset_at: DateTime<Utc>,
}

/// Why a reservation or a settle failed.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A charge does not fit its budget; nothing was reserved.
    #[error("{0}")]
    Exceeded(Exceeded),
    /// The backend could not be reached or answered unexpectedly; nothing is known to have been
    /// reserved. The caller decides whether to fail open or closed.
    #[error("budget backend failed: {0}")]
    Backend(String),
    /// `settle` was given a number of actual amounts different from the reservation's charges.
    #[error("settle got {n_actual} actual amounts for a reservation of {n_charges} charges")]
    SettleMismatch {
        /// Charges in the reservation.
        n_charges: usize,
        /// Actual amounts given.
        n_actual: usize,
    },
}

/// The first charge of a denied reservation that did not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{window} budget `{key}` exceeded: {used} of {limit} used, {requested} requested; \
     resets at {reset_at}"
)]
pub struct Exceeded {
    /// The charge's key.
    pub key: String,
    /// The charge's window.
    pub window: Window,
    /// The limit (clamped to [`MAX_AMOUNT`]).
    pub limit: u64,
    /// The window's usage before this request.
    pub used: u64,
    /// The amount the request asked for.
    pub requested: u64,
    /// When the window ends and its budget resets.
    pub reset_at: DateTime<Utc>,
    /// Time from the reservation's `now` to `reset_at`. A request larger than the limit will
    /// not fit after the reset either.
    pub retry_after: Duration,
}

impl Reservation {
    /// A reservation of these charges; for [`Limiter`] implementations.
    pub fn new(charges: Vec<ReservedCharge>) -> Self {
        Self { charges }
    }

    /// The reserved charges, in the order they were given to `reserve`.
    pub fn charges(&self) -> &[ReservedCharge] {
        &self.charges
    }

    /// The most constraining budget, for the `x-ratelimit-*` headers: the one with the smallest
    /// remaining fraction of its limit (units differ between budgets, so absolute amounts are
    /// not comparable); on a tie, the one that resets last. `None` for an empty reservation.
    pub fn tightest(&self) -> Option<RateLimitStatus> {
        self.charges
            .iter()
            .min_by(|a, b| {
                compare_remaining_fraction(a, b).then_with(|| b.reset_at.cmp(&a.reset_at))
            })
            .map(|charge| RateLimitStatus {
                limit: charge.limit,
                remaining: charge.remaining(),
                reset_at: charge.reset_at,
            })
    }
}

impl ReservedCharge {
    /// What is left of the limit after this reservation.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used_after)
    }
}

impl Exceeded {
    /// `retry_after` in whole seconds, rounded up, for a `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        }
    }
}

/// Compares `remaining / limit` without floating point; a limit of 0 counts as nothing left.
fn compare_remaining_fraction(a: &ReservedCharge, b: &ReservedCharge) -> Ordering {
    let fraction = |charge: &ReservedCharge| {
        if charge.limit == 0 {
            (0_u128, 1_u128)
        } else {
            (u128::from(charge.remaining()), u128::from(charge.limit))
        }
    };
    let (remaining_a, limit_a) = fraction(a);
    let (remaining_b, limit_b) = fraction(b);
    (remaining_a * limit_b).cmp(&(remaining_b * limit_a))
}

/// When a counter of the window starting at `window_start` may be forgotten.
pub(crate) fn counter_expiry(window: Window, window_start: DateTime<Utc>) -> DateTime<Utc> {
    let grace = TimeDelta::from_std(SETTLE_GRACE).unwrap_or(TimeDelta::MAX);
    window
        .end(window_start)
        .checked_add_signed(grace)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The error for charge `charge` found at `used` when reserving at `now`.
pub(crate) fn exceeded(charge: &Charge, used: u64, now: DateTime<Utc>) -> LimitError {
    let reset_at = charge.window.end(now);
    LimitError::Exceeded(Exceeded {
        key: charge.key.clone(),
        window: charge.window,
        limit: charge.limit.min(MAX_AMOUNT),
        used,
        requested: charge.amount.min(MAX_AMOUNT),
        reset_at,
        retry_after: (reset_at - now).to_std().unwrap_or(Duration::ZERO),
    })
}

/// Whether `amount` more fits a budget of `limit` already at `used` (see the crate docs).
pub(crate) fn fits(used: u64, amount: u64, limit: u64) -> bool {
    used < limit && used.saturating_add(amount) <= limit
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn reserved(limit: u64, used_after: u64, reset_at: DateTime<Utc>) -> ReservedCharge {
        ReservedCharge {
            key: format!("k{limit}-{used_after}"),
            window: Window::Minute,
            window_start: reset_at - TimeDelta::minutes(1),
            reset_at,
            limit,
            amount: 1,
            used_after,
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, hour, 0, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn tightest_is_the_smallest_remaining_fraction() {
        // 50 of 100 tokens left is looser than 2 of 10 requests left, although 50 > 2.
        let reservation = Reservation::new(vec![reserved(100, 50, at(1)), reserved(10, 8, at(2))]);
        assert_eq!(
            reservation.tightest(),
            Some(RateLimitStatus {
                limit: 10,
                remaining: 2,
                reset_at: at(2)
            })
        );
    }

    #[test]
    fn tightest_breaks_ties_by_the_later_reset() {
        let reservation = Reservation::new(vec![reserved(10, 5, at(1)), reserved(20, 10, at(3))]);
        assert_eq!(
            reservation.tightest(),
            Some(RateLimitStatus {
                limit: 20,
                remaining: 10,
                reset_at: at(3)
            })
        );
        assert_eq!(Reservation::new(Vec::new()).tightest(), None);
    }

    #[test]
    fn fits_denies_an_exhausted_budget_even_for_nothing() {
        assert!(fits(9, 1, 10));
        assert!(!fits(9, 2, 10));
        assert!(fits(9, 0, 10));
        assert!(!fits(10, 0, 10));
        assert!(!fits(0, 0, 0));
        assert!(!fits(u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let charge = Charge::new("k", Window::Minute, 1, 2);
        let now = at(1) + TimeDelta::milliseconds(59_500);
        let LimitError::Exceeded(exceeded) = exceeded(&charge, 0, now) else {
            unreachable!("exceeded() builds LimitError::Exceeded");
        };
        assert_eq!(exceeded.retry_after, Duration::from_millis(500));
        assert_eq!(exceeded.retry_after_secs(), 1);
        assert_eq!(
            exceeded.to_string(),
            "minute budget `k` exceeded: 0 of 1 used, 2 requested; resets at 2025-01-01 01:01:00 UTC"
        );
    }
}
