//! The config sections: one serde struct per TOML table, every field documented with its unit
//! and default.
//!
//! These are the raw model only: nothing here validates a value or combines sections (that is
//! [`super::settings`]'s), and no component takes these structs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

mod auth;
mod cluster;
mod compression;
mod h2;
mod streams;

pub use crate::downstream::LagPolicy;
pub use crate::edge::auth::{AuthMode, AuthUnavailable};
pub use auth::{AuthConfig, ForwardAuthConfig, JwtConfig};
pub use cluster::ClusterConfig;
pub use compression::CompressionConfig;
pub use h2::H2Config;
pub use streams::{OnDisconnect, StreamProtocol, StreamRouteConfig, StreamsConfig};

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
    /// Expect a PROXY protocol header (v1 or v2, haproxy.org `proxy-protocol.txt`) first on
    /// every connection of `listen` and `plaintext_listen`, before TLS or HTTP; its declared
    /// client address is used for the per-IP cap, logs, `X-Forwarded-For` and forward auth.
    /// A connection without a valid header is closed and counted. Default false: a relay not
    /// behind a balancer that sends the header would otherwise refuse every client.
    pub proxy_protocol: bool,
    /// Who may send the header: CIDRs (`"10.0.0.0/8"`) or addresses of the balancers; other
    /// peers are refused. Needs `proxy_protocol = true`. Default: none (any peer).
    pub proxy_protocol_from: Vec<String>,
    /// The header must be complete this long after accept, else the connection is closed, ms.
    /// Default 5000 (as `limits.tls_handshake_timeout_ms`; a balancer sends it at once).
    pub proxy_protocol_timeout_ms: u64,
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
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            proxy_protocol_timeout_ms: 5_000,
            h2: H2Config::default(),
        }
    }
}

/// `[[route]]`: one SSE route (`Default`: empty templates, to be filled in).
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// `[route.upstream_headers]`: headers sent to the origin on this route's upstream
    /// requests (an API key, a service token), by name: a literal (`X-Api-Key = "k-123"`) or a
    /// file's whole contents, trimmed (`Authorization = { file = "/run/secrets/origin-auth" }`),
    /// re-read when the file changes. Names the relay sets itself (Host, Accept,
    /// Last-Event-ID, …) are refused; `Accept-Encoding` replaces the codings the relay offers
    /// (e.g. `"identity"`). Client headers are never forwarded. Default: none.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, HeaderSetting>,
    /// The hosts an upstream with a variable in its host (`http://{tenant}.api.example/sub`)
    /// may take, exact names, e.g. `["a.api.example", "b.api.example"]`. Required for such an
    /// upstream: without it a client would choose the host the relay connects to (`127.1`,
    /// `localhost`, an internal service), a server-side request forgery. A request whose
    /// rendered host is not listed is answered 404 and reaches no host. Default: none (the
    /// upstream's host must then be fixed).
    #[serde(default)]
    pub upstream_hosts: Vec<String>,
}

/// One header of `[route.upstream_headers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderSetting {
    /// The value itself.
    Literal(String),
    /// The whole contents of a file (trimmed of surrounding whitespace).
    File {
        /// The file, e.g. a mounted Kubernetes Secret.
        file: PathBuf,
    },
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
    /// PEM certificate chain the relay presents to https origins that ask for one (mutual
    /// TLS); needs `client_key_file`. Default: none.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`. Default: none.
    pub client_key_file: Option<PathBuf>,
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
            client_cert_file: None,
            client_key_file: None,
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
    /// Encoded bytes kept per topic; at least `limits.max_event_bytes`, so the largest event
    /// accepted fits the ring. Default 4194304 (4 MiB: four events of the largest size; rings of
    /// small events are bounded by `max_events` long before).
    pub max_bytes: usize,
    /// Age after which an event is dropped, ms. Default 300000 (5 min).
    pub max_age_ms: u64,
    /// Origin-assisted catch-up: a client resuming from an id the buffer no longer (or never)
    /// held gets what it missed from a one-off upstream request with that id, then joins
    /// live; without it (or when the origin cannot replay) it gets the gap signal. Default
    /// true: an origin that replays (nchan, Mercure, most SSE servers) loses nothing.
    pub catch_up: bool,
    /// Longest a catch-up may take to meet the buffer, ms; its subscriber gets heartbeats
    /// meanwhile, then the gap signal. Default 10000 (a replay of thousands of events from a
    /// healthy origin takes well under a second).
    pub catch_up_timeout_ms: u64,
    /// Replayed bytes one catch-up may hold before it meets the buffer; at least
    /// `limits.max_event_bytes`. Default 8388608 (8 MiB: twice the default buffer).
    pub catch_up_max_bytes: usize,
    /// Catch-ups (distinct ids; clients resuming from the same id share one) under way per
    /// topic at once, count. Default 4: after an outage most clients resume from the same
    /// few ids.
    pub catch_up_max_per_topic: usize,
    /// Catch-ups under way in the relay at once, count. Default 64 (at most 512 MiB of
    /// replayed bytes at the default byte bound).
    pub catch_up_max_total: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_events: 1024,
            max_bytes: 4 * 1024 * 1024,
            max_age_ms: 300_000,
            catch_up: true,
            catch_up_timeout_ms: 10_000,
            catch_up_max_bytes: 8 * 1024 * 1024,
            catch_up_max_per_topic: 4,
            catch_up_max_total: 64,
        }
    }
}

