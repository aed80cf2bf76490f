//! The relay's configuration: the raw TOML model with its defaults ([`sections`]), environment
//! overrides, and the validated [`Settings`] built from it once ([`settings`], [`routes`]),
//! with the file, the key and the reason for every rejected value.
//!
//! This module owns reading and checking configuration only; it never binds a socket or opens a
//! file other than the config file itself and the files it names (to check they exist, and the
//! JWT key and the admin token, read once).

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod admin;
mod cluster;
mod compression;
mod issue;
mod overrides;
mod proxy_protocol;
mod routes;
mod sections;
mod settings;
mod streams;
#[cfg(test)]
mod tests;

pub use cluster::ClusterSetup;
pub use issue::{ms, ConfigIssue};
pub use overrides::ENV_PREFIX;
use overrides::{apply_override, path_error, with_position};
pub use sections::*;
pub use settings::{DrainSettings, Listeners, Settings, TlsSource};

/// A configuration that could not be loaded: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// The dotted key path (e.g. `server.listen`, `route[0].upstream`), or `(file)` when the
    /// file itself could not be read or parsed.
    pub key: String,
    /// What is wrong with the value.
    pub reason: String,
}

/// The whole relay configuration (the `config/relay.toml` shape). `Default` is the embedded
/// default of every section with no route (a route must be added before it validates).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Downstream listeners, TLS and connection handling.
    #[serde(default)]
    pub server: ServerConfig,
    /// SSE routes: downstream path template → upstream URL template.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Routes whose streams a request starts, kept resumable.
    #[serde(default, rename = "stream_route")]
    pub stream_routes: Vec<StreamRouteConfig>,
    /// How long and how much of the request streams the relay keeps.
    #[serde(default)]
    pub streams: StreamsConfig,
    /// How the relay talks to origins.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The per-topic replay buffer.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// What subscribers receive besides events.
    #[serde(default)]
    pub downstream: DownstreamConfig,
    /// Compression of event streams toward clients, once per topic and coding.
    #[serde(default)]
    pub compression: CompressionConfig,
    /// Topic lifecycle.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Cross-origin resource sharing for pages on other origins.
    #[serde(default)]
    pub cors: CorsConfig,
    /// The built-in demo origin (for trying the relay without an origin of your own).
    #[serde(default)]
    pub demo_origin: DemoOriginConfig,
    /// The admin listener: metrics, probes, topics, status page.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Requests that match no SSE route.
    #[serde(default)]
    pub passthrough: PassthroughConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Authorization backends used by routes with `auth = "jwt"` or `"forward"`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Relays sharing one origin subscription per topic (off unless peers are configured).
    #[serde(default)]
    pub cluster: ClusterConfig,
}

impl Settings {
    /// Reads, parses and validates `path`, applying `SSE_RELAY__…` environment overrides (see
    /// [`Config::parse_with_env`]).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the key and the reason: unreadable file, TOML syntax,
    /// unknown key, wrong type, bad override, or a value the validation rejects.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Settings::parse_with_env(&text, path, std::env::vars())
    }

    /// Parses and validates TOML text (no environment overrides); `path` is used in error
    /// messages.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        Settings::parse_with_env(text, path, std::iter::empty())
    }

    /// Parses TOML text with overrides from `env` (see [`Config::parse_with_env`]) and
    /// validates it.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let config = Config::parse_with_env(text, path, env)?;
        Settings::try_from(config).map_err(|issue| ConfigError {
            file: path.to_owned(),
            key: issue.key,
            reason: issue.reason,
        })
    }
}

impl Config {
    /// Parses TOML text into the raw model (no validation beyond types and known keys).
    ///
    /// # Errors
    /// A [`ConfigError`] for TOML syntax, an unknown key or a wrong type.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, path, std::iter::empty())
    }

    /// Parses TOML text and applies overrides from `env`. Every key can be set by a
    /// variable named `SSE_RELAY__` + its path with `__` between parts, case-insensitive:
    /// `SSE_RELAY__SERVER__LISTEN=0.0.0.0:8443`, `SSE_RELAY__ROUTE__0__UPSTREAM=http://…`
    /// (a number selects an array element; one past the end appends a table). The value is
    /// read as a TOML value when it is one (`5000`, `true`, `["a"]`), else as a string.
    ///
    /// # Errors
    /// As [`Config::parse`]; a bad override is named by its variable.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let err = |key: String, reason: String| ConfigError {
            file: path.to_owned(),
            key,
            reason,
        };
        let mut overrides: Vec<(String, String)> = env
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        let config: Config = if overrides.is_empty() {
            let deserializer = toml::Deserializer::new(text);
            serde_path_to_error::deserialize(deserializer).map_err(|e| path_error(e, text, &err))?
        } else {
            let mut table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| err("(file)".into(), with_position(&e, text)))?;
            for (name, value) in &overrides {
                apply_override(&mut table, name, value)
                    .map_err(|reason| err(format!("env {name}"), reason.to_string()))?;
            }
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let reason = format!(
                    "{} (after environment overrides)",
                    e.into_inner().message().trim()
                );
                err(key, reason)
            })?
        };
        Ok(config)
    }
}
