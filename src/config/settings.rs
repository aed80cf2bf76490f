//! The validated settings: [`Settings`] is built once from the raw [`Config`] (`TryFrom`), and
//! every check serde cannot make happens here, while building (templates, files, ranges,
//! combinations), each rejection naming its key. What the components take is built here too
//! (compiled router, JWT verifier with its key read, backoff, resolved `always_on` topics), so
//! nothing downstream parses or checks configuration again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

use super::issue::{file_exists, ms, positive, ConfigIssue};
use super::{Config, H2Config, LogConfig};
use crate::edge::EdgeSettings;
use crate::hub::{CatchUpSettings, HubSettings, RingLimits};
use crate::server::proxy_protocol::ProxyProtocol;
use crate::server::tls::ClientIdentity;
use crate::server::{ConnectionLimits, H2Settings, ServerSettings};
use crate::upstream::{Backoff, UpstreamSettings};

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, watched for changes every `reload_interval` (`None`: never).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
        /// How often the files are checked.
        reload_interval: Option<Duration>,
    },
    /// A self-signed development certificate generated at start, written into `dir`.
    Dev {
        /// Where `cert.pem` is written.
        dir: PathBuf,
    },
}

/// The addresses to bind.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    /// The TLS listener (h2 and HTTP/1.1 by ALPN).
    pub tls: SocketAddr,
    /// The plaintext listener (HTTP/1.1 and h2c), if any.
    pub plaintext: Option<SocketAddr>,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The demo origin's listener, when enabled.
    pub demo_origin: Option<SocketAddr>,
}

/// The phases of a drain after SIGTERM.
#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    /// Keep serving this long with `/readyz` failing.
    pub delay: Duration,
    /// Then end SSE streams spread over this window.
    pub window: Duration,
    /// After the window, how long request streams are still read for viewers that moved to
    /// another relay of the cluster (what `server.drain_timeout_ms` leaves after the delay
    /// and the window).
    pub streams_after: Duration,
}

/// Everything the relay is built from, validated.
pub struct Settings {
    /// The addresses to bind.
    pub listeners: Listeners,
    /// The server certificate's source.
    pub tls: TlsSource,
    /// Extra CA certificates trusted for https origins and authorization servers.
    pub extra_ca_file: Option<PathBuf>,
    /// The client certificate presented to https origins of SSE routes (mutual TLS).
    pub upstream_identity: Option<ClientIdentity>,
    /// Connection handling of the listeners.
    pub server: ServerSettings,
    /// The PROXY protocol on the relay's client listeners (not admin), when enabled.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Cluster mode, when peers are configured.
    pub cluster: Option<super::ClusterSetup>,
    /// The drain phases.
    pub drain: DrainSettings,
    /// Topics and their rings.
    pub hub: HubSettings,
    /// The hub of request streams (`None`: no `[[stream_route]]`).
    pub stream_hub: Option<HubSettings>,
    /// Origin subscriptions.
    pub upstream: UpstreamSettings,
    /// Routes, auth, CORS, passthrough, subscriber frames.
    pub edge: EdgeSettings,
    /// Distinct topic labels in per-topic metrics, count.
    pub max_topic_labels: usize,
    /// `admin.token_file`'s token, which the admin pages that show topics require.
    pub admin_token: Option<crate::admin::AdminToken>,
    /// `admin.tail_private`: the status page may tail per-user topics.
    pub admin_tail_private: bool,
    /// Logging.
    pub log: LogConfig,
    /// Route paths that let anyone subscribe on a listener that is not loopback (warned about
    /// at start).
    pub open_routes: Vec<String>,
}

impl TryFrom<Config> for Settings {
    type Error = ConfigIssue;

