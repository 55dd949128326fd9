//! Storage of interactions, their archive bookkeeping and the quarantine of rejected input.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::interaction::{InteractionRecord, StoredInteraction};
use flywheel_core::{Interaction, TenantId};
use sqlx::FromRow;
use uuid::Uuid;

use crate::StoreError;

/// Filters for listing interactions; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct InteractionFilter {
    pub user_id: Option<String>,
    pub interaction_type: Option<String>,
    pub conversation_id: Option<String>,
    pub parent_interaction_id: Option<Uuid>,
    /// Inclusive lower bound on `timestamp`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `timestamp`.
    pub to: Option<DateTime<Utc>>,
}

/// Position after the last row of a page: listings run newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionCursor {
    pub timestamp_ms: i64,
    pub interaction_id: String,
}

/// A rejected input kept for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedInteraction {
    pub id: String,
    pub tenant_id: TenantId,
    pub received_at: DateTime<Utc>,
    pub principal: String,
    /// Position in the submitted batch, when the input was a batch.
    pub batch_index: Option<i64>,
    /// JSON array of `{field, problem}`.
    pub reason: String,
    /// The input as received (lossy UTF-8 when it was not valid UTF-8), possibly truncated.
    pub payload: String,
}

/// One row of the store as seen by `flywheel lake verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveIndexRow {
    pub seq: i64,
    pub tenant_id: String,
    pub interaction_id: String,
    pub timestamp_ms: i64,
    /// True when the row's archive batch completed (its file is in the lake).
    pub archived: bool,
}

/// Interactions of all tenants. Every read takes the tenant; archive functions work across
/// tenants because the archiver ships everyone's data.
#[async_trait]
pub trait InteractionStore: Send + Sync {
    /// Inserts in one transaction; returns, per item, `true` when it was new and `false` when
    /// an interaction with that (tenant, id) existed already (nothing is changed then). The
    /// documents arrive serialised so that this (serial) step does database work only.
    async fn insert_interactions(
        &self,
        items: &[StoredInteraction],
    ) -> Result<Vec<bool>, StoreError>;
    async fn get_interaction(
        &self,
        tenant_id: &TenantId,
        interaction_id: &Uuid,
    ) -> Result<Option<Interaction>, StoreError>;
    /// Newest first, after `cursor`, at most `limit`.
    async fn list_interactions(
        &self,
        tenant_id: &TenantId,
        filter: &InteractionFilter,
        cursor: Option<&InteractionCursor>,
        limit: u32,
    ) -> Result<Vec<Interaction>, StoreError>;
    /// Interactions whose parent is `parent`, oldest first.
    async fn list_children(
        &self,
        tenant_id: &TenantId,
        parent: &Uuid,
    ) -> Result<Vec<Interaction>, StoreError>;
    /// The newest root interaction (no parent) of a conversation.
    async fn latest_in_conversation(
        &self,
        tenant_id: &TenantId,
        conversation_id: &str,
    ) -> Result<Option<Interaction>, StoreError>;
    /// The newest root interaction of `user_id` naming `partner_id` in its outcomes.
    async fn latest_with_partner(
        &self,
        tenant_id: &TenantId,
        user_id: &str,
        partner_id: &str,
    ) -> Result<Option<Interaction>, StoreError>;

