//! The relay's configuration: the TOML model with its defaults, and validation that names the
//! file, the key and the reason for every rejected value.
//!
//! This module owns reading and checking configuration only; it never binds a socket or opens a
//! file other than the config file itself and the files it names (to check they exist).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::routing::{PathTemplate, UpstreamTemplate};

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

/// The whole relay configuration (the `config/relay.toml` shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Downstream listeners, TLS and connection handling.
    #[serde(default)]
    pub server: ServerConfig,
    /// SSE routes: downstream path template → upstream URL template.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// How the relay talks to origins.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The per-topic replay buffer.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// What subscribers receive besides events.
    #[serde(default)]
    pub downstream: DownstreamConfig,
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
}

/// `[auth]`: the authorization backends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[auth.jwt]`: JSON Web Tokens (RFC 7519).
    pub jwt: Option<JwtConfig>,
    /// `[auth.forward]`: an authorization server asked per subscription.
    pub forward: Option<ForwardAuthConfig>,
}

/// `[auth.jwt]`: how tokens are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms, pinned (e.g. `["HS256"]`, `["RS256"]`, `["ES256"]`); one key type.
    pub algorithms: Vec<String>,
    /// Raw secret bytes for HS256/HS384/HS512.
    pub secret_file: Option<PathBuf>,
    /// PEM public key for RS*/PS*/ES*/EdDSA.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, checked when set.
    pub issuer: Option<String>,
    /// Required `aud`, checked when set.
    pub audience: Option<String>,
    /// Cookie that may carry the token (EventSource cannot set headers). Default `sse_token`.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// Allowed clock skew for `exp`/`nbf`, ms. Default 30000.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_ms: u64,
}

fn default_cookie() -> String {
    "sse_token".into()
}

fn default_clock_skew() -> u64 {
    30_000
}

/// What a forward-auth failure (timeout, error, 5xx) means for an EventSource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthUnavailable {
    /// A 200 stream with a `retry:` hint that ends at once: the browser retries later and
    /// recovers by itself when the authorization server is back (default).
    Retry,
    /// 401: the browser gives up for good (the literal rule).
    Deny,
}

/// `[auth.forward]`: nginx `auth_request`-style authorization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// GET here with the client's `Authorization` and `Cookie`, `X-Original-URI`,
    /// `X-Forwarded-For` and `X-SSE-Topic`; 2xx allows, 401/403 deny with that status.
    pub url: String,
    /// How long an allow is cached per (credential hash, topic), ms. Default 30000.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_ms: u64,
    /// How long a deny is cached, ms. Default 5000.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl_ms: u64,
    /// Deadline for the authorization server's answer, ms. Default 2000.
    #[serde(default = "default_auth_timeout")]
    pub timeout_ms: u64,
    /// EventSource requests when the server fails: `"retry"` (default) or `"deny"` (401).
    /// Other requests get 503 either way.
    #[serde(default = "default_unavailable")]
    pub unavailable: AuthUnavailable,
}

fn default_cache_ttl() -> u64 {
    30_000
}

fn default_negative_ttl() -> u64 {
    5_000
}

fn default_auth_timeout() -> u64 {
    2_000
}

fn default_unavailable() -> AuthUnavailable {
    AuthUnavailable::Retry
}

