//! One function per command: load configuration, open what the command needs, act, print.

use anyhow::Context;
use flywheel_config::{Config, Overrides};
use flywheel_core::TenantId;
use flywheel_services::{local_cli_principal, NewApiKeyInput, NewTenantInput};
use secrecy::{ExposeSecret, SecretString};

use crate::app::{shutdown_signal, Application, Components};
use crate::cli::{Cli, Command, ConfigCommand, KeysCommand, TenantsCommand, TokenCommand};
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
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
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
    components.store.close().await;
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
    components.store.close().await;
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
    }
    components.store.close().await;
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
    components.store.close().await;
    Ok(())
}
