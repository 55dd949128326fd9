//! The query engine: a DataFusion session per query whose only tables are the caller's tenant's
//! views of the lake, run read-only on a runtime of its own with a time limit, a row limit and
//! a memory limit.
//!
//! Tenant confinement is the session's construction, not the SQL's text: the raw table (every
//! tenant) is never registered; `interactions` is that table behind a `tenant_id = <caller>`
//! filter, and the other tables are views over `interactions`. Statements other than queries
//! (DDL such as `CREATE EXTERNAL TABLE`, DML such as `COPY`, `SET`) are refused, and no
//! function reads a file by path, so no SQL reaches another tenant's rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{col, lit, SQLOptions, SessionConfig, SessionContext};
use flywheel_lake::Lake;
use futures::StreamExt;

use crate::table::{lake_store_url, RawTable};
use crate::views;
use crate::AnalyticsError;

/// Limits and resources of the engine (`[analytics]` in the configuration).
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// A query still running after this long is cancelled.
    pub query_timeout: Duration,
    /// Most rows a query may return (more: the answer is cut and says so).
    pub max_rows: usize,
    /// Memory the engine may use for all running queries together (sorts, joins, aggregations);
    /// a query that needs more fails with a clear error rather than exhausting the machine.
    pub memory_limit_bytes: usize,
    /// Threads of the engine's own runtime (and partitions per query).
    pub threads: usize,
}

impl Default for AnalyticsSettings {
    fn default() -> AnalyticsSettings {
        AnalyticsSettings {
            query_timeout: Duration::from_secs(30),
            max_rows: 10_000,
            memory_limit_bytes: 1024 * 1024 * 1024,
            threads: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    pub rows: usize,
    /// Whether the query had more rows than the limit (the rest were not computed).
    pub truncated: bool,
    pub elapsed: Duration,
}

/// The SQL engine over one lake. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lake: Lake,
    env: Arc<RuntimeEnv>,
    settings: AnalyticsSettings,
    runtime: CpuRuntime,
}

/// The engine's own tokio runtime: queries are CPU-heavy and must not hold the request
/// workers. Shut down without blocking when the engine is dropped.
#[derive(Debug)]
struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Analytics {
    pub fn new(lake: Lake, settings: AnalyticsSettings) -> Result<Analytics, AnalyticsError> {
        let threads = settings.threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("flywheel-sql")
            .enable_all()
            .build()
            .map_err(|err| {
                AnalyticsError::Engine(format!("cannot start the SQL runtime: {err}"))
            })?;
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(settings.memory_limit_bytes)))
            .build_arc()
            .map_err(|err| AnalyticsError::Engine(err.to_string()))?;
        let store_url = lake_store_url().map_err(|err| AnalyticsError::Engine(err.to_string()))?;
        env.register_object_store(store_url.as_ref(), lake.object_store());
        Ok(Analytics {
            inner: Arc::new(Inner {
                lake,
                env,
                settings,
                runtime: CpuRuntime(Some(runtime)),
            }),
        })
    }

    pub fn lake(&self) -> &Lake {
        &self.inner.lake
    }

    pub fn settings(&self) -> &AnalyticsSettings {
        &self.inner.settings
    }

    /// Runs one read-only statement as `tenant`, with `$1`, `$2`, … bound to `params`, returning
    /// at most `max_rows` rows (the engine's `max_rows` when `None`), within the engine's
    /// `query_timeout`.
    pub async fn query(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<ScalarValue>,
        max_rows: Option<usize>,
    ) -> Result<QueryResult, AnalyticsError> {
        let max_rows = max_rows.unwrap_or(self.inner.settings.max_rows);
        let timeout = self.inner.settings.query_timeout;
        self.query_with(tenant, sql, params, max_rows, timeout)
            .await
    }

    /// [`Analytics::query`] with explicit limits (for internal jobs such as derivation, which
    /// read whole tables).
    pub async fn query_with(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<ScalarValue>,
        max_rows: usize,
        timeout: Duration,
    ) -> Result<QueryResult, AnalyticsError> {
        let inner = Arc::clone(&self.inner);
        let tenant = tenant.to_owned();
        let sql = sql.to_owned();
        let started = Instant::now();
        let Some(runtime) = inner.runtime.0.as_ref() else {
            return Err(AnalyticsError::Engine(
                "the SQL runtime is stopped".to_owned(),
            ));
        };
        let task = {
            let inner = Arc::clone(&inner);
            runtime.spawn(async move { run(&inner, &tenant, &sql, params, max_rows).await })
        };
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result.map(|(schema, batches, rows, truncated)| QueryResult {
                schema,
                batches,
                rows,
                truncated,
                elapsed: started.elapsed(),
            }),
            Ok(Err(join)) => Err(AnalyticsError::Engine(format!(
                "the query task failed: {join}"
            ))),
            Err(_) => {
                abort.abort();
                Err(AnalyticsError::Timeout(timeout))
            }
        }
    }
}

