//! A local mock upstream speaking the real wire formats of OpenAI (and OpenAI-compatible
//! servers), Anthropic Messages, Google Gemini and AWS Bedrock Converse — JSON and streaming —
//! so adapters are tested through their real client code, and the gateway can be benchmarked
//! against an upstream that answers instantly.
//!
//! Every format is driven the same way: the text of the last user message may carry
//! directives in double brackets, and the mock plans its answer from them ([`plan`]):
//!
//! - `[[status:429]]` answers with that HTTP status in the provider's error shape
//!   (429 carries `Retry-After: 0`);
//! - `[[fail_first:N:label]]` fails the first N calls carrying `label` with a 500, then succeeds;
//! - `[[delay_ms:N]]` waits N ms before answering; `[[chunk_delay_ms:N]]` between stream chunks;
//! - `[[fail_midstream]]` streams two text chunks, then breaks the connection;
//! - `[[tool]]` calls the first tool of the request with arguments `{"query":"mock"}`
//!   (`[[tool:NAME]]` the tool of that name);
//! - `[[cached:N]]` reports N cached input tokens;
//! - `[[chunks:N]]` splits a streamed answer into N text chunks (default 3).
//!
//! The answer is `Mock answer: <the user text without directives>` (or `{"answer": …}` when a
//! JSON response was requested). Usage: input tokens = words across all message texts, output
//! tokens = words of the answer (a tool call counts 5).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod openai;

/// How many recent calls are kept for inspection.
const MAX_RECORDED_CALLS: usize = 1_000;

/// One call the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Which API: `openai.chat`, `openai.embeddings`, `anthropic.messages`,
    /// `gemini.generate`, `gemini.stream`, `bedrock.converse`, `bedrock.converse_stream`.
    pub api: &'static str,
    pub model: String,
    /// The credential presented (bearer token, `x-api-key`, `x-goog-api-key`, or the SigV4
    /// access key id), when any.
    pub credential: Option<String>,
    pub streamed: bool,
    /// The request body as sent (OpenAI chat only; `Null` elsewhere), for tests that check
    /// what a model was asked.
    pub body: serde_json::Value,
}

/// Shared state: recent calls and the `fail_first` counters.
#[derive(Debug, Default)]
pub struct MockState {
    calls: Mutex<VecDeque<CallRecord>>,
    total_calls: Mutex<HashMap<&'static str, u64>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl MockState {
    pub fn record(&self, call: CallRecord) {
        if let Ok(mut totals) = self.total_calls.lock() {
            *totals.entry(call.api).or_default() += 1;
        }
        if let Ok(mut calls) = self.calls.lock() {
            if calls.len() == MAX_RECORDED_CALLS {
                calls.pop_front();
            }
            calls.push_back(call);
        }
    }

