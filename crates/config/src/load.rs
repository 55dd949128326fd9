//! Loading the layers and turning `figment` errors into messages that name file, key and reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Source};

use crate::Config;

/// `FLYWHEEL_…` variables that are read by other parts of Flywheel, not configuration keys.
pub const NON_CONFIG_ENV_VARS: &[&str] = &[
    "CONFIG",
    "TEST_POSTGRES_URL",
    "TEST_REDIS_URL",
    "TEST_PGVECTOR_URL",
    "BOOTSTRAP_ADMIN_KEY",
    "TEST_CRASH_AFTER_LAKE_UPLOAD",
    // The Python interpreter `flywheel models fetch` runs pip with.
    "PYTHON",
    // Where the tests look for (and fetch) the local models.
    "MODELS_DIR",
];

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist; create it or drop --config")]
    FileMissing { path: PathBuf },
    #[error("invalid configuration in {origin}: key `{key}`: {problem}")]
    Layer {
        origin: String,
        key: String,
        problem: String,
    },
    #[error("invalid configuration: key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl Config {
    /// Loads defaults, then `config_file` (or `./flywheel.toml` when it exists), then the
    /// environment, then `overrides`.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from_env(config_file, overrides, Env::prefixed("FLYWHEEL_"))
    }

    fn load_from_env(
        config_file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match config_file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::FileMissing {
                    path: path.to_owned(),
                })
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => {
                let implicit = Path::new("flywheel.toml");
                if implicit.exists() {
                    figment = figment.merge(Toml::file_exact(implicit));
                }
            }
        }
        let env = env
            .filter(|key| {
                !NON_CONFIG_ENV_VARS
                    .iter()
                    .any(|ignored| key.as_str().eq_ignore_ascii_case(ignored))
            })
            .split("__");
        figment = figment.merge(env);
        if let Some(data_dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", data_dir));
        }
        if let Some(bind) = &overrides.bind {
            figment = figment.merge(Serialized::default("server.bind", bind.to_string()));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let config: Config = figment.extract().map_err(describe_figment_error)?;
        config.database_backend()?;
        Ok(config)
    }
}

fn describe_figment_error(errors: figment::Error) -> ConfigError {
    // figment can report several errors; the first one is enough to act on.
    let Some(error) = errors.into_iter().next() else {
        return ConfigError::Invalid {
            key: "<unknown>".to_owned(),
            problem: "configuration could not be read".to_owned(),
        };
    };
    let mut key_parts: Vec<String> = error.path.clone();
    let problem = match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            if key_parts.last() != Some(field) {
                key_parts.push(field.clone());
            }
            format!(
                "unknown key `{field}`; valid keys here are: {}",
                expected.join(", ")
            )
        }
        other => other.to_string(),
    };
    let key = key_parts.join(".");
    let origin = match error.metadata.as_ref() {
        Some(metadata) => match &metadata.source {
            Some(Source::File(path)) => format!("file {}", path.display()),
            _ if metadata.name.contains("environment") => {
                format!(
                    "environment variable FLYWHEEL_{}",
                    key.to_uppercase().replace('.', "__")
                )
            }
            _ => metadata.name.to_string(),
        },
        None => "configuration".to_owned(),
    };
    ConfigError::Layer {
        origin,
        key,
        problem,
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use figment::Jail;

    use super::*;
    use crate::{DatabaseBackend, LogFormat};

    fn load_in(jail_file: Option<&str>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from_env(
            jail_file.map(Path::new),
            overrides,
            Env::prefixed("FLYWHEEL_"),
        )
    }

    #[test]
    fn default_configuration_loads() {
        Jail::expect_with(|_jail| {
            let config = load_in(None, &Overrides::default()).expect("defaults load");
            assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
            assert_eq!(config.database_url(), "sqlite://./data/flywheel.db");
            assert_eq!(config.database_backend().unwrap(), DatabaseBackend::Sqlite);
            assert_eq!(config.lake_url(), "./data/lake");
            assert!(config.features.data_collection);
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                r#"
                    data_dir = "/srv/fw"
                    [server]
                    bind = "0.0.0.0:9000"
                    shutdown_grace = "5s"
                    [log]
                    format = "json"
                "#,
            )?;
            jail.set_env("FLYWHEEL_SERVER__BIND", "127.0.0.1:9100");
            jail.set_env("FLYWHEEL_DATABASE__URL", "postgres://fw@localhost/fw");
            jail.set_env("FLYWHEEL_FEATURES__API_CALL_TRACKING", "true");
            jail.set_env("FLYWHEEL_TEST_POSTGRES_URL", "postgres://ignored");
            let overrides = Overrides {
                bind: Some("127.0.0.1:0".parse().unwrap()),
                ..Overrides::default()
            };
            let config = load_in(Some("custom.toml"), &overrides).expect("layers load");
            assert_eq!(config.data_dir, PathBuf::from("/srv/fw"));
            assert_eq!(config.server.bind.to_string(), "127.0.0.1:0");
            assert_eq!(config.server.shutdown_grace, Duration::from_secs(5));
            assert_eq!(config.log.format, LogFormat::Json);
            assert_eq!(
                config.database_backend().unwrap(),
                DatabaseBackend::Postgres
            );
            assert!(config.features.api_call_tracking);
            Ok(())
        });
    }

    #[test]
    fn unknown_file_key_names_file_and_key() {
        Jail::expect_with(|jail| {
            jail.create_file("flywheel.toml", "[server]\nbnd = \"127.0.0.1:1\"\n")?;
            let err = load_in(Some("flywheel.toml"), &Overrides::default()).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("flywheel.toml"), "{message}");
            assert!(message.contains("key `server.bnd`"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_names_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("FLYWHEEL_SERVER__PROT", "1");
            let err = load_in(None, &Overrides::default()).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("FLYWHEEL_SERVER__PROT"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn malformed_values_are_explained() {
        Jail::expect_with(|jail| {
            jail.create_file("flywheel.toml", "[server]\nshutdown_grace = \"soon\"\n")?;
            let message = load_in(Some("flywheel.toml"), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains("server.shutdown_grace"), "{message}");
            assert!(message.contains("soon"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        Jail::expect_with(|_jail| {
            let err = load_in(Some("nope.toml"), &Overrides::default()).unwrap_err();
            assert!(matches!(err, ConfigError::FileMissing { .. }));
            Ok(())
        });
    }

    #[test]
    fn show_redacts_database_password() {
        Jail::expect_with(|jail| {
            jail.set_env("FLYWHEEL_DATABASE__URL", "postgres://fw:topsecret@db/fw");
            let config = load_in(None, &Overrides::default()).unwrap();
            let shown = config.to_redacted_toml().unwrap();
            assert!(!shown.contains("topsecret"), "{shown}");
            assert!(shown.contains("postgres://fw:***@db/fw"), "{shown}");
            Ok(())
        });
    }
}