type Answer = (SchemaRef, Vec<RecordBatch>, usize, bool);

async fn run(
    inner: &Inner,
    tenant: &str,
    sql: &str,
    params: Vec<ScalarValue>,
    max_rows: usize,
) -> Result<Answer, AnalyticsError> {
    let ctx = session(inner, tenant).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let mut frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(AnalyticsError::from_datafusion)?;
    if !params.is_empty() {
        frame = frame
            .with_param_values(params)
            .map_err(AnalyticsError::from_datafusion)?;
    }
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(AnalyticsError::from_datafusion)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(AnalyticsError::from_datafusion)?;
        let room = max_rows - rows;
        if batch.num_rows() > room {
            batches.push(batch.slice(0, room));
            rows += room;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
        if rows == max_rows {
            // One more row would make it truncated; look without keeping it.
            truncated = loop {
                match stream.next().await {
                    Some(Ok(next)) if next.num_rows() == 0 => continue,
                    Some(Ok(_)) => break true,
                    Some(Err(err)) => return Err(AnalyticsError::from_datafusion(err)),
                    None => break false,
                }
            };
            break;
        }
    }
    Ok((schema, batches, rows, truncated))
}

/// A session whose tables are `tenant`'s views of the lake.
async fn session(inner: &Inner, tenant: &str) -> Result<SessionContext, AnalyticsError> {
    let mut config = SessionConfig::new()
        .with_target_partitions(inner.settings.threads.max(1))
        .with_information_schema(true);
    // Decode filter columns first and the other columns only for matching rows.
    config.options_mut().execution.parquet.pushdown_filters = true;
    config.options_mut().execution.parquet.reorder_filters = true;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(Arc::clone(&inner.env))
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_udf(crate::json::json_extract_string());
    let raw = ctx
        .read_table(Arc::new(RawTable::new(inner.lake.clone())))
        .and_then(|frame| frame.filter(col("tenant_id").eq(lit(tenant.to_owned()))))
        .map_err(AnalyticsError::from_datafusion)?;
    ctx.register_table("interactions", raw.into_view())
        .map_err(AnalyticsError::from_datafusion)?;
    for (name, definition) in views::definitions(views::Dialect::DataFusion) {
        let frame = ctx
            .sql(&definition)
            .await
            .map_err(|err| AnalyticsError::Engine(format!("view {name}: {err}")))?;
        ctx.register_table(name, frame.into_view())
            .map_err(AnalyticsError::from_datafusion)?;
    }
    Ok(ctx)
}

impl AnalyticsError {
    /// The query's fault (422 with the engine's message) or the engine's (500).
    pub(crate) fn from_datafusion(err: DataFusionError) -> AnalyticsError {
        let message = err.to_string();
        match err.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::Configuration(_) => AnalyticsError::Query(message),
            DataFusionError::ResourcesExhausted(_) => AnalyticsError::TooLarge(message),
            DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
                AnalyticsError::Lake(message)
            }
            DataFusionError::External(inner) if inner.is::<flywheel_lake::LakeError>() => {
                AnalyticsError::Lake(message)
            }
            _ => AnalyticsError::Engine(message),
        }
    }
}
