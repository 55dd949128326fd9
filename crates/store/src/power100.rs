//! Storage of Power100: contractor and partner profiles, the matches shown to contractors,
//! demo bookings with their status and closed deals.
//!
//! A profile is kept as the canonical JSON text of its validated domain value; the services
//! layer owns that shape and parses it back. Every profile update names the version it read
//! (`version` grows by one per update), so two editors cannot silently overwrite each other.
//! Every read is tenant-scoped. Writes use the backend's writer pool (on SQLite the one
//! connection that also commits interactions), like the concierge's.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::TenantId;
use sqlx::FromRow;

use crate::identity::{PgBackend, SqliteBackend};
use crate::StoreError;

/// Which kind of profile a profile operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    Contractor,
    Partner,
}

impl ProfileKind {
    fn table(self) -> &'static str {
        match self {
            ProfileKind::Contractor => "power100_contractors",
            ProfileKind::Partner => "power100_partners",
        }
    }
}

/// One stored profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRecord {
    pub tenant_id: TenantId,
    pub id: String,
    /// Canonical JSON text of the validated profile.
    pub profile: String,
    /// 1 at creation, +1 per update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One match shown to a contractor.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRecord {
    /// Also the id of the `partner_match` interaction that logged it.
    pub id: String,
    pub tenant_id: TenantId,
    pub contractor_id: String,
    pub partner_id: String,
    /// Position in the ranking, from 1.
    pub rank: i64,
    pub score: f64,
    /// The factors and reasons, JSON text.
    pub details: String,
    pub conversation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One demo booking.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoBookingRecord {
    /// Also the id of the `demo_booking` interaction that logged it.
    pub id: String,
    pub tenant_id: TenantId,
    pub contractor_id: String,
    pub partner_id: String,
    pub match_id: Option<String>,
    pub conversation_id: Option<String>,
    /// `requested`, `scheduled`, `completed`, `no_show` or `cancelled`.
    pub status: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One closed deal.
#[derive(Debug, Clone, PartialEq)]
pub struct DealRecord {
    /// Also the id of the `deal_closed` interaction that logged it.
    pub id: String,
    pub tenant_id: TenantId,
    pub contractor_id: String,
    pub partner_id: String,
    pub booking_id: Option<String>,
    pub match_id: Option<String>,
    pub conversation_id: Option<String>,
    pub value: f64,
    /// The day it closed, `YYYY-MM-DD`.
    pub closed_on: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Power100's profiles, matches, bookings and deals.
#[async_trait]
pub trait Power100Store: Send + Sync {
    /// `StoreError::Conflict` when the id is taken in the tenant.
    async fn insert_profile(
        &self,
        kind: ProfileKind,
        record: &ProfileRecord,
    ) -> Result<(), StoreError>;
    /// Replaces a profile whose stored version is `record.version - 1`; false when the
    /// profile does not exist or has another version.
    async fn update_profile(
        &self,
        kind: ProfileKind,
        record: &ProfileRecord,
    ) -> Result<bool, StoreError>;
    async fn get_profile(
        &self,
        kind: ProfileKind,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<ProfileRecord>, StoreError>;
    /// The tenant's profiles of one kind by id, after `after` (exclusive) when given.
    async fn list_profiles(
        &self,
        kind: ProfileKind,
        tenant_id: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProfileRecord>, StoreError>;
    /// Inserts the matches of one ranking in one transaction.
    async fn insert_matches(&self, matches: &[MatchRecord]) -> Result<(), StoreError>;
    async fn get_match(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<MatchRecord>, StoreError>;
    /// The best-ranked match of the contractor's latest ranking (in one conversation when
    /// given).
    async fn latest_match(
        &self,
        tenant_id: &TenantId,
        contractor_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<Option<MatchRecord>, StoreError>;
    async fn insert_booking(&self, booking: &DemoBookingRecord) -> Result<(), StoreError>;
    async fn get_booking(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<DemoBookingRecord>, StoreError>;
    /// Replaces a booking's status, time and notes when its stored version is
    /// `booking.version - 1`; false otherwise.
    async fn update_booking(&self, booking: &DemoBookingRecord) -> Result<bool, StoreError>;
    async fn insert_deal(&self, deal: &DealRecord) -> Result<(), StoreError>;
    async fn get_deal(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<DealRecord>, StoreError>;
}

#[derive(FromRow)]
struct ProfileRow {
    tenant_id: String,
    id: String,
    profile: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct MatchRow {
    id: String,
    tenant_id: String,
    contractor_id: String,
    partner_id: String,
    match_rank: i64,
    score: f64,
    details: String,
    conversation_id: Option<String>,
    created_at: i64,
}

#[derive(FromRow)]
struct BookingRow {
    id: String,
    tenant_id: String,
    contractor_id: String,
    partner_id: String,
    match_id: Option<String>,
    conversation_id: Option<String>,
    status: String,
    scheduled_for: Option<i64>,
    notes: Option<String>,
    version: i64,
    created_by: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct DealRow {
    id: String,
    tenant_id: String,
    contractor_id: String,
    partner_id: String,
    booking_id: Option<String>,
    match_id: Option<String>,
    conversation_id: Option<String>,
    value: f64,
    closed_on: String,
    created_by: String,
    created_at: i64,
}

const PROFILE_COLUMNS: &str = "tenant_id, id, profile, version, created_at, updated_at";
const MATCH_COLUMNS: &str =
    "id, tenant_id, contractor_id, partner_id, match_rank, score, details, conversation_id, created_at";
const BOOKING_COLUMNS: &str = "id, tenant_id, contractor_id, partner_id, match_id, \
     conversation_id, status, scheduled_for, notes, version, created_by, created_at, updated_at";
const DEAL_COLUMNS: &str = "id, tenant_id, contractor_id, partner_id, booking_id, match_id, \
     conversation_id, value, closed_on, created_by, created_at";

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

fn tenant(table: &'static str, raw: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).map_err(|err| corrupt(table, err))
}

impl ProfileRow {
    fn into_record(self, kind: ProfileKind) -> Result<ProfileRecord, StoreError> {
        let table = kind.table();
        Ok(ProfileRecord {
            tenant_id: tenant(table, &self.tenant_id)?,
            id: self.id,
            profile: self.profile,
            version: self.version,
            created_at: millis_to_time(table, self.created_at)?,
            updated_at: millis_to_time(table, self.updated_at)?,
        })
    }
}

impl TryFrom<MatchRow> for MatchRecord {
    type Error = StoreError;

    fn try_from(row: MatchRow) -> Result<MatchRecord, StoreError> {
        const TABLE: &str = "power100_matches";
        Ok(MatchRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            contractor_id: row.contractor_id,
            partner_id: row.partner_id,
            rank: row.match_rank,
            score: row.score,
            details: row.details,
            conversation_id: row.conversation_id,
            created_at: millis_to_time(TABLE, row.created_at)?,
        })
    }
}

impl TryFrom<BookingRow> for DemoBookingRecord {
    type Error = StoreError;

    fn try_from(row: BookingRow) -> Result<DemoBookingRecord, StoreError> {
        const TABLE: &str = "power100_demo_bookings";
        Ok(DemoBookingRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            contractor_id: row.contractor_id,
            partner_id: row.partner_id,
            match_id: row.match_id,
            conversation_id: row.conversation_id,
            status: row.status,
            scheduled_for: row
                .scheduled_for
                .map(|millis| millis_to_time(TABLE, millis))
                .transpose()?,
            notes: row.notes,
            version: row.version,
            created_by: row.created_by,
            created_at: millis_to_time(TABLE, row.created_at)?,
            updated_at: millis_to_time(TABLE, row.updated_at)?,
        })
    }
}

impl TryFrom<DealRow> for DealRecord {
    type Error = StoreError;

    fn try_from(row: DealRow) -> Result<DealRecord, StoreError> {
        const TABLE: &str = "power100_deals";
        Ok(DealRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            contractor_id: row.contractor_id,
            partner_id: row.partner_id,
            booking_id: row.booking_id,
            match_id: row.match_id,
            conversation_id: row.conversation_id,
            value: row.value,
            closed_on: row.closed_on,
            created_by: row.created_by,
            created_at: millis_to_time(TABLE, row.created_at)?,
        })
    }
}

/// One implementation for both backends: the SQL below is valid for SQLite and PostgreSQL.
macro_rules! impl_power100_store {
    ($store:ty) => {
        #[async_trait]
        impl Power100Store for $store {
            async fn insert_profile(
                &self,
                kind: ProfileKind,
                record: &ProfileRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO {table} ({PROFILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                    table = kind.table()
                ))
                .bind(record.tenant_id.as_str())
                .bind(&record.id)
                .bind(&record.profile)
                .bind(record.version)
                .bind(record.created_at.timestamp_millis())
                .bind(record.updated_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn update_profile(
                &self,
                kind: ProfileKind,
                record: &ProfileRecord,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(&format!(
                    "UPDATE {table} SET profile = $3, version = $4, updated_at = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND version = $6",
                    table = kind.table()
                ))
                .bind(record.tenant_id.as_str())
                .bind(&record.id)
                .bind(&record.profile)
                .bind(record.version)
                .bind(record.updated_at.timestamp_millis())
                .bind(record.version - 1)
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn get_profile(
                &self,
                kind: ProfileKind,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<ProfileRecord>, StoreError> {
                let row: Option<ProfileRow> = sqlx::query_as(&format!(
                    "SELECT {PROFILE_COLUMNS} FROM {table} WHERE tenant_id = $1 AND id = $2",
                    table = kind.table()
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| row.into_record(kind)).transpose()
            }

            async fn list_profiles(
                &self,
                kind: ProfileKind,
                tenant_id: &TenantId,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<ProfileRecord>, StoreError> {
                // `$2 IS NULL` keeps one SQL text for the first page and the next ones.
                let rows: Vec<ProfileRow> = sqlx::query_as(&format!(
                    "SELECT {PROFILE_COLUMNS} FROM {table} \
                     WHERE tenant_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                    table = kind.table()
                ))
                .bind(tenant_id.as_str())
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(|row| row.into_record(kind)).collect()
            }

            async fn insert_matches(&self, matches: &[MatchRecord]) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                for record in matches {
                    sqlx::query(&format!(
                        "INSERT INTO power100_matches ({MATCH_COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(&record.id)
                    .bind(record.tenant_id.as_str())
                    .bind(&record.contractor_id)
                    .bind(&record.partner_id)
                    .bind(record.rank)
                    .bind(record.score)
                    .bind(&record.details)
                    .bind(&record.conversation_id)
                    .bind(record.created_at.timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_match(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<MatchRecord>, StoreError> {
                let row: Option<MatchRow> = sqlx::query_as(&format!(
                    "SELECT {MATCH_COLUMNS} FROM power100_matches \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(MatchRecord::try_from).transpose()
            }

            async fn latest_match(
                &self,
                tenant_id: &TenantId,
                contractor_id: &str,
                conversation_id: Option<&str>,
            ) -> Result<Option<MatchRecord>, StoreError> {
                let row: Option<MatchRow> = sqlx::query_as(&format!(
                    "SELECT {MATCH_COLUMNS} FROM power100_matches \
                     WHERE tenant_id = $1 AND contractor_id = $2 \
                     AND (CAST($3 AS TEXT) IS NULL OR conversation_id = $3) \
                     ORDER BY created_at DESC, match_rank ASC, id DESC LIMIT 1"
                ))
                .bind(tenant_id.as_str())
                .bind(contractor_id)
                .bind(conversation_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(MatchRecord::try_from).transpose()
            }

            async fn insert_booking(&self, booking: &DemoBookingRecord) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO power100_demo_bookings ({BOOKING_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(&booking.id)
                .bind(booking.tenant_id.as_str())
                .bind(&booking.contractor_id)
                .bind(&booking.partner_id)
                .bind(&booking.match_id)
                .bind(&booking.conversation_id)
                .bind(&booking.status)
                .bind(booking.scheduled_for.map(|at| at.timestamp_millis()))
                .bind(&booking.notes)
                .bind(booking.version)
                .bind(&booking.created_by)
                .bind(booking.created_at.timestamp_millis())
                .bind(booking.updated_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_booking(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<DemoBookingRecord>, StoreError> {
                let row: Option<BookingRow> = sqlx::query_as(&format!(
                    "SELECT {BOOKING_COLUMNS} FROM power100_demo_bookings \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(DemoBookingRecord::try_from).transpose()
            }

            async fn update_booking(&self, booking: &DemoBookingRecord) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "UPDATE power100_demo_bookings SET status = $3, scheduled_for = $4, \
                     notes = $5, version = $6, updated_at = $7 \
                     WHERE tenant_id = $1 AND id = $2 AND version = $8",
                )
                .bind(booking.tenant_id.as_str())
                .bind(&booking.id)
                .bind(&booking.status)
                .bind(booking.scheduled_for.map(|at| at.timestamp_millis()))
                .bind(&booking.notes)
                .bind(booking.version)
                .bind(booking.updated_at.timestamp_millis())
                .bind(booking.version - 1)
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn insert_deal(&self, deal: &DealRecord) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO power100_deals ({DEAL_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(&deal.id)
                .bind(deal.tenant_id.as_str())
                .bind(&deal.contractor_id)
                .bind(&deal.partner_id)
                .bind(&deal.booking_id)
                .bind(&deal.match_id)
                .bind(&deal.conversation_id)
                .bind(deal.value)
                .bind(&deal.closed_on)
                .bind(&deal.created_by)
                .bind(deal.created_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_deal(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<DealRecord>, StoreError> {
                let row: Option<DealRow> = sqlx::query_as(&format!(
                    "SELECT {DEAL_COLUMNS} FROM power100_deals WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(DealRecord::try_from).transpose()
            }
        }
    };
}

impl_power100_store!(SqliteBackend);
impl_power100_store!(PgBackend);
