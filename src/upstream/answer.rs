//! A request stream's upstream: the origin's one answer to the request a client started the
//! stream with. The edge sent that request and sorted the answer (a `200 text/event-stream`);
//! this reads its body to the end, through [`super::decode`], parsing each chunk once and
//! publishing each event, encoded once, into the stream's topic (docs/architecture.md,
//! invariant 2). An event that carries no `id:` gets one from the relay ([`RelayIds`]) that
//! names the stream and the position, so a `Last-Event-ID` alone is enough to resume it;
//! the origin's own ids pass unchanged.
//!
//! It never sends a request and never retries: an answer cannot be asked for twice. Its end,
//! whole or broken, is the stream's end ([`UpstreamEnd::Finished`]).

use std::sync::Arc;

use http::HeaderMap;
use hyper::body::Incoming;
use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::decode::{EventBody, ReadError, Unreadable};
use super::metrics::Defect;
use super::Upstream;
use crate::hub::{Follow, Topic, UpstreamEnd, UpstreamState};
use crate::sse::{self, Item, Parser};

/// The ids the relay gives a stream's events that carry none: `{stream}.{n}`, `n` counting the
/// stream's events from 1. The stream id is URL-safe base64 (no `.`), so the last `.` splits
/// an id back into stream and position ([`RelayIds::stream_of`]).
#[derive(Debug, Clone)]
pub struct RelayIds {
    stream: Arc<str>,
}

impl RelayIds {
    /// Ids of the stream named `stream` (URL-safe base64).
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.into(),
        }
    }

    /// The id of the stream's `n`th event.
    pub fn id(&self, n: u64) -> String {
        format!("{}.{n}", self.stream)
    }

    /// The stream an id the relay gave names, if it is one of the relay's ids.
    pub fn stream_of(id: &str) -> Option<&str> {
        let (stream, n) = id.rsplit_once('.')?;
        n.parse::<u64>().ok()?;
        Some(stream)
    }
}

/// What the relay measures of each answer it reads.
#[derive(Clone)]
pub struct AnswerMetrics {
    /// Seconds from the answer's headers to its first event.
    pub first_event: Histogram,
    /// Seconds between one event and the next.
    pub between_events: Histogram,
    /// Answers dropped unfinished because their viewers left (`on_disconnect = "cancel"`) or
    /// the relay drained; a `DELETE` is counted by whoever asked for it.
    pub dropped: IntCounter,
}

impl Upstream {
    /// How a request stream's topic reads the origin's answer (`headers`, `body`), giving
    /// events without an id one from `ids` and measuring into `metrics`.
    ///
    /// # Errors
    /// [`Unreadable`] when the answer's `Content-Encoding` is one the relay does not decode.
    pub fn answer_follower(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: Incoming,
        ids: RelayIds,
        metrics: AnswerMetrics,
    ) -> Result<Follow, Unreadable> {
        let body = EventBody::new(headers, body)?;
        let upstream = self.clone();
        Ok(Box::new(move |topic: Arc<Topic>| {
            Box::pin(async move {
                let mut reading = Reading {
                    upstream: &upstream,
                    topic: &topic,
                    ids: &ids,
                    metrics: &metrics,
                    events: 0,
                    last_at: Instant::now(),
                    finished: false,
                };
                reading.read(body).await;
                UpstreamEnd::Finished
            })
        }))
    }
}

/// One answer being read.
struct Reading<'a> {
    upstream: &'a Upstream,
    topic: &'a Topic,
    ids: &'a RelayIds,
    metrics: &'a AnswerMetrics,
    /// Events published so far, count.
    events: u64,
    /// When the headers (then the last event) arrived.
    last_at: Instant,
    /// True once the body ended or broke.
    finished: bool,
}

impl Reading<'_> {
    /// Reads the body to its end (or until it breaks: the answer is what arrived).
    async fn read(&mut self, mut body: EventBody<Incoming>) {
        self.topic.set_upstream_state(UpstreamState::Streaming);
        self.topic.answer_with_stream();
        let mut parser = Parser::new(self.upstream.settings.max_event_bytes);
        let mut items = Vec::new();
        loop {
            match body.next().await {
                Some(Ok(data)) => parser.feed(data, &mut items),
                Some(Err(ReadError::Broke(reason))) => {
                    debug!(%reason, "request stream's answer broke: ended");
                    break;
                }
                Some(Err(ReadError::Unreadable(e))) => {
                    warn!(error = %e, "request stream's answer does not decode: ended");
                    self.upstream
                        .metrics
                        .failures
                        .inc(super::Failure::ContentEncoding);
                    break;
                }
                None => break,
            }
            for item in items.drain(..) {
                self.handle(item);
            }
        }
        self.finished = true;
        self.topic.set_upstream_state(UpstreamState::Closed);
    }

    /// Acts on one parsed item.
    fn handle(&mut self, item: Item) {
        let metrics = &self.upstream.metrics;
        match item {
            Item::Event(mut event) => {
                metrics.events_received.inc();
                self.events += 1;
                let now = Instant::now();
                let waited = now.saturating_duration_since(self.last_at).as_secs_f64();
                if self.events == 1 {
                    self.metrics.first_event.observe(waited);
                } else {
                    self.metrics.between_events.observe(waited);
                }
                self.last_at = now;
                if event.id.is_none() {
                    event.id = Some(self.ids.id(self.events));
                }
                self.topic.publish(event.id.as_deref(), sse::encode(&event));
            }
            Item::Retry(ms) => self.topic.publish_retry(sse::encode_retry(ms)),
            Item::Oversized { .. } => metrics.events_oversized.inc(),
            Item::Malformed(kind) => metrics.malformed.inc(Defect::Field(kind)),
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if !self.finished && !self.topic.is_cancel_requested() {
            self.metrics.dropped.inc();
        }
    }
}
