//! The shared provider suite: every adapter runs the same tests against the mock upstream
//! speaking its real wire format (`suite.rs`), opting out of a feature only explicitly.

#[macro_use]
mod suite;

mod anthropic;
mod bedrock;
mod gemini;
mod openai;
