//! The SQL engine over a small fixture lake whose answers are computed by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod datasets;
mod fixture;
mod reports;
mod sql;