/// `[server]`: listeners, TLS and drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TLS listener address (HTTP/2 and HTTP/1.1 by ALPN). Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// PEM certificate chain. With `tls_key`; both absent → a generated dev certificate.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Directory the generated dev certificate is written to. Default: `<temp dir>/sse-relay-dev`.
    pub dev_cert_dir: Option<PathBuf>,
    /// Optional plaintext listener (HTTP/1.1 and h2c with prior knowledge), for use behind a
    /// mesh that terminates TLS. Default: none.
    pub plaintext_listen: Option<SocketAddr>,
    /// After SIGTERM, keep serving this long with `/readyz` failing, so load balancers and
    /// Kubernetes endpoints stop sending new clients, ms. Default 5000.
    pub drain_delay_ms: u64,
    /// Then end the SSE streams spread over this window (jittered), so clients reconnect to
    /// other replicas without a stampede, ms. Default 10000.
    pub drain_window_ms: u64,
    /// Exit at the latest this long after SIGTERM, whatever is still open, ms. Must exceed
    /// `drain_delay_ms + drain_window_ms`. Default 30000.
    pub drain_timeout_ms: u64,
    /// How often the certificate and key files are checked for changes (hot reload), ms
    /// (0 disables). Default 2000.
    pub tls_reload_interval_ms: u64,
    /// `Strict-Transport-Security: max-age=…` on TLS responses (RFC 6797), seconds; 0 sends
    /// none. Default 0.
    pub hsts_max_age_s: u64,
    /// HTTP/2 settings sent to clients.
    pub h2: H2Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            dev_cert_dir: None,
            plaintext_listen: None,
            drain_delay_ms: 5_000,
            drain_window_ms: 10_000,
            drain_timeout_ms: 30_000,
            tls_reload_interval_ms: 2_000,
            hsts_max_age_s: 0,
            h2: H2Config::default(),
        }
    }
}

/// `[server.h2]`: HTTP/2 server settings (RFC 9113 §6.5.2), all set explicitly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H2Config {
    /// Streams a client may have reset before we accept them (Rapid Reset guard), count.
    /// Default 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset for protocol errors before the connection is closed
    /// (CVE-2025-8671 guard), count. Default 1024.
    pub max_local_error_reset_streams: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, bytes. Default 16384.
    pub max_header_list_size: u32,
    /// Interval between keep-alive PINGs, ms (0 disables). Default 20000.
    pub keep_alive_interval_ms: u64,
    /// Time to wait for a PING ack before closing the connection, ms. Default 20000.
    pub keep_alive_timeout_ms: u64,
    /// Bytes buffered per stream for sending before the body stops being polled. Default 65536.
    pub max_send_buf_size: usize,
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 16 * 1024,
            keep_alive_interval_ms: 20_000,
            keep_alive_timeout_ms: 20_000,
            max_send_buf_size: 64 * 1024,
        }
    }
}

/// `[[route]]`: one SSE route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Downstream path template, e.g. `/events/{topic}`: each `{name}` matches one segment.
    pub path: String,
    /// Upstream URL template (http or https), e.g. `http://127.0.0.1:8081/sub/{topic}`; every
    /// variable must appear in `path`.
    pub upstream: String,
    /// Query parameters forwarded upstream and made part of the topic key (sorted). Others are
    /// ignored. Default: none.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// Who may subscribe: `"none"` (default; warned about on a non-loopback listener), `"jwt"`
    /// (`[auth.jwt]`) or `"forward"` (`[auth.forward]`).
    #[serde(default)]
    pub auth: AuthMode,
}

/// How a route's subscriptions are authorized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone may subscribe.
    #[default]
    None,
    /// A JWT (bearer header or cookie) whose `subscribe` claim matches the path.
    Jwt,
    /// An authorization server decides (as nginx `auth_request`).
    Forward,
}

/// `[upstream]`: origin connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP (and TLS) connect timeout, ms. Default 5000.
    pub connect_timeout_ms: u64,
    /// Reconnect when the origin sends nothing (not even a comment) for this long, ms
    /// (0 disables). Default 90000.
    pub read_idle_timeout_ms: u64,
    /// Extra PEM CA certificates trusted for https origins, besides the system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Smallest reconnect delay, ms. Default 100.
    pub backoff_min_ms: u64,
    /// Largest reconnect delay, ms. Default 30000.
    pub backoff_max_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            read_idle_timeout_ms: 90_000,
            extra_ca_file: None,
            backoff_min_ms: 100,
            backoff_max_ms: 30_000,
        }
    }
}

