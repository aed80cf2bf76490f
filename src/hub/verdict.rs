//! What a topic's subscribers are answered: an event stream, or the origin's own final answer
//! (204, or a refusal such as 404) passed on as the origin gave it, so a browser behind the
//! relay stops exactly when one talking to the origin would (WHATWG HTML §9.2.3: EventSource
//! fails for good on any status but 200).
//!
//! This module owns the answer's shape and the per-topic verdict new subscribers wait for; the
//! upstream decides it, the edge turns it into a response.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// A final answer of the origin for a topic, passed on to its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAnswer {
    /// The status to answer (the origin's, or 502 when it did not answer an event stream).
    pub status: StatusCode,
    /// The origin's `Content-Type`, when its body is passed on.
    pub content_type: Option<HeaderValue>,
    /// The origin's body when it was small (see `upstream`), else empty.
    pub body: Bytes,
}

impl OriginAnswer {
    /// The origin's `204 No Content`: the topic is over.
    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: None,
            body: Bytes::new(),
        }
    }

    /// A `502 Bad Gateway` the relay says for the origin, with a plain-text `reason`.
    pub fn bad_gateway(reason: &str) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            content_type: Some(HeaderValue::from_static("text/plain; charset=utf-8")),
            body: Bytes::from(format!("{reason}\n")),
        }
    }
}

/// A topic's answer to its subscribers, as far as the origin has decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The origin has not answered yet (the first upstream attempt is under way).
    Pending,
    /// Subscribers get a `200 text/event-stream`: the origin streams, or it is down or failing
    /// in a way the relay retries (5xx, 429, connect errors), which subscribers ride out on
    /// heartbeats.
    Stream,
    /// Subscribers get this answer instead of a stream; the topic is closing.
    Final(std::sync::Arc<OriginAnswer>),
}
