//! Integration tests of flywheel-local against the real shipped models (SmolLM2-135M-Instruct
//! and all-MiniLM-L6-v2), found under `FLYWHEEL_MODELS_DIR` or the workspace's `models/`.
//! A missing model fails the test with the command that fetches it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chat;
mod embed;
mod helpers;
mod load_errors;
mod provider;
