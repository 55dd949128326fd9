//! Storage of the AI Concierge's conversations: sessions, their messages in order, and the
//! erasure requests that deleted them.
//!
//! Writes go through the backend's writer pool: with SQLite that is the one connection that
//! also commits interactions, so concurrent writers queue for it instead of sleeping in
//! SQLite's busy handler (whose first back-off alone is a millisecond); with PostgreSQL it is
//! the ordinary pool. Every read is tenant-scoped. Messages get their position (`seq`) inside the insert's
//! transaction; the `(session_id, seq)` unique key turns two concurrent appends to one session
//! into a `StoreError::Conflict` for the loser instead of an interleaved transcript.
//! JSON-valued columns (profile, context, tool calls, details) are stored as text; the services
//! layer owns their shape.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::TenantId;
use sqlx::FromRow;

use crate::identity::{PgBackend, SqliteBackend};
use crate::StoreError;

/// One concierge session (a conversation).
#[derive(Debug, Clone, PartialEq)]
pub struct ConciergeSessionRecord {
    pub id: String,
    pub tenant_id: TenantId,
    /// Whom the conversation is with.
    pub user_id: String,
    pub user_type: String,
    /// The subject of the credential that opened it.
    pub created_by: String,
    /// The model or alias answering in this session.
    pub model: String,
    /// `active` or `ended`.
    pub status: String,
    /// The subject's profile, JSON text.
    pub profile: Option<String>,
    /// Extra context given at the start, JSON text.
    pub context: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A session with what a listing shows about its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ConciergeSessionSummary {
    pub session: ConciergeSessionRecord,
    pub message_count: u64,
    pub last_message_at: Option<DateTime<Utc>>,
}

/// One message of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct ConciergeMessageRecord {
    /// Also the id of the interaction that logged this message, when there is one.
    pub id: String,
    pub session_id: String,
    pub tenant_id: TenantId,
    /// Position in the session, from 1; assigned by [`ConciergeStore::append_messages`].
    pub seq: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub content: Option<String>,
    /// For an assistant message that calls tools: the calls, JSON text.
    pub tool_calls: Option<String>,
    /// For a tool message: the call it answers, and the tool's name.
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    /// `complete`, `pending` (being answered), `incomplete` (the answer was cut off) or
    /// `failed` (the model could not answer).
    pub status: String,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<i64>,
    /// How the answer was produced (context trimming, route, error), JSON text.
    pub details: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What completing a pending answer writes.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageCompletion {
    pub status: String,
    pub content: Option<String>,
    pub tool_calls: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<i64>,
    pub details: Option<String>,
    pub completed_at: DateTime<Utc>,
}

/// A recorded erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub sessions_deleted: u64,
    pub messages_deleted: u64,
    pub interactions_deleted: u64,
}

