//! SQL over the lake and the plan's reports, for a caller: who may ask, validated time
//! windows, and the engine's errors turned into the caller's (422 with the engine's message)
//! or the platform's (500/503).

use std::time::Duration;

use std::sync::Arc;

use flywheel_analytics::output::Format;
use flywheel_analytics::{
    Analytics, AnalyticsError, DatasetManifest, DeriveOptions, QueryResult, Window,
};
use flywheel_core::{Principal, Role, ValidationErrors};
use flywheel_store::TenantStore;
use serde_json::Value;

use crate::ServiceError;

/// Longest SQL text accepted.
const MAX_SQL_CHARS: usize = 100_000;

/// The analytics use cases. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AnalyticsService {
    engine: Option<Analytics>,
    max_download_rows: usize,
    derive: DeriveOptions,
}

/// Which report, with its parameters.
#[derive(Debug, Clone)]
pub enum Report {
    AiUsage { interaction_type: Option<String> },
    Funnel,
    Partners,
    Models { interaction_type: Option<String> },
}

impl AnalyticsService {
    /// `engine` is `None` when `analytics.enabled = false`.
    pub fn new(
        engine: Option<Analytics>,
        max_download_rows: usize,
        derive: DeriveOptions,
    ) -> AnalyticsService {
        AnalyticsService {
            engine,
            max_download_rows,
            derive,
        }
    }

    /// The derivation options from the configuration (`[training]`).
    pub fn derive_options(&self) -> &DeriveOptions {
        &self.derive
    }

    /// Writes the caller's tenant's derived datasets and training files (admins; the CLI acts
    /// as the operator for any tenant).
    pub async fn derive(
        &self,
        actor: &Principal,
        options: &DeriveOptions,
    ) -> Result<Vec<DatasetManifest>, ServiceError> {
        if actor.role != Role::Admin {
            return Err(ServiceError::Forbidden(format!(
                "deriving datasets needs the admin role; the caller has role '{}'",
                actor.role
            )));
        }
        let engine = self.engine.as_ref().ok_or_else(disabled)?;
        engine
            .derive_datasets(actor.tenant_id.as_str(), options)
            .await
            .map_err(from_engine)
    }

    /// The manifests of the caller's tenant's datasets (admin and service roles).
    pub async fn datasets(&self, actor: &Principal) -> Result<Vec<DatasetManifest>, ServiceError> {
        let engine = self.engine_for(actor, "datasets")?;
        engine
            .list_datasets(actor.tenant_id.as_str())
            .await
            .map_err(from_engine)
    }