/// `[downstream]`: subscriber streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// A comment is sent when a subscriber got nothing for this long, ms. Default 15000.
    pub heartbeat_interval_ms: u64,
    /// The relay's own `retry:` hint, ms: sent at a stream's start only where the topic's origin
    /// set no `retry:` (the origin's reconnection time is its own, WHATWG HTML §9.2.6), and
    /// right before the relay itself ends a stream (drain, lag policy, an expiring credential)
    /// so the client reconnects promptly, to another replica. Default 2000.
    pub retry_hint_ms: u64,
    /// Lag policy: `"disconnect"` (default) or `"skip"`.
    pub lag_policy: LagPolicy,
    /// Event type of the in-band gap signal, sent right before the next event when a
    /// subscriber's stream has a hole the relay cannot fill (it resumed from an id no longer
    /// buffered, or skipped ahead after lagging); its data is JSON
    /// `{"last_event_id":…,"next_event_id":…}`; empty: not sent. Default `"sse-relay-gap"`:
    /// a browser dispatches it only to `addEventListener("sse-relay-gap", …)`, never to
    /// `onmessage`, so pages that do not listen are unaffected and pages that do can refetch
    /// state.
    pub gap_event: String,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 15_000,
            retry_hint_ms: 2_000,
            lag_policy: LagPolicy::Disconnect,
            gap_event: "sse-relay-gap".into(),
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
    /// After an origin ends a topic with `204 No Content`, new subscribers of that topic are
    /// answered 204 for this long (so browsers stop reconnecting, WHATWG HTML §9.2.3) instead of
    /// reopening the upstream each time, ms; 0 turns it off. Default 10000.
    pub origin_closed_ttl_ms: u64,
    /// After an origin refuses a topic for good (401, 403, 404, 410 and any other status but
    /// 200, 204, 5xx, 408 and 429, e.g. 205 or a 3xx not followed; a redirect the relay will
    /// not follow; answers that are not an event stream), new
    /// subscribers of that topic get the same answer for this long without a new upstream
    /// request, ms; 0 turns it off. Default 10000: a browser whose stream ends reconnects after
    /// a few seconds and must meet the refusal, not open the upstream again (one origin request
    /// per topic per 10 s at most, however many clients retry).
    pub origin_error_ttl_ms: u64,
    /// Request paths (with the route's query parameters, if any) of topics opened at start and
    /// kept open without subscribers until the origin closes them (204) or the relay drains, so
    /// their replay buffers are warm when the first client comes, e.g. `["/events/clock"]`. Each
    /// must match a `[[route]]`. Default: none.
    pub always_on: Vec<String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            idle_grace_ms: 5_000,
            origin_closed_ttl_ms: 10_000,
            origin_error_ttl_ms: 10_000,
            always_on: Vec::new(),
        }
    }
}

