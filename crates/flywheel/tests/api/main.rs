//! Flywheel's integration tests: one binary, one module per area.
//!
//! The backend is chosen per run: SQLite by default, PostgreSQL when
//! `FLYWHEEL_TEST_POSTGRES_URL` is set (each test then gets a throwaway database). The storage
//! suite in `store` runs against SQLite always and against PostgreSQL too when it is available.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod analytics;
mod concierge;
mod conventions;
mod gateway;
mod helpers;
mod identity;
mod interactions;
mod knowledge;
mod lake;
mod local_models;
mod observability;
mod openapi;
mod power100;
mod process;
mod readiness;
mod store;
