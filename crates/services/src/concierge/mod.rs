//! The AI Concierge: persistent conversations with a model through the gateway, which know
//! their user (a profile injected as structured context, tools that look things up) and log
//! every turn as interactions.
//!
//! One turn: the session is checked (tenant, owner, still active, no answer in progress), the
//! prompt is built and trimmed to the model's context window ([`context`]), the user's message
//! and a `pending` answer are stored, then a task owned by the turn calls the model — running
//! tools between calls when the model asks for them ([`tools`]) — streams the text to the
//! caller, completes the answer (`complete`, `incomplete` when cut off, `failed`), and logs the
//! turn durably as `ai_concierge` / `ai_concierge_tool_call` / `ai_concierge_response`
//! interactions. A crash mid-answer leaves the `pending` row, which [`ConciergeService::recover`]
//! marks `incomplete` — never a half-saved answer that looks whole.

pub mod context;
pub mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flywheel_config::ConciergeConfig;
use flywheel_core::{Principal, Role, ValidationErrors};
use flywheel_llm::{ChatMessage, ChatRequest, StreamEvent, ToolCall, Usage};
use flywheel_store::{
    ConciergeMessageRecord, ConciergeSessionRecord, ConciergeStore, ErasureRecord,
    MessageCompletion, StoreError,
};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::enrich::ClientContext;
use crate::gateway::{ChatInput, GatewayService, GatewayStreamItem};
use crate::ingest::{IngestService, ItemOutcome, LinkedKind, OutcomeTarget, Submission};
use crate::ServiceError;
use tools::{ToolContext, ToolRegistry};

/// Largest profile or context object accepted, serialised.
const MAX_PROFILE_BYTES: usize = 16 * 1024;
/// Tool results longer than this are cut before they reach the model or the log.
const MAX_TOOL_RESULT_BYTES: usize = 4 * 1024;
/// Context window assumed for a model whose provider does not say (remote models).
const DEFAULT_CONTEXT_WINDOW: usize = 8_192;
/// Events buffered between the turn's task and a slow reader.
const TURN_EVENT_BUFFER: usize = 64;

/// Settings of the concierge.
#[derive(Debug, Clone)]
pub struct ConciergeSettings {
    pub config: ConciergeConfig,
    /// How long an answer may take; a `pending` answer older than this is shown (and, at
    /// start, marked) `incomplete`.
    pub answer_timeout: Duration,
}

/// The concierge. Cheap to share behind an `Arc`.
pub struct ConciergeService {
    store: Arc<dyn ConciergeStore>,
    ingest: Arc<IngestService>,
    gateway: Arc<GatewayService>,
    tools: ToolRegistry,
    settings: ConciergeSettings,
}

impl std::fmt::Debug for ConciergeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConciergeService")
            .field("tools", &self.tools)
            .field("model", &self.settings.config.model)
            .finish()
    }
}

/// What opening a session takes.
#[derive(Debug, Clone, Default)]
pub struct StartSessionInput {
    /// Whom the conversation is with. Contractors and partners always talk for themselves;
    /// admins and service keys must name the user.
    pub user_id: Option<String>,
    /// `contractor` unless given (for admins and service keys).
    pub user_type: Option<String>,
    /// The subject's profile (for Power100: company, focus areas, revenue tier, team size,
    /// goals), any JSON object.
    pub profile: Option<Value>,
    pub context: Option<Value>,
}

/// A session as callers see it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: String,
    pub user_id: String,
    pub user_type: String,
    pub model: String,
    pub status: String,
    pub profile: Option<Value>,
    pub context: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub message_count: Option<u64>,
    pub last_message_at: Option<DateTime<Utc>>,
}

/// A stored message as callers see it.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: String,
    pub seq: i64,
    pub role: String,
    pub content: Option<String>,
    /// Tool calls made while producing an answer: name, arguments, result, route.
    pub tool_calls: Option<Value>,
    pub status: String,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<i64>,
    /// How the answer was produced: context trimming, route, timings, error.
    pub details: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Transcript {
    pub session: SessionView,
    pub messages: Vec<MessageView>,
}

/// One event of a turn, in order: tool calls, text, then `Done`.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    ToolCall { name: String, arguments: Value },
    Delta(String),
    Done(Box<TurnSummary>),
}

/// The end of a turn.
#[derive(Debug, Clone)]
pub struct TurnSummary {
    pub user_message: MessageView,
    pub answer: MessageView,
}

/// A turn in progress: its events (an `Err` item ends it).
pub struct TurnStream {
    pub user_message_id: String,
    pub answer_id: String,
    first: Option<Result<TurnEvent, ServiceError>>,
    events: mpsc::Receiver<Result<TurnEvent, ServiceError>>,
}

impl std::fmt::Debug for TurnStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnStream")
            .field("answer_id", &self.answer_id)
            .finish()
    }
}

impl TurnStream {
    pub async fn next(&mut self) -> Option<Result<TurnEvent, ServiceError>> {
        match self.first.take() {
            Some(first) => Some(first),
            None => self.events.recv().await,
        }
    }