/// Concierge conversations.
#[async_trait]
pub trait ConciergeStore: Send + Sync {
    async fn insert_session(&self, session: &ConciergeSessionRecord) -> Result<(), StoreError>;
    async fn get_session(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<ConciergeSessionRecord>, StoreError>;
    /// Marks an active session ended; false when it was not active (or does not exist).
    async fn end_session(
        &self,
        tenant_id: &TenantId,
        id: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The tenant's sessions (one user's when given), newest first.
    async fn list_sessions(
        &self,
        tenant_id: &TenantId,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConciergeSessionSummary>, StoreError>;
    /// Appends messages after the session's last one, numbering them in order, in one
    /// transaction. `StoreError::Conflict` when another append to the session won the race.
    async fn append_messages(
        &self,
        messages: &mut [ConciergeMessageRecord],
    ) -> Result<(), StoreError>;
    /// Completes a `pending` message; false when it was not pending any more.
    async fn complete_message(
        &self,
        tenant_id: &TenantId,
        id: &str,
        completion: &MessageCompletion,
    ) -> Result<bool, StoreError>;
    /// The session's messages in order.
    async fn list_messages(
        &self,
        tenant_id: &TenantId,
        session_id: &str,
    ) -> Result<Vec<ConciergeMessageRecord>, StoreError>;
    async fn get_message(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<ConciergeMessageRecord>, StoreError>;
    /// Marks `incomplete` every `pending` message created before `before` (answers cut off by
    /// a crash or restart); returns how many.
    async fn mark_stale_pending(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deletes a user's sessions, their messages and the interactions logged for them (by
    /// conversation id, and the user's own concierge interactions), and records the erasure,
    /// in one transaction. Fills in the counts of `erasure`.
    async fn erase_user(&self, erasure: &mut ErasureRecord) -> Result<(), StoreError>;
}

/// Interaction types the concierge writes; an erasure deletes the user's interactions of these
/// types even outside a stored session.
pub const CONCIERGE_INTERACTION_TYPES: [&str; 5] = [
    "ai_concierge",
    "ai_concierge_response",
    "ai_concierge_session_start",
    "ai_concierge_session_end",
    "ai_concierge_tool_call",
];

#[derive(FromRow)]
struct SessionRow {
    id: String,
    tenant_id: String,
    user_id: String,
    user_type: String,
    created_by: String,
    model: String,
    status: String,
    profile: Option<String>,
    context: Option<String>,
    created_at: i64,
    ended_at: Option<i64>,
}

#[derive(FromRow)]
struct SessionSummaryRow {
    #[sqlx(flatten)]
    session: SessionRow,
    message_count: i64,
    last_message_at: Option<i64>,
}

#[derive(FromRow)]
struct MessageRow {
    id: String,
    session_id: String,
    tenant_id: String,
    seq: i64,
    role: String,
    content: Option<String>,
    tool_calls: Option<String>,
    tool_call_id: Option<String>,
    tool_name: Option<String>,
    status: String,
    model: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    duration_ms: Option<i64>,
    details: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
}

const SESSION_COLUMNS: &str = "id, tenant_id, user_id, user_type, created_by, model, status, \
     profile, context, created_at, ended_at";

const MESSAGE_COLUMNS: &str = "id, session_id, tenant_id, seq, role, content, tool_calls, \
     tool_call_id, tool_name, status, model, input_tokens, output_tokens, cost_usd, duration_ms, \
     details, created_at, completed_at";

fn corrupt(table: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        problem: err.to_string(),
    }
}

fn millis_to_time(table: &'static str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| corrupt(table, format!("timestamp {millis} out of range")))
}

fn count(table: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|err| corrupt(table, err))
}

impl TryFrom<SessionRow> for ConciergeSessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<ConciergeSessionRecord, StoreError> {
        const TABLE: &str = "concierge_sessions";
        Ok(ConciergeSessionRecord {
            id: row.id,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(|err| corrupt(TABLE, err))?,
            user_id: row.user_id,
            user_type: row.user_type,
            created_by: row.created_by,
            model: row.model,
            status: row.status,
            profile: row.profile,
            context: row.context,
            created_at: millis_to_time(TABLE, row.created_at)?,
            ended_at: row
                .ended_at
                .map(|millis| millis_to_time(TABLE, millis))
                .transpose()?,
        })
    }
}

impl TryFrom<MessageRow> for ConciergeMessageRecord {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> Result<ConciergeMessageRecord, StoreError> {
        const TABLE: &str = "concierge_messages";
        Ok(ConciergeMessageRecord {
            id: row.id,
            session_id: row.session_id,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(|err| corrupt(TABLE, err))?,
            seq: row.seq,
            role: row.role,
            content: row.content,
            tool_calls: row.tool_calls,
            tool_call_id: row.tool_call_id,
            tool_name: row.tool_name,
            status: row.status,
            model: row.model,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_usd: row.cost_usd,
            duration_ms: row.duration_ms,
            details: row.details,
            created_at: millis_to_time(TABLE, row.created_at)?,
            completed_at: row
                .completed_at
                .map(|millis| millis_to_time(TABLE, millis))
                .transpose()?,
        })
    }
}

/// One implementation for both backends: the SQL below is valid for SQLite and PostgreSQL.
macro_rules! impl_concierge_store {
    ($store:ty) => {
        #[async_trait]
        impl ConciergeStore for $store {
            async fn insert_session(
                &self,
                session: &ConciergeSessionRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO concierge_sessions ({SESSION_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(&session.id)
                .bind(session.tenant_id.as_str())
                .bind(&session.user_id)
                .bind(&session.user_type)
                .bind(&session.created_by)
                .bind(&session.model)
                .bind(&session.status)
                .bind(&session.profile)
                .bind(&session.context)
                .bind(session.created_at.timestamp_millis())
                .bind(session.ended_at.map(|at| at.timestamp_millis()))
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_session(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<ConciergeSessionRecord>, StoreError> {
                let row: Option<SessionRow> = sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM concierge_sessions \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(ConciergeSessionRecord::try_from).transpose()
            }

            async fn end_session(
                &self,
                tenant_id: &TenantId,
                id: &str,
                ended_at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "UPDATE concierge_sessions SET status = 'ended', ended_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 AND status = 'active'",
                )
                .bind(tenant_id.as_str())
                .bind(id)
                .bind(ended_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn list_sessions(
                &self,
                tenant_id: &TenantId,
                user_id: Option<&str>,
                limit: u32,
            ) -> Result<Vec<ConciergeSessionSummary>, StoreError> {
                // `$2 IS NULL` keeps one SQL text for "all users" and "one user"; the cast
                // tells PostgreSQL the parameter's type.
                let rows: Vec<SessionSummaryRow> = sqlx::query_as(
                    "SELECT s.id, s.tenant_id, s.user_id, s.user_type, s.created_by, s.model, \
                     s.status, s.profile, s.context, s.created_at, s.ended_at, \
                     (SELECT COUNT(*) FROM concierge_messages m WHERE m.session_id = s.id) \
                        AS message_count, \
                     (SELECT MAX(m.created_at) FROM concierge_messages m \
                        WHERE m.session_id = s.id) AS last_message_at \
                     FROM concierge_sessions s \
                     WHERE s.tenant_id = $1 AND (CAST($2 AS TEXT) IS NULL OR s.user_id = $2) \
                     ORDER BY s.created_at DESC, s.id DESC LIMIT $3",
                )
                .bind(tenant_id.as_str())
                .bind(user_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|row| {
                        const TABLE: &str = "concierge_sessions";
                        Ok(ConciergeSessionSummary {
                            message_count: count(TABLE, row.message_count)?,
                            last_message_at: row
                                .last_message_at
                                .map(|millis| millis_to_time(TABLE, millis))
                                .transpose()?,
                            session: ConciergeSessionRecord::try_from(row.session)?,
                        })
                    })
                    .collect()
            }

            async fn append_messages(
                &self,
                messages: &mut [ConciergeMessageRecord],
            ) -> Result<(), StoreError> {
                let Some(first) = messages.first() else {
                    return Ok(());
                };
                let session_id = first.session_id.clone();
                let mut tx = self.writer.begin().await?;
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(seq) FROM concierge_messages WHERE session_id = $1",
                )
                .bind(&session_id)
                .fetch_one(&mut *tx)
                .await?;
                let mut seq = last.unwrap_or(0);
                for message in messages.iter_mut() {
                    seq += 1;
                    message.seq = seq;
                    sqlx::query(&format!(
                        "INSERT INTO concierge_messages ({MESSAGE_COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                          $16, $17, $18)"
                    ))
                    .bind(&message.id)
                    .bind(&message.session_id)
                    .bind(message.tenant_id.as_str())
                    .bind(message.seq)
                    .bind(&message.role)
                    .bind(&message.content)
                    .bind(&message.tool_calls)
                    .bind(&message.tool_call_id)
                    .bind(&message.tool_name)
                    .bind(&message.status)
                    .bind(&message.model)
                    .bind(message.input_tokens)
                    .bind(message.output_tokens)
                    .bind(message.cost_usd)
                    .bind(message.duration_ms)
                    .bind(&message.details)
                    .bind(message.created_at.timestamp_millis())
                    .bind(message.completed_at.map(|at| at.timestamp_millis()))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn complete_message(
                &self,
                tenant_id: &TenantId,
                id: &str,
                completion: &MessageCompletion,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "UPDATE concierge_messages SET status = $3, content = $4, tool_calls = $5, \
                     model = $6, input_tokens = $7, output_tokens = $8, cost_usd = $9, \
                     duration_ms = $10, details = $11, completed_at = $12 \
                     WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
                )
                .bind(tenant_id.as_str())
                .bind(id)
                .bind(&completion.status)
                .bind(&completion.content)
                .bind(&completion.tool_calls)
                .bind(&completion.model)
                .bind(completion.input_tokens)
                .bind(completion.output_tokens)
                .bind(completion.cost_usd)
                .bind(completion.duration_ms)
                .bind(&completion.details)
                .bind(completion.completed_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn list_messages(
                &self,
                tenant_id: &TenantId,
                session_id: &str,
            ) -> Result<Vec<ConciergeMessageRecord>, StoreError> {
                let rows: Vec<MessageRow> = sqlx::query_as(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM concierge_messages \
                     WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq"
                ))
                .bind(tenant_id.as_str())
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(ConciergeMessageRecord::try_from)
                    .collect()
            }

            async fn get_message(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<ConciergeMessageRecord>, StoreError> {
                let row: Option<MessageRow> = sqlx::query_as(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM concierge_messages \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(ConciergeMessageRecord::try_from).transpose()
            }

            async fn mark_stale_pending(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let result = sqlx::query(
                    "UPDATE concierge_messages SET status = 'incomplete' \
                     WHERE status = 'pending' AND created_at < $1",
                )
                .bind(before.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected())
            }

            async fn erase_user(&self, erasure: &mut ErasureRecord) -> Result<(), StoreError> {
                const TABLE: &str = "concierge_erasures";
                let tenant = erasure.tenant_id.as_str();
                let mut tx = self.writer.begin().await?;
                let sessions: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM concierge_sessions WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant)
                .bind(&erasure.user_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut interactions = 0u64;
                let mut messages = 0u64;
                for session in &sessions {
                    interactions += sqlx::query(
                        "DELETE FROM interactions WHERE tenant_id = $1 AND conversation_id = $2",
                    )
                    .bind(tenant)
                    .bind(session)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    messages += sqlx::query(
                        "DELETE FROM concierge_messages WHERE tenant_id = $1 AND session_id = $2",
                    )
                    .bind(tenant)
                    .bind(session)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                for interaction_type in CONCIERGE_INTERACTION_TYPES {
                    interactions += sqlx::query(
                        "DELETE FROM interactions WHERE tenant_id = $1 AND user_id = $2 \
                         AND interaction_type = $3",
                    )
                    .bind(tenant)
                    .bind(&erasure.user_id)
                    .bind(interaction_type)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                let deleted_sessions = sqlx::query(
                    "DELETE FROM concierge_sessions WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant)
                .bind(&erasure.user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                erasure.sessions_deleted = deleted_sessions;
                erasure.messages_deleted = messages;
                erasure.interactions_deleted = interactions;
                let as_i64 = |value: u64| i64::try_from(value).map_err(|err| corrupt(TABLE, err));
                sqlx::query(
                    "INSERT INTO concierge_erasures (id, tenant_id, user_id, requested_by, \
                     requested_at, sessions_deleted, messages_deleted, interactions_deleted) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&erasure.id)
                .bind(tenant)
                .bind(&erasure.user_id)
                .bind(&erasure.requested_by)
                .bind(erasure.requested_at.timestamp_millis())
                .bind(as_i64(erasure.sessions_deleted)?)
                .bind(as_i64(erasure.messages_deleted)?)
                .bind(as_i64(erasure.interactions_deleted)?)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

impl_concierge_store!(SqliteBackend);
impl_concierge_store!(PgBackend);
