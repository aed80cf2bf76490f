//! Upstream: one origin subscription per topic. Connects (http or https, HTTP/1.1 or h2 by
//! ALPN), reads the event stream, parses it once, encodes each event once and publishes it to the
//! topic's ring; reconnects with `Last-Event-ID`, exponential backoff with full jitter, and the
//! origin's `retry:`.
//!
//! This module owns the origin side only: it never writes to a subscriber and never forwards a
//! client's headers (cookies, authorization) on the shared subscription.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::{debug, info, warn, Instrument};

use crate::backoff::Backoff;
use crate::hub::{CloseReason, Topic, TopicOpener, UpstreamState};
use crate::metrics::Metrics;
use crate::sse::{self, Item, Parser};
use crate::warn_limit::WarnLimit;

/// Settings of upstream subscriptions.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// TCP + TLS connect timeout, and the deadline for the response headers.
    pub connect_timeout: Duration,
    /// Reconnect when nothing arrives for this long (`None`: never).
    pub read_idle_timeout: Option<Duration>,
    /// Smallest reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Largest event accepted, bytes (see [`Parser::new`]).
    pub max_event_bytes: usize,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The upstream side: an HTTP client shared by every topic's subscription task.
pub struct Upstream {
    client: HttpClient,
    settings: UpstreamSettings,
    metrics: Arc<Metrics>,
}

/// How one upstream request ended.
enum Outcome {
    /// The origin answered 204: the topic is over.
    TopicClosed,
    /// The stream ran (events may have arrived) and then ended or broke.
    StreamEnded { delivered: bool },
    /// No usable stream: connect error, timeout.
    Failed,
    /// The origin answered, but not with an event stream (error status, wrong content type).
    Refused,
    /// The `Last-Event-ID` cannot be sent in a header (an origin's id with control bytes).
    UnsendableId,
}

impl Upstream {
    /// Creates the client. `tls` is used for https origins (ALPN `h2`, `http/1.1` is set here).
    pub fn new(
        settings: UpstreamSettings,
        tls: rustls::ClientConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Self {
            client,
            settings,
            metrics,
        }
    }

    /// A [`TopicOpener`] that spawns one subscription task per new topic.
    pub fn opener(self: &Arc<Self>) -> TopicOpener {
        let upstream = self.clone();
        Arc::new(move |topic: Arc<Topic>| {
            let span = tracing::info_span!("topic", topic = %topic.key());
            tokio::spawn(upstream.clone().run(topic).instrument(span));
        })
    }

    async fn run(self: Arc<Self>, topic: Arc<Topic>) {
        tokio::select! {
            _ = topic.retired() => info!("last subscriber gone: upstream subscription closed"),
            _ = topic.closed() => debug!("topic closed"),
            _ = self.follow(&topic) => {
                // follow only returns when the topic cannot go on: end its streams too.
                topic.close(CloseReason::OriginClosed);
            }
        }
    }

    /// Subscribes until the origin closes the topic with 204 (or the task is dropped).
    async fn follow(&self, topic: &Topic) {
        let uri: Uri = match topic.upstream().parse() {
            Ok(uri) => uri,
            Err(e) => {
                warn!(error = %e, "bad upstream URL");
                return;
            }
        };
        let warnings = TopicWarnings::default();
        let mut parser = Parser::new(self.settings.max_event_bytes);
        // The first subscriber's resume point, until the origin has opened a stream once.
        let mut client_id = topic.initial_last_event_id().map(str::to_string);
        let mut last_id = client_id.clone();
        let mut retry: Option<Duration> = None;
        let mut backoff = Backoff::try_new(self.settings.backoff_min, self.settings.backoff_max)
            .unwrap_or_else(|_| {
                Backoff::try_new(Duration::from_millis(100), Duration::from_secs(30))
                    .expect("valid")
            });
        for attempt in 0u64.. {
            if attempt > 0 {
                self.metrics.upstream_reconnects.inc();
            }
            topic.set_upstream_state(UpstreamState::Connecting);
            let outcome = self
                .stream_once(
                    &uri,
                    topic,
                    &mut parser,
                    last_id.as_deref(),
                    &mut retry,
                    &warnings,
                )
                .await;
            if parser.finish() {
                self.metrics.upstream_malformed.truncated.inc();
            }
            if let Some(id) = parser.last_event_id() {
                last_id = (!id.is_empty()).then(|| id.to_string());
            }
            match outcome {
                Outcome::TopicClosed => {
                    info!("origin answered 204: topic closed");
                    return;
                }
                Outcome::StreamEnded { delivered: true } => backoff.reset(),
                Outcome::StreamEnded { delivered: false } | Outcome::Failed => {}
                Outcome::Refused if client_id.is_some() && last_id == client_id => {
                    // An origin may refuse an id it does not know; a client's id must not keep
                    // everyone else's topic from ever opening.
                    warn!(
                        last_event_id = ?client_id,
                        "origin refused the client's Last-Event-ID: subscribing without it"
                    );
                    last_id = None;
                }
                Outcome::Refused => {}
                Outcome::UnsendableId => {
                    warn!(last_event_id = ?last_id, "Last-Event-ID is not a valid header value: subscribing without it");
                    last_id = None;
                }
            }
            if matches!(outcome, Outcome::StreamEnded { .. }) {
                client_id = None;
            }
            topic.set_upstream_state(UpstreamState::Backoff);
            let delay = backoff.next_delay(retry);
            debug!(?delay, last_event_id = ?last_id, "reconnecting");
            tokio::time::sleep(delay).await;
        }
    }

