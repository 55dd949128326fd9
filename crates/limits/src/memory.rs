//! [`MemoryLimiter`]: budgets held in this process, for a single replica and for tests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::limiter::{
    counter_expiry, exceeded, fits, Charge, LimitError, Limiter, Reservation, ReservedCharge,
    MAX_AMOUNT,
};
use crate::window::Window;

/// Budgets in a mutex-protected map of counters, one per key, window and window start.
///
/// Counters are forgotten [`SETTLE_GRACE`](crate::SETTLE_GRACE) after their window ends (checked
/// on each reservation, against the latest `now` seen), so memory stays bounded by the keys in
/// use rather than growing with time.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counters: HashMap<CounterId, Counter>,
    /// The earliest `expires_at` among `counters`, so pruning scans only when one is due.
    next_expiry: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CounterId {
    key: String,
    window: Window,
    window_start: DateTime<Utc>,
}

#[derive(Debug)]
struct Counter {
    used: u64,
    expires_at: DateTime<Utc>,
}

impl MemoryLimiter {
    /// An empty limiter: every budget starts unused.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of counters held, expired or not (for tests and diagnostics).
    pub fn n_counters(&self) -> usize {
        self.lock().counters.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed after every check has passed and nothing in between can
        // panic, so a poisoned lock still guards a consistent map.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn reserve(
        &self,
        charges: &[Charge],
        now: DateTime<Utc>,
    ) -> Result<Reservation, LimitError> {
        let mut state = self.lock();
        state.prune(now);

        // Check every charge first; an earlier charge on the same counter counts as used.
        let mut planned: Vec<(CounterId, ReservedCharge)> = Vec::with_capacity(charges.len());
        for charge in charges {
            let limit = charge.limit.min(MAX_AMOUNT);
            let amount = charge.amount.min(MAX_AMOUNT);
            let id = CounterId {
                key: charge.key.clone(),
                window: charge.window,
                window_start: charge.window.start(now),
            };
            let used = planned
                .iter()
                .rev()
                .find(|(planned_id, _)| *planned_id == id)
                .map(|(_, reserved)| reserved.used_after)
                .or_else(|| state.counters.get(&id).map(|counter| counter.used))
                .unwrap_or(0);
            if !fits(used, amount, limit) {
                return Err(exceeded(charge, used, now));
            }
            let reserved = ReservedCharge {
                key: charge.key.clone(),
                window: charge.window,
                window_start: id.window_start,
                reset_at: charge.window.end(now),
                limit,
                amount,
                used_after: used + amount,
            };
            planned.push((id, reserved));
        }

        let mut reserved_charges = Vec::with_capacity(planned.len());
        for (id, reserved) in planned {
            let expires_at = counter_expiry(id.window, id.window_start);
            state.next_expiry = Some(state.next_expiry.map_or(expires_at, |t| t.min(expires_at)));
            state
                .counters
                .entry(id)
                .or_insert(Counter {
                    used: 0,
                    expires_at,
                })
                .used = reserved.used_after;
            reserved_charges.push(reserved);
        }
        Ok(Reservation::new(reserved_charges))
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), LimitError> {
        let charges = reservation.charges();
        if charges.len() != actual.len() {
            return Err(LimitError::SettleMismatch {
                n_charges: charges.len(),
                n_actual: actual.len(),
            });
        }
        let mut state = self.lock();
        for (charge, &actual) in charges.iter().zip(actual) {
            let actual = actual.min(MAX_AMOUNT);
            let id = CounterId {
                key: charge.key.clone(),
                window: charge.window,
                window_start: charge.window_start,
            };
            // A counter that is gone belongs to a window past its grace period: nothing to do.
            if let Some(counter) = state.counters.get_mut(&id) {
                counter.used = if actual >= charge.amount {
                    counter.used.saturating_add(actual - charge.amount)
                } else {
                    counter.used.saturating_sub(charge.amount - actual)
                };
            }
        }
        Ok(())
    }

    async fn used(&self, key: &str, window: Window, at: DateTime<Utc>) -> Result<u64, LimitError> {
        let id = CounterId {
            key: key.to_owned(),
            window,
            window_start: window.start(at),
        };
        Ok(self
            .lock()
            .counters
            .get(&id)
            .map_or(0, |counter| counter.used))
    }
}

impl State {
    /// Forgets the counters whose grace period ended at or before `now`.
    fn prune(&mut self, now: DateTime<Utc>) {
        if self.next_expiry.is_none_or(|next_expiry| next_expiry > now) {
            return;
        }
        self.counters.retain(|_, counter| counter.expires_at > now);
        self.next_expiry = self
            .counters
            .values()
            .map(|counter| counter.expires_at)
            .min();
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::SETTLE_GRACE;

    #[tokio::test]
    async fn expired_windows_are_pruned() {
        let limiter = MemoryLimiter::new();
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 12, 0, 0)
            .single()
            .expect("valid date");
        for minute in 0..30 {
            let now = start + TimeDelta::minutes(minute);
            let charges = [
                Charge::new("principal:a", Window::Minute, 10, 1),
                Charge::new("tenant:t", Window::Month, 1_000, 1),
            ];
            limiter.reserve(&charges, now).await.expect("fits");
        }
        // Minute counters live for their minute plus the grace period; the month counter stays.
        let grace_minutes = i64::try_from(SETTLE_GRACE.as_secs() / 60).expect("small");
        let n_live_minutes = usize::try_from(grace_minutes + 1).expect("small");
        assert_eq!(limiter.n_counters(), n_live_minutes + 1);

        // Long after, everything but the new reservation's counters is gone.
        let much_later = start + TimeDelta::days(62);
        limiter
            .reserve(
                &[Charge::new("principal:a", Window::Minute, 10, 1)],
                much_later,
            )
            .await
            .expect("fits");
        assert_eq!(limiter.n_counters(), 1);
        assert_eq!(
            limiter
                .used("tenant:t", Window::Month, start)
                .await
                .expect("read"),
            0
        );
    }

    #[tokio::test]
    async fn a_counter_survives_until_its_grace_period_ends() {
        let limiter = MemoryLimiter::new();
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 12, 0, 0)
            .single()
            .expect("valid date");
        let reservation = limiter
            .reserve(&[Charge::new("k", Window::Minute, 10, 4)], start)
            .await
            .expect("fits");
        let grace = TimeDelta::from_std(SETTLE_GRACE).expect("small");
        let expiry = start + TimeDelta::minutes(1) + grace;

        limiter
            .reserve(&[], expiry - TimeDelta::seconds(1))
            .await
            .expect("empty fits");
        limiter.settle(&reservation, &[6]).await.expect("settles");
        assert_eq!(
            limiter
                .used("k", Window::Minute, start)
                .await
                .expect("read"),
            6
        );

        limiter.reserve(&[], expiry).await.expect("empty fits");
        assert_eq!(limiter.n_counters(), 0);
        limiter
            .settle(&reservation, &[9])
            .await
            .expect("settling a forgotten window is a no-op");
        assert_eq!(limiter.n_counters(), 0);
    }
}
