//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (liveness), `/readyz`
//! (readiness: fails while starting or draining, never because an origin is down), `/topics`
//! (JSON; in cluster mode with the peer set and each topic's owner), `/` (the status page),
//! and the streams that feed it: `/stats` (the figures of this second), `/history` and
//! `/history/stream` (the last 15 minutes, a sample a second: [`history`]) and `/tail` (one
//! topic's events, live: [`tail`]).
//!
//! With `admin.token_file` set, every path that shows the relay's data (`/topics`, `/stats`,
//! `/history`, `/history/stream`, `/tail`) needs `Authorization: Bearer <token>` ([`token`]);
//! the page itself is a static file without data, served to anyone, which asks for the token;
//! the probes and `/metrics` stay open for the kubelet and Prometheus. Per-user topic keys are
//! shown with their claims hashed ([`crate::hub::Topic::shown`]), and not tailed unless
//! `admin.tail_private` is set.
//!
//! It runs on the same serving layer as the relay ([`crate::server`]), with its own
//! connection metrics, unexported. This module only reads the relay's state; it never changes
//! a topic or a subscriber. It sits above the components it reads, beside the composition root.

pub mod history;
pub mod metrics;
pub mod tail;
pub mod token;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::watch;
use tracing::warn;

use crate::cluster::Cluster;
use crate::downstream::DownstreamMetrics;
use crate::hub::{Hub, TopicSnapshot};
use crate::server::{plain_text, Handler, Peer, RequestBody, ServerMetrics};
use crate::upstream::UpstreamMetrics;
use history::History;
use metrics::AdminMetrics;
use tail::{TailRefusal, TailSettings};

/// The status page, self-contained (no build step, no CDN; it draws its charts itself).
const STATUS_PAGE: &str = include_str!("status.html");

pub use token::AdminToken;

/// Interval of `/stats` events.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The readiness latch: not ready until the listeners are bound, not ready once draining.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// True when the relay takes new traffic.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    /// The metrics registry served at `/metrics`.
    pub registry: Registry,
    /// The topics (and the subscriber count).
    pub hub: Hub,
    /// Events received, for `/stats`.
    pub upstream: Arc<UpstreamMetrics>,
    /// Events delivered, for `/stats`.
    pub downstream: Arc<DownstreamMetrics>,
    /// The relay's connections, for `/stats`.
    pub server: Arc<ServerMetrics>,
    /// The readiness latch.
    pub readiness: Readiness,
    /// Turns true when the admin listener stops: `/stats` streams end then.
    pub stop: watch::Receiver<bool>,
    /// Cluster mode: the peer set and topic owners shown by `/topics` and the status page.
    pub cluster: Option<Cluster>,
    /// `admin.token_file`'s token, which the paths that show data then require (`None`:
    /// they are open, like the rest of the listener).
    pub token: Option<AdminToken>,
    /// The last 15 minutes, a sample a second, for `/history` and `/history/stream`.
    pub history: History,
    /// The tails' own metrics.
    pub metrics: Arc<AdminMetrics>,
    /// How `/tail` behaves (`admin.tail_private`, the lag policy).
    pub tail: TailSettings,
    /// The hub of request streams, listed by `/topics` (`None`: no `[[stream_route]]`).
    pub request_streams: Option<Hub>,
}

/// Paths that show the relay's data, which `admin.token_file`'s token guards.
const GUARDED: &[&str] = &["/topics", "/stats", "/history", "/history/stream", "/tail"];

/// The JSON document of `/topics` and of each `/stats` event.
#[derive(serde::Serialize)]
struct Stats {
    /// Wall-clock time of the snapshot, ms since the Unix epoch.
    unix_ms: u128,
    ready: bool,
    draining: bool,
    subscribers: i64,
    connections: i64,
    events_received_total: u64,
    events_delivered_total: u64,
    /// Cluster mode only (absent on a single relay).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<PeerView>,
    topics: Vec<TopicRow>,
    /// Request streams (docs/request-streams.md), each shown as its route and a number: never
    /// by its id, which is the capability to follow it.
    request_streams: Vec<TopicRow>,
}

/// The cluster as this relay sees it: its own peer address, the live set, the count resolved.
#[derive(serde::Serialize)]
struct PeerView {
    #[serde(rename = "self")]
    self_addr: String,
    /// Whether this relay is in `live` (it owns topics only then).
    member: bool,
    live: Vec<String>,
    known: usize,
}

/// One topic of `/topics`: the hub's snapshot, and in cluster mode the topic's owner (the
/// peer address rendezvous hashing picks in the current view).
#[derive(serde::Serialize)]
struct TopicRow {
    #[serde(flatten)]
    snapshot: TopicSnapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// A per-user topic (shown with its claims hashed).
    private: bool,
    /// `/tail` shows its events (not a per-user topic, or `admin.tail_private` is set).
    tailable: bool,
}

impl Handler for Admin {
    type Body = BoxBody<Bytes, Infallible>;
    type Error = Infallible;

    async fn handle(self, request: Request<RequestBody>, _peer: Peer) -> Response<Self::Body> {
        self.respond(&request)
    }
}