    /// The most recent calls, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls
            .lock()
            .map(|calls| calls.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls per API since start.
    pub fn total_calls(&self, api: &str) -> u64 {
        self.total_calls
            .lock()
            .map(|totals| totals.get(api).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts one call for `label` and says whether it should still fail.
    fn should_fail(&self, label: &str, times: u32) -> bool {
        let Ok(mut failures) = self.failures.lock() else {
            return false;
        };
        let seen = failures.entry(label.to_owned()).or_default();
        *seen += 1;
        *seen <= times
    }
}

/// What the mock will answer, decided from the request's directives.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: Option<u16>,
    pub delay: Duration,
    pub chunk_delay: Duration,
    pub fail_midstream: bool,
    /// The tool to call, when `[[tool]]` was given and the request defines a tool.
    pub tool_call: Option<String>,
    pub answer: String,
    pub chunks: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

/// The arguments every mock tool call carries.
pub const TOOL_ARGUMENTS: &str = r#"{"query":"mock"}"#;

impl Plan {
    /// The answer split into `chunks` pieces of whole characters, for streaming.
    pub fn answer_chunks(&self) -> Vec<String> {
        let characters: Vec<char> = self.answer.chars().collect();
        let pieces = self.chunks.clamp(1, characters.len().max(1));
        let size = characters.len().div_ceil(pieces).max(1);
        characters
            .chunks(size)
            .map(|piece| piece.iter().collect())
            .collect()
    }
}

/// Plans an answer. `last_user_text` carries the directives, `all_texts` are every message's
/// text (for the input token count), `tools` the names of the tools the request defines.
pub fn plan(
    state: &MockState,
    last_user_text: &str,
    all_texts: &[&str],
    tools: &[String],
    json_answer: bool,
) -> Plan {
    let mut plan = Plan {
        status: None,
        delay: Duration::ZERO,
        chunk_delay: Duration::ZERO,
        fail_midstream: false,
        tool_call: None,
        answer: String::new(),
        chunks: 3,
        input_tokens: all_texts.iter().map(|text| word_count(text)).sum(),
        output_tokens: 0,
        cached_input_tokens: 0,
    };
    let mut cleaned = String::new();
    let mut rest = last_user_text;
    while let Some(start) = rest.find("[[") {
        cleaned.push_str(&rest[..start]);
        let Some(length) = rest[start..].find("]]") else {
            cleaned.push_str(&rest[start..]);
            rest = "";
            break;
        };
        apply(state, &mut plan, &rest[start + 2..start + length], tools);
        rest = &rest[start + length + 2..];
    }
    cleaned.push_str(rest);
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    plan.answer = if json_answer {
        serde_json::json!({ "answer": cleaned }).to_string()
    } else {
        format!("Mock answer: {cleaned}")
    };
    plan.output_tokens = if plan.tool_call.is_some() {
        5
    } else {
        word_count(&plan.answer)
    };
    plan
}

fn apply(state: &MockState, plan: &mut Plan, directive: &str, tools: &[String]) {
    let mut parts = directive.split(':');
    let name = parts.next().unwrap_or_default();
    let number = |text: Option<&str>| text.and_then(|text| text.parse::<u64>().ok());
    match name {
        "status" => plan.status = number(parts.next()).and_then(|code| u16::try_from(code).ok()),
        "fail_first" => {
            let times = number(parts.next()).unwrap_or(1);
            let label = parts.next().unwrap_or("default");
            if state.should_fail(label, u32::try_from(times).unwrap_or(u32::MAX)) {
                plan.status = Some(500);
            }
        }
        "delay_ms" => plan.delay = Duration::from_millis(number(parts.next()).unwrap_or(0)),
        "chunk_delay_ms" => {
            plan.chunk_delay = Duration::from_millis(number(parts.next()).unwrap_or(0));
        }
        "fail_midstream" => plan.fail_midstream = true,
        "tool" => {
            plan.tool_call = match parts.next() {
                // `[[tool:NAME]]` calls the named tool when the request defines it.
                Some(wanted) => tools.iter().find(|tool| *tool == wanted).cloned(),
                None => tools.first().cloned(),
            }
        }
        "cached" => plan.cached_input_tokens = number(parts.next()).unwrap_or(0),
        "chunks" => {
            plan.chunks = usize::try_from(number(parts.next()).unwrap_or(3)).unwrap_or(3);
        }
        _ => {}
    }
}

/// Waits `delay`; returns at once for zero, because a zero-length tokio sleep still waits for
/// the next timer tick (about a millisecond), which would dominate an "instant" upstream.
pub async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn word_count(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// A bearer token from `Authorization`, or the value of another key header.
pub fn credential(headers: &HeaderMap, header: &str) -> Option<String> {
    let value = headers.get(header)?.to_str().ok()?;
    Some(
        value
            .strip_prefix("Bearer ")
            .unwrap_or(value)
            .trim()
            .to_owned(),
    )
}

/// The status to answer for a missing credential.
pub const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

/// The mock's router: every provider's paths on one server.
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models/{model_action}", post(gemini::generate))
        .route("/model/{model_id}/converse", post(bedrock::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock::converse_stream),
        )
        .with_state(state)
}

/// A running mock server.
#[derive(Debug)]
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Binds `addr` (port 0 for any free port) on loopback and serves until dropped.
    pub async fn spawn(addr: SocketAddr) -> anyhow::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::default());
        let app = router(state.clone());
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "mock provider stopped");
            }
        });
        Ok(MockServer { addr, state, task })
    }

    /// Any free loopback port.
    pub async fn start() -> anyhow::Result<MockServer> {
        MockServer::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the server task (used by the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_shape_the_plan() {
        let state = MockState::default();
        let tools = vec!["lookup".to_owned()];
        let plan = plan(
            &state,
            "hi [[tool]] there [[cached:3]] [[delay_ms:5]]",
            &["system words here", "hi there"],
            &tools,
            false,
        );
        assert_eq!(plan.tool_call.as_deref(), Some("lookup"));
        assert_eq!(plan.cached_input_tokens, 3);
        assert_eq!(plan.delay, Duration::from_millis(5));
        assert_eq!(plan.answer, "Mock answer: hi there");
        assert_eq!(plan.input_tokens, 5);
        assert_eq!(plan.output_tokens, 5);
    }

    #[test]
    fn fail_first_fails_then_succeeds() {
        let state = MockState::default();
        let statuses: Vec<_> = (0..3)
            .map(|_| plan(&state, "[[fail_first:2:x]]", &[], &[], false).status)
            .collect();
        assert_eq!(statuses, vec![Some(500), Some(500), None]);
    }

    #[test]
    fn chunks_cover_the_answer() {
        let state = MockState::default();
        let plan = plan(&state, "abc def [[chunks:4]]", &[], &[], false);
        assert_eq!(plan.answer_chunks().concat(), plan.answer);
        assert_eq!(plan.answer_chunks().len(), 4);
    }
}
