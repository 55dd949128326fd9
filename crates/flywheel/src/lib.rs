//! Wiring: turns a [`Config`](flywheel_config::Config) into running components. Used by the
//! binary and by the integration tests (`spawn_app`), so both start Flywheel the same way.

pub mod app;
pub mod bench;
pub mod bench_concierge;
pub mod bench_gateway;
pub mod cli;
pub mod commands;
pub mod knowledge;
pub mod query;
pub mod telemetry;

pub use app::{Application, Components};
