//! The shared provider suite: every adapter runs the same tests against the mock upstream
//! speaking its real wire format (`suite.rs`), opting out of a feature only explicitly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod suite;

mod anthropic;
mod bedrock;
mod gemini;
mod openai;