    /// Validates `config` and builds the settings; the first rejected value is the error
    /// (sections are checked in a fixed order, so the error for a given file is always the
    /// same).
    fn try_from(config: Config) -> Result<Self, ConfigIssue> {
        let tls = tls_source(&config)?;
        file_exists(
            "upstream.extra_ca_file",
            config.upstream.extra_ca_file.as_deref(),
        )?;
        let upstream_identity = upstream_identity(&config)?;
        let drain = drain(&config)?;
        let passthrough = super::routes::passthrough(&config.passthrough)?;
        let listeners = listeners(&config)?;
        let router = super::routes::router(
            &config.routes,
            config.limits.max_topic_variable_bytes,
            !config.stream_routes.is_empty(),
        )?;
        let streams = super::streams::settings(&config, &router)?;
        let (streams, stream_hub) = streams.unzip();
        let auth = super::routes::auth(&config)?;
        let always_on = super::routes::always_on(&config.topics.always_on, &router)?;
        let upstream = upstream(&config)?;
        positive("limits.max_hops", u64::from(config.limits.max_hops))?;
        let hub = hub(&config)?;
        let server = server(&config)?;
        let cors = super::routes::cors(&config.cors)?;
        let proxy_protocol = super::proxy_protocol::settings(&config.server)?;
        let cluster = super::cluster::setup(&config.cluster)?;
        let admin_token = super::admin::token(&config.admin)?;
        let edge = EdgeSettings {
            router,
            always_on,
            auth,
            cors,
            passthrough,
            retry_hint_ms: config.downstream.retry_hint_ms,
            gap_event: gap_event(&config.downstream.gap_event)?,
            lag_policy: config.downstream.lag_policy,
            hsts: hsts(config.server.hsts_max_age_s),
            origin_answer_wait: upstream.connect_timeout * 2,
            max_hops: config.limits.max_hops,
            streams,
        };
        Ok(Settings {
            listeners,
            tls,
            extra_ca_file: config.upstream.extra_ca_file.clone(),
            upstream_identity,
            server,
            proxy_protocol,
            cluster,
            drain,
            hub,
            stream_hub,
            upstream,
            edge,
            max_topic_labels: config.admin.max_topic_labels,
            admin_token,
            admin_tail_private: config.admin.tail_private,
            open_routes: open_routes(&config),
            log: config.log,
        })
    }
}

/// The addresses to bind; `server.plaintext_listen` must differ from `server.listen` (unless
/// both ask for any free port).
fn listeners(config: &Config) -> Result<Listeners, ConfigIssue> {
    let s = &config.server;
    if s.plaintext_listen == Some(s.listen) && s.listen.port() != 0 {
        return Err(ConfigIssue::new(
            "server.plaintext_listen",
            "same address as server.listen",
        ));
    }
    Ok(Listeners {
        tls: s.listen,
        plaintext: s.plaintext_listen,
        admin: config.admin.listen,
        demo_origin: config
            .demo_origin
            .enabled
            .then_some(config.demo_origin.listen),
    })
}

/// `server.hsts_max_age_s`: the `Strict-Transport-Security` value (RFC 6797 §6.1), `None` at 0.
fn hsts(max_age_s: u64) -> Option<HeaderValue> {
    (max_age_s > 0).then(|| {
        HeaderValue::from_str(&format!("max-age={max_age_s}"))
            .expect("digits are a valid header value")
    })
}

/// Paths of routes anyone may subscribe to (`auth = "none"`) when a client listener is not
/// on loopback: warned about at start.
fn open_routes(config: &Config) -> Vec<String> {
    let s = &config.server;
    let exposed = std::iter::once(s.listen)
        .chain(s.plaintext_listen)
        .any(|addr| !addr.ip().is_loopback());
    config
        .routes
        .iter()
        .filter(|r| exposed && r.auth == crate::edge::auth::AuthMode::None)
        .map(|r| r.path.clone())
        .collect()
}

/// `downstream.gap_event`: an event type (no line breaks; it is written as an `event:` field).
fn gap_event(value: &str) -> Result<String, ConfigIssue> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ConfigIssue::new(
            "downstream.gap_event",
            "must not contain line breaks or NUL",
        ));
    }
    Ok(value.to_string())
}

/// `upstream.client_cert_file` and `client_key_file`: both or neither, both existing (their
/// PEM is parsed when the relay starts, before it binds).
fn upstream_identity(config: &Config) -> Result<Option<ClientIdentity>, ConfigIssue> {
    let u = &config.upstream;
    file_exists("upstream.client_cert_file", u.client_cert_file.as_deref())?;
    file_exists("upstream.client_key_file", u.client_key_file.as_deref())?;
    match (&u.client_cert_file, &u.client_key_file) {
        (Some(cert), Some(key)) => Ok(Some(ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (Some(_), None) => Err(ConfigIssue::new(
            "upstream.client_key_file",
            "required with client_cert_file",
        )),
        (None, Some(_)) => Err(ConfigIssue::new(
            "upstream.client_cert_file",
            "required with client_key_file",
        )),
        (None, None) => Ok(None),
    }
}

fn tls_source(config: &Config) -> Result<TlsSource, ConfigIssue> {
    let s = &config.server;
    match (&s.tls_cert, &s.tls_key) {
        (Some(_), None) => {
            return Err(ConfigIssue::new("server.tls_key", "required with tls_cert"))
        }
        (None, Some(_)) => {
            return Err(ConfigIssue::new("server.tls_cert", "required with tls_key"))
        }
        _ => {}
    }
    file_exists("server.tls_cert", s.tls_cert.as_deref())?;
    file_exists("server.tls_key", s.tls_key.as_deref())?;
    Ok(match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval: (s.tls_reload_interval_ms > 0).then(|| ms(s.tls_reload_interval_ms)),
        },
        _ => TlsSource::Dev {
            dir: s
                .dev_cert_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("sse-relay-dev")),
        },
    })
}

