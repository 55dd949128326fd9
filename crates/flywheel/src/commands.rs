//! One function per command: load configuration, open what the command needs, act, print.

use std::time::Duration;

use anyhow::Context;
use flywheel_config::{Config, Overrides};
use flywheel_core::TenantId;
use flywheel_services::{local_cli_principal, NewApiKeyInput, NewTenantInput};
use secrecy::{ExposeSecret, SecretString};

use crate::app::{shutdown_signal, Application, Components};
use crate::cli::{
    BenchCommand, Cli, Command, ConfigCommand, InteractionsCommand, KeysCommand, LakeCommand,
    TenantsCommand, TokenCommand,
};
use crate::telemetry;

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
        Command::Lake { command } => lake(config, command).await,
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
async fn open_for_cli(config: &Config) -> anyhow::Result<Components> {
    let components = Components::open(config).await?;
    components
        .prepare(config, bootstrap_key_from_env().as_ref())
        .await?;
    Ok(components)
}

fn cli_principal(config: &Config) -> anyhow::Result<flywheel_core::Principal> {
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
        LakeCommand::Derive => {
            eprintln!(
                "reading the raw dataset in {}",
                components.archiver.lake().url()
            );
            let report = components.archiver.derive().await?;
            println!(
                "wrote {} ({} interactions with outcomes, from {} raw rows)",
                report.path, report.outcomes_written, report.rows_read
            );
            Ok(())
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
