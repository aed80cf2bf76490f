//! One attempt of a topic's upstream subscription: send its request ([`super::request`]:
//! `Last-Event-ID` when resuming, the route's own headers, redirects), sort the answer (a
//! stream; a refusal to pass on, with its small body, for any status but 200, 204 and an
//! outage; an outage to retry (5xx, 408, 429), with its `Retry-After`), then read the event
//! stream, parsing each chunk once and publishing each event, encoded once, to the topic's
//! ring, until the stream ends, breaks or goes idle (reporting how long it stayed up). The
//! body is read through [`super::decode`], which undoes its `Content-Encoding`.
//!
//! One attempt only: it never retries, never waits, and never decides what an ending means for
//! the topic; [`super::follow`] does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::decode::{EventBody, ReadError, Unreadable};
use super::metrics::{Defect, Failure};
use super::request::{OriginRequest, RequestError};
use crate::hub::{OriginAnswer, Topic, UpstreamState};
use crate::ops::Side;
use crate::ops::WarnLimit;
use crate::sse::{self, Item, Parser};

/// Why an attempt gave no event stream, or why its stream broke.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// The request got no response to sort (connect, headers deadline, redirect, unsendable
    /// `Last-Event-ID`).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The origin answered a status the relay retries (5xx but 508, 408, 429), with the delay
    /// its `Retry-After` asked for.
    #[error("answered {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// The origin refused the topic for good (any status but 200, 204 and the outages of
    /// [`AttemptError::Status`]): its answer, to pass on.
    #[error("refused the topic: {}", .0.status)]
    Refused(Arc<OriginAnswer>),
    /// The origin answered 200 without `text/event-stream`.
    #[error("is not text/event-stream: {0}")]
    ContentType(String),
    /// The stream's `Content-Encoding` is one the relay does not decode, or its bytes do not
    /// decode: an outage to retry, never parsed.
    #[error(transparent)]
    ContentEncoding(#[from] Unreadable),
    /// The stream broke.
    #[error("stream broke: {0}")]
    Broke(String),
    /// Nothing arrived for the read idle timeout.
    #[error("idle timeout: reconnecting")]
    IdleTimeout,
}

impl AttemptError {
    /// The metric label (`sse_relay_upstream_failures_total{reason}`).
    pub fn label(&self) -> Failure {
        match self {
            Self::Request(RequestError::Connect(_) | RequestError::HeadersTimeout) => {
                Failure::Connect
            }
            Self::Request(RequestError::Redirect(_)) => Failure::Redirect,
            Self::Request(RequestError::UnsendableId) => Failure::LastEventId,
            Self::Status { .. } => Failure::Status,
            Self::Refused(_) => Failure::Refused,
            Self::ContentType(_) => Failure::ContentType,
            Self::ContentEncoding(_) => Failure::ContentEncoding,
            Self::Broke(_) => Failure::Stream,
            Self::IdleTimeout => Failure::IdleTimeout,
        }
    }

    /// Whose doing it is: always the origin's (or the network's on the way to it).
    pub fn side(&self) -> Side {
        Side::Upstream
    }

    /// The origin answered, but not with an event stream (it may not know the id we sent).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Status { .. } | Self::Refused(_) | Self::ContentType(_)
        )
    }
}

/// How one attempt ended. Only [`AttemptEnd::Broke`] and [`AttemptEnd::Failed`] carry an
/// error: an origin that ends its stream, or a topic whose source changed, is how a stream of
/// events normally stops.
pub(super) enum AttemptEnd {
    /// 204 No Content: the origin closed the topic.
    Closed,
    /// The origin ended the event stream, which stayed open for `up`.
    Ended { up: Duration },
    /// The event stream broke or went idle after it stayed open for `up`.
    Broke { up: Duration, error: AttemptError },
    /// In a cluster, the topic's source changed (a new owner): the attempt was ended to move.
    Moved,
    /// No event stream was opened.
    Failed(AttemptError),
}

