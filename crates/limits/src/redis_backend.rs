//! [`RedisLimiter`]: budgets in Redis, shared by every Flywheel replica that uses the same
//! server and key prefix.
//!
//! Each counter is one integer key, `<prefix>:<key>:<window>:<window start, Unix seconds>`,
//! that expires [`SETTLE_GRACE`](crate::SETTLE_GRACE) after its window ends. A reservation is
//! one Lua script (sent as `EVALSHA`, loaded on first use) that reads every counter, and only if
//! every charge fits, `INCRBY`s them all: Redis runs a script atomically, so no other
//! reservation can come in between. Settling is a second script that adds the differences,
//! floors the result at 0, and leaves expired counters alone.
//!
//! All the keys of a reservation go to one script, so on Redis Cluster they would have to share
//! a hash slot; Flywheel targets a single Redis server (or a primary with replicas).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::limiter::{
    counter_expiry, exceeded, Charge, LimitError, Limiter, Reservation, ReservedCharge, MAX_AMOUNT,
};
use crate::window::Window;

/// The key prefix used when the configuration names none.
pub const DEFAULT_KEY_PREFIX: &str = "flywheel:limits";

/// How long to wait for a connection or a reply before reporting [`LimitError::Backend`]: a
/// budget check sits on every gateway request, so an unreachable Redis must fail fast.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// No retries inside one connection attempt: in redis 0.32 the backoff between them starts at
/// 1 s and multiplies by the configured factor (redis-rs issue #1556), and requests wait for the
/// whole sequence. Without retries a request waits for at most one attempt, and the next request
/// after a failure starts a new one.
const N_CONNECTION_RETRIES: usize = 0;

/// Checks every charge, then adds them all, or none. Lua numbers are doubles, which is why
/// limits and amounts are clamped to `MAX_AMOUNT` (2^53 - 1) before they are sent.
///
/// KEYS[i] is charge i's counter; ARGV[3i-2], ARGV[3i-1] and ARGV[3i] are its limit, its amount
/// and the counter's time to live in milliseconds. Returns `{1, used_after_1, ...}` when every
/// charge fits, or `{0, i, used}` for the first charge i that does not.
const RESERVE_SCRIPT: &str = r"
local planned = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 2])
  local amount = tonumber(ARGV[3 * i - 1])
  local used = planned[key]
  if used == nil then
    used = tonumber(redis.call('GET', key) or '0')
  end
  if used >= limit or used + amount > limit then
    return {0, i, used}
  end
  planned[key] = used + amount
end
local reply = {1}
for i, key in ipairs(KEYS) do
  reply[i + 1] = redis.call('INCRBY', key, ARGV[3 * i - 1])
  redis.call('PEXPIRE', key, ARGV[3 * i])
end
return reply
";

/// Adds ARGV[i] (which may be negative) to the counter KEYS[i] if it still exists, flooring the
/// result at 0 and keeping its expiry. A counter that has expired is left absent, so a late
/// settle cannot recreate it without an expiry.
const SETTLE_SCRIPT: &str = r"
for i, key in ipairs(KEYS) do
  if ARGV[i] ~= '0' and redis.call('EXISTS', key) == 1 then
    if redis.call('INCRBY', key, ARGV[i]) < 0 then
      redis.call('SET', key, 0, 'KEEPTTL')
    end
  end
end
return 0
";

/// Budgets in Redis. Cheap to clone: clones share one multiplexed connection, which reconnects
/// by itself after a failure.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    key_prefix: String,
    reserve_script: Script,
    settle_script: Script,
}

