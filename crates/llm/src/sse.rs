//! Reading upstream HTTP answers shared by the HTTP adapters: server-sent events as a stream,
//! and error answers turned into a classified [`ProviderError`] without leaking the key.

use std::time::Duration;

pub use eventsource_stream::Event;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde_json::Value;

use std::collections::VecDeque;

use crate::types::{ChatStream, StreamEvent};
use crate::{scrub, ErrorClass, ProviderError};

/// Longest error body read from an upstream, to keep a misbehaving server from filling memory.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// The HTTP client every HTTP adapter uses: the configured connect timeout, a large idle pool
/// (a busy gateway keeps many upstream connections warm) and TCP_NODELAY (stream events must
/// not wait for Nagle's algorithm).
pub fn client(
    provider: &str,
    settings: &crate::HttpSettings,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|err| {
            ProviderError::new(provider, ErrorClass::Connect, format!("HTTP client: {err}"))
        })
}

/// The events of a `text/event-stream` answer.
pub fn events(
    provider: &str,
    response: reqwest::Response,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send + 'static {
    let provider = provider.to_owned();
    response.bytes_stream().eventsource().map(move |item| {
        item.map_err(|err| match err {
            eventsource_stream::EventStreamError::Transport(err) => {
                ProviderError::from_reqwest(&provider, &err)
            }
            other => ProviderError::invalid_response(
                &provider,
                format!("malformed event stream: {other}"),
            ),
        })
    })
}

/// Sends a request and returns the answer when its status is 2xx; otherwise reads the error
/// body and classifies it. `secret` is scrubbed from the message.
pub async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
    secret: Option<&str>,
) -> Result<reqwest::Response, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|err| ProviderError::from_reqwest(provider, &err))?;
    if response.status().is_success() {
        return Ok(response);
    }
    Err(error_from_response(provider, response, secret).await)
}

/// Turns a non-2xx answer into a classified error with the provider's own message.
pub async fn error_from_response(
    provider: &str,
    response: reqwest::Response,
    secret: Option<&str>,
) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = read_limited(response).await;
    let mut message =
        error_message(&body).unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    if message.is_empty() {
        message = format!("HTTP {status} with an empty body");
    }
    if let Some(secret) = secret {
        message = scrub(&message, secret);
    }
    let mut error = ProviderError::from_status(
        provider,
        status,
        format!("HTTP {status}: {message}"),
        retry_after,
    );
    // Some providers report overload or safety blocks with 4xx/5xx codes of their own.
    let lowered = message.to_ascii_lowercase();
    if status == 529 || lowered.contains("overloaded") {
        error.class = ErrorClass::Server;
    }
    if status == 400 && (lowered.contains("content filter") || lowered.contains("content_filter")) {
        error.class = ErrorClass::ContentFilter;
    }
    error
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// The human message inside the JSON error shapes providers use: OpenAI and Anthropic
/// `{"error": {"message": …}}`, Gemini `[{"error": …}]` or `{"error": {"message", "status"}}`,
/// Bedrock `{"message": …}`.
fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let value = match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    let error = value.get("error").unwrap_or(&value);
    if let Some(text) = error.as_str() {
        return Some(text.to_owned());
    }
    let message = error
        .get("message")
        .or_else(|| value.get("message"))
        .or_else(|| value.get("Message"))?
        .as_str()?;
    let kind = error
        .get("type")
        .or_else(|| error.get("status"))
        .or_else(|| error.get("code"))
        .and_then(Value::as_str);
    Some(match kind {
        Some(kind) => format!("{kind}: {message}"),
        None => message.to_owned(),
    })
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<f64>().ok().and_then(|seconds| {
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
    })
}

/// Sends a streaming request: like [`send`], but the wait for the answer's headers is bounded
/// by `timeout` (the body is not, since a stream may rightly last long; see [`idle_timeout`]).
pub async fn send_streaming(
    provider: &str,
    request: reqwest::RequestBuilder,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    match tokio::time::timeout(timeout, send(provider, request, secret)).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::new(
            provider,
            ErrorClass::Timeout,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    }
}

/// Ends `stream` with a `Timeout` error when no item arrives for `timeout`, and stops after
/// the first error (a failed stream yields nothing more).
pub fn idle_timeout<S, T>(
    provider: &str,
    stream: S,
    timeout: Duration,
) -> impl Stream<Item = Result<T, ProviderError>> + Send + 'static
where
    S: Stream<Item = Result<T, ProviderError>> + Send + 'static,
    T: Send + 'static,
{
    let provider = provider.to_owned();
    let stream = Box::pin(stream);
    futures::stream::unfold(Some(stream), move |state| {
        let provider = provider.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(Ok(item))) => Some((Ok(item), Some(stream))),
                Ok(Some(Err(err))) => Some((Err(err), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ProviderError::new(
                        &provider,
                        ErrorClass::Timeout,
                        format!("the stream stalled for {} ms", timeout.as_millis()),
                    )),
                    None,
                )),
            }
        }
    })
}

/// Turns one provider's SSE events into [`StreamEvent`]s. Implemented by each adapter's
/// private stream state; driven by [`translate`].
pub trait Translator: Send + 'static {
    /// Translates one event. May return several stream events, or none (pings).
    fn on_event(&mut self, event: Event) -> Result<Vec<StreamEvent>, ProviderError>;

    /// True once the provider's end-of-stream marker was seen; nothing more is read.
    fn finished(&self) -> bool;

    /// Called when the upstream closed the stream; a stream that ends before the provider's
    /// end marker must return an error here, never pass for a complete answer.
    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError>;
}

/// Drives `translator` over `events` into a [`ChatStream`], stopping after the first error.
pub fn translate<S, T>(events: S, translator: T) -> ChatStream
where
    S: Stream<Item = Result<Event, ProviderError>> + Send + 'static,
    T: Translator,
{
    struct Driver<S, T> {
        events: std::pin::Pin<Box<S>>,
        translator: T,
        pending: VecDeque<StreamEvent>,
        done: bool,
    }
    let driver = Driver {
        events: Box::pin(events),
        translator,
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(driver, |mut driver| async move {
        loop {
            if let Some(event) = driver.pending.pop_front() {
                return Some((Ok(event), driver));
            }
            if driver.done {
                return None;
            }
            let translated = if driver.translator.finished() {
                driver.done = true;
                continue;
            } else {
                match driver.events.next().await {
                    Some(Ok(event)) => driver.translator.on_event(event),
                    Some(Err(err)) => Err(err),
                    None => {
                        driver.done = true;
                        driver.translator.on_end()
                    }
                }
            };
            match translated {
                Ok(events) => driver.pending.extend(events),
                Err(err) => {
                    driver.done = true;
                    driver.pending.clear();
                    return Some((Err(err), driver));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_messages_in_every_provider_shape() {
        let openai = br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#;
        assert_eq!(
            error_message(openai).as_deref(),
            Some("invalid_request_error: bad key")
        );
        let gemini = br#"[{"error":{"code":400,"message":"nope","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(
            error_message(gemini).as_deref(),
            Some("INVALID_ARGUMENT: nope")
        );
        let bedrock = br#"{"message":"throttled"}"#;
        assert_eq!(error_message(bedrock).as_deref(), Some("throttled"));
        assert_eq!(error_message(b"not json"), None);
    }
}
