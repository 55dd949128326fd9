//! Opening the database named by a URL, applying embedded migrations, readiness and pool stats.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::identity::{PgBackend, SqliteBackend};
use crate::{
    ApiKeyStore, ConciergeStore, InteractionStore, KnowledgeStore, Power100Store, ProviderKeyStore,
    StoreError, TenantStore,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How to connect, beyond the URL.
#[derive(Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// PostgreSQL password kept out of the URL.
    pub password: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Connections in the pool, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the operational store: cheap to clone, shared by every service.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    max_connections: u32,
    migrated: Arc<AtomicBool>,
    /// Set while the caller still completes setup after migrating (e.g. the bootstrap), so
    /// readiness is not reported between the two.
    setup_pending: Arc<AtomicBool>,
    /// SQLite's dedicated interaction-writer connection (closed with the store).
    sqlite_writer: Option<SqlitePool>,
    /// The task that truncates the SQLite WAL at close: its stop signal and handle.
    #[allow(clippy::type_complexity)]
    checkpointer: Arc<
        std::sync::Mutex<
            Option<(
                tokio::sync::watch::Sender<bool>,
                tokio::task::JoinHandle<()>,
            )>,
        >,
    >,
    tenants: Arc<dyn TenantStore>,
    api_keys: Arc<dyn ApiKeyStore>,
    interactions: Arc<dyn InteractionStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .field("migrated", &self.migrated.load(Ordering::Relaxed))
            .finish()
    }
}