    /// Waits for the whole turn.
    pub async fn collect(mut self) -> Result<TurnSummary, ServiceError> {
        while let Some(event) = self.next().await {
            if let TurnEvent::Done(summary) = event? {
                return Ok(*summary);
            }
        }
        Err(ServiceError::Internal(anyhow::anyhow!(
            "the concierge turn ended without an answer"
        )))
    }
}

/// Feedback on an answer.
#[derive(Debug, Clone, Default)]
pub struct FeedbackInput {
    pub helpful: Option<bool>,
    /// 0 to 10, as in the interaction contract.
    pub accuracy: Option<f64>,
    pub comments: Option<String>,
}

/// What an erasure deleted.
#[derive(Debug, Clone)]
pub struct ErasureView {
    pub id: String,
    pub user_id: String,
    pub requested_at: DateTime<Utc>,
    pub sessions_deleted: u64,
    pub messages_deleted: u64,
    pub interactions_deleted: u64,
}

/// How tools are used in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolRoute {
    /// The model is offered the tools and calls them.
    FunctionCalling,
    /// The model cannot call functions: the router picks tools from the message first.
    Deterministic,
}

impl ToolRoute {
    fn as_str(self) -> &'static str {
        match self {
            ToolRoute::FunctionCalling => "function_calling",
            ToolRoute::Deterministic => "deterministic",
        }
    }
}

/// One executed tool call, for the answer's record and the log.
#[derive(Debug, Clone)]
struct ToolRecord {
    interaction_id: Uuid,
    call_id: Option<String>,
    name: String,
    arguments: Value,
    result: Value,
    ok: bool,
    duration: Duration,
}

impl ToolRecord {
    fn to_json(&self, route: ToolRoute) -> Value {
        json!({
            "interaction_id": self.interaction_id,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "ok": self.ok,
            "route": route.as_str(),
            "duration_ms": self.duration.as_millis() as u64,
        })
    }
}

/// Everything the turn's task needs, owned.
struct Turn {
    actor: Principal,
    client: ClientContext,
    session: ConciergeSessionRecord,
    user_message: ConciergeMessageRecord,
    /// The question and the pending answer, until stored.
    pending_rows: Option<[ConciergeMessageRecord; 2]>,
    answer_id: String,
    user_text: String,
    messages: Vec<ChatMessage>,
    context_report: Value,
    route: ToolRoute,
    tool_records: Vec<ToolRecord>,
    tool_time: Duration,
    started: Instant,
    profile: Option<Value>,
}

