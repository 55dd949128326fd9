//! The SQL engine over a small fixture lake whose answers are computed by hand.

mod datasets;
mod fixture;
mod reports;
mod sql;