impl Store {
    /// Opens the store. SQLite is opened (and its file created) at once, so a bad path fails
    /// here; PostgreSQL connects lazily so that the server can start, report `/readyz` 503 and
    /// recover by itself when the database comes up.
    pub async fn open(url: &str, options: &ConnectOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Other)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it returns, so an acknowledgement survives
                // power loss, not only a process crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // 64 MiB of page cache per connection keeps the indexes' hot pages in memory.
                .pragma("cache_size", "-65536")
                // Read pages through a memory map instead of read(2) copies.
                .pragma("mmap_size", "1073741824")
                // SQLite's own checkpoint after a commit once the WAL holds 1,000 pages: with a
                // single writer nothing is appended while it runs, so it completes and the WAL
                // restarts — the WAL stays near 4 MiB however long writes go on. (A background
                // PASSIVE checkpointer measured faster but let the WAL grow without bound under
                // continuous commits; see docs/benchmarks.md.)
                .pragma("wal_autocheckpoint", "1000")
                // After the WAL restarts, give back the disk space beyond this size.
                .pragma("journal_size_limit", "67108864");
            if let Some(parent) = Path::new(connect.get_filename()).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|err| {
                        StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
                            err.kind(),
                            format!("cannot create directory {}: {err}", parent.display()),
                        )))
                    })?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.connect_timeout)
                .connect_with(connect.clone())
                .await
                .map_err(StoreError::Unavailable)?;
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(options.connect_timeout)
                .connect_with(connect.clone())
                .await
                .map_err(StoreError::Unavailable)?;
            let mut store = Store::from_pool(
                Pool::Sqlite(pool.clone()),
                Some(writer.clone()),
                options.max_connections,
            );
            store.sqlite_writer = Some(writer);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(checkpoint_wal(pool, stopped));
            if let Ok(mut slot) = store.checkpointer.lock() {
                *slot = Some((stop, task));
            }
            Ok(store)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut connect = PgConnectOptions::from_str(url).map_err(StoreError::Other)?;
            if let Some(password) = &options.password {
                connect = connect.password(password);
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.connect_timeout)
                .connect_lazy_with(connect);
            Ok(Store::from_pool(
                Pool::Postgres(pool),
                None,
                options.max_connections,
            ))
        } else {
            Err(StoreError::Other(sqlx::Error::Configuration(
                "database URL must start with sqlite: or postgres://".into(),
            )))
        }
    }

    fn from_pool(pool: Pool, sqlite_writer: Option<SqlitePool>, max_connections: u32) -> Store {
        type Areas = (
            Arc<dyn TenantStore>,
            Arc<dyn ApiKeyStore>,
            Arc<dyn InteractionStore>,
        );
        let (tenants, api_keys, interactions): Areas = match &pool {
            Pool::Sqlite(pool) => {
                let backend = Arc::new(SqliteBackend {
                    pool: pool.clone(),
                    writer: sqlite_writer.clone().unwrap_or_else(|| pool.clone()),
                });
                (backend.clone(), backend.clone(), backend)
            }
            Pool::Postgres(pool) => {
                let backend = Arc::new(PgBackend {
                    pool: pool.clone(),
                    writer: pool.clone(),
                });
                (backend.clone(), backend.clone(), backend)
            }
        };
        Store {
            pool,
            max_connections,
            migrated: Arc::new(AtomicBool::new(false)),
            setup_pending: Arc::new(AtomicBool::new(false)),
            checkpointer: Arc::new(std::sync::Mutex::new(None)),
            sqlite_writer: None,
            tenants,
            api_keys,
            interactions,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Applies the embedded migrations that have not run yet. Safe to call concurrently from
    /// several replicas: sqlx takes an advisory lock on PostgreSQL.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        result.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Other(sqlx::Error::Migrate(Box::new(other))),
        })?;
        self.migrated.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Holds readiness back until [`Store::finish_setup`], even once migrations are applied.
    pub fn begin_setup(&self) {
        self.setup_pending.store(true, Ordering::SeqCst);
    }

    pub fn finish_setup(&self) {
        self.setup_pending.store(false, Ordering::SeqCst);
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::SeqCst)
    }

    /// Ready means: migrations applied by this process and the database answers now.
    pub async fn ready(&self) -> Result<(), StoreError> {
        if !self.is_migrated() || self.setup_pending.load(Ordering::SeqCst) {
            return Err(StoreError::NotReady);
        }
        let ping = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        };
        ping.map_err(StoreError::Unavailable)
    }

    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match &self.pool {
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle() as u32),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle() as u32),
        };
        PoolStats {
            size,
            idle,
            max: self.max_connections,
        }
    }

    /// Waits for checked-out connections to return and closes the pool. For SQLite this also
    /// checkpoints the WAL when the last connection closes.
    pub async fn close(&self) {
        let checkpointer = self
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some((stop, task)) = checkpointer {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    pub fn tenants(&self) -> Arc<dyn TenantStore> {
        self.tenants.clone()
    }

    pub fn api_keys(&self) -> Arc<dyn ApiKeyStore> {
        self.api_keys.clone()
    }

    pub fn interactions(&self) -> Arc<dyn InteractionStore> {
        self.interactions.clone()
    }

    /// A store area over the backend's pools: reads on the pool, writes on the writer pool (on
    /// SQLite the one writer connection that also commits interactions).
    fn with_writer<T>(
        &self,
        sqlite: impl FnOnce(SqliteBackend) -> T,
        postgres: impl FnOnce(PgBackend) -> T,
    ) -> T {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite(SqliteBackend {
                pool: pool.clone(),
                writer: self.sqlite_writer.clone().unwrap_or_else(|| pool.clone()),
            }),
            Pool::Postgres(pool) => postgres(PgBackend {
                pool: pool.clone(),
                writer: pool.clone(),
            }),
        }
    }

    pub fn concierge(&self) -> Arc<dyn ConciergeStore> {
        self.with_writer(
            |backend| Arc::new(backend) as Arc<dyn ConciergeStore>,
            |backend| Arc::new(backend),
        )
    }

    pub fn knowledge(&self) -> Arc<dyn KnowledgeStore> {
        self.with_writer(
            |backend| Arc::new(backend) as Arc<dyn KnowledgeStore>,
            |backend| Arc::new(backend),
        )
    }

    pub fn power100(&self) -> Arc<dyn Power100Store> {
        self.with_writer(
            |backend| Arc::new(backend) as Arc<dyn Power100Store>,
            |backend| Arc::new(backend),
        )
    }

    pub fn provider_keys(&self) -> Arc<dyn ProviderKeyStore> {
        self.with_writer(
            |backend| Arc::new(backend) as Arc<dyn ProviderKeyStore>,
            |backend| Arc::new(backend),
        )
    }
}

/// Waits for the store to close, then checkpoints and truncates the WAL so that a stopped
/// installation leaves a single, complete database file behind.
async fn checkpoint_wal(pool: SqlitePool, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
    {
        tracing::debug!(error = %err, "final WAL checkpoint skipped");
    }
}