impl ConciergeService {
    pub fn new(
        store: Arc<dyn ConciergeStore>,
        ingest: Arc<IngestService>,
        gateway: Arc<GatewayService>,
        tools: ToolRegistry,
        settings: ConciergeSettings,
    ) -> ConciergeService {
        ConciergeService {
            store,
            ingest,
            gateway,
            tools,
            settings,
        }
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Marks answers cut off by a crash `incomplete`. With `exclusive` (this process is the
    /// only one using the database: SQLite), every `pending` answer is stale; otherwise only
    /// those older than the answer timeout (other replicas may be answering the rest).
    pub async fn recover(&self, exclusive: bool) -> Result<u64, ServiceError> {
        let before = if exclusive {
            Utc::now()
        } else {
            Utc::now() - self.answer_timeout()
        };
        let marked = self.store.mark_stale_pending(before).await?;
        if marked > 0 {
            tracing::warn!(
                answers = marked,
                "concierge answers cut off by a restart were marked incomplete"
            );
        }
        Ok(marked)
    }

    /// Opens a session and logs its start.
    pub async fn start_session(
        &self,
        actor: &Principal,
        input: StartSessionInput,
        client: &ClientContext,
    ) -> Result<SessionView, ServiceError> {
        let mut errors = ValidationErrors::default();
        let (user_id, user_type) = match actor.role {
            Role::Contractor | Role::Partner => {
                if let Some(user_id) = &input.user_id {
                    if user_id != actor.subject.as_str() {
                        return Err(ServiceError::Forbidden(
                            "a contractor or partner opens sessions only for itself; leave out user_id".into(),
                        ));
                    }
                }
                (actor.subject.to_string(), actor.role.to_string())
            }
            Role::Admin | Role::Service => {
                let user_id = input.user_id.clone().unwrap_or_default();
                if user_id.trim().is_empty() || user_id.len() > 256 {
                    errors.push(
                        "user_id",
                        "required for admin and service credentials: the user the conversation is with (1–256 characters)",
                    );
                }
                (
                    user_id,
                    input
                        .user_type
                        .clone()
                        .unwrap_or_else(|| "contractor".into()),
                )
            }
        };
        let profile = check_object(&mut errors, "profile", input.profile);
        if let Some(profile) = &profile {
            check_profile_fields(&mut errors, profile);
        }
        let context = check_object(&mut errors, "context", input.context);
        errors.into_result()?;
        let session = ConciergeSessionRecord {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            user_id,
            user_type,
            created_by: actor.subject.to_string(),
            model: self.model_for(actor).to_owned(),
            status: "active".into(),
            profile: profile.as_ref().map(Value::to_string),
            context: context.as_ref().map(Value::to_string),
            created_at: Utc::now(),
            ended_at: None,
        };
        self.store.insert_session(&session).await?;
        let mut document = base_document(&session, "ai_concierge_session_start");
        document["concierge"] = json!({
            "session_id": session.id,
            "model": session.model,
            "profile": profile,
            "context": context,
        });
        self.log(actor, vec![document], client).await;
        Ok(session_view(&session, None))
    }

    /// The session with its messages in order.
    pub async fn transcript(
        &self,
        actor: &Principal,
        session_id: &str,
    ) -> Result<Transcript, ServiceError> {
        let session = self.session_for(actor, session_id).await?;
        let messages = self
            .store
            .list_messages(&actor.tenant_id, &session.id)
            .await?;
        let now = Utc::now();
        let views: Vec<MessageView> = messages
            .iter()
            .map(|message| self.message_view(message, now))
            .collect();
        let last = messages.last().map(|message| message.created_at);
        let mut view = session_view(&session, Some(messages.len() as u64));
        view.last_message_at = last;
        Ok(Transcript {
            session: view,
            messages: views,
        })
    }

    /// Ends a session and logs it; 409 when it has ended already.
    pub async fn end_session(
        &self,
        actor: &Principal,
        session_id: &str,
        client: &ClientContext,
    ) -> Result<SessionView, ServiceError> {
        let session = self.session_for(actor, session_id).await?;
        let ended_at = Utc::now();
        if !self
            .store
            .end_session(&actor.tenant_id, &session.id, ended_at)
            .await?
        {
            return Err(ServiceError::Conflict(
                "the session has ended already".into(),
            ));
        }
        let messages = self
            .store
            .list_messages(&actor.tenant_id, &session.id)
            .await?;
        let mut document = base_document(&session, "ai_concierge_session_end");
        document["concierge"] = json!({
            "session_id": session.id,
            "messages": messages.len(),
            "duration_ms": (ended_at - session.created_at).num_milliseconds().max(0),
        });
        self.log(actor, vec![document], client).await;
        let mut session = session;
        session.status = "ended".into();
        session.ended_at = Some(ended_at);
        Ok(session_view(&session, Some(messages.len() as u64)))
    }

    /// Sessions of the tenant (contractors and partners: their own), newest first.
    pub async fn conversations(
        &self,
        actor: &Principal,
        user_id: Option<String>,
        limit: u32,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let user_id = self.user_scope(actor, user_id)?;
        let limit = limit.clamp(1, 500);
        let sessions = self
            .store
            .list_sessions(&actor.tenant_id, user_id.as_deref(), limit)
            .await?;
        Ok(sessions
            .into_iter()
            .map(|summary| {
                let mut view = session_view(&summary.session, Some(summary.message_count));
                view.last_message_at = summary.last_message_at;
                view
            })
            .collect())
    }

    /// Erases a user's conversations: sessions, messages and the interactions logged for them
    /// in the operational store, in one transaction, and records the erasure (also as a
    /// `data_erasure` interaction, so copies already archived to the lake can be found).
    pub async fn erase(
        &self,
        actor: &Principal,
        user_id: Option<String>,
        client: &ClientContext,
    ) -> Result<ErasureView, ServiceError> {
        let user_id = self.user_scope(actor, user_id)?.ok_or_else(|| {
            ServiceError::from(ValidationErrors::single(
                "user_id",
                "required for admin and service credentials: whose conversations to erase",
            ))
        })?;
        let mut erasure = ErasureRecord {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            user_id: user_id.clone(),
            requested_by: actor.subject.to_string(),
            requested_at: Utc::now(),
            sessions_deleted: 0,
            messages_deleted: 0,
            interactions_deleted: 0,
        };
        self.store.erase_user(&mut erasure).await?;
        let document = json!({
            "interaction_type": "data_erasure",
            "user_id": user_id,
            "user_type": "contractor",
            "erasure": {
                "erasure_id": erasure.id,
                "scope": "concierge",
                "requested_by": erasure.requested_by,
                "sessions_deleted": erasure.sessions_deleted,
                "messages_deleted": erasure.messages_deleted,
                "interactions_deleted": erasure.interactions_deleted,
            },
        });
        self.log(actor, vec![document], client).await;
        Ok(ErasureView {
            id: erasure.id,
            user_id: erasure.user_id,
            requested_at: erasure.requested_at,
            sessions_deleted: erasure.sessions_deleted,
            messages_deleted: erasure.messages_deleted,
            interactions_deleted: erasure.interactions_deleted,
        })
    }

    /// Records feedback on an answer, linked to the answer's interaction.
    pub async fn feedback(
        &self,
        actor: &Principal,
        message_id: &str,
        input: FeedbackInput,
        client: &ClientContext,
    ) -> Result<(Uuid, ItemOutcome), ServiceError> {
        let mut errors = ValidationErrors::default();
        if input.helpful.is_none() && input.accuracy.is_none() && input.comments.is_none() {
            errors.push("body", "give at least one of helpful, accuracy, comments");
        }
        if let Some(accuracy) = input.accuracy {
            if !(0.0..=10.0).contains(&accuracy) {
                errors.push("accuracy", "must be between 0 and 10");
            }
        }
        if let Some(comments) = &input.comments {
            if comments.chars().count() > self.settings.config.max_message_chars {
                errors.push(
                    "comments",
                    format!(
                        "at most {} characters",
                        self.settings.config.max_message_chars
                    ),
                );
            }
        }
        errors.into_result()?;
        let message = self
            .store
            .get_message(&actor.tenant_id, message_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("message {message_id}")))?;
        // The session check applies the owner rule (404 for someone else's message).
        self.session_for(actor, &message.session_id).await?;
        if message.role != "assistant" {
            return Err(ValidationErrors::single(
                "id",
                "feedback is given on the concierge's answers, not on the user's messages",
            )
            .into());
        }
        let mut feedback = Map::new();
        if let Some(helpful) = input.helpful {
            feedback.insert("helpful".into(), json!(helpful));
        }
        if let Some(accuracy) = input.accuracy {
            feedback.insert("accuracy".into(), json!(accuracy));
        }
        if let Some(comments) = input.comments {
            feedback.insert("comments".into(), json!(comments));
        }
        self.ingest
            .record_linked(
                actor,
                OutcomeTarget::Interaction(message.id),
                LinkedKind::Feedback,
                json!({ "feedback": feedback }),
                client,
            )
            .await
    }

    /// Starts a turn: checks, builds the prompt, stores the message and a pending answer, and
    /// returns once the first event is known (so a model that cannot answer at all is an
    /// error here, not in the stream).
    pub async fn send_message(
        self: &Arc<Self>,
        actor: &Principal,
        session_id: &str,
        text: String,
        client: &ClientContext,
    ) -> Result<TurnStream, ServiceError> {
        let started = Instant::now();
        let max_chars = self.settings.config.max_message_chars;
        let n_chars = text.chars().count();
        if text.trim().is_empty() {
            return Err(ValidationErrors::single("content", "must not be empty").into());
        }
        if n_chars > max_chars {
            return Err(ValidationErrors::single(
                "content",
                format!("at most {max_chars} characters (concierge.max_message_chars); this message has {n_chars}"),
            )
            .into());
        }
        let session = self.session_for(actor, session_id).await?;
        if session.status != "active" {
            return Err(ServiceError::Conflict(
                "the session has ended; start a new one".into(),
            ));
        }
        let history = self
            .store
            .list_messages(&actor.tenant_id, &session.id)
            .await?;
        let now = Utc::now();
        if history
            .iter()
            .any(|message| message.status == "pending" && !self.is_stale(message, now))
        {
            return Err(ServiceError::Conflict(
                "the previous message is still being answered; wait for it".into(),
            ));
        }
        let model = self.gateway.model_profile(actor, &session.model)?;
        let route = if model.supports_tools {
            ToolRoute::FunctionCalling
        } else {
            ToolRoute::Deterministic
        };
        let profile: Option<Value> = session
            .profile
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let session_context: Option<Value> = session
            .context
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let user_message_id = Uuid::now_v7();
        let tool_context = ToolContext {
            actor: actor.clone(),
            tenant_id: actor.tenant_id.clone(),
            user_id: session.user_id.clone(),
            profile: profile.clone(),
            session_id: Some(session.id.clone()),
        };
        // The deterministic route runs its tools before the prompt is built, so trimming
        // accounts for their results.
        let tools_started = Instant::now();
        let mut tool_records = Vec::new();
        if route == ToolRoute::Deterministic {
            for (name, arguments) in self.tools.route(&text) {
                let record = self
                    .run_tool(&tool_context, None, name, &arguments.to_string())
                    .await;
                tool_records.push(record);
            }
        }
        let tool_time = tools_started.elapsed();
        let tool_results: Vec<(String, Value)> = tool_records
            .iter()
            .filter(|record| record.ok)
            .map(|record| (record.name.clone(), record.result.clone()))
            .collect();
        let persona = self.persona_for(actor);
        let window = self
            .settings
            .config
            .context_window
            .or(model.context_window)
            .unwrap_or(DEFAULT_CONTEXT_WINDOW);
        let reserved = (self.settings.config.max_output_tokens as usize).min(window / 2);
        let input = context::ContextInput {
            persona,
            profile: profile.as_ref(),
            context: session_context.as_ref(),
            tool_results: &tool_results,
            history: &history,
            user_text: &text,
            window,
            reserved_for_answer: reserved,
        };
        let counter = |messages: &[ChatMessage]| model.count_prompt_tokens(messages);
        let (messages, report) = context::build(&input, &counter).map_err(|overflow| {
            ServiceError::from(ValidationErrors::single(
                "content",
                format!(
                    "the message with the system prompt needs {} tokens, more than the {} the model's context window leaves for a prompt; shorten it",
                    overflow.prompt_tokens, overflow.budget
                ),
            ))
        })?;
        let now = Utc::now();
        let user_message = ConciergeMessageRecord {
            id: user_message_id.to_string(),
            session_id: session.id.clone(),
            tenant_id: actor.tenant_id.clone(),
            seq: 0,
            role: "user".into(),
            content: Some(text.clone()),
            tool_calls: None,
            tool_call_id: None,
            tool_name: None,
            status: "complete".into(),
            model: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            duration_ms: None,
            details: None,
            created_at: now,
            completed_at: Some(now),
        };
        let answer_id = Uuid::now_v7().to_string();
        let pending = ConciergeMessageRecord {
            id: answer_id.clone(),
            role: "assistant".into(),
            content: None,
            status: "pending".into(),
            model: Some(session.model.clone()),
            completed_at: None,
            ..user_message.clone()
        };
        // Stored by the turn's task while the model's first event is awaited (the question
        // and the pending answer are durable before the answer can complete).
        let pending_rows = Some([user_message.clone(), pending]);
        let turn = Turn {
            actor: actor.clone(),
            client: client.clone(),
            session,
            user_message,
            pending_rows,
            answer_id: answer_id.clone(),
            user_text: text,
            messages,
            context_report: report.to_json(),
            route,
            tool_records,
            tool_time,
            started,
            profile,
        };
        let (sender, mut receiver) = mpsc::channel(TURN_EVENT_BUFFER);
        let service = Arc::clone(self);
        // The task owns the turn: it finishes the stored answer and the log even when the
        // caller goes away, and stops calling the model once nobody listens.
        tokio::spawn(async move { service.run_turn(turn, sender).await });
        let first = receiver.recv().await;
        match first {
            Some(Err(err)) => Err(err),
            None => Err(ServiceError::Internal(anyhow::anyhow!(
                "the concierge turn ended without an answer"
            ))),
            first => Ok(TurnStream {
                user_message_id: user_message_id.to_string(),
                answer_id,
                first,
                events: receiver,
            }),
        }
    }

    async fn run_turn(
        &self,
        mut turn: Turn,
        sender: mpsc::Sender<Result<TurnEvent, ServiceError>>,
    ) {
        let mut listening = true;
        let tool_context = ToolContext {
            actor: turn.actor.clone(),
            tenant_id: turn.actor.tenant_id.clone(),
            user_id: turn.session.user_id.clone(),
            profile: turn.profile.clone(),
            session_id: Some(turn.session.id.clone()),
        };
        let max_iterations = self.settings.config.max_tool_iterations;
        let mut content = String::new();
        let mut usage = Usage::default();
        let mut cost: Option<f64> = Some(0.0);
        let mut model_time = Duration::ZERO;
        let mut answered_by: Option<String> = None;
        let mut finish_reason: Option<String> = None;
        let mut failure: Option<ServiceError> = None;
        let mut stream_error: Option<String> = None;
        let mut iterations = 0u32;
        let mut sent_text = false;
        let mut gateway_calls: Vec<String> = Vec::new();
        loop {
            iterations += 1;
            let offer_tools =
                turn.route == ToolRoute::FunctionCalling && iterations <= max_iterations;
            let request = ChatRequest {
                model: String::new(),
                messages: turn.messages.clone(),
                max_tokens: Some(self.settings.config.max_output_tokens),
                user: Some(turn.session.user_id.clone()),
                tools: if offer_tools {
                    self.tools.definitions()
                } else {
                    Vec::new()
                },
                ..ChatRequest::default()
            };
            let call_started = Instant::now();
            let rows = turn.pending_rows.take();
            let call = self.gateway.chat_stream(
                &turn.actor,
                ChatInput {
                    model: turn.session.model.clone(),
                    request,
                    conversation_id: Some(turn.session.id.clone()),
                    client: turn.client.clone(),
                },
            );
            let outcome = match rows {
                None => call.await,
                Some(mut rows) => {
                    // Storing the question overlaps the wait for the model's first event.
                    let (appended, outcome) =
                        tokio::join!(self.store.append_messages(&mut rows), call);
                    if let Err(err) = appended {
                        // Nothing was stored, so the turn did not happen; dropping the
                        // answer's stream cancels it upstream.
                        let err = match err {
                            StoreError::Conflict { .. } => ServiceError::Conflict(
                                "another message was sent to this session at the same time; retry"
                                    .into(),
                            ),
                            other => other.into(),
                        };
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                    let [user_message, _] = rows;
                    turn.user_message = user_message;
                    for record in &turn.tool_records {
                        listening &= sender
                            .send(Ok(TurnEvent::ToolCall {
                                name: record.name.clone(),
                                arguments: record.arguments.clone(),
                            }))
                            .await
                            .is_ok();
                    }
                    outcome
                }
            };
            let mut outcome = match outcome {
                Ok(outcome) => outcome,
                Err(err) => {
                    model_time += call_started.elapsed();
                    failure = Some(err);
                    break;
                }
            };
            gateway_calls.push(outcome.interaction_id.to_string());
            answered_by = Some(format!(
                "{}/{}",
                outcome.route.provider, outcome.route.model
            ));
            let mut calls: Vec<ToolCall> = Vec::new();
            let mut call_usage: Option<Usage> = None;
            while let Some(item) = outcome.events.next().await {
                match item {
                    GatewayStreamItem::Event(StreamEvent::Text(text)) => {
                        content.push_str(&text);
                        sent_text = true;
                        if listening && sender.send(Ok(TurnEvent::Delta(text))).await.is_err() {
                            listening = false;
                        }
                    }
                    GatewayStreamItem::Event(StreamEvent::ToolCallStart { index, id, name }) => {
                        let index = index as usize;
                        if calls.len() <= index {
                            calls.resize(
                                index + 1,
                                ToolCall {
                                    id: String::new(),
                                    name: String::new(),
                                    arguments: String::new(),
                                },
                            );
                        }
                        calls[index].id = id;
                        calls[index].name = name;
                    }
                    GatewayStreamItem::Event(StreamEvent::ToolCallArguments {
                        index,
                        fragment,
                    }) => {
                        if let Some(call) = calls.get_mut(index as usize) {
                            call.arguments.push_str(&fragment);
                        }
                    }
                    GatewayStreamItem::Event(StreamEvent::Finish(reason)) => {
                        finish_reason = Some(reason.as_str().to_owned());
                    }
                    GatewayStreamItem::Event(StreamEvent::Usage(reported)) => {
                        call_usage = Some(reported);
                    }
                    GatewayStreamItem::Error { class, message } => {
                        stream_error = Some(format!("{}: {message}", class.as_str()));
                    }
                }
                if !listening {
                    // Nobody reads the answer any more: stop paying for it.
                    break;
                }
            }
            model_time += call_started.elapsed();
            if let Some(reported) = call_usage {
                usage.input_tokens += reported.input_tokens;
                usage.output_tokens += reported.output_tokens;
                cost = match (cost, self.gateway.cost_of(&outcome.route, &reported)) {
                    (Some(total), Some(more)) => Some(total + more),
                    _ => None,
                };
            }
            if stream_error.is_some() || !listening || calls.is_empty() || !offer_tools {
                break;
            }
            // The model asked for tools: run them, give it the results, and ask again.
            turn.messages.push(ChatMessage {
                role: flywheel_llm::Role::Assistant,
                content: None,
                name: None,
                tool_calls: calls.clone(),
                tool_call_id: None,
            });
            for call in calls {
                let tool_started = Instant::now();
                let record = self
                    .run_tool(
                        &tool_context,
                        Some(call.id.clone()),
                        &call.name,
                        &call.arguments,
                    )
                    .await;
                turn.tool_time += tool_started.elapsed();
                if listening {
                    listening = sender
                        .send(Ok(TurnEvent::ToolCall {
                            name: record.name.clone(),
                            arguments: record.arguments.clone(),
                        }))
                        .await
                        .is_ok();
                }
                turn.messages.push(ChatMessage {
                    role: flywheel_llm::Role::Tool,
                    content: Some(record.result.to_string()),
                    name: None,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id),
                });
                turn.tool_records.push(record);
            }
            if !listening {
                break;
            }
        }
        let status = if failure.is_some() && !sent_text {
            "failed"
        } else if stream_error.is_some() || !listening || failure.is_some() {
            "incomplete"
        } else {
            "complete"
        };
        let error_text = failure
            .as_ref()
            .map(ToString::to_string)
            .or(stream_error.clone())
            .or_else(|| (!listening).then(|| "the client disconnected mid-answer".to_owned()));
        let total = turn.started.elapsed();
        let overhead = total.saturating_sub(model_time + turn.tool_time);
        let tool_calls_json: Vec<Value> = turn
            .tool_records
            .iter()
            .map(|record| record.to_json(turn.route))
            .collect();
        let details = json!({
            "context": turn.context_report,
            "tool_route": turn.route.as_str(),
            "iterations": iterations,
            "gateway_interactions": gateway_calls,
            "finish_reason": finish_reason,
            "error": error_text,
            "timings": {
                "total_ms": total.as_secs_f64() * 1000.0,
                "model_ms": model_time.as_secs_f64() * 1000.0,
                "tools_ms": turn.tool_time.as_secs_f64() * 1000.0,
                "overhead_ms": overhead.as_secs_f64() * 1000.0,
            },
        });
        let has_usage = usage.input_tokens + usage.output_tokens > 0;
        let completion = MessageCompletion {
            status: status.to_owned(),
            content: (!content.is_empty()).then(|| content.clone()),
            tool_calls: (!tool_calls_json.is_empty())
                .then(|| Value::from(tool_calls_json.clone()).to_string()),
            model: answered_by.clone().or(Some(turn.session.model.clone())),
            input_tokens: has_usage.then_some(usage.input_tokens as i64),
            output_tokens: has_usage.then_some(usage.output_tokens as i64),
            cost_usd: if has_usage { cost } else { None },
            duration_ms: Some(total.as_millis() as i64),
            details: Some(details.to_string()),
            completed_at: Utc::now(),
        };
        // The answer and the turn's log are written concurrently: both are durable before
        // the caller hears the turn is done.
        let documents = self.turn_documents(&turn, &completion, &usage, &details);
        let (stored, ()) = tokio::join!(
            self.store
                .complete_message(&turn.actor.tenant_id, &turn.answer_id, &completion),
            self.log(&turn.actor, documents, &turn.client),
        );
        if let Err(err) = stored {
            tracing::error!(error = %err, answer = %turn.answer_id, "could not store a concierge answer; it stays pending and is marked incomplete later");
        }
        // The stored timings stop before these writes; the caller's copy includes them.
        let total = turn.started.elapsed();
        let mut details = details;
        details["timings"]["total_ms"] = json!(total.as_secs_f64() * 1000.0);
        details["timings"]["overhead_ms"] = json!(
            total
                .saturating_sub(model_time + turn.tool_time)
                .as_secs_f64()
                * 1000.0
        );
        let completion = MessageCompletion {
            details: Some(details.to_string()),
            ..completion
        };
        if let Some(err) = failure {
            if !sent_text {
                let _ = sender.send(Err(err)).await;
                return;
            }
        }
        let now = Utc::now();
        let answer = ConciergeMessageRecord {
            id: turn.answer_id.clone(),
            seq: turn.user_message.seq + 1,
            role: "assistant".into(),
            content: completion.content.clone(),
            tool_calls: completion.tool_calls.clone(),
            status: completion.status.clone(),
            model: completion.model.clone(),
            input_tokens: completion.input_tokens,
            output_tokens: completion.output_tokens,
            cost_usd: completion.cost_usd,
            duration_ms: completion.duration_ms,
            details: completion.details.clone(),
            completed_at: Some(completion.completed_at),
            ..turn.user_message.clone()
        };
        let summary = TurnSummary {
            user_message: self.message_view(&turn.user_message, now),
            answer: self.message_view(&answer, now),
        };
        if listening {
            let _ = sender.send(Ok(TurnEvent::Done(Box::new(summary)))).await;
        }
    }

    /// The turn's interactions: the user's message, each tool call, and the answer.
    fn turn_documents(
        &self,
        turn: &Turn,
        completion: &MessageCompletion,
        usage: &Usage,
        details: &Value,
    ) -> Vec<Value> {
        let user_id = &turn.user_message.id;
        let mut user_turn = base_document(&turn.session, "ai_concierge");
        user_turn["interaction_id"] = json!(user_id);
        user_turn["timestamp"] = json!(turn.user_message.created_at.to_rfc3339());
        user_turn["ai_conversation"] = json!({
            "messages": [{
                "role": "user",
                "content": turn.user_text,
                "timestamp": turn.user_message.created_at.to_rfc3339(),
            }],
        });
        user_turn["concierge"] =
            json!({"session_id": turn.session.id, "model": turn.session.model});
        let mut documents = vec![user_turn];
        for record in &turn.tool_records {
            let mut document = base_document(&turn.session, "ai_concierge_tool_call");
            document["interaction_id"] = json!(record.interaction_id);
            document["parent_interaction_id"] = json!(user_id);
            let mut result = record.result.to_string();
            truncate_utf8(&mut result, MAX_TOOL_RESULT_BYTES);
            document["concierge"] = json!({
                "session_id": turn.session.id,
                "tool": record.name,
                "call_id": record.call_id,
                "arguments": record.arguments,
                "result": result,
                "ok": record.ok,
                "route": turn.route.as_str(),
                "duration_ms": record.duration.as_millis() as u64,
            });
            documents.push(document);
        }
        let mut answer = base_document(&turn.session, "ai_concierge_response");
        answer["interaction_id"] = json!(turn.answer_id);
        answer["parent_interaction_id"] = json!(user_id);
        let duration_ms = completion.duration_ms.unwrap_or(0);
        let mut conversation = json!({
            "messages": [{
                "role": "assistant",
                "content": completion.content,
                "timestamp": completion.completed_at.to_rfc3339(),
                "tokens": usage.output_tokens,
                "model": completion.model,
            }],
            "total_tokens": usage.total_tokens(),
            "duration_ms": duration_ms,
        });
        if let Some(cost) = completion.cost_usd {
            conversation["cost"] = json!(cost);
        }
        answer["ai_conversation"] = conversation;
        answer["concierge"] = json!({
            "session_id": turn.session.id,
            "status": completion.status,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "details": details,
        });
        documents.push(answer);
        documents
    }

    async fn run_tool(
        &self,
        context: &ToolContext,
        call_id: Option<String>,
        name: &str,
        arguments: &str,
    ) -> ToolRecord {
        let started = Instant::now();
        let parsed_arguments = serde_json::from_str(arguments).unwrap_or(json!(arguments));
        let (ok, mut result) = match self.tools.call(context, name, arguments).await {
            Ok(result) => (true, result),
            Err(err) => (false, json!({ "error": err.to_string() })),
        };
        let text = result.to_string();
        if text.len() > MAX_TOOL_RESULT_BYTES {
            let mut cut = text;
            truncate_utf8(&mut cut, MAX_TOOL_RESULT_BYTES);
            result = json!({ "truncated": cut });
        }
        ToolRecord {
            interaction_id: Uuid::now_v7(),
            call_id,
            name: name.to_owned(),
            arguments: parsed_arguments,
            result,
            ok,
            duration: started.elapsed(),
        }
    }

    /// Logs interactions durably. Logging is a side effect of the concierge, so a failure is
    /// reported in the server log, not to the user (whose turn is stored either way).
    async fn log(&self, actor: &Principal, documents: Vec<Value>, client: &ClientContext) {
        match self
            .ingest
            .ingest(actor, Submission::Batch(documents), client)
            .await
        {
            Ok(report) => {
                for item in &report.items {
                    if let ItemOutcome::Rejected { errors } = item {
                        tracing::error!(?errors, "a concierge interaction was rejected");
                    }
                }
            }
            Err(ServiceError::Disabled(_)) => {}
            Err(err) => tracing::error!(error = %err, "could not log concierge interactions"),
        }
    }

    /// The session if the actor may see it: same tenant, and for contractors and partners
    /// their own. Anything else is 404, so ids of others are not revealed.
    async fn session_for(
        &self,
        actor: &Principal,
        session_id: &str,
    ) -> Result<ConciergeSessionRecord, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("concierge session {session_id}"));
        if Uuid::parse_str(session_id).is_err() {
            return Err(not_found());
        }
        let session = self
            .store
            .get_session(&actor.tenant_id, session_id)
            .await?
            .ok_or_else(not_found)?;
        match actor.role {
            Role::Admin | Role::Service => Ok(session),
            Role::Contractor | Role::Partner if session.user_id == actor.subject.as_str() => {
                Ok(session)
            }
            Role::Contractor | Role::Partner => Err(not_found()),
        }
    }

    /// Whose data a listing or erasure covers: contractors and partners only their own.
    fn user_scope(
        &self,
        actor: &Principal,
        user_id: Option<String>,
    ) -> Result<Option<String>, ServiceError> {
        match actor.role {
            Role::Contractor | Role::Partner => match user_id {
                Some(other) if other != actor.subject.as_str() => Err(ServiceError::Forbidden(
                    "a contractor or partner may only act on its own conversations".into(),
                )),
                _ => Ok(Some(actor.subject.to_string())),
            },
            Role::Admin | Role::Service => Ok(user_id.filter(|id| !id.is_empty())),
        }
    }

    fn model_for(&self, actor: &Principal) -> &str {
        self.settings
            .config
            .tenants
            .get(actor.tenant_id.as_str())
            .and_then(|tenant| tenant.model.as_deref())
            .unwrap_or(&self.settings.config.model)
    }

    fn persona_for(&self, actor: &Principal) -> &str {
        self.settings
            .config
            .tenants
            .get(actor.tenant_id.as_str())
            .and_then(|tenant| tenant.persona.as_deref())
            .unwrap_or(&self.settings.config.persona)
    }

    fn answer_timeout(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.answer_timeout)
            .unwrap_or_else(|_| chrono::Duration::minutes(10))
    }

    fn is_stale(&self, message: &ConciergeMessageRecord, now: DateTime<Utc>) -> bool {
        message.status == "pending" && message.created_at < now - self.answer_timeout()
    }

    fn message_view(&self, message: &ConciergeMessageRecord, now: DateTime<Utc>) -> MessageView {
        MessageView {
            id: message.id.clone(),
            seq: message.seq,
            role: message.role.clone(),
            content: message.content.clone(),
            tool_calls: message
                .tool_calls
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            status: if self.is_stale(message, now) {
                "incomplete".into()
            } else {
                message.status.clone()
            },
            model: message.model.clone(),
            input_tokens: message.input_tokens,
            output_tokens: message.output_tokens,
            cost_usd: message.cost_usd,
            duration_ms: message.duration_ms,
            details: message
                .details
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            created_at: message.created_at,
            completed_at: message.completed_at,
        }
    }
}

