//! One upstream request: send it (with `Last-Event-ID` when resuming), check the answer, then
//! read the event stream, parsing each chunk once and publishing each event, encoded once, to
//! the topic's ring, until the stream ends, breaks or goes idle.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use tracing::{debug, warn};

use super::metrics::{Defect, Failure};
use super::Upstream;
use crate::hub::{Topic, UpstreamState};
use crate::ops::WarnLimit;
use crate::ops::{error_chain, Side};
use crate::sse::{self, Item, Parser};

/// Why an attempt gave no stream, or how its stream ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// Could not connect or send the request.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The response headers did not come in time.
    #[error("response headers timed out")]
    HeadersTimeout,
    /// The origin answered an error status.
    #[error("answered {0}")]
    Status(StatusCode),
    /// The origin answered without `text/event-stream`.
    #[error("is not text/event-stream: {0}")]
    ContentType(String),
    /// The stream broke.
    #[error("stream broke: {0}")]
    Broke(String),
    /// The origin ended the stream.
    #[error("stream ended")]
    Ended,
    /// Nothing arrived for the read idle timeout.
    #[error("idle timeout: reconnecting")]
    IdleTimeout,
    /// The `Last-Event-ID` cannot be sent in a header (an origin's id with control bytes).
    #[error("Last-Event-ID is not a valid header value")]
    UnsendableId,
}

impl AttemptError {
    /// The metric label (`sse_relay_upstream_failures_total{reason}`).
    pub fn label(&self) -> Failure {
        match self {
            Self::Connect(_) | Self::HeadersTimeout => Failure::Connect,
            Self::Status(_) => Failure::Status,
            Self::ContentType(_) => Failure::ContentType,
            Self::Broke(_) | Self::Ended => Failure::Stream,
            Self::IdleTimeout => Failure::IdleTimeout,
            Self::UnsendableId => Failure::LastEventId,
        }
    }

    /// Whose doing it is: always the origin's (or the network's on the way to it).
    pub fn side(&self) -> Side {
        Side::Upstream
    }

    /// The origin answered, but not with an event stream (it may not know the id we sent).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Status(_) | Self::ContentType(_))
    }
}

/// How an attempt that got an answer went.
pub(super) enum Answer {
    /// 204 No Content: the topic is over.
    NoContent,
    /// An event stream ran and then ended as said; `delivered` when events arrived.
    Streamed { delivered: bool, end: AttemptError },
}

/// The rate-limited warning conditions of one topic's upstream.
#[derive(Default)]
pub(super) struct TopicWarnings {
    /// Connect errors, bad answers, broken streams.
    pub failing: WarnLimit,
    /// Events over `limits.max_event_bytes`.
    oversized: WarnLimit,
    /// Malformed field lines.
    malformed: WarnLimit,
}

/// What one attempt works with.
pub(super) struct Attempt<'a> {
    pub upstream: &'a Upstream,
    pub uri: &'a Uri,
    pub topic: &'a Topic,
    pub parser: &'a mut Parser,
    /// The origin's last `retry:` value.
    pub retry: &'a mut Option<Duration>,
    pub warnings: &'a TopicWarnings,
}

impl Attempt<'_> {
    /// Sends the request (resuming after `last_id`) and reads the stream to its end.
    ///
    /// # Errors
    /// The [`AttemptError`] when no event stream was opened.
    pub async fn run(self, last_id: Option<&str>) -> Result<Answer, AttemptError> {
        let response = self.request(last_id).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Answer::NoContent);
        }
        if !status.is_success() {
            return Err(AttemptError::Status(status));
        }
        if !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            let content_type = format!("{:?}", response.headers().get(CONTENT_TYPE));
            return Err(AttemptError::ContentType(content_type));
        }
        debug!(%status, "upstream stream open");
        self.topic.set_upstream_state(UpstreamState::Streaming);
        let _open = OpenStream::new(&self.upstream.metrics.open);
        Ok(self.read(response.into_body()).await)
    }

    async fn request(
        &self,
        last_id: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>, AttemptError> {
        let mut request = Request::get(self.uri.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| AttemptError::UnsendableId)?;
        self.upstream.metrics.connects.inc();
        let deadline = self.upstream.settings.connect_timeout * 2;
        match tokio::time::timeout(deadline, self.upstream.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(AttemptError::Connect(error_chain(&e))),
            Err(_) => Err(AttemptError::HeadersTimeout),
        }
    }

    async fn read(mut self, mut body: hyper::body::Incoming) -> Answer {
        let mut items = Vec::new();
        let mut delivered = false;
        let end = loop {
            let frame = match self.upstream.settings.read_idle_timeout {
                Some(idle) => match tokio::time::timeout(idle, body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => break AttemptError::IdleTimeout,
                },
                None => body.frame().await,
            };
            let data = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Some(Err(e)) => break AttemptError::Broke(error_chain(&e)),
                None => break AttemptError::Ended,
            };
            self.parser.feed(&data, &mut items);
            for item in items.drain(..) {
                delivered |= self.handle(item);
            }
        };
        Answer::Streamed { delivered, end }
    }

    /// Acts on one parsed item; true when it was an event.
    fn handle(&mut self, item: Item) -> bool {
        let metrics = &self.upstream.metrics;
        match item {
            Item::Event(event) => {
                self.topic.publish(event.id.as_deref(), sse::encode(&event));
                metrics.events_received.inc();
                return true;
            }
            Item::Retry(ms) => *self.retry = Some(Duration::from_millis(ms)),
            Item::Oversized { bytes } => {
                if let Some(suppressed) = self.warnings.oversized.check() {
                    warn!(
                        bytes,
                        limit = self.upstream.settings.max_event_bytes,
                        topic = %self.topic.key(),
                        path = %self.topic.label(),
                        suppressed,
                        "dropped an event over limits.max_event_bytes (its id still passes)"
                    );
                }
                metrics.events_oversized.inc();
            }
            Item::Malformed(kind) => {
                if let Some(suppressed) = self.warnings.malformed.check() {
                    warn!(?kind, suppressed, "malformed field in the upstream stream");
                }
                metrics.malformed.inc(Defect::Field(kind));
            }
        }
        false
    }
}

/// Counts an established upstream stream in `sse_relay_upstream_subscriptions_open` while it
/// lives.
struct OpenStream<'a>(&'a prometheus::IntGauge);

impl<'a> OpenStream<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// True for a `text/event-stream` media type (parameters such as charset allowed).
fn is_event_stream(value: Option<&http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}