/// `[replay]`: the per-topic replay buffer; an event leaves it when any bound is exceeded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Events kept per topic, count. Default 1024.
    pub max_events: usize,
    /// Encoded bytes kept per topic. Default 1048576 (1 MiB).
    pub max_bytes: usize,
    /// Age after which an event is dropped, ms. Default 300000 (5 min).
    pub max_age_ms: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_events: 1024,
            max_bytes: 1024 * 1024,
            max_age_ms: 300_000,
        }
    }
}

/// What happens to a subscriber whose cursor fell out of the replay buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagPolicy {
    /// End its stream; the client reconnects with `Last-Event-ID` (default).
    Disconnect,
    /// Skip to the oldest buffered event and go on (the client misses events).
    Skip,
}

/// `[downstream]`: subscriber streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// A comment is sent when a subscriber got nothing for this long, ms. Default 15000.
    pub heartbeat_interval_ms: u64,
    /// `retry:` hint sent at stream start and before the relay ends a stream, ms. Default 2000.
    pub retry_hint_ms: u64,
    /// Lag policy: `"disconnect"` (default) or `"skip"`.
    pub lag_policy: LagPolicy,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 15_000,
            retry_hint_ms: 2_000,
            lag_policy: LagPolicy::Disconnect,
        }
    }
}

/// `[topics]`: topic lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// How long a topic's upstream subscription stays open after its last subscriber left, ms.
    /// Default 5000.
    pub idle_grace_ms: u64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            idle_grace_ms: 5_000,
        }
    }
}

/// `[limits]`: resource bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open downstream connections (all listeners), count. Default 10000.
    pub max_connections: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS per h2 connection, count. Default 256.
    pub max_streams_per_connection: u32,
    /// Largest event accepted from an origin (raw field bytes); larger ones are dropped and
    /// counted, bytes. Default 65536.
    pub max_event_bytes: usize,
    /// TLS handshake deadline, ms. Default 5000.
    pub tls_handshake_timeout_ms: u64,
    /// Deadline for the first request after TLS (h2 preface and HEADERS included), ms.
    /// Default 5000.
    pub first_request_timeout_ms: u64,
    /// Close a connection with no open stream after this long, ms. Default 30000.
    pub idle_connection_timeout_ms: u64,
    /// Streams one connection may open over its life; then it gets GOAWAY and the client opens
    /// a new one, count. Default 10000.
    pub max_streams_per_connection_lifetime: u64,
    /// Open connections from one client IP address, count. Default 512.
    pub max_connections_per_ip: usize,
    /// Budget of bytes held in all replay rings together; past it new subscribers are shed (a
    /// 200 stream with a `retry:` hint that ends at once), bytes. Default 268435456 (256 MiB).
    pub max_buffered_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_streams_per_connection: 256,
            max_event_bytes: 64 * 1024,
            tls_handshake_timeout_ms: 5_000,
            first_request_timeout_ms: 5_000,
            idle_connection_timeout_ms: 30_000,
            max_streams_per_connection_lifetime: 10_000,
            max_connections_per_ip: 512,
            max_buffered_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[cors]`: which other origins' pages may open streams (Fetch standard, CORS protocol).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed `Origin` values (e.g. `https://app.example`), or `"*"` for any. Default: none.
    pub allowed_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (EventSource `withCredentials`). Not
    /// allowed with `"*"`. Default false.
    pub allow_credentials: bool,
}

/// `[demo_origin]`: the built-in demo SSE origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoOriginConfig {
    /// Start it. Default false.
    pub enabled: bool,
    /// Its listen address. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
}

impl Default for DemoOriginConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

/// `[admin]`: the admin listener (plain HTTP, keep it on loopback or a private port).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Its address. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// Distinct topic labels in per-topic metrics before further topics share `other`, count.
    /// Default 100.
    pub max_topic_labels: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_topic_labels: crate::metrics::DEFAULT_MAX_TOPIC_LABELS,
        }
    }
}