fn drain(config: &Config) -> Result<DrainSettings, ConfigIssue> {
    let s = &config.server;
    if s.drain_timeout_ms <= s.drain_delay_ms + s.drain_window_ms {
        return Err(ConfigIssue::new(
            "server.drain_timeout_ms",
            "must exceed drain_delay_ms + drain_window_ms",
        ));
    }
    Ok(DrainSettings {
        delay: ms(s.drain_delay_ms),
        window: ms(s.drain_window_ms),
        streams_after: ms(s.drain_timeout_ms - s.drain_delay_ms - s.drain_window_ms),
    })
}

fn upstream(config: &Config) -> Result<UpstreamSettings, ConfigIssue> {
    let u = &config.upstream;
    positive("upstream.connect_timeout_ms", u.connect_timeout_ms)?;
    positive("upstream.backoff_min_ms", u.backoff_min_ms)?;
    let backoff = Backoff::try_new(ms(u.backoff_min_ms), ms(u.backoff_max_ms))
        .map_err(|_| ConfigIssue::new("upstream.backoff_max_ms", "must be >= backoff_min_ms"))?;
    let l = &config.limits;
    if l.max_event_bytes < 16 {
        return Err(ConfigIssue::new(
            "limits.max_event_bytes",
            "must be at least 16",
        ));
    }
    if l.max_event_bytes > config.replay.max_bytes {
        return Err(ConfigIssue::new(
            "limits.max_event_bytes",
            format!(
                "must not exceed replay.max_bytes ({}): the largest event must fit the replay buffer",
                config.replay.max_bytes
            ),
        ));
    }
    Ok(UpstreamSettings {
        connect_timeout: ms(u.connect_timeout_ms),
        read_idle_timeout: (u.read_idle_timeout_ms > 0).then(|| ms(u.read_idle_timeout_ms)),
        backoff,
        max_event_bytes: l.max_event_bytes,
    })
}

fn hub(config: &Config) -> Result<HubSettings, ConfigIssue> {
    let r = &config.replay;
    positive("replay.max_events", r.max_events as u64)?;
    positive("replay.max_bytes", r.max_bytes as u64)?;
    positive("replay.max_age_ms", r.max_age_ms)?;
    positive(
        "downstream.heartbeat_interval_ms",
        config.downstream.heartbeat_interval_ms,
    )?;
    Ok(HubSettings {
        ring: RingLimits {
            max_events: r.max_events,
            max_bytes: r.max_bytes,
            max_age: ms(r.max_age_ms),
        },
        idle_grace: ms(config.topics.idle_grace_ms),
        origin_closed_ttl: ms(config.topics.origin_closed_ttl_ms),
        origin_error_ttl: ms(config.topics.origin_error_ttl_ms),
        heartbeat_interval: ms(config.downstream.heartbeat_interval_ms),
        max_buffered_bytes: config.limits.max_buffered_bytes,
        max_topics: config.limits.max_topics,
        max_topics_per_client: topics_per_client(&config.limits)?,
        catch_up: catch_up(config)?,
        compression: super::compression::settings(config)?,
    })
}

/// `limits.max_topics_per_client_percent` of `limits.max_topics`, at least one topic.
fn topics_per_client(limits: &super::sections::LimitsConfig) -> Result<usize, ConfigIssue> {
    let percent = limits.max_topics_per_client_percent;
    if !(1..=100).contains(&percent) {
        return Err(ConfigIssue::new(
            "limits.max_topics_per_client_percent",
            format!("must be 1 to 100 (a share of limits.max_topics), got {percent}"),
        ));
    }
    Ok((limits.max_topics * percent as usize / 100).max(1))
}