impl AttemptEnd {
    /// The label this end counts under in `sse_relay_upstream_failures_total{reason}`: an
    /// ended stream as [`Failure::Stream`], as a broken one; `None` for a closed topic or a
    /// move, which are not counted there.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Self::Closed | Self::Moved => None,
            Self::Ended { .. } => Some(Failure::Stream),
            Self::Broke { error, .. } | Self::Failed(error) => Some(error.label()),
        }
    }
}

/// Largest origin body passed on with a refusal, bytes; a larger one is dropped (the status
/// still passes). Error pages are small; a subscriber must not make the relay buffer more.
pub const MAX_REFUSAL_BODY: usize = 4096;

/// Longest `Retry-After` honoured (RFC 9110 §10.2.3), so an origin's typo cannot stall a topic
/// for days; its subscribers ride the wait out on heartbeats.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The rate-limited warning conditions of one topic's upstream.
#[derive(Default)]
pub(super) struct TopicWarnings {
    /// Connect errors, bad answers, broken streams.
    pub failing: WarnLimit,
    /// Events over `limits.max_event_bytes`.
    oversized: WarnLimit,
    /// Malformed field lines.
    malformed: WarnLimit,
    /// Header files that could not be re-read.
    pub credentials: WarnLimit,
}

/// What one attempt works with.
pub(super) struct Attempt<'a> {
    /// The request it sends (to the origin, or to the owning peer in a cluster).
    pub request: OriginRequest<'a>,
    pub topic: &'a Topic,
    pub parser: &'a mut Parser,
    /// The origin's last `retry:` value.
    pub retry: &'a mut Option<Duration>,
    pub warnings: &'a TopicWarnings,
}