fn session_view(session: &ConciergeSessionRecord, message_count: Option<u64>) -> SessionView {
    SessionView {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        user_type: session.user_type.clone(),
        model: session.model.clone(),
        status: session.status.clone(),
        profile: session
            .profile
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        context: session
            .context
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        created_at: session.created_at,
        ended_at: session.ended_at,
        message_count,
        last_message_at: None,
    }
}

/// The fields every concierge interaction carries.
fn base_document(session: &ConciergeSessionRecord, interaction_type: &str) -> Value {
    json!({
        "interaction_type": interaction_type,
        "user_id": session.user_id,
        "user_type": session.user_type,
        "session_id": session.id,
        "conversation_id": session.id,
    })
}

/// A JSON object of bounded size, or a field error.
fn check_object(errors: &mut ValidationErrors, field: &str, value: Option<Value>) -> Option<Value> {
    match value {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => {
            let size = value.to_string().len();
            if size > MAX_PROFILE_BYTES {
                errors.push(
                    field,
                    format!("at most {MAX_PROFILE_BYTES} bytes of JSON; this one has {size}"),
                );
            }
            Some(value)
        }
        Some(_) => {
            errors.push(field, "must be a JSON object");
            None
        }
    }
}

/// Types of the Power100 profile fields, when present (other fields are kept as given).
fn check_profile_fields(errors: &mut ValidationErrors, profile: &Value) {
    let field = |name: &str| profile.get(name).filter(|value| !value.is_null());
    for name in ["company", "revenue_tier"] {
        if field(name).is_some_and(|value| !value.is_string()) {
            errors.push(format!("profile.{name}"), "must be a string");
        }
    }
    if let Some(size) = field("team_size") {
        if size.as_u64().is_none() {
            errors.push("profile.team_size", "must be a non-negative integer");
        }
    }
    for name in ["focus_areas", "goals"] {
        if let Some(value) = field(name) {
            let ok = value.is_string()
                || value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string));
            if !ok {
                errors.push(
                    format!("profile.{name}"),
                    "must be a string or a list of strings",
                );
            }
        }
    }
}

fn truncate_utf8(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}