/// `[passthrough]`: where requests that match no SSE route go (a streaming reverse proxy).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassthroughConfig {
    /// The default origin, e.g. `http://127.0.0.1:8080`. Default: none (such requests get 404).
    pub upstream: Option<String>,
    /// TCP (and TLS) connect timeout, ms; a failure answers 502. Default 5000.
    pub connect_timeout_ms: u64,
    /// Deadline for the origin's response headers, ms; past it the answer is 504. Default 30000.
    pub response_timeout_ms: u64,
}

impl Default for PassthroughConfig {
    fn default() -> Self {
        Self {
            upstream: None,
            connect_timeout_ms: 5_000,
            response_timeout_ms: 30_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging (the `SSE_RELAY_LOG` environment variable sets the filter, e.g.
/// `info,sse_relay=debug`; `SSE_RELAY_LOG_FORMAT` overrides `format`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `"text"` (default) or `"json"`.
    pub format: LogFormat,
    /// Default filter when `SSE_RELAY_LOG` is unset. Default `"info"`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// Milliseconds to a `Duration`.
pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

impl Config {
    /// Reads, parses and validates `path`, applying `SSE_RELAY__…` environment overrides (see
    /// [`Config::parse_with_env`]).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the key and the reason: unreadable file, TOML syntax,
    /// unknown key, wrong type, bad override, or a value [`Config::validate`] rejects.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse_with_env(&text, path, std::env::vars())
    }

    /// Parses and validates TOML text (no environment overrides); `path` is used in error
    /// messages.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, path, std::iter::empty())
    }

    /// Parses TOML text, applies overrides from `env`, and validates. Every key can be set by a
    /// variable named `SSE_RELAY__` + its path with `__` between parts, case-insensitive:
    /// `SSE_RELAY__SERVER__LISTEN=0.0.0.0:8443`, `SSE_RELAY__ROUTE__0__UPSTREAM=http://…`
    /// (a number selects an array element; one past the end appends a table). The value is
    /// read as a TOML value when it is one (`5000`, `true`, `["a"]`), else as a string.
    ///
    /// # Errors
    /// As [`Config::load`]; a bad override is named by its variable.
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
                    .map_err(|reason| err(format!("env {name}"), reason))?;
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
        config
            .validate()
            .map_err(|(key, reason)| err(key, reason))?;
        Ok(config)
    }

    /// Checks values serde cannot: templates, files, ranges.
    ///
    /// # Errors
    /// `(key, reason)` for the first rejected value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.server;
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => return Err(key("server.tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(key("server.tls_cert", "required with tls_key")),
            _ => {}
        }
        file_exists("server.tls_cert", s.tls_cert.as_deref())?;
        file_exists("server.tls_key", s.tls_key.as_deref())?;
        file_exists(
            "upstream.extra_ca_file",
            self.upstream.extra_ca_file.as_deref(),
        )?;
        if s.drain_timeout_ms <= s.drain_delay_ms + s.drain_window_ms {
            return Err(key(
                "server.drain_timeout_ms",
                "must exceed drain_delay_ms + drain_window_ms",
            ));
        }
        if let Some(url) = &self.passthrough.upstream {
            let uri: Result<http::Uri, _> = url.parse();
            let ok = uri.as_ref().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
            });
            if !ok {
                return Err(key(
                    "passthrough.upstream",
                    "must be an origin like \"http://127.0.0.1:8080\" (no path or query)",
                ));
            }
        }
        positive(
            "passthrough.connect_timeout_ms",
            self.passthrough.connect_timeout_ms,
        )?;
        positive(
            "passthrough.response_timeout_ms",
            self.passthrough.response_timeout_ms,
        )?;
        if s.plaintext_listen == Some(s.listen) && s.listen.port() != 0 {
            return Err(key(
                "server.plaintext_listen",
                "same address as server.listen",
            ));
        }
        if self.routes.is_empty() {
            return Err(key("route", "at least one [[route]] is required"));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let path =
                PathTemplate::parse(&route.path).map_err(|r| (format!("route[{i}].path"), r))?;
            UpstreamTemplate::parse(&route.upstream, &path)
                .map_err(|r| (format!("route[{i}].upstream"), r))?;
            if let Some(j) = self.routes[..i].iter().position(|r| r.path == route.path) {
                return Err((
                    format!("route[{i}].path"),
                    format!("duplicates route[{j}].path"),
                ));
            }
        }
        self.validate_auth()?;
        let u = &self.upstream;
        positive("upstream.connect_timeout_ms", u.connect_timeout_ms)?;
        positive("upstream.backoff_min_ms", u.backoff_min_ms)?;
        if u.backoff_max_ms < u.backoff_min_ms {
            return Err(key("upstream.backoff_max_ms", "must be >= backoff_min_ms"));
        }
        positive("replay.max_events", self.replay.max_events as u64)?;
        positive("replay.max_bytes", self.replay.max_bytes as u64)?;
        positive("replay.max_age_ms", self.replay.max_age_ms)?;
        positive(
            "downstream.heartbeat_interval_ms",
            self.downstream.heartbeat_interval_ms,
        )?;
        let l = &self.limits;
        positive("limits.max_connections", l.max_connections as u64)?;
        positive(
            "limits.max_streams_per_connection",
            u64::from(l.max_streams_per_connection),
        )?;
        positive(
            "limits.tls_handshake_timeout_ms",
            l.tls_handshake_timeout_ms,
        )?;
        if l.max_event_bytes < 16 {
            return Err(key("limits.max_event_bytes", "must be at least 16"));
        }
        positive(
            "server.h2.max_header_list_size",
            u64::from(s.h2.max_header_list_size),
        )?;
        if s.h2.max_send_buf_size < 1024 {
            return Err(key("server.h2.max_send_buf_size", "must be at least 1024"));
        }
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            if origin == "*" {
                if self.cors.allow_credentials {
                    return Err(key(
                        "cors.allow_credentials",
                        "not allowed with allowed_origins = [\"*\"] (Fetch standard)",
                    ));
                }
            } else if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/') != origin
            {
                return Err((
                    format!("cors.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin like \"https://app.example\""),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_auth(&self) -> Result<(), (String, String)> {
        for (i, route) in self.routes.iter().enumerate() {
            let missing = match route.auth {
                AuthMode::Jwt if self.auth.jwt.is_none() => Some("[auth.jwt]"),
                AuthMode::Forward if self.auth.forward.is_none() => Some("[auth.forward]"),
                _ => None,
            };
            if let Some(section) = missing {
                return Err((
                    format!("route[{i}].auth"),
                    format!("needs a {section} section"),
                ));
            }
        }
        if let Some(jwt) = &self.auth.jwt {
            crate::auth::jwt_validation(jwt).map_err(|(k, r)| (format!("auth.jwt.{k}"), r))?;
        }
        if let Some(forward) = &self.auth.forward {
            let ok = forward.url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(key("auth.forward.url", "must be an http(s) URL"));
            }
            positive("auth.forward.timeout_ms", forward.timeout_ms)?;
        }
        Ok(())
    }
}

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SSE_RELAY__";

fn path_error(
    e: serde_path_to_error::Error<toml::de::Error>,
    text: &str,
    err: &impl Fn(String, String) -> ConfigError,
) -> ConfigError {
    let key = e.path().to_string();
    let key = if key == "." { "(file)".into() } else { key };
    err(key, with_position(e.inner(), text))
}

/// The error's message, with its line and column when it has a position.
fn with_position(e: &toml::de::Error, text: &str) -> String {
    let mut reason = e.message().trim().replace('\n', " ");
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        reason.push_str(&format!(" (line {line}, column {column})"));
    }
    reason
}

/// Sets the key named by an `SSE_RELAY__A__B` variable in `table`.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if parts.iter().any(String::is_empty) {
        return Err("empty key part (use __ only between parts)".into());
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = parts.split_last().expect("at least one part");
    let mut node = table;
    let mut iter = parents.iter().peekable();
    while let Some(part) = iter.next() {
        let next_is_index = iter.peek().is_some_and(|p| p.parse::<usize>().is_ok());
        let slot = node
            .entry(part.clone())
            .or_insert_with(|| empty_container(next_is_index));
        node = match slot {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let index: usize = iter
                    .next()
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| format!("{part} is a list: give an index after it"))?;
                let len = items.len();
                if index == len {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                match items.get_mut(index) {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => return Err(format!("{part}[{index}] is not a table")),
                    None => return Err(format!("{part} has {len} entries")),
                }
            }
            _ => return Err(format!("{part} is not a table")),
        };
    }
    node.insert(last.clone(), value);
    Ok(())
}