fn catch_up(config: &Config) -> Result<CatchUpSettings, ConfigIssue> {
    let r = &config.replay;
    if r.catch_up {
        positive("replay.catch_up_timeout_ms", r.catch_up_timeout_ms)?;
        positive(
            "replay.catch_up_max_per_topic",
            r.catch_up_max_per_topic as u64,
        )?;
        positive("replay.catch_up_max_total", r.catch_up_max_total as u64)?;
        if r.catch_up_max_bytes < config.limits.max_event_bytes {
            return Err(ConfigIssue::new(
                "replay.catch_up_max_bytes",
                format!(
                    "{} is less than limits.max_event_bytes ({}): a catch-up must hold the largest event",
                    r.catch_up_max_bytes, config.limits.max_event_bytes
                ),
            ));
        }
    }
    Ok(CatchUpSettings {
        enabled: r.catch_up,
        timeout: ms(r.catch_up_timeout_ms),
        max_bytes: r.catch_up_max_bytes,
        max_per_topic: r.catch_up_max_per_topic,
        max_total: r.catch_up_max_total,
    })
}

/// The listeners' connection handling: connection and stream caps, timeouts, and h2.
fn server(config: &Config) -> Result<ServerSettings, ConfigIssue> {
    let l = &config.limits;
    let s = &config.server;
    positive("limits.max_connections", l.max_connections as u64)?;
    positive(
        "limits.max_streams_per_connection",
        u64::from(l.max_streams_per_connection),
    )?;
    positive(
        "limits.tls_handshake_timeout_ms",
        l.tls_handshake_timeout_ms,
    )?;
    Ok(ServerSettings {
        h2: h2(&s.h2)?,
        max_streams_per_connection: l.max_streams_per_connection,
        tls_handshake_timeout: ms(l.tls_handshake_timeout_ms),
        max_connections: l.max_connections,
        max_connections_per_ip: (l.max_connections_per_ip > 0).then_some(l.max_connections_per_ip),
        connection: ConnectionLimits {
            first_request_timeout: ms(l.first_request_timeout_ms),
            idle_timeout: ms(l.idle_connection_timeout_ms),
            max_streams_lifetime: l.max_streams_per_connection_lifetime,
            close_grace: ms(l.close_grace_ms),
        },
        drain_timeout: ms(s.drain_timeout_ms - s.drain_delay_ms),
    })
}

/// `server.h2`: the h2 settings, each within what RFC 9113 allows.
fn h2(h2: &H2Config) -> Result<H2Settings, ConfigIssue> {
    positive(
        "server.h2.max_header_list_size",
        u64::from(h2.max_header_list_size),
    )?;
    if h2.max_send_buf_size < 1024 {
        return Err(ConfigIssue::new(
            "server.h2.max_send_buf_size",
            "must be at least 1024",
        ));
    }
    h2_windows(h2)?;
    Ok(H2Settings {
        max_pending_accept_reset_streams: h2.max_pending_accept_reset_streams,
        max_local_error_reset_streams: h2.max_local_error_reset_streams,
        max_header_list_size: h2.max_header_list_size,
        header_table_size: h2.header_table_size,
        keep_alive_interval: (h2.keep_alive_interval_ms > 0).then(|| ms(h2.keep_alive_interval_ms)),
        keep_alive_timeout: ms(h2.keep_alive_timeout_ms),
        max_send_buf_size: h2.max_send_buf_size,
        initial_stream_window_size: h2.initial_stream_window_size,
        initial_connection_window_size: h2.initial_connection_window_size,
        max_frame_size: h2.max_frame_size,
    })
}

/// The flow-control windows and the frame size. RFC 9113 §6.5.2 and §6.9.1: a window above
/// 2^31-1 is a FLOW_CONTROL_ERROR, a frame size outside 2^14..=2^24-1 a PROTOCOL_ERROR. The
/// connection window starts at 65535 and can only grow (§6.9.2), so a smaller value would not
/// be what a client gets. A stream window of 0 is legal but would stall every upload: refused
/// here, the project's own rule.
fn h2_windows(h2: &H2Config) -> Result<(), ConfigIssue> {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    if !(1..=MAX_WINDOW).contains(&h2.initial_stream_window_size) {
        return Err(ConfigIssue::new(
            "server.h2.initial_stream_window_size",
            "must be between 1 and 2147483647",
        ));
    }
    if !(65_535..=MAX_WINDOW).contains(&h2.initial_connection_window_size) {
        return Err(ConfigIssue::new(
            "server.h2.initial_connection_window_size",
            "must be between 65535 (the window every connection starts with, RFC 9113 §6.9.2) and 2147483647",
        ));
    }
    if !(16_384..=16_777_215).contains(&h2.max_frame_size) {
        return Err(ConfigIssue::new(
            "server.h2.max_frame_size",
            "must be between 16384 and 16777215",
        ));
    }
    Ok(())
}
