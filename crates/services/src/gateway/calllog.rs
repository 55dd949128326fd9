//! Logging gateway calls off the response path: a handler only enqueues what happened (a
//! bounded channel, never waiting); one background task builds the interaction document,
//! validates and enriches it, and hands it to the write queue. When either queue is full the
//! record is dropped and `flywheel_llm_call_logs_dropped_total` counts it — the one place where
//! Flywheel sheds data rather than slow a caller down.

use std::sync::{Arc, Mutex};

use flywheel_core::Principal;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::routing::Route;
use super::{chat_document, CallSummary, ChatInput, GatewayMetrics, RouteInfo};
use crate::enrich::ClientContext;
use crate::ingest::{DetachedRecord, IngestService};
use flywheel_llm::{FinishReason, ProviderError, ToolCall, Usage};

/// Calls waiting to be logged; beyond this many, new ones are dropped and counted.
const LOG_QUEUE_CAPACITY: usize = 20_000;

/// Everything about one chat call its log record needs, owned.
pub(super) struct PendingChatLog {
    pub actor: Principal,
    pub input: ChatInput,
    pub route: Route,
    pub route_info: RouteInfo,
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Option<Usage>,
    pub cost: Option<f64>,
    pub duration: std::time::Duration,
    pub time_to_first_token: Option<std::time::Duration>,
    pub error: Option<ProviderError>,
    /// A stream that ended early: what was sent is logged, marked incomplete.
    pub incomplete: bool,
    pub attempts: Vec<Value>,
    pub streamed: bool,
    pub credential: &'static str,
    pub interaction_id: Uuid,
}

pub(super) enum LogJob {
    Chat(Box<PendingChatLog>),
    Document {
        actor: Principal,
        document: Value,
        client: ClientContext,
    },
}

/// The queue and its worker task. Owned by the gateway; `shutdown` drains it.
pub(super) struct CallLogger {
    sender: mpsc::Sender<LogJob>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    metrics: GatewayMetrics,
}

impl CallLogger {
    /// Starts the worker on the current runtime.
    pub fn spawn(ingest: Arc<IngestService>, metrics: GatewayMetrics) -> CallLogger {
        let (sender, receiver) = mpsc::channel(LOG_QUEUE_CAPACITY);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(receiver, stopped, ingest, metrics.clone()));
        CallLogger {
            sender,
            stop,
            task: Mutex::new(Some(task)),
            metrics,
        }
    }

    /// Enqueues without waiting; a full queue drops the record and counts it.
    pub fn enqueue(&self, job: LogJob) {
        if self.sender.try_send(job).is_err() {
            self.metrics.logs_dropped.inc();
            tracing::warn!("a gateway call was not logged: the call-log queue is full");
        }
    }

    /// Logs everything already enqueued, then stops the worker.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for CallLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallLogger")
    }
}

async fn run(
    mut receiver: mpsc::Receiver<LogJob>,
    mut stopped: watch::Receiver<bool>,
    ingest: Arc<IngestService>,
    metrics: GatewayMetrics,
) {
    loop {
        tokio::select! {
            job = receiver.recv() => match job {
                Some(job) => handle(job, &ingest, &metrics),
                None => return,
            },
            _ = wait_for_stop(&mut stopped) => {
                receiver.close();
                while let Some(job) = receiver.recv().await {
                    handle(job, &ingest, &metrics);
                }
                return;
            }
        }
    }
}

async fn wait_for_stop(stopped: &mut watch::Receiver<bool>) {
    if stopped.wait_for(|stop| *stop).await.is_err() {
        // The gateway is gone without asking to stop: the channel closing ends the task.
        std::future::pending::<()>().await;
    }
}

fn handle(job: LogJob, ingest: &IngestService, metrics: &GatewayMetrics) {
    let (actor, document, client) = match job {
        LogJob::Chat(pending) => {
            let pending = *pending;
            let summary = CallSummary {
                route: &pending.route_info,
                content: pending.content.as_deref(),
                tool_calls: &pending.tool_calls,
                finish_reason: pending.finish_reason.as_ref(),
                usage: pending.usage,
                cost: pending.cost,
                duration: pending.duration,
                time_to_first_token: pending.time_to_first_token,
                error: if pending.incomplete {
                    None
                } else {
                    pending.error.as_ref()
                },
                attempts: &pending.attempts,
                streamed: pending.streamed,
                credential: pending.credential,
            };
            let mut document =
                chat_document(&pending.actor, &pending.input, &pending.route, &summary);
            if pending.incomplete {
                if let Some(err) = &pending.error {
                    document["gateway"]["error_class"] = json!(err.class.as_str());
                    document["gateway"]["error"] = json!(err.message);
                }
                document["gateway"]["incomplete"] = json!(true);
            }
            document["interaction_id"] = json!(pending.interaction_id.to_string());
            (pending.actor, document, pending.input.client)
        }
        LogJob::Document {
            actor,
            document,
            client,
        } => (actor, document, client),
    };
    match ingest.record_detached(&actor, document, &client) {
        DetachedRecord::Queued(_) | DetachedRecord::Disabled => {}
        DetachedRecord::Dropped => {
            metrics.logs_dropped.inc();
            tracing::warn!("a gateway call was not logged: the interaction write queue is full");
        }
        DetachedRecord::Invalid(errors) => {
            tracing::error!(errors = %errors, "a gateway call record did not validate");
        }
    }
}