fn empty_container(array: bool) -> toml::Value {
    if array {
        toml::Value::Array(Vec::new())
    } else {
        toml::Value::Table(toml::Table::new())
    }
}

fn key(key: &str, reason: &str) -> (String, String) {
    (key.to_string(), reason.to_string())
}

fn positive(name: &str, value: u64) -> Result<(), (String, String)> {
    if value == 0 {
        return Err(key(name, "must be greater than 0"));
    }
    Ok(())
}

fn file_exists(name: &str, path: Option<&Path>) -> Result<(), (String, String)> {
    match path {
        Some(p) if !p.is_file() => Err((
            name.to_string(),
            format!("file {} does not exist or is not a file", p.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("relay.toml"))
    }

    const ROUTE: &str =
        "[[route]]\npath = \"/events/{topic}\"\nupstream = \"http://127.0.0.1:8081/sub/{topic}\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(ROUTE).expect("valid");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.replay.max_events, 1024);
        assert_eq!(c.downstream.lag_policy, LagPolicy::Disconnect);
        assert!(!c.demo_origin.enabled);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse(&format!("{ROUTE}[server]\nlisten_addr = \"x\"\n")).unwrap_err();
        assert_eq!(e.key, "server.listen_addr");
        assert!(e.reason.contains("listen_addr"), "{e}");
    }

    #[test]
    fn bad_address_is_named() {
        let e = parse(&format!("{ROUTE}[server]\nlisten = \"nowhere\"\n")).unwrap_err();
        assert_eq!(e.key, "server.listen");
    }

    #[test]
    fn template_variable_must_be_in_path() {
        let e = parse("[[route]]\npath = \"/e/{topic}\"\nupstream = \"http://o/{room}\"\n")
            .unwrap_err();
        assert_eq!(e.key, "route[0].upstream");
        assert!(e.reason.contains("room"), "{e}");
    }

    #[test]
    fn cert_without_key_is_rejected() {
        let e = parse(&format!("{ROUTE}[server]\ntls_cert = \"/nonexistent\"\n")).unwrap_err();
        assert_eq!(e.key, "server.tls_key");
    }

    #[test]
    fn missing_cert_file_is_rejected() {
        let e = parse(&format!(
            "{ROUTE}[server]\ntls_cert = \"/nonexistent.crt\"\ntls_key = \"/nonexistent.key\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "server.tls_cert");
    }

    #[test]
    fn zero_and_inverted_ranges_are_rejected() {
        let e = parse(&format!("{ROUTE}[replay]\nmax_events = 0\n")).unwrap_err();
        assert_eq!(e.key, "replay.max_events");
        let e = parse(&format!(
            "{ROUTE}[upstream]\nbackoff_min_ms = 500\nbackoff_max_ms = 10\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstream.backoff_max_ms");
    }

    #[test]
    fn bad_lag_policy_is_named() {
        let e = parse(&format!("{ROUTE}[downstream]\nlag_policy = \"queue\"\n")).unwrap_err();
        assert_eq!(e.key, "downstream.lag_policy");
    }

    #[test]
    fn cors_wildcard_with_credentials_is_rejected() {
        let e = parse(&format!(
            "{ROUTE}[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "cors.allow_credentials");
    }

    fn with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse_with_env(
            text,
            Path::new("relay.toml"),
            env.collect::<Vec<_>>().into_iter(),
        )
    }

    #[test]
    fn environment_overrides_any_key() {
        let c = with_env(
            ROUTE,
            &[
                ("SSE_RELAY__SERVER__LISTEN", "0.0.0.0:9443"),
                ("SSE_RELAY__REPLAY__MAX_EVENTS", "7"),
                ("SSE_RELAY__ROUTE__0__QUERY_PARAMS", "[\"lang\"]"),
                ("SSE_RELAY__ROUTE__1__PATH", "/other/{t}"),
                ("SSE_RELAY__ROUTE__1__UPSTREAM", "http://o/{t}"),
                ("SSE_RELAY_LOG", "debug"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9443");
        assert_eq!(c.replay.max_events, 7);
        assert_eq!(c.routes[0].query_params, ["lang"]);
        assert_eq!(c.routes[1].upstream, "http://o/{t}");
    }

    #[test]
    fn bad_environment_override_is_named() {
        let e = with_env(ROUTE, &[("SSE_RELAY__REPLAY__MAX_EVENTS", "many")]).unwrap_err();
        assert_eq!(e.key, "replay.max_events");
        assert!(e.reason.contains("environment"), "{e}");
        let e = with_env(ROUTE, &[("SSE_RELAY__ROUTE__5__PATH", "/x")]).unwrap_err();
        assert_eq!(e.key, "env SSE_RELAY__ROUTE__5__PATH");
    }

    #[test]
    fn drain_timeout_must_cover_delay_and_window() {
        let e = parse(&format!("{ROUTE}[server]\ndrain_timeout_ms = 1000\n")).unwrap_err();
        assert_eq!(e.key, "server.drain_timeout_ms");
    }

    #[test]
    fn passthrough_upstream_must_be_an_origin() {
        let e = parse(&format!(
            "{ROUTE}[passthrough]\nupstream = \"http://o/app\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "passthrough.upstream");
    }

    #[test]
    fn auth_backends_are_validated() {
        let jwt_route =
            "[[route]]\npath = \"/e/{t}\"\nupstream = \"http://o/{t}\"\nauth = \"jwt\"\n";
        let e = parse(jwt_route).unwrap_err();
        assert_eq!(e.key, "route[0].auth");
        assert_eq!(e.reason, "needs a [auth.jwt] section");
        let e = parse(&format!(
            "{jwt_route}[auth.jwt]\nalgorithms = [\"HS999\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "auth.jwt.algorithms");
        let e = parse(&format!(
            "{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "auth.jwt.secret_file");
        let short =
            std::env::temp_dir().join(format!("sse-relay-short-{}.key", std::process::id()));
        std::fs::write(&short, b"short").unwrap();
        let e = parse(&format!(
            "{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\n",
            short.display().to_string()
        ))
        .unwrap_err();
        assert!(e.reason.contains("32 bytes"), "{e}");
        let mixed = format!("{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\", \"RS256\"]\n");
        let e = parse(&mixed).unwrap_err();
        assert!(e.reason.contains("mixes"), "{e}");
        let fwd = jwt_route.replace("\"jwt\"", "\"forward\"");
        let e = parse(&format!("{fwd}[auth.forward]\nurl = \"ftp://x\"\n")).unwrap_err();
        assert_eq!(e.key, "auth.forward.url");
    }

    #[test]
    fn no_route_is_rejected() {
        let e = parse("").unwrap_err();
        assert_eq!(e.key, "route");
    }
}