    /// `serve`'s schedule: every `interval`, when the lake's raw files changed, derive every
    /// tenant's datasets. Ends when `stop` turns true.
    pub async fn run_derive_schedule(
        self: Arc<Self>,
        tenants: Arc<dyn TenantStore>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let mut seen: Option<Vec<(String, u64)>> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if *stop.borrow() {
                return;
            }
            let files = match engine.lake().current_raw_files().await {
                Ok(files) => files
                    .into_iter()
                    .map(|f| (f.path, f.size))
                    .collect::<Vec<_>>(),
                Err(err) => {
                    tracing::warn!(error = %err, "derive: cannot list the lake; next try in one interval");
                    continue;
                }
            };
            if seen.as_ref() == Some(&files) {
                continue;
            }
            let tenants = match tenants.list_tenants().await {
                Ok(tenants) => tenants,
                Err(err) => {
                    tracing::warn!(error = %err, "derive: cannot list tenants");
                    continue;
                }
            };
            let mut failed = false;
            for tenant in tenants {
                match engine
                    .derive_datasets(tenant.id.as_str(), &self.derive)
                    .await
                {
                    Ok(manifests) => tracing::info!(tenant = %tenant.id,
                        datasets = manifests.len(), "derived datasets"),
                    Err(err) => {
                        failed = true;
                        tracing::warn!(tenant = %tenant.id, error = %err, "derive failed");
                    }
                }
            }
            if !failed {
                seen = Some(files);
            }
        }
    }

    pub fn engine(&self) -> Option<&Analytics> {
        self.engine.as_ref()
    }

    fn engine_for(&self, actor: &Principal, what: &str) -> Result<&Analytics, ServiceError> {
        let allowed = match what {
            "sql" => actor.role == Role::Admin,
            _ => matches!(actor.role, Role::Admin | Role::Service),
        };
        if !allowed {
            return Err(ServiceError::Forbidden(format!(
                "{what} over the lake needs the {} role; the caller has role '{}'",
                if what == "sql" {
                    "admin"
                } else {
                    "admin or service"
                },
                actor.role
            )));
        }
        self.engine.as_ref().ok_or_else(disabled)
    }

    /// Runs an ad-hoc read-only query as the caller's tenant. JSON answers are cut at the
    /// engine's `max_rows`, downloads at `max_download_rows`.
    pub async fn sql(
        &self,
        actor: &Principal,
        sql: &str,
        format: Format,
    ) -> Result<QueryResult, ServiceError> {
        let engine = self.engine_for(actor, "sql")?;
        let mut errors = ValidationErrors::new();
        if sql.trim().is_empty() {
            errors.push("sql", "must not be empty; write a SELECT statement");
        } else if sql.chars().count() > MAX_SQL_CHARS {
            errors.push("sql", format!("at most {MAX_SQL_CHARS} characters"));
        }
        errors.into_result()?;
        let max_rows = match format {
            Format::Json => engine.settings().max_rows,
            Format::Csv | Format::Parquet => self.max_download_rows,
        };
        let result = engine
            .query(actor.tenant_id.as_str(), sql, Vec::new(), Some(max_rows))
            .await
            .map_err(from_engine)?;
        tracing::info!(
            rows = result.rows,
            truncated = result.truncated,
            elapsed_ms = result.elapsed.as_millis() as u64,
            "analytics query"
        );
        Ok(result)
    }

    /// One of the plan's reports over `[from, to)`: RFC 3339 instants or `YYYY-MM-DD` dates
    /// (midnight UTC); `to` defaults to now and `from` to 30 days before `to`.
    pub async fn report(
        &self,
        actor: &Principal,
        report: Report,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Value, ServiceError> {
        let engine = self.engine_for(actor, "reports")?;
        let mut errors = ValidationErrors::new();
        let to_ms = match to.map(parse_instant) {
            None => Some(chrono::Utc::now().timestamp_millis()),
            Some(Ok(ms)) => Some(ms),
            Some(Err(problem)) => {
                errors.push("to", problem);
                None
            }
        };
        let from_ms = match from.map(parse_instant) {
            None => to_ms.map(|to| to - 30 * 86_400_000),
            Some(Ok(ms)) => Some(ms),
            Some(Err(problem)) => {
                errors.push("from", problem);
                None
            }
        };
        if let (Some(from), Some(to)) = (from_ms, to_ms) {
            if from >= to {
                errors.push("from", "must be before `to`");
            }
        }
        errors.into_result()?;
        let (Some(from_ms), Some(to_ms)) = (from_ms, to_ms) else {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "window without bounds"
            )));
        };
        let window = Window { from_ms, to_ms };
        let tenant = actor.tenant_id.as_str();
        let result = match report {
            Report::AiUsage { interaction_type } => {
                let kind = interaction_type.unwrap_or_else(|| "ai_concierge_response".to_owned());
                engine.ai_usage(tenant, window, &kind).await
            }
            Report::Funnel => engine.funnel(tenant, window).await,
            Report::Partners => engine.partners(tenant, window).await,
            Report::Models { interaction_type } => {
                engine
                    .models(tenant, window, interaction_type.as_deref())
                    .await
            }
        };
        result.map_err(from_engine)
    }

    /// The engine's time limit, for messages.
    pub fn query_timeout(&self) -> Option<Duration> {
        self.engine.as_ref().map(|e| e.settings().query_timeout)
    }
}

fn disabled() -> ServiceError {
    ServiceError::Disabled("analytics is switched off (analytics.enabled = false)".to_owned())
}

/// An RFC 3339 instant or a `YYYY-MM-DD` date (midnight UTC) as Unix ms.
pub fn parse_instant(raw: &str) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "'{raw}' is not a time; write an RFC 3339 instant (2026-01-31T00:00:00Z) or a date (2026-01-31)"
    ))
}

/// The query's fault → 422 with the engine's words; the lake's → 503; the engine's → 500.
pub fn from_engine(err: AnalyticsError) -> ServiceError {
    match err {
        AnalyticsError::Query(message) => ServiceError::Query {
            code: "invalid_query",
            message,
        },
        err @ AnalyticsError::Timeout(_) => ServiceError::Query {
            code: "query_timeout",
            message: err.to_string(),
        },
        err @ AnalyticsError::TooLarge(_) => ServiceError::Query {
            code: "query_too_large",
            message: err.to_string(),
        },
        AnalyticsError::Lake(message) => ServiceError::Unavailable(format!("lake: {message}")),
        AnalyticsError::Invalid(message) => ServiceError::Query {
            code: "invalid_request",
            message,
        },
        err @ AnalyticsError::RowLimit { .. } => ServiceError::Query {
            code: "query_too_large",
            message: err.to_string(),
        },
        other => ServiceError::Internal(anyhow::Error::new(other)),
    }
}