    async fn stream_once(
        &self,
        uri: &Uri,
        topic: &Topic,
        parser: &mut Parser,
        last_id: Option<&str>,
        retry: &mut Option<Duration>,
        warnings: &TopicWarnings,
    ) -> Outcome {
        let failing = |what: &str, detail: String| {
            if let Some(suppressed) = warnings.failing.check() {
                warn!(suppressed, detail, "upstream {what}");
            }
        };
        let failures = &self.metrics.upstream_failures;
        let mut request = Request::get(uri.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let Ok(request) = request.body(Empty::new()) else {
            failures.last_event_id.inc();
            return Outcome::UnsendableId;
        };
        self.metrics.upstream_connects.inc();
        let deadline = self.settings.connect_timeout * 2;
        let response = match tokio::time::timeout(deadline, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                // `{:#}`: the error with its causes (the socket error under hyper's wrapper).
                failing("connect failed", format!("{:#}", anyhow::Error::from(e)));
                failures.connect.inc();
                return Outcome::Failed;
            }
            Err(_) => {
                failing("response headers timed out", String::new());
                failures.connect.inc();
                return Outcome::Failed;
            }
        };
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Outcome::TopicClosed;
        }
        if !status.is_success() {
            failing("answered an error status", status.to_string());
            failures.status.inc();
            return Outcome::Refused;
        }
        if !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            let content_type = format!("{:?}", response.headers().get(CONTENT_TYPE));
            failing("is not text/event-stream", content_type);
            failures.content_type.inc();
            return Outcome::Refused;
        }
        debug!(%status, "upstream stream open");
        topic.set_upstream_state(UpstreamState::Streaming);
        let _open = OpenStream::new(&self.metrics);
        let mut body = response.into_body();
        let mut items = Vec::new();
        let mut delivered = false;
        loop {
            let frame = match self.settings.read_idle_timeout {
                Some(idle) => match tokio::time::timeout(idle, body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        failing("idle timeout: reconnecting", String::new());
                        failures.idle_timeout.inc();
                        break;
                    }
                },
                None => body.frame().await,
            };
            let data = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    failing("stream broke", format!("{:#}", anyhow::Error::from(e)));
                    failures.stream.inc();
                    break;
                }
                None => {
                    debug!("upstream stream ended");
                    failures.stream.inc();
                    break;
                }
            };
            parser.feed(&data, &mut items);
            for item in items.drain(..) {
                match item {
                    Item::Event(event) => {
                        topic.publish(event.id.as_deref(), sse::encode(&event));
                        self.metrics.events_received.inc();
                        delivered = true;
                    }
                    Item::Retry(ms) => *retry = Some(Duration::from_millis(ms)),
                    Item::Oversized { bytes } => {
                        if let Some(suppressed) = warnings.oversized.check() {
                            warn!(
                                bytes,
                                suppressed, "dropped an event over limits.max_event_bytes"
                            );
                        }
                        self.metrics.events_oversized.inc();
                    }
                    Item::Malformed(kind) => {
                        if let Some(suppressed) = warnings.malformed.check() {
                            warn!(?kind, suppressed, "malformed field in the upstream stream");
                        }
                        self.metrics.upstream_malformed.count(kind);
                    }
                }
            }
        }
        Outcome::StreamEnded { delivered }
    }
}

/// The rate-limited warning conditions of one topic's upstream.
#[derive(Default)]
struct TopicWarnings {
    /// Connect errors, bad answers, broken streams.
    failing: WarnLimit,
    /// Events over `limits.max_event_bytes`.
    oversized: WarnLimit,
    /// Malformed field lines.
    malformed: WarnLimit,
}

/// Counts an established upstream stream in `sse_relay_upstream_subscriptions_open` while it
/// lives.
struct OpenStream<'a>(&'a Metrics);

impl<'a> OpenStream<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.upstream_open.inc();
        Self(metrics)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.upstream_open.dec();
    }
}

/// True for a `text/event-stream` media type (parameters such as charset allowed).
fn is_event_stream(value: Option<&http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}