/// `[limits]`: resource bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open downstream connections (all listeners), count. Default 10000.
    pub max_connections: usize,
    /// Relays a subscription may have passed through (listed in its `sse-relay-hops` header,
    /// to which each relay adds its own id upstream); a request listing this many, or listing
    /// this relay itself (a loop: a route whose upstream leads back to it), is answered 508 Loop
    /// Detected, which the relay before passes on as final. Default 8: far above any real
    /// tiering (edge → regional → origin, plus one cluster hop each).
    pub max_hops: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS per h2 connection, count. Default 256.
    pub max_streams_per_connection: u32,
    /// Largest event accepted from an origin (raw field bytes); larger ones are dropped (their
    /// id still passes), counted and warned about, bytes. Default 1048576 (1 MiB): an ordinary
    /// large event such as an initial state snapshot must pass, as it would reach a browser
    /// talking to the origin directly; the limit only bounds what one hostile or broken origin
    /// stream can make the relay hold. Must not exceed `replay.max_bytes`.
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
    /// After a watchdog's GOAWAY (idle, stream lifetime cap), close the connection at the
    /// latest this long after, ms: enough for a client to finish reading what is in flight and
    /// move its requests to a new connection, short enough that a client ignoring GOAWAY cannot
    /// pin it. Default 5000.
    pub close_grace_ms: u64,
    /// Open connections from one client IP address, count; 0 (default): no per-IP cap. Many
    /// legitimate clients share one address (NAT, corporate proxies, a Kubernetes Service that
    /// SNATs to the node IP), and nginx and Envoy have no such cap unless configured, so a
    /// default cap would refuse real users; `max_connections` still bounds the total. Set it
    /// when clients reach the relay with their own addresses and one host must not take many.
    pub max_connections_per_ip: usize,
    /// Budget of bytes held in all replay rings together; past it new subscribers are shed (a
    /// 200 stream with a `retry:` hint that ends at once), bytes. Default 268435456 (256 MiB).
    pub max_buffered_bytes: usize,
    /// Topics open at once (each holds an upstream connection and a ring); past it subscribers
    /// of new topics are shed like over the buffer budget, count. Default 10000.
    pub max_topics: usize,
    /// Share of `max_topics` that one client may hold open at once, percent (1 to 100; 100:
    /// no per-client budget). A client is its address (an IPv6 address by its /64, which one
    /// host usually holds whole), or on a route with JWT auth the token's `sub`; joining a
    /// topic that is open already costs nothing. Past its budget, that client's subscribers of
    /// new topics are shed like past `max_topics`, and everyone else still opens topics.
    /// Default 50: one client can never take every topic, while many honest users behind one
    /// NAT still open thousands (5000 at the default cap).
    pub max_topics_per_client_percent: u32,
    /// Longest value a route variable (`{topic}`) may take, decoded, bytes; a longer one is
    /// answered 414 URI Too Long (RFC 9110 §15.5.15) and counted
    /// (`sse_relay_requests_rejected_total{reason="variable_too_long"}`). Default 1024
    /// (1 KiB): far above any real topic name, while a topic's key is held several times over
    /// (registry, topic, label, upstream URL) for as long as it is open, so a 16 KiB name cost
    /// about 130 KB per topic; the key's bytes also count in `max_buffered_bytes`.
    pub max_topic_variable_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_hops: 8,
            max_streams_per_connection: 256,
            max_event_bytes: 1024 * 1024,
            tls_handshake_timeout_ms: 5_000,
            first_request_timeout_ms: 5_000,
            idle_connection_timeout_ms: 30_000,
            max_streams_per_connection_lifetime: 10_000,
            close_grace_ms: 5_000,
            max_connections_per_ip: 0,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_topics: 10_000,
            max_topics_per_client_percent: 50,
            max_topic_variable_bytes: 1024,
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
    /// A file holding a bearer token (its content, trimmed; read once at start) that `/topics`,
    /// `/stats`, `/history`, `/history/stream` and `/tail` (what the status page reads) then
    /// require as `Authorization: Bearer <token>`; the page itself (no data), `/metrics`,
    /// `/healthz` and `/readyz` stay open. Default: none, every path open, as
    /// the listener is on loopback by default (docs/security.md, "The admin port").
    pub token_file: Option<PathBuf>,
    /// Whether the status page may tail a per-user topic (one whose upstream takes a user's
    /// claims), whose events are that user's. Default false: such topics are listed with their
    /// claims hashed and their events are not shown (docs/security.md, "The admin port").
    pub tail_private: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_topic_labels: crate::hub::DEFAULT_MAX_TOPIC_LABELS,
            token_file: None,
            tail_private: false,
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
