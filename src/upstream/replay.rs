//! A catch-up request: one GET to the topic's origin with the resuming client's
//! `Last-Event-ID`, outside the topic's shared subscription. Each replayed event is parsed and
//! encoded exactly as the shared subscription's are, so the frames are the same bytes, and
//! handed to the hub's [`CatchUp`], which says when it has met the ring. Its body is decoded
//! as the subscription's is ([`super::decode`]). Any answer but a `200 text/event-stream` in a
//! coding the relay decodes ends it: the hub then gives the subscriber the gap signal.
//!
//! A catch-up never publishes to the topic's ring and never touches its shared subscription:
//! what it reads goes only to the [`CatchUp`] of the client that asked.

use http::header::CONTENT_TYPE;
use http::{StatusCode, Uri};
use hyper::body::Incoming;
use tracing::debug;

use super::attempt::is_event_stream;
use super::decode::{EventBody, ReadError};
use super::request::OriginRequest;
use super::{Upstream, UpstreamHeaders};
use crate::hub::CatchUp;
use crate::ops::WarnLimit;
use crate::sse::{self, Item, Parser};

impl Upstream {
    /// Asks the origin at `uri` to replay after `catch_up`'s id and feeds what it sends to
    /// `catch_up` until the catch-up is decided or the stream ends (the hub bounds the time).
    pub(super) async fn replay(
        &self,
        uri: &Uri,
        headers: &UpstreamHeaders,
        hops: &str,
        catch_up: &CatchUp,
    ) {
        let warnings = WarnLimit::default();
        let request = OriginRequest {
            upstream: self,
            client: &self.client,
            uri,
            headers,
            credential_warnings: &warnings,
            hops,
        };
        let response = match request.send(Some(catch_up.last_event_id())).await {
            Ok(response) => response,
            Err(e) => {
                debug!(error = %e, "catch-up request failed");
                return;
            }
        };
        let status = response.status();
        if status != StatusCode::OK || !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            debug!(%status, "catch-up: the origin did not answer an event stream");
            return;
        }
        let (parts, body) = response.into_parts();
        match EventBody::new(&parts.headers, body) {
            Ok(body) => self.feed(body, catch_up).await,
            Err(e) => debug!(error = %e, "catch-up: the origin's stream cannot be read"),
        }
    }

    /// Parses and encodes each event of the catch-up stream `body` and offers it to
    /// `catch_up`, until the catch-up is decided or the stream ends.
    async fn feed(&self, mut body: EventBody<Incoming>, catch_up: &CatchUp) {
        let mut parser = Parser::new(self.settings.max_event_bytes);
        let mut items = Vec::new();
        while let Some(next) = body.next().await {
            let data = match next {
                Ok(data) => data,
                Err(ReadError::Broke(reason)) => {
                    debug!(error = %reason, "catch-up stream broke");
                    return;
                }
                Err(ReadError::Unreadable(e)) => {
                    debug!(error = %e, "catch-up stream cannot be read");
                    return;
                }
            };
            parser.feed(data, &mut items);
            for item in items.drain(..) {
                if let Item::Event(event) = item {
                    if !catch_up.offer(event.id.as_deref(), sse::encode(&event)) {
                        return;
                    }
                }
            }
        }
        debug!("catch-up stream ended before meeting the replay buffer");
    }
}