impl Attempt<'_> {
    /// Sends the request (resuming after `last_id`) and reads the stream to its end.
    pub async fn run(self, last_id: Option<&str>) -> AttemptEnd {
        let body = match self.open(last_id).await {
            Ok(Some(body)) => body,
            Ok(None) => return AttemptEnd::Closed,
            Err(error) => return AttemptEnd::Failed(error),
        };
        debug!(status = %StatusCode::OK, "upstream stream open");
        self.topic.set_upstream_state(UpstreamState::Streaming);
        self.topic.answer_with_stream();
        let _open = OpenStream::new(&self.request.upstream.metrics.open);
        let opened = tokio::time::Instant::now();
        match self.read(body).await {
            None => AttemptEnd::Ended {
                up: opened.elapsed(),
            },
            Some(error) => AttemptEnd::Broke {
                up: opened.elapsed(),
                error,
            },
        }
    }

    /// Sends the request and sorts the answer: the event stream's body, or `None` for 204.
    ///
    /// # Errors
    /// [`AttemptError::Request`], [`AttemptError::Refused`] (with the origin's answer),
    /// [`AttemptError::Status`] (with its `Retry-After`), [`AttemptError::ContentType`] or
    /// [`AttemptError::ContentEncoding`].
    async fn open(
        &self,
        last_id: Option<&str>,
    ) -> Result<Option<EventBody<Incoming>>, AttemptError> {
        let response = self.request.send(last_id).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status != StatusCode::OK && !is_outage(status) {
            let answer = self.refusal(response).await;
            return Err(AttemptError::Refused(Arc::new(answer)));
        }
        if status != StatusCode::OK {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| retry_after(v, SystemTime::now()));
            return Err(AttemptError::Status {
                status,
                retry_after,
            });
        }
        if !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            let content_type = format!("{:?}", response.headers().get(CONTENT_TYPE));
            return Err(AttemptError::ContentType(content_type));
        }
        let (parts, body) = response.into_parts();
        Ok(Some(EventBody::new(&parts.headers, body)?))
    }

    /// The origin's refusal as its subscribers get it: its status, and its body and
    /// `Content-Type` when the body is at most [`MAX_REFUSAL_BODY`] and arrives within the
    /// connect timeout.
    async fn refusal(&self, response: Response<Incoming>) -> OriginAnswer {
        let (parts, body) = response.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_REFUSAL_BODY);
        let wait = self.request.upstream.settings.connect_timeout;
        let body = match tokio::time::timeout(wait, limited.collect()).await {
            Ok(Ok(collected)) => Some(collected.to_bytes()),
            _ => None,
        };
        OriginAnswer {
            status: parts.status,
            content_type: body
                .as_ref()
                .and_then(|_| parts.headers.get(CONTENT_TYPE).cloned()),
            body: body.unwrap_or_default(),
        }
    }

    /// Reads the event stream until it ends (`None`), breaks or goes idle (the error),
    /// publishing each event.
    async fn read(mut self, mut body: EventBody<Incoming>) -> Option<AttemptError> {
        let mut items = Vec::new();
        loop {
            let next = match self.request.upstream.settings.read_idle_timeout {
                Some(idle) => match tokio::time::timeout(idle, body.next()).await {
                    Ok(next) => next,
                    Err(_) => return Some(AttemptError::IdleTimeout),
                },
                None => body.next().await,
            };
            let data = match next {
                Some(Ok(data)) => data,
                Some(Err(ReadError::Broke(reason))) => return Some(AttemptError::Broke(reason)),
                Some(Err(ReadError::Unreadable(e))) => return Some(e.into()),
                None => return None,
            };
            self.parser.feed(data, &mut items);
            for item in items.drain(..) {
                self.handle(item);
            }
        }
    }

    /// Acts on one parsed item.
    fn handle(&mut self, item: Item) {
        let metrics = &self.request.upstream.metrics;
        match item {
            Item::Event(event) => {
                // Counted before it is published: a subscriber that has the event can read
                // the count that includes it.
                metrics.events_received.inc();
                self.topic.publish(event.id.as_deref(), sse::encode(&event));
            }
            Item::Retry(ms) => {
                *self.retry = Some(Duration::from_millis(ms));
                // Advice to browsers (WHATWG HTML §9.2.6), encoded once for all the topic's
                // subscribers; a peer's is the origin's, passed on.
                self.topic.publish_retry(sse::encode_retry(ms));
            }
            Item::Oversized { bytes } => {
                if let Some(suppressed) = self.warnings.oversized.check() {
                    warn!(
                        bytes,
                        limit = self.request.upstream.settings.max_event_bytes,
                        topic = %self.topic.shown(),
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

/// True for an answer that is an outage the relay rides out behind a 200 stream and retries:
/// a 5xx but 508 Loop Detected (another relay found this subscription in a loop of relays,
/// which no retry ends), 408 Request Timeout and 429 Too Many Requests, which say "later".
/// Every other status but 200 and 204 (a 4xx, a 2xx such as 205, a 3xx the relay does not
/// follow) is final and passed on to subscribers: EventSource fails the connection on any
/// status but 200 (WHATWG HTML §9.2.3), so a browser must not get a 200 for it.
fn is_outage(status: StatusCode) -> bool {
    let later = status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
    (status.is_server_error() && status != StatusCode::LOOP_DETECTED) || later
}

/// The delay a `Retry-After` value asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP-date,
/// counted from `now`), capped at [`MAX_RETRY_AFTER`]; `None` when it is neither.
fn retry_after(value: &http::HeaderValue, now: SystemTime) -> Option<Duration> {
    let value = value.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// True for a `text/event-stream` media type (parameters such as charset allowed).
pub fn is_event_stream(value: Option<&http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let value = |s: &str| retry_after(&http::HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(value("120"), Some(Duration::from_secs(120)));
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(60));
        assert_eq!(value(&in_a_minute), Some(Duration::from_secs(60)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(value(&past), Some(Duration::ZERO));
        assert_eq!(value("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(value("soon"), None);
    }
}
