//! `flywheel query "SELECT …"` and `flywheel lake ddl`: SQL over the lake from the terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flywheel_analytics::ddl::{DdlOptions, Engine};
use flywheel_analytics::output::{self, Format};
use flywheel_config::Config;
use flywheel_core::TenantId;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{open_analytics, open_lake};

/// What `flywheel query` was asked.
#[derive(Debug)]
pub struct QueryArgs {
    pub sql: String,
    pub tenant: Option<String>,
    pub format: Option<String>,
    pub output: Option<PathBuf>,
    pub max_rows: Option<usize>,
}

pub async fn run(config: Config, args: QueryArgs) -> anyhow::Result<()> {
    let tenant = args
        .tenant
        .clone()
        .unwrap_or_else(|| config.bootstrap.tenant_id.clone());
    let tenant = TenantId::parse(&tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?;
    let format = match args.format.as_deref() {
        None | Some("table") => None,
        Some(other) => Some(
            Format::parse(other)
                .with_context(|| format!("--format {other}: use table, csv, json or parquet"))?,
        ),
    };
    if format == Some(Format::Parquet) && args.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("--format parquet writes binary data: add --output FILE");
    }
    let lake = open_lake(&config)?;
    let files = lake
        .current_raw_files()
        .await
        .with_context(|| format!("listing the lake at {}", lake.url()))?;
    let bytes: u64 = files.iter().map(|file| file.size).sum();
    let analytics = open_analytics(&config, lake)?;
    let max_rows = args
        .max_rows
        .unwrap_or(config.analytics.max_download_rows)
        .max(1);
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(format!(
        "querying {} files ({:.1} MiB) of tenant {tenant}",
        files.len(),
        bytes as f64 / (1024.0 * 1024.0)
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = analytics
        .query(tenant.as_str(), &args.sql, Vec::new(), Some(max_rows))
        .await;
    spinner.finish_and_clear();
    let result = result.map_err(|err| anyhow::anyhow!("{err}"))?;
    let encoded = match format {
        None => output::pretty(&result)?.into_bytes(),
        Some(format) => output::encode(&result, format)?,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &encoded).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&encoded)?;
            if format.is_none() || format == Some(Format::Csv) {
                stdout.flush()?;
            } else {
                writeln!(stdout)?;
            }
        }
    }
    eprintln!(
        "{} rows in {:.3}s{}{}",
        result.rows,
        result.elapsed.as_secs_f64(),
        if result.truncated {
            format!(" (cut at {max_rows}; raise --max-rows for more)")
        } else {
            String::new()
        },
        args.output
            .as_ref()
            .map(|path| format!(", written to {}", path.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// `flywheel lake ddl`.
pub fn ddl(
    config: &Config,
    engine: &str,
    tenant: Option<String>,
    location: Option<String>,
    database: String,
) -> anyhow::Result<()> {
    let engine = match engine {
        "duckdb" => Engine::DuckDb,
        "athena" => Engine::Athena,
        other => anyhow::bail!("--engine {other}: use duckdb or athena"),
    };
    let location = match location {
        Some(location) => location,
        None => {
            let url = config.lake_url();
            // A relative directory means nothing to another process: make it absolute.
            if url.starts_with("s3://") {
                url
            } else {
                let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
                std::path::absolute(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            }
        }
    };
    let sql = flywheel_analytics::ddl::generate(&DdlOptions {
        engine,
        location,
        tenant,
        database,
    })
    .map_err(anyhow::Error::msg)?;
    print!("{sql}");
    Ok(())
}

/// The filters of `flywheel lake derive`.
#[derive(Debug)]
pub struct DeriveArgs {
    pub dataset: Option<String>,
    pub min_rating: Option<f64>,
    pub outcome: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `flywheel lake derive`: every tenant's (or one tenant's) derived datasets and training files.
pub async fn derive(
    components: &crate::app::Components,
    tenant: Option<String>,
    args: DeriveArgs,
) -> anyhow::Result<()> {
    let mut options = components.analytics.derive_options().clone();
    if let Some(dataset) = args.dataset {
        options.dataset = dataset;
    }
    if args.min_rating.is_some() {
        options.filters.min_rating = args.min_rating;
    }
    if let Some(outcome) = &args.outcome {
        options.filters.outcome = Some(
            flywheel_analytics::OutcomeFilter::parse(outcome).with_context(|| {
                format!("--outcome {outcome}: use partner_matched, demo_booked or deal_closed")
            })?,
        );
    }
    let instant = |flag: &str, raw: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let ms = flywheel_services::analytics::parse_instant(raw)
            .map_err(|problem| anyhow::anyhow!("{flag}: {problem}"))?;
        chrono::DateTime::from_timestamp_millis(ms).with_context(|| format!("{flag}: out of range"))
    };
    if let Some(from) = &args.from {
        options.filters.from = Some(instant("--from", from)?);
    }
    if let Some(to) = &args.to {
        options.filters.to = Some(instant("--to", to)?);
    }
    let tenants: Vec<TenantId> = match tenant {
        Some(tenant) => {
            vec![TenantId::parse(&tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?]
        }
        None => components
            .store
            .tenants()
            .list_tenants()
            .await
            .context("listing tenants")?
            .into_iter()
            .map(|tenant| tenant.id)
            .collect(),
    };
    let bar = ProgressBar::new(tenants.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tenants {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for tenant in tenants {
        bar.set_message(tenant.to_string());
        let actor = flywheel_services::local_cli_principal(tenant.clone());
        let manifests = components
            .analytics
            .derive(&actor, &options)
            .await
            .with_context(|| format!("deriving the datasets of tenant {tenant}"))?;
        bar.suspend(|| {
            for manifest in &manifests {
                println!(
                    "{tenant:<16} {:<20} {:>10} rows  {}",
                    manifest.kind.as_str(),
                    manifest.row_count,
                    manifest.path
                );
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