impl Admin {
    fn respond<B>(&self, request: &Request<B>) -> Response<BoxBody<Bytes, Infallible>> {
        let path = request.uri().path();
        if GUARDED.contains(&path) {
            if let Some(Err(refusal)) = self.token.as_ref().map(|t| t.check(request.headers())) {
                let mut r = text(StatusCode::UNAUTHORIZED, "admin token required\n");
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, refusal.challenge());
                return r;
            }
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => self.metrics_text(),
            "/topics" => json(&self.stats()),
            "/stats" => self.stats_stream(),
            "/history" => {
                let mut r = Response::new(Full::new(Bytes::from(self.history.document())).boxed());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            "/history/stream" => event_stream(self.history.stream(self.stop.clone())),
            "/tail" => self.tail(request.uri().query().unwrap_or_default()),
            "/" => {
                let mut r = text(StatusCode::OK, STATUS_PAGE);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn metrics_text(&self) -> Response<BoxBody<Bytes, Infallible>> {
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "cannot encode metrics");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
        }
        let mut r = Response::new(Full::new(Bytes::from(out)).boxed());
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    fn stats(&self) -> Stats {
        Stats {
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            ready: self.readiness.is_ready(),
            draining: self.hub.is_draining(),
            subscribers: self.hub.metrics().subscribers.get(),
            connections: self.server.connections_open.total(),
            events_received_total: self.upstream.events_received.get(),
            events_delivered_total: self.downstream.events_delivered.get(),
            cluster: self.cluster.as_ref().map(|c| {
                let peers = c.peers();
                PeerView {
                    self_addr: c.self_addr().to_string(),
                    member: peers.member,
                    live: peers.live.iter().map(ToString::to_string).collect(),
                    known: peers.known,
                }
            }),
            topics: self
                .hub
                .snapshot()
                .into_iter()
                .map(|snapshot| {
                    let private = snapshot.shown != snapshot.key;
                    TopicRow {
                        owner: self
                            .cluster
                            .as_ref()
                            .map(|c| c.owner(&snapshot.key).to_string()),
                        private,
                        tailable: !private || self.tail.private,
                        snapshot,
                    }
                })
                .collect(),
            request_streams: self.request_stream_rows(),
        }
    }

    /// The request streams as `/topics` lists them, sorted by how they are shown.
    fn request_stream_rows(&self) -> Vec<TopicRow> {
        let mut rows: Vec<TopicRow> = self
            .request_streams
            .iter()
            .flat_map(Hub::topics)
            .map(|topic| {
                let private = tail::is_private(&topic);
                TopicRow {
                    snapshot: topic.snapshot(),
                    owner: None,
                    private,
                    tailable: !private || self.tail.private,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.snapshot.shown.cmp(&b.snapshot.shown));
        rows
    }

    /// `/tail?topic=<key as shown>`: the topic's events, live ([`tail`]), ending when the
    /// admin listener stops; 404 for a topic not open, 403 for a per-user topic unless
    /// `admin.tail_private` is set, 400 without `topic`.
    fn tail(&self, query: &str) -> Response<BoxBody<Bytes, Infallible>> {
        let topic = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "topic")
            .map(|(_, value)| value.into_owned());
        let Some(topic) = topic else {
            return text(
                StatusCode::BAD_REQUEST,
                "topic=<key as /topics shows it> is required\n",
            );
        };
        let hubs = std::iter::once(&self.hub).chain(&self.request_streams);
        match tail::open(hubs, &topic, self.tail, self.metrics.clone()) {
            Ok(tail) => {
                let mut stop = self.stop.clone();
                let until_stopped = async move { until_stopped(&mut stop).await };
                event_stream(futures_util::StreamExt::take_until(
                    tail,
                    Box::pin(until_stopped),
                ))
            }
            Err(refusal @ TailRefusal::Unknown) => {
                text(StatusCode::NOT_FOUND, &format!("{refusal}\n"))
            }
            Err(refusal @ TailRefusal::Private) => {
                text(StatusCode::FORBIDDEN, &format!("{refusal}\n"))
            }
        }
    }

    /// An SSE stream with one `stats` event per second, ending when the admin server stops.
    fn stats_stream(&self) -> Response<BoxBody<Bytes, Infallible>> {
        let admin = self.clone();
        let stop = self.stop.clone();
        let stream = futures_util::stream::unfold(
            (admin, stop, true),
            |(admin, mut stop, first)| async move {
                if !first {
                    tokio::select! {
                        _ = tokio::time::sleep(STATS_INTERVAL) => {}
                        _ = until_stopped(&mut stop) => return None,
                    }
                }
                let json = serde_json::to_string(&admin.stats()).unwrap_or_default();
                let frame = Bytes::from(format!("event: stats\ndata: {json}\n\n"));
                Some((frame, (admin, stop, false)))
            },
        );
        event_stream(stream)
    }
}

/// A `text/event-stream` response sending each of `frames` as it comes.
fn event_stream(
    frames: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static,
) -> Response<BoxBody<Bytes, Infallible>> {
    let frames = futures_util::StreamExt::map(frames, |b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::new(StreamBody::new(frames).boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn text(status: StatusCode, body: &str) -> Response<BoxBody<Bytes, Infallible>> {
    plain_text(status, body)
}

fn json(value: &impl serde::Serialize) -> Response<BoxBody<Bytes, Infallible>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
