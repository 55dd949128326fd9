//! Admission-time budgets for the LLM gateway: requests per minute or hour, tokens per day,
//! dollars per month, per principal, tenant or stored provider key.
//!
//! A request *reserves* its estimated cost before it is admitted and *settles* the real cost
//! afterwards, so concurrent requests can never overshoot a budget: the reservation checks and
//! adds every charge in one atomic step ([`Limiter::reserve`]), and [`Limiter::settle`] later
//! replaces each reserved amount by the actual one. Two backends implement [`Limiter`]:
//! [`MemoryLimiter`] for a single process and [`RedisLimiter`] for replicas that share budgets.
//!
//! Semantics shared by both backends (one test suite, `tests/limiter`, runs against both):
//!
//! - Windows are fixed and aligned to UTC ([`Window`]); a budget resets at the window's end.
//! - A charge fits when `used + amount <= limit` **and** `used < limit`. The second condition
//!   matters for `amount == 0`: an exhausted budget denies even a request estimated at nothing,
//!   so a spent token budget blocks new requests whose estimate is unknown. A limit of 0
//!   therefore allows nothing.
//! - A reservation is all-or-nothing; when it is denied, [`LimitError::Exceeded`] names the
//!   first charge (in the order given) that did not fit. Two charges on the same key and window
//!   in one reservation are counted together.
//! - Settling applies `actual - reserved` to the window the reservation was made in, even after
//!   the clock has moved on; usage never goes below zero. A window's counter is kept for
//!   [`SETTLE_GRACE`] after the window ends; settling a window older than that does nothing.
//!   Settle each reservation once: a second settle applies its difference again.
//! - Limits and amounts are integers (dollars are micro-dollars, chosen by the caller) and are
//!   clamped to [`MAX_AMOUNT`], the largest integer the Redis scripts handle exactly.
//!
//! Architecture invariant: this crate knows counters, windows and Redis, not principals,
//! tenants, providers or HTTP; the gateway decides which charges a request makes and how a
//! denial or a backend failure is answered.

mod limiter;
mod memory;
mod redis_backend;
mod window;

pub use limiter::{
    Charge, Exceeded, LimitError, Limiter, RateLimitStatus, Reservation, ReservedCharge,
    MAX_AMOUNT, SETTLE_GRACE,
};
pub use memory::MemoryLimiter;
pub use redis_backend::{RedisLimiter, DEFAULT_KEY_PREFIX};
pub use window::Window;