impl RedisLimiter {
    /// Connects to the Redis server at `url` (`redis://[:password@]host:port[/db]`); counters
    /// are stored under `key_prefix` (see [`DEFAULT_KEY_PREFIX`]). Fails when the server cannot
    /// be reached now; after that, a lost connection is re-established by later calls.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, LimitError> {
        // The URL is not part of the error: it may hold a password.
        let client = redis::Client::open(url)
            .map_err(|err| LimitError::Backend(format!("invalid Redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(N_CONNECTION_RETRIES);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|err| LimitError::Backend(format!("cannot connect to Redis: {err}")))?;
        Ok(Self::with_connection(connection, key_prefix))
    }

    /// A limiter over an existing connection, for callers that configure their own.
    pub fn with_connection(connection: ConnectionManager, key_prefix: &str) -> Self {
        Self {
            connection,
            key_prefix: key_prefix.to_owned(),
            reserve_script: Script::new(RESERVE_SCRIPT),
            settle_script: Script::new(SETTLE_SCRIPT),
        }
    }

    /// The prefix of every key this limiter writes.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    fn counter_key(&self, key: &str, window: Window, window_start: DateTime<Utc>) -> String {
        format!(
            "{}:{key}:{window}:{}",
            self.key_prefix,
            window_start.timestamp()
        )
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn reserve(
        &self,
        charges: &[Charge],
        now: DateTime<Utc>,
    ) -> Result<Reservation, LimitError> {
        if charges.is_empty() {
            return Ok(Reservation::new(Vec::new()));
        }
        let mut invocation = self.reserve_script.prepare_invoke();
        for charge in charges {
            let window_start = charge.window.start(now);
            let time_to_live = counter_expiry(charge.window, window_start) - now;
            invocation
                .key(self.counter_key(&charge.key, charge.window, window_start))
                .arg(charge.limit.min(MAX_AMOUNT))
                .arg(charge.amount.min(MAX_AMOUNT))
                .arg(time_to_live.num_milliseconds().max(1));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|err| LimitError::Backend(format!("Redis reserve script failed: {err}")))?;

        match reply.as_slice() {
            [1, used_after @ ..] if used_after.len() == charges.len() => {
                let reserved = charges
                    .iter()
                    .zip(used_after)
                    .map(|(charge, &used_after)| ReservedCharge {
                        key: charge.key.clone(),
                        window: charge.window,
                        window_start: charge.window.start(now),
                        reset_at: charge.window.end(now),
                        limit: charge.limit.min(MAX_AMOUNT),
                        amount: charge.amount.min(MAX_AMOUNT),
                        used_after: u64::try_from(used_after).unwrap_or(0),
                    })
                    .collect();
                Ok(Reservation::new(reserved))
            }
            &[0, charge_number, used] => {
                let charge = usize::try_from(charge_number)
                    .ok()
                    .and_then(|number| number.checked_sub(1))
                    .and_then(|idx| charges.get(idx))
                    .ok_or_else(|| unexpected_reply(&reply))?;
                Err(exceeded(charge, u64::try_from(used).unwrap_or(0), now))
            }
            _ => Err(unexpected_reply(&reply)),
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), LimitError> {
        let charges = reservation.charges();
        if charges.len() != actual.len() {
            return Err(LimitError::SettleMismatch {
                n_charges: charges.len(),
                n_actual: actual.len(),
            });
        }
        let mut invocation = self.settle_script.prepare_invoke();
        let mut any_change = false;
        for (charge, &actual) in charges.iter().zip(actual) {
            // Both are at most MAX_AMOUNT (2^53 - 1), so the difference fits an i64.
            let delta = i128::from(actual.min(MAX_AMOUNT)) - i128::from(charge.amount);
            let delta = i64::try_from(delta).unwrap_or(0);
            any_change |= delta != 0;
            invocation
                .key(self.counter_key(&charge.key, charge.window, charge.window_start))
                .arg(delta);
        }
        if !any_change {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(|err| LimitError::Backend(format!("Redis settle script failed: {err}")))?;
        Ok(())
    }

    async fn used(&self, key: &str, window: Window, at: DateTime<Utc>) -> Result<u64, LimitError> {
        let mut connection = self.connection.clone();
        let used: Option<i64> = connection
            .get(self.counter_key(key, window, window.start(at)))
            .await
            .map_err(|err| LimitError::Backend(format!("Redis GET failed: {err}")))?;
        Ok(used.map_or(0, |used| u64::try_from(used).unwrap_or(0)))
    }
}

fn unexpected_reply(reply: &[i64]) -> LimitError {
    LimitError::Backend(format!(
        "unexpected reply from the Redis reserve script: {reply:?}"
    ))
}