    async fn insert_rejected(&self, items: &[RejectedInteraction]) -> Result<(), StoreError>;
    /// Newest first; `before` is the id of the last row of the previous page.
    async fn list_rejected(
        &self,
        tenant_id: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RejectedInteraction>, StoreError>;

    /// Rows not yet in an archive batch, and the oldest one's `received_at`.
    async fn unarchived_stats(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
    /// Claims the next `max_rows` rows (by `seq`) as a new batch and returns its id, or `None`
    /// when there is nothing to archive (or another replica claimed that range first). A batch
    /// is a `seq` range, so a claim costs one small write whatever its size, and a row never
    /// changes batch.
    async fn claim_archive_batch(
        &self,
        max_rows: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;
    /// The highest batch id below which every batch is complete (0 when there is none):
    /// files of batches up to it are final and may be compacted.
    async fn completed_batch_horizon(&self) -> Result<i64, StoreError>;
    /// Batches claimed but not completed (for example because the process died mid-upload).
    async fn pending_archive_batches(&self) -> Result<Vec<i64>, StoreError>;
    /// The rows of a batch, in insertion order.
    async fn archive_batch_rows(&self, batch: i64) -> Result<Vec<InteractionRecord>, StoreError>;
    async fn complete_archive_batch(
        &self,
        batch: i64,
        files: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A page of the store's rows for verification, by insertion order.
    async fn archive_index(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ArchiveIndexRow>, StoreError>;
    /// Deletes operational copies older than `before` whose batch is in the lake.
    async fn expire_archived(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[derive(FromRow)]
struct InteractionRow {
    tenant_id: String,
    interaction_id: String,
    interaction_type: String,
    user_id: String,
    user_type: String,
    session_id: Option<String>,
    conversation_id: Option<String>,
    parent_interaction_id: Option<String>,
    partner_id: Option<String>,
    timestamp_ms: i64,
    received_at_ms: i64,
    document: String,
}

#[derive(FromRow)]
struct RejectedRow {
    id: String,
    tenant_id: String,
    received_at_ms: i64,
    principal: String,
    batch_index: Option<i64>,
    reason: String,
    payload: String,
}

#[derive(FromRow)]
struct IndexRow {
    seq: i64,
    tenant_id: String,
    interaction_id: String,
    timestamp_ms: i64,
}

/// `(min_seq, max_seq)` of completed batches, sorted, for membership tests.
fn covered(ranges: &[(i64, i64)], seq: i64) -> bool {
    let idx = ranges.partition_point(|(min, _)| *min <= seq);
    idx > 0 && ranges[idx - 1].1 >= seq
}

const TABLE: &str = "interactions";

fn millis(table: &'static str, value: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(value)
        .single()
        .ok_or_else(|| StoreError::Corrupt {
            table,
            problem: format!("timestamp {value} out of range"),
        })
}

fn corrupt(problem: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: TABLE,
        problem: problem.to_string(),
    }
}

impl TryFrom<InteractionRow> for Interaction {
    type Error = StoreError;

    fn try_from(mut row: InteractionRow) -> Result<Interaction, StoreError> {
        let document = std::mem::take(&mut row.document);
        interaction_from_row(row, &document)
    }
}

fn interaction_from_row(
    row: InteractionRow,
    document_json: &str,
) -> Result<Interaction, StoreError> {
    let document = match serde_json::from_str(document_json).map_err(corrupt)? {
        serde_json::Value::Object(map) => map,
        _ => return Err(corrupt("document is not an object")),
    };
    Ok(Interaction {
        tenant_id: TenantId::parse(&row.tenant_id).map_err(corrupt)?,
        interaction_id: Uuid::parse_str(&row.interaction_id).map_err(corrupt)?,
        timestamp: millis(TABLE, row.timestamp_ms)?,
        received_at: millis(TABLE, row.received_at_ms)?,
        interaction_type: row.interaction_type,
        user_id: row.user_id,
        user_type: row.user_type,
        session_id: row.session_id,
        conversation_id: row.conversation_id,
        parent_interaction_id: row
            .parent_interaction_id
            .map(|raw| Uuid::parse_str(&raw).map_err(corrupt))
            .transpose()?,
        partner_id: row.partner_id,
        document,
    })
}

impl TryFrom<RejectedRow> for RejectedInteraction {
    type Error = StoreError;

    fn try_from(row: RejectedRow) -> Result<RejectedInteraction, StoreError> {
        Ok(RejectedInteraction {
            id: row.id,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(corrupt)?,
            received_at: millis("rejected_interactions", row.received_at_ms)?,
            principal: row.principal,
            batch_index: row.batch_index,
            reason: row.reason,
            payload: row.payload,
        })
    }
}

const COLUMNS: &str =
    "tenant_id, interaction_id, interaction_type, user_id, user_type, session_id, \
     conversation_id, parent_interaction_id, partner_id, timestamp_ms, received_at_ms, document";

/// `seq` values per read when an archive batch is read back.
const ARCHIVE_READ_SLICE: i64 = 5_000;

/// Rows per INSERT statement: 12 parameters each stays far below both backends' limits.
const INSERT_CHUNK: usize = 500;

macro_rules! impl_interaction_store {
    ($store:ty, $db:ty, $serialize_commits:expr, $begin_write:expr) => {
        #[async_trait]
        impl InteractionStore for $store {
            async fn insert_interactions(&self, stored: &[StoredInteraction]) -> Result<Vec<bool>, StoreError> {
                let mut inserted_keys: HashSet<(String, String)> = HashSet::with_capacity(stored.len());
                let items: Vec<&Interaction> = stored.iter().map(|row| &row.interaction).collect();
                let documents: Vec<&str> = stored.iter().map(|row| row.document_json.as_str()).collect();
                let mut tx = self.writer.begin().await?;
                if let Some(statement) = $serialize_commits {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                for (chunk, chunk_documents) in items.chunks(INSERT_CHUNK).zip(documents.chunks(INSERT_CHUNK)) {
                    let mut builder = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO interactions ({COLUMNS}) "));
                    builder.push_values(chunk.iter().zip(chunk_documents), |mut row, (item, document)| {
                        row.push_bind(item.tenant_id.as_str())
                            .push_bind(item.interaction_id.to_string())
                            .push_bind(item.interaction_type.as_str())
                            .push_bind(item.user_id.as_str())
                            .push_bind(item.user_type.as_str())
                            .push_bind(item.session_id.as_deref())
                            .push_bind(item.conversation_id.as_deref())
                            .push_bind(item.parent_interaction_id.map(|id| id.to_string()))
                            .push_bind(item.partner_id.as_deref())
                            .push_bind(item.timestamp.timestamp_millis())
                            .push_bind(item.received_at.timestamp_millis())
                            .push_bind(*document);
                    });
                    builder.push(" ON CONFLICT (tenant_id, interaction_id) DO NOTHING RETURNING tenant_id, interaction_id");
                    let rows: Vec<(String, String)> = builder.build_query_as().fetch_all(&mut *tx).await?;
                    inserted_keys.extend(rows);
                }
                tx.commit().await?;
                // The same id twice in one commit: only its first occurrence counts as new.
                Ok(items
                    .iter()
                    .map(|item| inserted_keys.remove(&(item.tenant_id.to_string(), item.interaction_id.to_string())))
                    .collect())
            }

            async fn get_interaction(&self, tenant_id: &TenantId, interaction_id: &Uuid) -> Result<Option<Interaction>, StoreError> {
                let row: Option<InteractionRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM interactions WHERE tenant_id = $1 AND interaction_id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(interaction_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.map(Interaction::try_from).transpose()
            }

            async fn list_interactions(
                &self,
                tenant_id: &TenantId,
                filter: &InteractionFilter,
                cursor: Option<&InteractionCursor>,
                limit: u32,
            ) -> Result<Vec<Interaction>, StoreError> {
                let mut builder = sqlx::QueryBuilder::<$db>::new(format!("SELECT {COLUMNS} FROM interactions WHERE tenant_id = "));
                builder.push_bind(tenant_id.as_str());
                if let Some(user_id) = &filter.user_id {
                    builder.push(" AND user_id = ").push_bind(user_id.as_str());
                }
                if let Some(interaction_type) = &filter.interaction_type {
                    builder.push(" AND interaction_type = ").push_bind(interaction_type.as_str());
                }
                if let Some(conversation_id) = &filter.conversation_id {
                    builder.push(" AND conversation_id = ").push_bind(conversation_id.as_str());
                }
                if let Some(parent) = &filter.parent_interaction_id {
                    builder.push(" AND parent_interaction_id = ").push_bind(parent.to_string());
                }
                if let Some(from) = filter.from {
                    builder.push(" AND timestamp_ms >= ").push_bind(from.timestamp_millis());
                }
                if let Some(to) = filter.to {
                    builder.push(" AND timestamp_ms < ").push_bind(to.timestamp_millis());
                }
                if let Some(cursor) = cursor {
                    builder
                        .push(" AND (timestamp_ms < ")
                        .push_bind(cursor.timestamp_ms)
                        .push(" OR (timestamp_ms = ")
                        .push_bind(cursor.timestamp_ms)
                        .push(" AND interaction_id < ")
                        .push_bind(cursor.interaction_id.as_str())
                        .push("))");
                }
                builder
                    .push(" ORDER BY timestamp_ms DESC, interaction_id DESC LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<InteractionRow> = builder.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(Interaction::try_from).collect()
            }

            async fn list_children(&self, tenant_id: &TenantId, parent: &Uuid) -> Result<Vec<Interaction>, StoreError> {
                let rows: Vec<InteractionRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM interactions WHERE tenant_id = $1 AND parent_interaction_id = $2 \
                     ORDER BY timestamp_ms, seq"
                ))
                .bind(tenant_id.as_str())
                .bind(parent.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(Interaction::try_from).collect()
            }

            async fn latest_in_conversation(&self, tenant_id: &TenantId, conversation_id: &str) -> Result<Option<Interaction>, StoreError> {
                let row: Option<InteractionRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM interactions WHERE tenant_id = $1 AND conversation_id = $2 \
                     AND parent_interaction_id IS NULL ORDER BY timestamp_ms DESC, seq DESC LIMIT 1"
                ))
                .bind(tenant_id.as_str())
                .bind(conversation_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Interaction::try_from).transpose()
            }

            async fn latest_with_partner(&self, tenant_id: &TenantId, user_id: &str, partner_id: &str) -> Result<Option<Interaction>, StoreError> {
                let row: Option<InteractionRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM interactions WHERE tenant_id = $1 AND user_id = $2 AND partner_id = $3 \
                     AND parent_interaction_id IS NULL ORDER BY timestamp_ms DESC, seq DESC LIMIT 1"
                ))
                .bind(tenant_id.as_str())
                .bind(user_id)
                .bind(partner_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Interaction::try_from).transpose()
            }

            async fn insert_rejected(&self, items: &[RejectedInteraction]) -> Result<(), StoreError> {
                if items.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for chunk in items.chunks(INSERT_CHUNK) {
                    let mut builder = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rejected_interactions (id, tenant_id, received_at_ms, principal, batch_index, reason, payload) ",
                    );
                    builder.push_values(chunk, |mut row, item| {
                        row.push_bind(item.id.as_str())
                            .push_bind(item.tenant_id.as_str())
                            .push_bind(item.received_at.timestamp_millis())
                            .push_bind(item.principal.as_str())
                            .push_bind(item.batch_index)
                            .push_bind(item.reason.as_str())
                            .push_bind(item.payload.as_str());
                    });
                    builder.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_rejected(&self, tenant_id: &TenantId, before: Option<&str>, limit: u32) -> Result<Vec<RejectedInteraction>, StoreError> {
                let rows: Vec<RejectedRow> = sqlx::query_as(
                    "SELECT id, tenant_id, received_at_ms, principal, batch_index, reason, payload \
                     FROM rejected_interactions WHERE tenant_id = $1 AND ($2 = '' OR id < $2) \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(tenant_id.as_str())
                .bind(before.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(RejectedInteraction::try_from).collect()
            }

            async fn unarchived_stats(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
                let claimed: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(max_seq), 0) FROM archive_batches")
                    .fetch_one(&self.pool)
                    .await?;
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM interactions WHERE seq > $1")
                    .bind(claimed)
                    .fetch_one(&self.pool)
                    .await?;
                let oldest: Option<i64> = sqlx::query_scalar(
                    "SELECT received_at_ms FROM interactions WHERE seq > $1 ORDER BY seq LIMIT 1",
                )
                .bind(claimed)
                .fetch_optional(&self.pool)
                .await?;
                Ok((count, oldest.map(|value| millis(TABLE, value)).transpose()?))
            }

            async fn claim_archive_batch(&self, max_rows: u32, now: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
                // Read-then-write: take the write lock up front (SQLite would otherwise fail
                // with SQLITE_BUSY_SNAPSHOT when a writer commits in between).
                let mut tx = self.writer.begin_with($begin_write).await?;
                let claimed: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(max_seq), 0) FROM archive_batches")
                    .fetch_one(&mut *tx)
                    .await?;
                let (upper, n_rows): (Option<i64>, i64) = sqlx::query_as(
                    "SELECT MAX(seq), COUNT(*) FROM (SELECT seq FROM interactions WHERE seq > $1 ORDER BY seq LIMIT $2) next_rows",
                )
                .bind(claimed)
                .bind(i64::from(max_rows))
                .fetch_one(&mut *tx)
                .await?;
                let Some(upper) = upper else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let inserted: Result<i64, StoreError> = sqlx::query_scalar(
                    "INSERT INTO archive_batches (min_seq, max_seq, created_at, n_rows) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(claimed + 1)
                .bind(upper)
                .bind(now.timestamp_millis())
                .bind(n_rows)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from);
                match inserted {
                    Ok(batch) => {
                        tx.commit().await?;
                        Ok(Some(batch))
                    }
                    // Another archiver claimed this range first; it will ship it.
                    Err(StoreError::Conflict { .. }) => Ok(None),
                    Err(err) => Err(err),
                }
            }

            async fn completed_batch_horizon(&self) -> Result<i64, StoreError> {
                let horizon: i64 = sqlx::query_scalar(
                    "SELECT COALESCE((SELECT MIN(id) - 1 FROM archive_batches WHERE completed_at IS NULL), \
                     (SELECT MAX(id) FROM archive_batches), 0)",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(horizon)
            }

            async fn pending_archive_batches(&self) -> Result<Vec<i64>, StoreError> {
                let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM archive_batches WHERE completed_at IS NULL ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(ids)
            }

            async fn archive_batch_rows(&self, batch: i64) -> Result<Vec<InteractionRecord>, StoreError> {
                let range: Option<(i64, i64)> = sqlx::query_as("SELECT min_seq, max_seq FROM archive_batches WHERE id = $1")
                    .bind(batch)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some((min_seq, max_seq)) = range else {
                    return Ok(Vec::new());
                };
                // Read in slices: each statement is its own short read transaction, so that
                // SQLite's checkpointer is never held back by one long snapshot.
                let mut rows: Vec<InteractionRow> = Vec::new();
                let mut from = min_seq;
                while from <= max_seq {
                    let to = max_seq.min(from + ARCHIVE_READ_SLICE - 1);
                    let slice: Vec<InteractionRow> = sqlx::query_as(&format!(
                        "SELECT {COLUMNS} FROM interactions WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
                    ))
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.extend(slice);
                    from = to + 1;
                }
                Ok(rows
                    .into_iter()
                    .map(|row| InteractionRecord {
                        tenant_id: row.tenant_id,
                        interaction_id: row.interaction_id,
                        timestamp_ms: row.timestamp_ms,
                        received_at_ms: row.received_at_ms,
                        interaction_type: row.interaction_type,
                        user_id: row.user_id,
                        user_type: row.user_type,
                        document_json: row.document,
                    })
                    .collect())
            }

            async fn complete_archive_batch(&self, batch: i64, files: &[String], now: DateTime<Utc>) -> Result<(), StoreError> {
                let files = serde_json::to_string(files).map_err(corrupt)?;
                sqlx::query("UPDATE archive_batches SET completed_at = $2, files = $3 WHERE id = $1 AND completed_at IS NULL")
                    .bind(batch)
                    .bind(now.timestamp_millis())
                    .bind(files)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn archive_index(&self, after_seq: i64, limit: u32) -> Result<Vec<ArchiveIndexRow>, StoreError> {
                let ranges: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT min_seq, max_seq FROM archive_batches WHERE completed_at IS NOT NULL ORDER BY min_seq",
                )
                .fetch_all(&self.pool)
                .await?;
                let rows: Vec<IndexRow> = sqlx::query_as(
                    "SELECT seq, tenant_id, interaction_id, timestamp_ms FROM interactions \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| ArchiveIndexRow {
                        archived: covered(&ranges, row.seq),
                        seq: row.seq,
                        tenant_id: row.tenant_id,
                        interaction_id: row.interaction_id,
                        timestamp_ms: row.timestamp_ms,
                    })
                    .collect())
            }

            async fn expire_archived(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                // Everything up to the first pending batch (or the last batch) is in the lake.
                let bound: i64 = sqlx::query_scalar(
                    "SELECT COALESCE((SELECT MIN(min_seq) - 1 FROM archive_batches WHERE completed_at IS NULL), \
                     (SELECT MAX(max_seq) FROM archive_batches), 0)",
                )
                .fetch_one(&self.pool)
                .await?;
                let deleted = sqlx::query("DELETE FROM interactions WHERE timestamp_ms < $1 AND seq <= $2")
                    .bind(before.timestamp_millis())
                    .bind(bound)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(deleted)
            }
        }
    };
}

// SQLite has a single writer, so commit order is `seq` order by construction.
impl_interaction_store!(
    crate::identity::SqliteBackend,
    sqlx::Sqlite,
    None::<&str>,
    "BEGIN IMMEDIATE"
);
// On PostgreSQL, a transaction-scoped advisory lock taken before any `seq` is drawn makes
// commits happen in `seq` order across every writer and replica; archive ranges rely on it.
impl_interaction_store!(
    crate::identity::PgBackend,
    sqlx::Postgres,
    Some("SELECT pg_advisory_xact_lock(7214000001)"),
    "BEGIN"
);
