//! Structured logging to standard error, pretty or JSON, filtered by `log.level`.

use std::io::IsTerminal;

use flywheel_config::{LogConfig, LogFormat};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => {
            let mut filter = EnvFilter::try_new(&config.level).map_err(|err| {
                anyhow::anyhow!("log.level '{}' is not a valid filter: {err}", config.level)
            })?;
            // tantivy logs every commit and merge at `info`; one per ingested document is
            // noise in Flywheel's log. `log.level` or `RUST_LOG` naming tantivy still win.
            if !config.level.contains("tantivy") {
                if let Ok(directive) = "tantivy=warn".parse() {
                    filter = filter.add_directive(directive);
                }
            }
            filter
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::NONE);
    let result = match config.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))
}
